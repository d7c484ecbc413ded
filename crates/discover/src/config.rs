//! The `[discover]` section of `downshift.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::pipeline::DiscoverParams;
use crate::task::Price;

/// Which embedding the semantic split uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2, natively on candle (needs the model folder).
    #[default]
    Minilm,
    /// Hashed word and character n-grams: no model file, lexical only.
    Hashed,
}

/// Discovery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverConfig {
    /// Smallest number of calls that makes a task.
    pub min_cluster_size: usize,
    /// Most distinct texts embedded and clustered per structural group.
    pub sample_per_group: usize,
    /// Variable texts are cut to this many characters before embedding.
    pub max_text_chars: usize,
    /// Most texts embedded in one run.
    pub embed_budget: usize,
    /// A part split off a structural group holds at least this share of it.
    pub min_split_share: f64,
    /// Make each task a set of whole request keys (tool set + system-prompt template), the
    /// router's view: an agent's requests all go to the task that holds most of them.
    pub align_to_requests: bool,
    /// Which embedding the semantic split uses: all-MiniLM-L6-v2 (`minilm`, the default) or
    /// hashed n-grams (`hashed`).
    pub embedder: EmbedderKind,
    /// Folder of the sentence-transformers model (all-MiniLM-L6-v2).
    pub model_dir: PathBuf,
    /// Dimensions of the hashed embedding.
    pub hashed_dim: usize,
    /// Model (exact, `prefix*`, or `*`) → USD per million prompt / completion tokens.
    pub prices: BTreeMap<String, Price>,
}

impl Default for DiscoverConfig {
    fn default() -> Self {
        let p = |prompt, completion| Price { prompt, completion };
        DiscoverConfig {
            min_cluster_size: 5,
            sample_per_group: 32,
            max_text_chars: 512,
            embed_budget: 2000,
            min_split_share: 0.1,
            align_to_requests: false,
            embedder: EmbedderKind::Minilm,
            model_dir: PathBuf::from(crate::embed::DEFAULT_MODEL_DIR),
            hashed_dim: 384,
            prices: BTreeMap::from([
                ("gpt-4o*".to_owned(), p(2.5, 10.0)),
                ("gpt-4o-mini*".to_owned(), p(0.15, 0.6)),
                ("gpt-4.1*".to_owned(), p(2.0, 8.0)),
                ("claude-sonnet*".to_owned(), p(3.0, 15.0)),
            ]),
        }
    }
}

impl DiscoverConfig {
    /// The pipeline parameters.
    pub fn params(&self) -> DiscoverParams {
        DiscoverParams {
            min_cluster_size: self.min_cluster_size,
            sample_per_group: self.sample_per_group,
            max_text_chars: self.max_text_chars,
            embed_budget: self.embed_budget,
            min_split_share: self.min_split_share,
            prices: self.prices.clone(),
            align_to_requests: self.align_to_requests,
        }
    }
}
