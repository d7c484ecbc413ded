//! A learned, context-aware recogniser for person names and street addresses: an averaged
//! perceptron over hand-built token features (word, shape, affixes, neighbouring words and
//! shapes, the previous tags, lexicon hits), decoded greedily left to right.
//!
//! It complements the rules: cue words in any language become features, so a name after
//! "sung by", "said", "Follow up with" or before ":" is found without a rule for each phrase.
//! Only tokens near a capitalised word or a number are scored (the cheap cue); everything else
//! is "outside" without any work. Weights are trained by [`train`] (see
//! `examples/train_tagger.rs` and `bench/pii/train_tagger.sh`); `scripts/fetch.sh tagger` makes
//! them into the models folder and [`crate::weights`] loads them at run time.

use crate::CurateError;
use crate::lexicon::Lexicon;

/// Hashed feature buckets (a power of two).
const BUCKETS: usize = 1 << 16;
/// Outside, person, street address.
const CLASSES: usize = 3;
const MAGIC: &[u8; 8] = b"DSTAG001";

/// The tag of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Not part of a name or an address.
    Outside = 0,
    /// Part of a person's name.
    Person = 1,
    /// Part of a street address.
    Address = 2,
}

impl Tag {
    fn from_index(i: usize) -> Tag {
        match i {
            1 => Tag::Person,
            2 => Tag::Address,
            _ => Tag::Outside,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Num,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    s: usize,
    e: usize,
    kind: Kind,
    /// First character upper case.
    cap: bool,
    /// First token of a line or after . ! ? :
    sent_start: bool,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut it = text.char_indices().peekable();
    let mut sent_start = true;
    while let Some((i, c)) = it.next() {
        if c == '\n' {
            toks.push(Tok {
                s: i,
                e: i + 1,
                kind: Kind::Punct,
                cap: false,
                sent_start: false,
            });
            sent_start = true;
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut e = i + c.len_utf8();
        let kind = if c.is_alphabetic() {
            while let Some(&(j, d)) = it.peek() {
                let inner = matches!(d, '\'' | '’' | '-' | '.')
                    && text[j + d.len_utf8()..].starts_with(char::is_alphabetic)
                    && d != '.';
                if d.is_alphabetic() || inner {
                    e = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            while let Some(&(j, d)) = it.peek() {
                if d.is_ascii_digit() {
                    e = j + 1;
                    it.next();
                } else {
                    break;
                }
            }
            Kind::Num
        } else {
            Kind::Punct
        };
        let cap = kind == Kind::Word && c.is_uppercase();
        toks.push(Tok {
            s: i,
            e,
            kind,
            cap,
            sent_start,
        });
        sent_start = kind == Kind::Punct && matches!(c, '.' | '!' | '?' | ':' | '"' | '“');
    }
    toks
}

/// A coarse shape: X (upper), x (lower), d (digit), other characters as themselves; runs
/// collapsed to at most two, so "McAllister" → "XxXx", "Anna" → "Xx", "78750" → "dd".
fn shape(word: &str, out: &mut Vec<u8>) {
    out.clear();
    let mut last = 0u8;
    let mut run = 0;
    for c in word.chars() {
        let k = if c.is_uppercase() {
            b'X'
        } else if c.is_lowercase() {
            b'x'
        } else if c.is_ascii_digit() {
            b'd'
        } else if c.is_ascii() {
            c as u8
        } else {
            b'o'
        };
        if k == last {
            run += 1;
            if run > 2 {
                continue;
            }
        } else {
            run = 1;
            last = k;
        }
        out.push(k);
    }
}

fn fnv(parts: &[&[u8]]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) & (BUCKETS - 1)
}

/// Per-token strings computed once per text.
struct Prepared {
    toks: Vec<Tok>,
    lower: Vec<String>,
    shapes: Vec<Vec<u8>>,
    lex: Vec<u8>,
    /// Scored tokens (near a capitalised word or a number).
    active: Vec<bool>,
}

const LEX_GIVEN: u8 = 1;
const LEX_SUR: u8 = 2;
const LEX_STOP: u8 = 4;

/// Per-token strings, computed only for the tokens the features will read. `anchors`: byte
/// positions where a name may start or end (the ends of person cues, the starts of verbs of
/// saying, colons, brackets); capitalised words away from them and from known given names are
/// not scored. `None` scores every capitalised word (training).
fn prepare(text: &str, lexicon: &Lexicon, anchors: Option<&[usize]>) -> Prepared {
    let toks = tokenize(text);
    let n = toks.len();
    let mut lower = vec![String::new(); n];
    let mut shapes = vec![Vec::new(); n];
    let mut lex = vec![0u8; n];
    let mut done = vec![false; n];
    let fill = |i: usize, lower: &mut Vec<String>, shapes: &mut Vec<Vec<u8>>, lex: &mut Vec<u8>| {
        let t = toks[i];
        let w = &text[t.s..t.e];
        let l = w.to_lowercase();
        let mut flags = 0;
        if t.kind == Kind::Word {
            if lexicon.is_given(&l) {
                flags |= LEX_GIVEN;
            }
            if lexicon.is_surname(&l) {
                flags |= LEX_SUR;
            }
            if lexicon.is_stop(&l) {
                flags |= LEX_STOP;
            }
        }
        shape(w, &mut shapes[i]);
        lower[i] = l;
        lex[i] = flags;
    };
    let near_anchor = |t: &Tok| {
        anchors.is_none_or(|a| {
            a.iter()
                .any(|&p| (p <= t.s && t.s - p <= 3) || (p >= t.e && p - t.e <= 3))
        })
    };
    let mut active = vec![false; n];
    for (i, t) in toks.iter().enumerate() {
        // A house number: 1–5 digits with a capitalised word within three tokens (a street).
        let house_number = t.kind == Kind::Num
            && t.e - t.s <= 5
            && toks[i.saturating_sub(3)..(i + 4).min(n)]
                .iter()
                .any(|x| x.cap);
        let window = if house_number {
            Some((4, 6))
        } else if t.cap {
            fill(i, &mut lower, &mut shapes, &mut lex);
            done[i] = true;
            let stop_start = t.sent_start && lex[i] & LEX_STOP != 0;
            (!stop_start && (near_anchor(t) || lex[i] & LEX_GIVEN != 0)).then_some((2, 2))
        } else {
            None
        };
        if let Some((lo, hi)) = window {
            for a in active
                .iter_mut()
                .take((i + hi + 1).min(n))
                .skip(i.saturating_sub(lo))
            {
                *a = true;
            }
        }
    }
    // The features of an active token read its neighbours up to two away.
    for i in 0..n {
        if !done[i]
            && active[i.saturating_sub(2)..(i + 3).min(n)]
                .iter()
                .any(|&a| a)
        {
            fill(i, &mut lower, &mut shapes, &mut lex);
        }
    }
    Prepared {
        toks,
        lower,
        shapes,
        lex,
        active,
    }
}

const PAD: &[u8] = b"<pad>";

fn features(p: &Prepared, i: usize, t1: u8, t2: u8, out: &mut Vec<usize>) {
    out.clear();
    let w = |k: isize| -> &[u8] {
        let j = i as isize + k;
        if j < 0 || j as usize >= p.toks.len() {
            PAD
        } else {
            p.lower[j as usize].as_bytes()
        }
    };
    let sh = |k: isize| -> &[u8] {
        let j = i as isize + k;
        if j < 0 || j as usize >= p.toks.len() {
            PAD
        } else {
            &p.shapes[j as usize]
        }
    };
    let lx = |k: isize| -> u8 {
        let j = i as isize + k;
        if j < 0 || j as usize >= p.toks.len() {
            8
        } else {
            p.lex[j as usize]
        }
    };
    let cur = w(0);
    let chars: Vec<char> = p.lower[i].chars().collect();
    let pre: String = chars.iter().take(3).collect();
    let suf3: String = chars.iter().rev().take(3).collect();
    let suf2: String = chars.iter().rev().take(2).collect();
    let ss = [u8::from(p.toks[i].sent_start)];
    let (tp1, tp2) = ([t1], [t2]);
    out.push(fnv(&[b"b"]));
    out.push(fnv(&[b"w", cur]));
    out.push(fnv(&[b"s", sh(0)]));
    out.push(fnv(&[b"p3", pre.as_bytes()]));
    out.push(fnv(&[b"s3", suf3.as_bytes()]));
    out.push(fnv(&[b"s2", suf2.as_bytes()]));
    out.push(fnv(&[b"w-1", w(-1)]));
    out.push(fnv(&[b"w+1", w(1)]));
    out.push(fnv(&[b"w-2", w(-2)]));
    out.push(fnv(&[b"w+2", w(2)]));
    out.push(fnv(&[b"w-2-1", w(-2), w(-1)]));
    out.push(fnv(&[b"w+1+2", w(1), w(2)]));
    out.push(fnv(&[b"s-1", sh(-1)]));
    out.push(fnv(&[b"s+1", sh(1)]));
    out.push(fnv(&[b"s-1s", sh(-1), sh(0)]));
    out.push(fnv(&[b"ss+1", sh(0), sh(1)]));
    out.push(fnv(&[b"w-1s", w(-1), sh(0)]));
    out.push(fnv(&[b"sw+1", sh(0), w(1)]));
    out.push(fnv(&[b"lx", &[lx(0)]]));
    out.push(fnv(&[b"lx-1", &[lx(-1)], &[lx(0)]]));
    out.push(fnv(&[b"lx+1", &[lx(0)], &[lx(1)]]));
    out.push(fnv(&[b"st", &ss, sh(0)]));
    out.push(fnv(&[b"t1", &tp1]));
    out.push(fnv(&[b"t12", &tp1, &tp2]));
    out.push(fnv(&[b"t1s", &tp1, sh(0)]));
    out.push(fnv(&[b"t1w", &tp1, cur]));
}

/// The trained model.
pub struct Tagger {
    w: Vec<[f32; CLASSES]>,
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagger")
            .field("buckets", &self.w.len())
            .finish()
    }
}

/// A span found by the tagger, with the smallest per-token margin of its tag over the others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaggedSpan {
    /// Person or address.
    pub tag: Tag,
    /// UTF-8 byte offsets.
    pub start: usize,
    /// UTF-8 byte offsets.
    pub end: usize,
    /// Confidence: the weakest token's score margin.
    pub margin: f32,
}

impl Tagger {
    /// Load weights written by [`Tagger::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, CurateError> {
        let bad = |m: &str| CurateError::Model(format!("tagger weights: {m}"));
        if b.len() < 12 || &b[..8] != MAGIC {
            return Err(bad("not a downshift tagger file"));
        }
        let scale = f32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let body = &b[12..];
        if body.len() != BUCKETS * CLASSES * 2 || !scale.is_finite() || scale <= 0.0 {
            return Err(bad("wrong size or scale"));
        }
        let mut w = vec![[0f32; CLASSES]; BUCKETS];
        for (k, ch) in body.chunks_exact(2).enumerate() {
            w[k / CLASSES][k % CLASSES] = f32::from(i16::from_le_bytes([ch[0], ch[1]])) / scale;
        }
        Ok(Tagger { w })
    }

    /// Serialise, quantised to 16 bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let max = self
            .w
            .iter()
            .flat_map(|x| x.iter())
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-6);
        let scale = 32000.0 / max;
        let mut out = Vec::with_capacity(12 + BUCKETS * CLASSES * 2);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&scale.to_le_bytes());
        for x in &self.w {
            for v in x {
                out.extend_from_slice(&((v * scale).round() as i16).to_le_bytes());
            }
        }
        out
    }

    fn scores(&self, feats: &[usize]) -> [f32; CLASSES] {
        let mut s = [0f32; CLASSES];
        for &f in feats {
            let w = &self.w[f];
            for c in 0..CLASSES {
                s[c] += w[c];
            }
        }
        s
    }

    /// Tag every token of `text`; returns (token spans, tags, margins).
    fn tag(&self, p: &Prepared) -> (Vec<Tag>, Vec<f32>) {
        let n = p.toks.len();
        let mut tags = vec![Tag::Outside; n];
        let mut margins = vec![0f32; n];
        let mut feats = Vec::with_capacity(32);
        let (mut t1, mut t2) = (0u8, 0u8);
        for i in 0..n {
            if !p.active[i] {
                t2 = t1;
                t1 = 0;
                continue;
            }
            features(p, i, t1, t2, &mut feats);
            let s = self.scores(&feats);
            let best = argmax(&s);
            let second = (0..CLASSES)
                .filter(|&c| c != best)
                .map(|c| s[c])
                .fold(f32::NEG_INFINITY, f32::max);
            tags[i] = Tag::from_index(best);
            margins[i] = s[best] - second;
            t2 = t1;
            t1 = best as u8;
        }
        (tags, margins)
    }

    /// Tagged spans of `text`, unfiltered (the detector filters them by shape and context).
    pub fn spans(&self, text: &str) -> Vec<TaggedSpan> {
        self.find(text, &Lexicon::new(), None)
    }

    pub(crate) fn find(
        &self,
        text: &str,
        lexicon: &Lexicon,
        anchors: Option<&[usize]>,
    ) -> Vec<TaggedSpan> {
        let p = prepare(text, lexicon, anchors);
        if !p.active.iter().any(|&a| a) {
            return Vec::new();
        }
        let (tags, margins) = self.tag(&p);
        let mut out = Vec::new();
        let mut i = 0;
        while i < tags.len() {
            let t = tags[i];
            if t == Tag::Outside {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let mut m = margins[i];
            while j < tags.len()
                && tags[j] == t
                && !(t == Tag::Person
                    && p.toks[j].kind == Kind::Punct
                    && text[p.toks[j].s..p.toks[j].e].contains('\n'))
            {
                m = m.min(margins[j]);
                j += 1;
            }
            // Spans do not end on punctuation.
            let mut last = j - 1;
            while last > i && p.toks[last].kind == Kind::Punct {
                last -= 1;
            }
            if p.toks[i].kind != Kind::Punct {
                out.push(TaggedSpan {
                    tag: t,
                    start: p.toks[i].s,
                    end: p.toks[last].e,
                    margin: m,
                });
            }
            i = j;
        }
        out
    }
}

fn argmax(s: &[f32; CLASSES]) -> usize {
    let mut b = 0;
    for c in 1..CLASSES {
        if s[c] > s[b] {
            b = c;
        }
    }
    b
}

/// One labelled training text: byte spans of persons and addresses.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The text.
    pub text: String,
    /// (tag, start, end) in UTF-8 bytes.
    pub spans: Vec<(Tag, usize, usize)>,
}

/// Train an averaged perceptron on labelled texts (deterministic for a given `seed`).
/// Returns the model and, per epoch, the share of scored tokens tagged correctly.
pub fn train(data: &[Labelled], epochs: usize, seed: u64) -> (Tagger, Vec<f64>) {
    let lexicon = Lexicon::new();
    let prepared: Vec<(Prepared, Vec<usize>)> = data
        .iter()
        .map(|d| {
            let p = prepare(&d.text, &lexicon, None);
            let gold = p
                .toks
                .iter()
                .map(|t| {
                    d.spans
                        .iter()
                        .find(|(_, s, e)| t.s >= *s && t.s < *e)
                        .map_or(0, |(tag, _, _)| *tag as usize)
                })
                .collect();
            (p, gold)
        })
        .collect();
    let mut w = vec![[0f32; CLASSES]; BUCKETS];
    let mut acc = vec![[0f64; CLASSES]; BUCKETS];
    let mut stamp = vec![[0u64; CLASSES]; BUCKETS];
    let mut clock: u64 = 0;
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    let mut rng = seed | 1;
    let mut feats = Vec::with_capacity(32);
    let mut history = Vec::new();
    for _ in 0..epochs {
        // Fisher–Yates with xorshift.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let (mut right, mut total) = (0u64, 0u64);
        for &k in &order {
            let (p, gold) = &prepared[k];
            let (mut t1, mut t2) = (0u8, 0u8);
            for (i, &truth) in gold.iter().enumerate() {
                if !p.active[i] {
                    t2 = t1;
                    t1 = 0;
                    continue;
                }
                clock += 1;
                features(p, i, t1, t2, &mut feats);
                let mut s = [0f32; CLASSES];
                for &f in &feats {
                    for c in 0..CLASSES {
                        s[c] += w[f][c];
                    }
                }
                let guess = argmax(&s);
                total += 1;
                if guess == truth {
                    right += 1;
                } else {
                    for &f in &feats {
                        for (c, delta) in [(truth, 1f32), (guess, -1f32)] {
                            acc[f][c] += f64::from(w[f][c]) * (clock - stamp[f][c]) as f64;
                            stamp[f][c] = clock;
                            w[f][c] += delta;
                        }
                    }
                }
                t2 = t1;
                // Train on the predicted history, as decoding will see it.
                t1 = guess as u8;
            }
        }
        history.push(right as f64 / total.max(1) as f64);
    }
    let mut avg = vec![[0f32; CLASSES]; BUCKETS];
    for f in 0..BUCKETS {
        for c in 0..CLASSES {
            let total = acc[f][c] + f64::from(w[f][c]) * (clock - stamp[f][c]) as f64;
            avg[f][c] = (total / clock.max(1) as f64) as f32;
        }
    }
    (Tagger { w: avg }, history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(text: &str, names: &[&str], addrs: &[&str]) -> Labelled {
        let mut spans = Vec::new();
        for (tag, list) in [(Tag::Person, names), (Tag::Address, addrs)] {
            for n in list {
                let s = text.find(n).unwrap();
                spans.push((tag, s, s + n.len()));
            }
        }
        Labelled {
            text: text.to_string(),
            spans,
        }
    }

    #[test]
    fn learns_a_context_and_round_trips_its_weights() {
        let given = [
            "Ottilie", "Barnaby", "Ximena", "Kwame", "Ingrid", "Tomasz", "Leilani", "Anouk",
        ];
        let sur = [
            "Quarshie",
            "Vantongeren",
            "Abernathy",
            "Szczepanik",
            "Olayinka",
            "Marchetti",
            "Lindqvist",
            "Haverkamp",
        ];
        let mut data = Vec::new();
        for (i, g) in given.iter().enumerate() {
            for (j, s) in sur.iter().enumerate() {
                let name = format!("{g} {s}");
                let addr = format!("{} Juniper Lane", 10 + i * 8 + j);
                let t = match (i + j) % 3 {
                    0 => format!("The song was sung by {name} in 1999."),
                    1 => format!("Please ship it to {addr} today, thanks."),
                    _ => format!("We met {name} at the Apple Store."),
                };
                if t.contains(&addr) {
                    data.push(lab(&t, &[], &[&addr]));
                } else {
                    data.push(lab(&t, &[&name], &[]));
                }
            }
        }
        let (model, hist) = train(&data, 6, 7);
        assert!(hist[hist.len() - 1] > 0.95, "{hist:?}");
        let lex = Lexicon::new();
        // An unseen name after the learned cue.
        let found = model.find(
            "The song was sung by Zdravko Petrosyan in 2001.",
            &lex,
            None,
        );
        assert!(
            found.iter().any(|s| s.tag == Tag::Person
                && &"The song was sung by Zdravko Petrosyan in 2001."[s.start..s.end]
                    == "Zdravko Petrosyan"),
            "{found:?}"
        );
        let back = Tagger::from_bytes(&model.to_bytes()).unwrap();
        let again = back.find(
            "The song was sung by Zdravko Petrosyan in 2001.",
            &lex,
            None,
        );
        assert_eq!(found.len(), again.len());
        assert!(Tagger::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn shapes() {
        let mut v = Vec::new();
        shape("McAllister", &mut v);
        assert_eq!(v, b"XxXxx");
        shape("78750", &mut v);
        assert_eq!(v, b"dd");
    }
}
