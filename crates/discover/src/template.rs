//! System-prompt templates, mined in the spirit of Drain (He et al., *Drain: An Online Log
//! Parsing Approach with Fixed Depth Tree*, 2017): prompts are split into tokens, grouped by
//! token count and leading token, and a prompt joins the most similar template of its group
//! when at least [`SIMILARITY`] of the positions agree; positions that differ become the
//! variable slot `<*>`. Constant text stays, so "You are the assistant of ACME; today is
//! 2026-01-02." and "…; today is 2026-03-04." share one template.

use std::collections::HashMap;

/// Share of equal token positions needed to join a template.
pub const SIMILARITY: f64 = 0.5;
/// Prompts longer than this many tokens are compared on their first `MAX_TOKENS` tokens plus
/// their length, which keeps mining linear on very long prompts.
const MAX_TOKENS: usize = 512;

/// A mined template: tokens, `None` where the prompts differ.
#[derive(Debug, Clone)]
struct Template {
    tokens: Vec<Option<String>>,
    len: usize,
}

/// Online template miner.
#[derive(Debug, Default)]
pub struct TemplateMiner {
    templates: Vec<Template>,
    /// (token count, first token or `<*>`) → template ids.
    groups: HashMap<(usize, String), Vec<usize>>,
}

fn has_digit(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
}

impl TemplateMiner {
    /// An empty miner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a prompt; returns its template id.
    pub fn add(&mut self, text: &str) -> usize {
        let all: Vec<&str> = text.split_whitespace().collect();
        let len = all.len();
        let tokens = &all[..len.min(MAX_TOKENS)];
        let first = match tokens.first() {
            Some(t) if !has_digit(t) => (*t).to_owned(),
            Some(_) => "<*>".to_owned(),
            None => String::new(),
        };
        let group = self.groups.entry((len, first)).or_default();
        let mut best: Option<(usize, f64)> = None;
        for &id in group.iter() {
            let t = &self.templates[id];
            let same = t
                .tokens
                .iter()
                .zip(tokens)
                .filter(|(a, b)| a.as_deref().is_none_or(|a| a == **b))
                .count();
            let sim = if tokens.is_empty() {
                1.0
            } else {
                same as f64 / tokens.len() as f64
            };
            if sim >= SIMILARITY && best.is_none_or(|(_, s)| sim > s) {
                best = Some((id, sim));
            }
        }
        match best {
            Some((id, _)) => {
                let t = &mut self.templates[id];
                for (slot, tok) in t.tokens.iter_mut().zip(tokens) {
                    if slot.as_deref().is_some_and(|s| s != *tok) {
                        *slot = None;
                    }
                }
                id
            }
            None => {
                let id = self.templates.len();
                self.templates.push(Template {
                    tokens: tokens.iter().map(|t| Some((*t).to_owned())).collect(),
                    len,
                });
                group.push(id);
                id
            }
        }
    }

    /// The template's text, variable slots shown as `<*>`.
    pub fn template(&self, id: usize) -> String {
        let t = &self.templates[id];
        let mut s = t
            .tokens
            .iter()
            .map(|x| x.as_deref().unwrap_or("<*>"))
            .collect::<Vec<_>>()
            .join(" ");
        if t.len > t.tokens.len() {
            s.push_str(&format!(" …(+{} tokens)", t.len - t.tokens.len()));
        }
        s
    }

    /// Number of templates mined.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no prompt has been added yet.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_slots_are_found_and_different_prompts_stay_apart() {
        let mut m = TemplateMiner::new();
        let a = m.add("You are the assistant of ACME. Today is 2026-01-02. Answer briefly.");
        let b = m.add("You are the assistant of ACME. Today is 2026-03-04. Answer briefly.");
        let c = m.add("You are the assistant of Initech. Today is 2026-03-05. Answer briefly.");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            m.template(a),
            "You are the assistant of <*> Today is <*> Answer briefly."
        );
        let d = m.add("Extract the order as JSON with fields id, items and total amount.");
        assert_ne!(a, d);
        let e = m.add("Classify the intent of the message into one of: refund, order, other.");
        assert_ne!(
            d, e,
            "same length and leading token class, but too different"
        );
        assert_eq!(m.add(""), m.add("  "));
        assert_eq!(m.len(), 4);
    }
}
