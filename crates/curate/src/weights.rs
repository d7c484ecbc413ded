//! Where the learned name/address tagger's weights come from at run time.
//!
//! The weights are a trained model, so they are not in git: `scripts/fetch.sh tagger` makes them
//! (`bench/pii/train_tagger.sh`, deterministic) into `<models folder>/pii-tagger/tagger.bin`.
//! A detector either gets them explicitly ([`crate::Detector::with_tagger`]) or, through
//! [`crate::Detector::new`], from one process-wide copy loaded on first use from the paths the
//! program named with [`set_tagger_search`] (the `downshift` binary names its models folders).
//! Without weights the detector runs on its rules alone, after one warning that says where it
//! looked and how to make them.

use crate::CurateError;
use crate::tagger::Tagger;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The weights' path below a models folder.
pub const TAGGER_MODEL: &str = "pii-tagger/tagger.bin";
/// The command that makes the weights.
pub const TAGGER_FETCH: &str = "scripts/fetch.sh tagger";

/// Trained tagger weights (about 1 MB in memory), shared by every detector built with them.
#[derive(Clone, Debug)]
pub struct TaggerWeights(Arc<Tagger>);

impl TaggerWeights {
    /// Load weights written by `bench/pii/train_tagger.sh`.
    pub fn load(path: &Path) -> Result<Self, CurateError> {
        let bytes = std::fs::read(path).map_err(|e| {
            CurateError::Model(format!(
                "cannot read the PII tagger weights {}: {e}",
                path.display()
            ))
        })?;
        let tagger = Tagger::from_bytes(&bytes).map_err(|e| {
            CurateError::Model(format!(
                "{e} ({}; remake it with `{TAGGER_FETCH}`)",
                path.display()
            ))
        })?;
        Ok(TaggerWeights(Arc::new(tagger)))
    }

    /// The first of `candidates` that exists, loaded; `None` when none exists. A file that
    /// exists but cannot be read as weights is an error, not a fallback.
    pub fn find(candidates: &[PathBuf]) -> Result<Option<Self>, CurateError> {
        candidates
            .iter()
            .find(|p| p.is_file())
            .map(|p| Self::load(p))
            .transpose()
    }

    /// The model itself.
    pub fn tagger(&self) -> &Tagger {
        &self.0
    }
}

/// What is reported when no candidate path holds the weights.
pub fn missing_message(looked: &[PathBuf]) -> String {
    let looked = if looked.is_empty() {
        "no location was given".to_string()
    } else {
        looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "PII tagger weights not found (looked for: {looked}); persons and street addresses are \
         found by the rules alone, with lower recall. Make the weights with `{TAGGER_FETCH}`"
    )
}

static SEARCH: OnceLock<Vec<PathBuf>> = OnceLock::new();
static SHARED: OnceLock<Result<Option<TaggerWeights>, String>> = OnceLock::new();

/// Names where [`crate::Detector::new`] looks for the weights, in order: the program's models
/// folders joined with [`TAGGER_MODEL`]. Takes effect only before the first detector is built
/// (and only once); returns whether it did.
pub fn set_tagger_search(paths: Vec<PathBuf>) -> bool {
    SEARCH.set(paths).is_ok()
}

/// The search used when the program named none (tests, examples and benchmarks run from a
/// checkout): `$DOWNSHIFT_MODELS_DIR/pii-tagger/tagger.bin`, then this checkout's
/// `models/pii-tagger/tagger.bin` — where `scripts/fetch.sh tagger` writes them.
pub fn checkout_search() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(d) = std::env::var_os("DOWNSHIFT_MODELS_DIR").filter(|d| !d.is_empty()) {
        paths.push(PathBuf::from(d).join(TAGGER_MODEL));
    }
    paths.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(TAGGER_MODEL),
    );
    paths
}

/// The weights of [`checkout_search`], for tests, examples and benchmarks that measure the tagger:
/// an error naming where it looked and how to make them when there are none.
pub fn checkout_weights() -> Result<TaggerWeights, CurateError> {
    let search = checkout_search();
    TaggerWeights::find(&search)?.ok_or_else(|| CurateError::ModelMissing(missing_message(&search)))
}

/// The process-wide weights of [`crate::Detector::new`]: loaded once, on first use. Missing
/// weights give `None` and one warning (in this crate's own unit tests, an error: they measure
/// the tagger and must not pass on rules alone).
pub(crate) fn shared() -> Result<Option<TaggerWeights>, CurateError> {
    SHARED
        .get_or_init(|| {
            let search = SEARCH.get_or_init(checkout_search);
            match TaggerWeights::find(search) {
                Ok(Some(w)) => Ok(Some(w)),
                Ok(None) if cfg!(test) => Err(missing_message(search)),
                Ok(None) => {
                    tracing::warn!("{}", missing_message(search));
                    Ok(None)
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .clone()
        .map_err(CurateError::Model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Detector, EntityType, PiiConfig};

    #[test]
    fn missing_weights_name_where_they_were_looked_for_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let looked = vec![
            dir.path().join("a").join(TAGGER_MODEL),
            dir.path().join("b"),
        ];
        assert!(TaggerWeights::find(&looked).unwrap().is_none());
        let msg = missing_message(&looked);
        assert!(msg.contains(&looked[0].display().to_string()), "{msg}");
        assert!(msg.contains(&looked[1].display().to_string()), "{msg}");
        assert!(msg.contains(TAGGER_FETCH), "{msg}");
        assert!(missing_message(&[]).contains("no location was given"));
    }

    #[test]
    fn rules_alone_still_scrub_structured_data_and_cued_names() {
        let d = Detector::with_tagger(&PiiConfig::default(), None).unwrap();
        let text = "Hi, I'm Carla Rossi, write to carla.rossi@example.com or call +44 20 7946 0958; \
                    card 4111 1111 1111 1111.";
        let kinds: Vec<EntityType> = d.detect(text).iter().map(|e| e.kind).collect();
        for k in [
            EntityType::Person,
            EntityType::Email,
            EntityType::Phone,
            EntityType::CreditCard,
        ] {
            assert!(kinds.contains(&k), "{k:?} missing in {kinds:?}");
        }
    }

    #[test]
    fn unreadable_weights_are_an_error_that_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("tagger.bin");
        std::fs::write(&bad, b"not weights").unwrap();
        let err = TaggerWeights::find(std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&bad.display().to_string()) && err.contains(TAGGER_FETCH),
            "{err}"
        );
    }

    #[test]
    fn the_shared_weights_are_found_in_a_checkout() {
        // Fails, with the fetch command, where `scripts/fetch.sh tagger` has not run.
        assert!(shared().unwrap().is_some());
    }
}
