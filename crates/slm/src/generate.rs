//! Sampling and the generation loop.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::llama::{KvCache, KvDtype, Llama, Logits};
use crate::nn::AdapterSel;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// How to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 (or below) means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    pub top_k: usize,
    /// Nucleus sampling mass (1.0: off).
    pub top_p: f32,
    /// llama.cpp-style penalty on tokens seen in the last `repeat_last_n` (1.0: off).
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the sampler's random numbers: the same seed and options give the same output.
    pub seed: u64,
    /// Generation stops before any of these strings; the string is not part of the text.
    pub stop: Vec<String>,
    /// Stop at the model's end-of-generation tokens.
    pub stop_at_eog: bool,
    /// How many alternatives to report per position with the chosen token's log-probability.
    pub top_logprobs: usize,
    /// Render control tokens into the text.
    pub render_special: bool,
    /// Which attached LoRA adapters the forward passes use.
    #[serde(skip)]
    pub adapter: AdapterSel,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            stop: Vec::new(),
            stop_at_eog: true,
            top_logprobs: 0,
            render_special: false,
            adapter: AdapterSel::None,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
}

/// The result of a generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text, stop string excluded.
    pub text: String,
    /// Generated ids (without a final end-of-generation token).
    pub token_ids: Vec<u32>,
    /// Log-probability of each chosen token under the model's distribution (before
    /// temperature and penalties) — a confidence signal.
    pub logprobs: Vec<f32>,
    /// The `top_logprobs` most likely alternatives per position.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Seconds from the request's start to the first generated token.
    pub time_to_first_token_s: f64,
    /// Prompt tokens processed per second.
    pub prefill_tokens_per_s: f64,
    /// Decoding speed: tokens per second of the forward passes after the prompt (0 when none
    /// ran).
    pub decode_tokens_per_s: f64,
}

/// Restricts generation (e.g. to a grammar): called before each sampling step and after each
/// chosen token.
pub trait TokenFilter {
    /// Sets the logits of disallowed tokens to `-inf`.
    fn mask(&mut self, logits: &mut [f32]) -> Result<()>;
    /// Records the chosen token; returns `true` when the output is complete.
    fn accept(&mut self, token: u32) -> Result<bool>;
    /// Whether ending the output now would be valid.
    fn may_end(&mut self) -> bool {
        true
    }
}

/// A prompt already run through the model: its cache and the logits after it. Clone it to
/// sample several continuations of one prompt without recomputing it.
#[derive(Clone, Debug)]
pub struct Prefix {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// The key/value cache after the prompt, with room for the new tokens.
    pub cache: KvCache,
    /// Logits for the token after the prompt.
    pub logits: Vec<f32>,
    /// Seconds the prompt took.
    pub prefill_s: f64,
}

/// Runs `prompt` through the model, reserving cache room for `max_new` more tokens.
pub fn prefill(
    model: &Llama,
    prompt: &[u32],
    max_new: usize,
    adapter: AdapterSel,
    kv_dtype: KvDtype,
) -> Result<Prefix> {
    if prompt.is_empty() {
        return Err(Error::Request("empty prompt".into()));
    }
    let ctx = model.config.context_length;
    if prompt.len() >= ctx {
        return Err(Error::ContextOverflow {
            prompt: prompt.len(),
            max_new,
            context: ctx,
        });
    }
    let max_new = max_new.min(ctx - prompt.len());
    let mut cache = model.new_cache(prompt.len() + max_new, kv_dtype);
    let t0 = Instant::now();
    let logits = model.forward(prompt, &mut cache, adapter, Logits::Last)?;
    let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    Ok(Prefix {
        ids: prompt.to_vec(),
        cache,
        logits,
        prefill_s: t0.elapsed().as_secs_f64(),
    })
}

/// Picks tokens from logits.
pub struct Sampler {
    opts: GenerateOptions,
    rng: rand::rngs::StdRng,
    idx: Vec<usize>,
}

impl Sampler {
    /// A sampler for `opts`; [`Error::Request`] when the temperature or `top_p` is not finite,
    /// `top_p` is not positive, or the repetition penalty is not a positive number.
    pub fn new(opts: &GenerateOptions) -> Result<Self> {
        if !opts.temperature.is_finite() || !opts.top_p.is_finite() || opts.top_p <= 0.0 {
            return Err(Error::Request(format!(
                "temperature {} / top_p {} out of range",
                opts.temperature, opts.top_p
            )));
        }
        if !(opts.repetition_penalty.is_finite() && opts.repetition_penalty > 0.0) {
            return Err(Error::Request(format!(
                "repetition_penalty {} must be positive",
                opts.repetition_penalty
            )));
        }
        Ok(Self {
            opts: opts.clone(),
            rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
            idx: Vec::new(),
        })
    }

    /// Chooses the next token; `logits` may be modified (penalties).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let o = &self.opts;
        if o.repetition_penalty != 1.0 {
            let from = history.len().saturating_sub(o.repeat_last_n);
            let mut seen: Vec<u32> = history[from..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / o.repetition_penalty
                    } else {
                        *l * o.repetition_penalty
                    };
                }
            }
        }
        if o.temperature <= 0.0 {
            return argmax(logits) as u32;
        }
        let n = logits.len();
        let inv_t = 1.0 / o.temperature;
        if o.top_k == 0 && o.top_p >= 1.0 {
            // plain temperature sampling over the whole vocabulary
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let total: f64 = logits
                .iter()
                .map(|&l| (((l - max) * inv_t) as f64).exp())
                .sum();
            let mut r = self.rng.r#gen::<f64>() * total;
            for (i, &l) in logits.iter().enumerate() {
                r -= (((l - max) * inv_t) as f64).exp();
                if r <= 0.0 {
                    return i as u32;
                }
            }
            return argmax(logits) as u32;
        }
        // candidates, best first: a partial selection keeps this cheap for large vocabularies
        let want = if o.top_k > 0 { o.top_k.min(n) } else { n };
        self.idx.clear();
        self.idx.extend(0..n);
        let cmp = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        let mut take = want.min(512);
        loop {
            if take < n {
                self.idx.select_nth_unstable_by(take - 1, cmp);
            }
            let cand = &mut self.idx[..take];
            cand.sort_unstable_by(cmp);
            let max = logits[cand[0]];
            let total: f64 = logits
                .iter()
                .map(|&l| (((l - max) * inv_t) as f64).exp())
                .sum();
            let mut probs: Vec<f64> = cand
                .iter()
                .map(|&i| (((logits[i] - max) * inv_t) as f64).exp() / total)
                .collect();
            let covered: f64 = probs.iter().sum();
            // need more candidates if top-p mass is not reached and we are not top-k bound
            if take < want && covered < o.top_p as f64 {
                take = (take * 4).min(want);
                continue;
            }
            let mut keep = probs.len();
            if o.top_p < 1.0 {
                let mut acc = 0.0;
                for (i, p) in probs.iter().enumerate() {
                    acc += p;
                    if acc >= o.top_p as f64 {
                        keep = i + 1;
                        break;
                    }
                }
            }
            probs.truncate(keep);
            let sum: f64 = probs.iter().sum();
            let mut r = self.rng.r#gen::<f64>() * sum;
            for (i, p) in probs.iter().enumerate() {
                r -= p;
                if r <= 0.0 {
                    return cand[i] as u32;
                }
            }
            return cand[keep - 1] as u32;
        }
    }
}

fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in xs.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best
}

/// `log_softmax(logits)[id]` and the top alternatives.
fn logprob_of(logits: &[f32], id: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let lp = logits
        .get(id as usize)
        .map(|l| l - lse)
        .unwrap_or(f32::NEG_INFINITY);
    let mut alts = Vec::new();
    if top > 0 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = top.min(idx.len());
        idx.select_nth_unstable_by(k - 1, |a, b| logits[*b].total_cmp(&logits[*a]));
        idx.truncate(k);
        idx.sort_unstable_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        alts = idx
            .into_iter()
            .map(|i| (i as u32, logits[i] - lse))
            .collect();
    }
    (lp, alts)
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if i > best && text.ends_with(&s[..i]) {
                best = i;
            }
        }
    }
    best
}

/// Generates after `prompt` with `model`. `on_text` receives text as it becomes final and
/// returns `false` to stop.
pub fn generate(
    model: &Llama,
    tok: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    kv_dtype: KvDtype,
    on_text: Option<&mut dyn FnMut(&str) -> bool>,
) -> Result<Generation> {
    let t0 = Instant::now();
    let p = prefill(model, prompt, opts.max_tokens, opts.adapter, kv_dtype)?;
    generate_from(model, tok, p, opts, None, on_text, t0)
}

/// Generates after a [`Prefix`], optionally restricted by a [`TokenFilter`]. `t0` is when the
/// request started (for time to first token).
pub fn generate_from(
    model: &Llama,
    tok: &Tokenizer,
    prefix: Prefix,
    opts: &GenerateOptions,
    filter: Option<&mut dyn TokenFilter>,
    on_text: Option<&mut dyn FnMut(&str) -> bool>,
    t0: Instant,
) -> Result<Generation> {
    let Prefix {
        ids,
        mut cache,
        logits,
        prefill_s,
    } = prefix;
    let max_new = opts
        .max_tokens
        .min(cache.max_len().saturating_sub(cache.len()));
    let mut st = Decoding::new(tok, &ids, opts, prefill_s, max_new, filter, on_text, t0)?;
    let mut next = st.pick(logits)?;
    while let Some(id) = next {
        st.mark_decode_start();
        let l = model.forward(&[id], &mut cache, opts.adapter, Logits::Last)?;
        next = st.pick(l.flatten_all()?.to_vec1()?)?;
    }
    Ok(st.finish())
}

/// Generates continuations of several prompts together: each decode step runs all unfinished
/// sequences through the model in one batch (weights are read once per step for all of
/// them). One [`GenerateOptions`] per prompt (e.g. different seeds).
pub fn generate_batch(
    model: &Llama,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    opts: &[GenerateOptions],
    kv_dtype: KvDtype,
) -> Result<Vec<Generation>> {
    if prompts.len() != opts.len() {
        return Err(Error::Request(format!(
            "{} prompts but {} option sets",
            prompts.len(),
            opts.len()
        )));
    }
    if let Some(o) = opts.iter().find(|o| o.adapter != opts[0].adapter) {
        return Err(Error::Request(format!(
            "one batch runs one adapter selection ({:?} vs {:?})",
            o.adapter, opts[0].adapter
        )));
    }
    let t0 = Instant::now();
    let mut caches = Vec::with_capacity(prompts.len());
    let mut states = Vec::with_capacity(prompts.len());
    let mut next = Vec::with_capacity(prompts.len());
    for (p, o) in prompts.iter().zip(opts) {
        let pre = prefill(model, p, o.max_tokens, o.adapter, kv_dtype)?;
        let max_new = o
            .max_tokens
            .min(pre.cache.max_len().saturating_sub(pre.cache.len()));
        let mut st = Decoding::new(tok, p, o, pre.prefill_s, max_new, None, None, t0)?;
        next.push(st.pick(pre.logits)?);
        caches.push(pre.cache);
        states.push(st);
    }
    let sel = opts.first().map(|o| o.adapter).unwrap_or_default();
    loop {
        let active: Vec<usize> = (0..states.len()).filter(|&i| next[i].is_some()).collect();
        if active.is_empty() {
            break;
        }
        let ids: Vec<[u32; 1]> = active
            .iter()
            .filter_map(|&i| next[i].map(|t| [t]))
            .collect();
        for &i in &active {
            states[i].mark_decode_start();
        }
        let mut batch: Vec<(&[u32], &mut KvCache)> = Vec::with_capacity(active.len());
        let mut rest: &mut [KvCache] = &mut caches;
        let mut base = 0;
        for (k, &i) in active.iter().enumerate() {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - base);
            let (c, tail) = tail.split_at_mut(1);
            batch.push((&ids[k][..], &mut c[0]));
            rest = tail;
            base = i + 1;
        }
        let logits = model.forward_batch(&mut batch, sel)?;
        for (k, &i) in active.iter().enumerate() {
            let l: Vec<f32> = logits[k].flatten_all()?.to_vec1()?;
            next[i] = states[i].pick(l)?;
        }
    }
    Ok(states.into_iter().map(Decoding::finish).collect())
}

/// The per-sequence state of a generation: sampling, stop conditions, text and streaming.
struct Decoding<'a, 'f, 'c> {
    tok: &'a Tokenizer,
    opts: &'a GenerateOptions,
    sampler: Sampler,
    history: Vec<u32>,
    out: Generation,
    decoder: StreamDecoder,
    emitted: usize,
    max_new: usize,
    filter: Option<&'f mut dyn TokenFilter>,
    on_text: Option<&'c mut dyn FnMut(&str) -> bool>,
    t0: Instant,
    decode_start: Option<Instant>,
    decoded: usize,
}

impl<'a, 'f, 'c> Decoding<'a, 'f, 'c> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        tok: &'a Tokenizer,
        prompt: &[u32],
        opts: &'a GenerateOptions,
        prefill_s: f64,
        max_new: usize,
        filter: Option<&'f mut dyn TokenFilter>,
        on_text: Option<&'c mut dyn FnMut(&str) -> bool>,
        t0: Instant,
    ) -> Result<Self> {
        if opts.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::Request("empty stop string".into()));
        }
        Ok(Self {
            tok,
            opts,
            sampler: Sampler::new(opts)?,
            history: prompt.to_vec(),
            out: Generation {
                text: String::new(),
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                top_logprobs: Vec::new(),
                finish_reason: FinishReason::Length,
                prompt_tokens: prompt.len(),
                completion_tokens: 0,
                time_to_first_token_s: 0.0,
                prefill_tokens_per_s: prompt.len() as f64 / prefill_s.max(1e-9),
                decode_tokens_per_s: 0.0,
            },
            decoder: StreamDecoder::new(),
            emitted: 0,
            max_new,
            filter,
            on_text,
            t0,
            decode_start: None,
            decoded: 0,
        })
    }

    fn mark_decode_start(&mut self) {
        if self.decode_start.is_none() {
            self.decode_start = Some(Instant::now());
        }
        self.decoded += 1;
    }

    /// Chooses the next token from `logits`; `Some(id)` when the model must run on `id` to
    /// continue, `None` when the generation is over.
    fn pick(&mut self, mut logits: Vec<f32>) -> Result<Option<u32>> {
        if self.out.completion_tokens >= self.max_new {
            return Ok(None);
        }
        let (opts, tok) = (self.opts, self.tok);
        let raw = logits.clone();
        if let Some(f) = self.filter.as_deref_mut() {
            f.mask(&mut logits)?;
            if !f.may_end() {
                // the grammar is not complete: end-of-generation tokens stay masked
                for &e in tok.eog_ids() {
                    if let Some(l) = logits.get_mut(e as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                return Err(Error::Request(
                    "the constraint allows no further token".into(),
                ));
            }
        }
        let id = self.sampler.sample(&mut logits, &self.history);
        if self.out.completion_tokens == 0 {
            self.out.time_to_first_token_s = self.t0.elapsed().as_secs_f64();
        }
        self.out.completion_tokens += 1;
        if opts.stop_at_eog && tok.is_eog(id) {
            self.out.finish_reason = FinishReason::Stop;
            return Ok(None);
        }
        let grammar_done = match self.filter.as_deref_mut() {
            Some(f) => f.accept(id)?,
            None => false,
        };
        let (lp, alts) = logprob_of(&raw, id, opts.top_logprobs);
        self.out.token_ids.push(id);
        self.out.logprobs.push(lp);
        if opts.top_logprobs > 0 {
            self.out.top_logprobs.push(alts);
        }
        self.history.push(id);
        let piece = self.decoder.push(tok, id, opts.render_special);
        self.out.text.push_str(&piece);
        let mut stopped = grammar_done;
        if !opts.stop.is_empty() {
            let longest = opts.stop.iter().map(|s| s.len()).max().unwrap_or(0);
            let text = &self.out.text;
            let from = floor_char_boundary(text, self.emitted.saturating_sub(longest));
            if let Some(pos) = opts
                .stop
                .iter()
                .filter_map(|s| text[from..].find(s.as_str()).map(|p| p + from))
                .min()
            {
                self.out.text.truncate(pos);
                stopped = true;
            }
        }
        let safe = if stopped {
            self.out.text.len()
        } else {
            self.out.text.len() - held_back(&self.out.text, &opts.stop)
        };
        if safe > self.emitted {
            let chunk = &self.out.text[self.emitted..safe];
            self.emitted = safe;
            if let Some(cb) = self.on_text.as_deref_mut()
                && !cb(chunk)
            {
                self.out.finish_reason = FinishReason::Cancelled;
                return Ok(None);
            }
        }
        if stopped {
            self.out.finish_reason = FinishReason::Stop;
            return Ok(None);
        }
        if self.out.completion_tokens >= self.max_new {
            return Ok(None);
        }
        Ok(Some(id))
    }

    fn finish(mut self) -> Generation {
        if self.out.finish_reason != FinishReason::Cancelled {
            let rest = self.decoder.finish();
            self.out.text.push_str(&rest);
            if self.out.text.len() > self.emitted
                && let Some(cb) = self.on_text.as_deref_mut()
            {
                cb(&self.out.text[self.emitted..]);
            }
        }
        if let Some(s) = self.decode_start
            && self.decoded > 0
        {
            self.out.decode_tokens_per_s =
                self.decoded as f64 / s.elapsed().as_secs_f64().max(1e-9);
        }
        self.out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_penalty() {
        let mut s = Sampler::new(&GenerateOptions::default()).expect("sampler");
        let mut l = vec![0.0, 3.0, 1.0];
        assert_eq!(s.sample(&mut l, &[]), 1);
        let o = GenerateOptions {
            repetition_penalty: 10.0,
            ..Default::default()
        };
        let mut s = Sampler::new(&o).expect("sampler");
        let mut l = vec![0.0, 3.0, 1.0];
        assert_eq!(s.sample(&mut l, &[1]), 2);
    }

    #[test]
    fn top_k_and_top_p_restrict_choices() {
        let o = GenerateOptions {
            temperature: 1.0,
            top_k: 2,
            seed: 7,
            ..Default::default()
        };
        let mut s = Sampler::new(&o).expect("sampler");
        for _ in 0..200 {
            let mut l = vec![5.0, 4.9, 4.8, 0.0];
            assert!(s.sample(&mut l, &[]) < 2);
        }
        let o = GenerateOptions {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
            ..Default::default()
        };
        let mut s = Sampler::new(&o).expect("sampler");
        for _ in 0..200 {
            let mut l = vec![0.0, 10.0, 0.0, 0.0];
            assert_eq!(s.sample(&mut l, &[]), 1);
        }
        // same seed, same draws
        let o = GenerateOptions {
            temperature: 1.0,
            seed: 3,
            ..Default::default()
        };
        let draw = || {
            let mut s = Sampler::new(&o).expect("sampler");
            (0..50)
                .map(|_| s.sample(&mut vec![1.0; 1000], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
        assert!(
            Sampler::new(&GenerateOptions {
                top_p: 0.0,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn stop_string_hold_back() {
        let stops = vec!["</end>".to_string()];
        assert_eq!(held_back("abc</e", &stops), 3);
        assert_eq!(held_back("abc", &stops), 0);
    }
}
