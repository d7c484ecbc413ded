//! The specialist contract: what an adapter folder written by `downshift train` holds, and the
//! one way to load it.
//!
//! A specialist folder is a PEFT LoRA adapter (`adapter_config.json`,
//! `adapter_model.safetensors`) plus `downshift_specialist.json` ([`SpecialistMeta`]): the base
//! it was trained on and that base's fingerprint, its task, the [`PromptTransform`] and the
//! chat template ([`SpecialistTemplate`]) its prompts were rendered with, and the training
//! settings. [`Specialist::open`] is the only loader; every path that serves a specialist —
//! the router, `local/<name>:<adapter>`, `generate --adapter`, `eval` — attaches it with
//! [`crate::LocalModel::attach_specialist`] and renders its prompts with the one
//! [`PromptRecipe::render`], so the same folder sees byte-identical prompts however it is
//! served.
//!
//! A plain PEFT folder without `downshift_specialist.json` (an adapter trained elsewhere) also
//! opens: it has no transform and renders with the base's own template.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::llama::{Llama, LlamaConfig};
use crate::lora::LoraAdapter;
use crate::transform::PromptTransform;

/// The chat template a specialist is trained and served with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecialistTemplate {
    /// downshift's ChatML with tool calling ([`ChatTemplate::canonical`]), for bases whose
    /// own template cannot render tool calls.
    #[default]
    Canonical,
    /// The base model's own template.
    Model,
}

impl SpecialistTemplate {
    /// The choice for a base whose own template is `base`: that template when it renders tool
    /// calls, else the canonical one.
    pub fn for_base(base: &ChatTemplate) -> Self {
        if base.supports_tools() {
            SpecialistTemplate::Model
        } else {
            SpecialistTemplate::Canonical
        }
    }

    /// The template itself, given the base's own.
    pub fn template(self, base: &ChatTemplate) -> Result<ChatTemplate> {
        match self {
            SpecialistTemplate::Model => Ok(base.clone()),
            SpecialistTemplate::Canonical => ChatTemplate::canonical(),
        }
    }

    /// The name stored in the metadata (`canonical` or `model`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialistTemplate::Canonical => "canonical",
            SpecialistTemplate::Model => "model",
        }
    }
}

/// Stored beside the adapter as `downshift_specialist.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecialistMeta {
    /// The metadata's format ([`SpecialistMeta::FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// Hub id or path of the base model.
    pub base_model: String,
    /// The base's architecture and shapes ([`base_fingerprint`]).
    pub base_fingerprint: String,
    /// The prompt transformation applied before rendering.
    pub transform: PromptTransform,
    /// The template the prompts are rendered with.
    pub chat_template: SpecialistTemplate,
    /// The settings it was trained with (the trainer's configuration, kept as written).
    pub train_config: Value,
    /// The discovered task it was trained for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The curated dataset it was trained on (its test split is held out by call id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

impl SpecialistMeta {
    /// The file name inside the adapter folder.
    pub const FILE: &'static str = "downshift_specialist.json";
    /// 2: the splits are keyed by the request's content; 1 keyed them by call id, so a
    /// version-1 specialist's test split is not this one's.
    pub const FORMAT_VERSION: u32 = 2;

    /// The metadata of a specialist trained on `model` (named `base_model`) with `transform`
    /// and the training `settings`; the template is the canonical one until set.
    pub fn new(
        base_model: &str,
        model: &Llama,
        transform: PromptTransform,
        settings: &impl Serialize,
    ) -> Result<Self> {
        Ok(Self {
            format_version: Self::FORMAT_VERSION,
            base_model: base_model.into(),
            base_fingerprint: base_fingerprint(&model.config),
            transform,
            chat_template: SpecialistTemplate::Canonical,
            train_config: serde_json::to_value(settings)?,
            task: None,
            dataset: None,
        })
    }

    /// Reads `dir/downshift_specialist.json`; `None` when the folder has none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let p = dir.join(Self::FILE);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Adapter(format!("{}: {e}", p.display())))
    }
}

/// Architecture and shapes of a base: an adapter trained on one base only fits bases with
/// the same fingerprint.
pub fn base_fingerprint(c: &LlamaConfig) -> String {
    format!(
        "{}:vocab{}:hidden{}:ff{}:layers{}:heads{}/{}:head_dim{}",
        c.architecture,
        c.vocab_size,
        c.hidden_size,
        c.intermediate_size,
        c.num_layers,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim
    )
}

/// How a specialist's prompt is made from a request: its transform, then its template.
#[derive(Clone, Debug)]
pub struct PromptRecipe {
    /// Applied to the request's messages and tools first.
    pub transform: PromptTransform,
    /// Renders what the transform leaves.
    pub template: ChatTemplate,
}

impl PromptRecipe {
    /// The prompt text the specialist sees for a request's messages and tools. Every path
    /// that serves a specialist renders through this function.
    pub fn render(&self, messages: &[Value], tools: Option<&[Value]>) -> Result<String> {
        let (messages, tools) = self.transform.apply(messages, tools)?;
        let m = serde_json::to_string(&messages)?;
        let t = tools.map(|t| serde_json::to_string(&t)).transpose()?;
        crate::engine::render_with(&self.template, &m, t.as_deref())
    }

    /// [`PromptRecipe::render`] for messages and tools given as JSON text.
    pub fn render_json(&self, messages_json: &str, tools_json: Option<&str>) -> Result<String> {
        let messages: Vec<Value> = serde_json::from_str(messages_json)
            .map_err(|e| Error::Request(format!("messages must be an array: {e}")))?;
        let tools: Option<Vec<Value>> = tools_json
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| Error::Request(format!("tools must be an array: {e}")))?;
        self.render(&messages, tools.as_deref())
    }
}

/// An adapter folder, opened: its metadata (when written by `downshift train`) and its LoRA
/// weights, not yet attached to a base.
#[derive(Clone, Debug)]
pub struct Specialist {
    dir: PathBuf,
    meta: Option<SpecialistMeta>,
    adapter: LoraAdapter,
}

impl Specialist {
    /// Opens the adapter folder `dir`: reads `downshift_specialist.json` (when present) and
    /// the PEFT adapter. The only way an adapter folder is loaded.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Adapter(format!(
                "{} is not an adapter folder",
                dir.display()
            )));
        }
        let meta = SpecialistMeta::read(dir)?;
        if meta.is_none() && !dir.join("adapter_config.json").exists() {
            return Err(Error::Adapter(format!(
                "{} holds neither adapter_config.json nor {} (not an adapter written by \
                 `downshift train`)",
                dir.display(),
                SpecialistMeta::FILE
            )));
        }
        let adapter = LoraAdapter::load(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            adapter,
        })
    }

    /// The folder it was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its metadata; `None` for a plain PEFT folder.
    pub fn meta(&self) -> Option<&SpecialistMeta> {
        self.meta.as_ref()
    }

    /// Its metadata, required: a folder without it is refused as not written by `downshift
    /// train` (the router and `eval` need the base and the task it names).
    pub fn trained_meta(&self) -> Result<&SpecialistMeta> {
        self.meta.as_ref().ok_or_else(|| {
            Error::Adapter(format!(
                "{} has no {} (not an adapter written by `downshift train`)",
                self.dir.display(),
                SpecialistMeta::FILE
            ))
        })
    }

    /// The LoRA weights.
    pub fn adapter(&self) -> &LoraAdapter {
        &self.adapter
    }

    /// The prompt transform (none for a plain PEFT folder).
    pub fn transform(&self) -> PromptTransform {
        self.meta
            .as_ref()
            .map(|m| m.transform.clone())
            .unwrap_or_else(PromptTransform::identity)
    }

    /// Refuses a base other than the one the metadata names (by fingerprint). A plain PEFT
    /// folder is checked by its shapes when attached.
    pub fn check_base(&self, model: &Llama) -> Result<()> {
        let fp = base_fingerprint(&model.config);
        match &self.meta {
            Some(m) if m.base_fingerprint != fp => Err(Error::OtherBase(format!(
                "{} was trained on {} ({}) but the model is {fp}",
                self.dir.display(),
                m.base_model,
                m.base_fingerprint
            ))),
            _ => Ok(()),
        }
    }

    /// Checks the base and attaches the weights to `model` (unmerged); returns the adapter's
    /// id. Shapes that do not fit the model are refused as [`Error::OtherBase`].
    pub fn attach_to(&self, model: &mut Llama) -> Result<usize> {
        self.check_base(model)?;
        model.attach_adapter(&self.adapter).map_err(|e| match e {
            Error::Adapter(msg) => Error::OtherBase(msg),
            e => e,
        })
    }

    /// How its prompts are made on a base whose own template is `base_template`; `None` for a
    /// plain PEFT folder (the base's own rendering, unchanged).
    pub fn recipe(&self, base_template: &ChatTemplate) -> Result<Option<PromptRecipe>> {
        self.meta
            .as_ref()
            .map(|m| {
                Ok(PromptRecipe {
                    transform: m.transform.clone(),
                    template: m.chat_template.template(base_template)?,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_choice_is_stored_by_its_old_names() {
        for (t, s) in [
            (SpecialistTemplate::Canonical, "\"canonical\""),
            (SpecialistTemplate::Model, "\"model\""),
        ] {
            assert_eq!(serde_json::to_string(&t).unwrap(), s);
            assert_eq!(serde_json::from_str::<SpecialistTemplate>(s).unwrap(), t);
            assert_eq!(format!("\"{}\"", t.as_str()), s);
        }
        assert!(serde_json::from_str::<SpecialistTemplate>("\"chatml\"").is_err());
        // a template that renders tools is kept; one that does not gets the canonical one
        let canonical = ChatTemplate::canonical().unwrap();
        assert_eq!(
            SpecialistTemplate::for_base(&canonical),
            SpecialistTemplate::Model
        );
        let plain = ChatTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}", "", "")
            .unwrap();
        assert_eq!(
            SpecialistTemplate::for_base(&plain),
            SpecialistTemplate::Canonical
        );
        let t = SpecialistTemplate::Canonical.template(&plain).unwrap();
        assert_eq!(t.source(), canonical.source());
        let t = SpecialistTemplate::Model.template(&plain).unwrap();
        assert_eq!(t.source(), plain.source());
    }

    #[test]
    fn a_missing_folder_or_metadata_is_refused_clearly() {
        let e = Specialist::open("/nonexistent/adapter").unwrap_err();
        assert!(e.to_string().contains("not an adapter folder"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Specialist::open(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("not an adapter written by `downshift train`"),
            "{e}"
        );
        std::fs::write(
            dir.path().join(SpecialistMeta::FILE),
            "{\"format_version\": 2}",
        )
        .unwrap();
        let e = SpecialistMeta::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(SpecialistMeta::FILE), "{e}");
    }
}
