//! What a task's answers are: the one vocabulary discovery stores, selection ranks by,
//! evaluation scores by and the loop gates on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The shape of a task's answers.
///
/// Serialised in snake_case (`tool_call`, `json`, `label`, `text`); `tool`, the name discovery
/// stored before this type existed, reads as [`TaskKind::ToolCall`], so old databases keep
/// their meaning. A task whose calls got no usable answer has no kind (`Option::None`, stored
/// as `none`: see [`kind_or_none`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// The answer calls one or more of the offered tools.
    #[serde(alias = "tool")]
    ToolCall,
    /// The answer's content is a JSON object or array.
    Json,
    /// The answer's content is a short, single-line label (a class name, yes/no, a short
    /// entity).
    Label,
    /// Anything else: free text.
    Text,
}

impl TaskKind {
    /// Every kind, most structured first.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::ToolCall,
        TaskKind::Json,
        TaskKind::Label,
        TaskKind::Text,
    ];

    /// The kind's name as serialised (`tool_call`, `json`, `label`, `text`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::ToolCall => "tool_call",
            TaskKind::Json => "json",
            TaskKind::Label => "label",
            TaskKind::Text => "text",
        }
    }

    /// Whether a metric can score it exactly (tool calls, JSON, labels; not free text).
    pub fn is_structured(self) -> bool {
        self != TaskKind::Text
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`TaskKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTaskKind(pub String);

impl fmt::Display for UnknownTaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown task kind {:?} (expected tool_call, json, label or text)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTaskKind {}

impl FromStr for TaskKind {
    type Err = UnknownTaskKind;

    /// Case-insensitive; `-` and `_` are interchangeable (`tool-call`); `tool` is
    /// [`TaskKind::ToolCall`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "tool_call" | "tool" => Ok(TaskKind::ToolCall),
            "json" => Ok(TaskKind::Json),
            "label" => Ok(TaskKind::Label),
            "text" => Ok(TaskKind::Text),
            _ => Err(UnknownTaskKind(s.to_owned())),
        }
    }
}

/// Serde for an `Option<TaskKind>` field stored as a string: `none` (or null) for no kind.
pub mod kind_or_none {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::TaskKind;

    /// Writes the kind's name, or `none`.
    pub fn serialize<S: Serializer>(kind: &Option<TaskKind>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.map_or("none", TaskKind::as_str))
    }

    /// Reads a kind's name (old names included), `none` or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TaskKind>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("none") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stats {
        #[serde(with = "kind_or_none")]
        output_kind: Option<TaskKind>,
    }

    #[test]
    fn the_names_discovery_stored_before_still_read() {
        // discovery wrote `tool`, `json`, `text` and `none`
        for (old, want) in [
            ("tool", Some(TaskKind::ToolCall)),
            ("json", Some(TaskKind::Json)),
            ("text", Some(TaskKind::Text)),
            ("none", None),
        ] {
            let s: Stats = serde_json::from_str(&format!(r#"{{"output_kind":"{old}"}}"#))
                .unwrap_or_else(|e| panic!("{old}: {e}"));
            assert_eq!(s.output_kind, want, "{old}");
        }
        let s: Stats = serde_json::from_str(r#"{"output_kind":null}"#).unwrap();
        assert_eq!(s.output_kind, None);
        assert!(serde_json::from_str::<Stats>(r#"{"output_kind":"poem"}"#).is_err());
        // and evaluation's and selection's names, which are now the written ones
        for k in TaskKind::ALL {
            let text = serde_json::to_string(&Stats {
                output_kind: Some(k),
            })
            .unwrap();
            assert_eq!(text, format!(r#"{{"output_kind":"{}"}}"#, k.as_str()));
            assert_eq!(
                serde_json::from_str::<Stats>(&text).unwrap().output_kind,
                Some(k)
            );
            assert_eq!(k.as_str().parse::<TaskKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(
            serde_json::to_string(&Stats { output_kind: None }).unwrap(),
            r#"{"output_kind":"none"}"#
        );
        assert_eq!(
            serde_json::from_str::<TaskKind>(r#""tool""#).unwrap(),
            TaskKind::ToolCall
        );
        assert!("poem".parse::<TaskKind>().is_err());
    }
}
