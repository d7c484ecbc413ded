//! Sentence embeddings with all-MiniLM-L6-v2 on candle, matching sentence-transformers: BERT
//! WordPiece tokenisation ([`tokenizer`]), the BERT encoder ([`bert`]), mean pooling over the
//! attention mask and L2 normalisation.
//!
//! The model folder is the packaged sentence-transformers layout (`model.safetensors`,
//! `config.json`, `tokenizer.json` or `vocab.txt`, optionally `sentence_bert_config.json` for
//! `max_seq_length`); `scripts/fetch.sh minilm` puts it in `models/all-minilm-l6-v2/`.

mod bert;
pub mod tokenizer;
mod unicode_tables;

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use bert::{BertConfig, BertModel};
pub use tokenizer::WordPieceTokenizer;

/// Where `scripts/fetch.sh minilm` puts the model, relative to the repository root.
pub const DEFAULT_MODEL_DIR: &str = "models/all-minilm-l6-v2";

/// Longest input sentence-transformers feeds this model (`max_seq_length`), in word pieces
/// including `[CLS]` and `[SEP]`, when the folder does not say.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// At most this many sequences run through the encoder together.
const MAX_BATCH: usize = 64;
/// At most this many (padded) tokens run through the encoder together.
const MAX_BATCH_TOKENS: usize = 4096;

/// What can go wrong loading or running the embedder.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A file the model folder must hold (`config.json`, `model.safetensors`, or `tokenizer.json`
    /// / `vocab.txt`) is not there.
    #[error(
        "embedding model file {path} is missing; `scripts/fetch.sh minilm` fetches all-MiniLM-L6-v2 into models/all-minilm-l6-v2/"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A model file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` or `sentence_bert_config.json` is not JSON or describes a model this BERT
    /// implementation cannot run.
    #[error("{path} is not a BERT config this embedder supports: {reason}")]
    Config {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer.json` or `vocab.txt` is not a usable WordPiece vocabulary.
    #[error("{path} is not a usable BERT WordPiece tokenizer: {reason}")]
    Tokenizer {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `model.safetensors` cannot be loaded into the model (corrupt, or another model's weights).
    #[error("cannot load the weights in {path} (corrupt or not this model's): {source}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// candle's reason.
        #[source]
        source: candle_core::Error,
    },
    /// Running the encoder on a batch of texts failed.
    #[error("embedding failed: {0}")]
    Compute(#[from] candle_core::Error),
}

/// A sentence embedder: all-MiniLM-L6-v2 (or any BERT sentence-transformers model with mean pooling).
#[derive(Debug, Clone)]
pub struct Embedder {
    tokenizer: WordPieceTokenizer,
    model: BertModel,
    dim: usize,
    max_seq_length: usize,
    pad_id: u32,
}

fn require(dir: &Path, name: &str) -> Result<PathBuf, EmbedError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmbedError::Missing { path })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Embedder {
    /// Loads the model from a sentence-transformers folder such as `models/all-minilm-l6-v2`.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        if !dir.is_dir() {
            return Err(EmbedError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let config_path = require(dir, "config.json")?;
        let config_err = |reason: String| EmbedError::Config {
            path: config_path.clone(),
            reason,
        };
        let cfg: BertConfig =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| config_err(e.to_string()))?;
        if let Some(reason) = cfg.unsupported() {
            return Err(config_err(reason));
        }

        let tokenizer = match require(dir, "tokenizer.json") {
            Ok(path) => WordPieceTokenizer::from_tokenizer_json(&path)?,
            Err(missing) => match require(dir, "vocab.txt") {
                Ok(path) => WordPieceTokenizer::from_vocab_txt(&path)?,
                Err(_) => return Err(missing),
            },
        };

        let max_seq_length = Self::read_max_seq_length(dir)?.min(cfg.max_position_embeddings);

        let weights_path = require(dir, "model.safetensors")?;
        let weights_err = |source| EmbedError::Weights {
            path: weights_path.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(
            read(&weights_path)?,
            DType::F32,
            &bert::device(),
        )
        .map_err(weights_err)?;
        let model = BertModel::load(vb, &cfg).map_err(weights_err)?;
        Ok(Embedder {
            tokenizer,
            model,
            dim: cfg.hidden_size,
            max_seq_length,
            pad_id: 0,
        })
    }

    fn read_max_seq_length(dir: &Path) -> Result<usize, EmbedError> {
        let path = dir.join("sentence_bert_config.json");
        if !path.is_file() {
            return Ok(DEFAULT_MAX_SEQ_LENGTH);
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&read(&path)?).map_err(|e| EmbedError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(doc
            .get("max_seq_length")
            .and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_MAX_SEQ_LENGTH, |v| v as usize)
            .max(2))
    }

    /// Length of the embedding vectors (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Longest input in word pieces, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &WordPieceTokenizer {
        &self.tokenizer
    }

    /// Token ids the model sees for `text` (`[CLS] … [SEP]`, truncated to [`Self::max_seq_length`]).
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.max_seq_length)
    }

    /// L2-normalised mean-pooled embeddings, one per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t)).collect();
        // Similar lengths together, so batches carry little padding.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());

        let mut out = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end < order.len() {
                let rows = end + 1 - start;
                let longest = encoded[order[end]].len();
                if end > start && (rows > MAX_BATCH || rows * longest > MAX_BATCH_TOKENS) {
                    break;
                }
                end += 1;
            }
            let batch: Vec<&[u32]> = order[start..end]
                .iter()
                .map(|&i| encoded[i].as_slice())
                .collect();
            for (&i, vector) in order[start..end].iter().zip(self.embed_batch(&batch)?) {
                out[i] = vector;
            }
            start = end;
        }
        Ok(out)
    }

    fn embed_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let seq = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * seq);
        let mut mask = Vec::with_capacity(batch.len() * seq);
        for row in batch {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(self.pad_id, seq - row.len()));
            mask.extend(std::iter::repeat_n(1f32, row.len()));
            mask.extend(std::iter::repeat_n(0f32, seq - row.len()));
        }
        let device = bert::device();
        let ids = Tensor::from_vec(ids, (batch.len(), seq), &device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), seq), &device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        Ok(bert::mean_pool_normalize(&hidden, &mask)?.to_vec2::<f32>()?)
    }
}
