//! The `downshift pii detect` contract: JSON Lines in, one result line per input line out.

use crate::{CurateError, Detector, Entity, EntityType};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};

/// Totals of one `detect_jsonl` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JsonlStats {
    /// Non-blank input lines read.
    pub lines: u64,
    /// Lines answered with an `{"error": …}` line (not JSON, `text` missing or not a string).
    pub errors: u64,
    /// Entities found over all lines.
    pub entities: u64,
}

#[derive(Serialize)]
struct Output<'a> {
    entities: &'a [Entity],
    redacted: String,
}

#[derive(Serialize)]
struct ErrorLine {
    error: String,
}

/// Read `{"text": ...}` per line; write `{"entities": [{"type","start","end","text"}], "redacted": "..."}`
/// per line (UTF-8 byte offsets). A bad line writes `{"error": "..."}` and the run goes on.
/// Blank lines are skipped.
pub fn detect_jsonl<R: BufRead, W: Write>(
    detector: &Detector,
    mut reader: R,
    writer: W,
) -> Result<JsonlStats, CurateError> {
    let mut w = BufWriter::new(writer);
    let mut stats = JsonlStats::default();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = trim_ascii(&buf);
        if line.is_empty() {
            continue;
        }
        stats.lines += 1;
        match parse_text(line) {
            Ok(text) => {
                let ents = detector.detect(&text);
                stats.entities += ents.len() as u64;
                let out = Output {
                    redacted: redact(&text, &ents),
                    entities: &ents,
                };
                serde_json::to_writer(&mut w, &out)?;
            }
            Err(error) => {
                stats.errors += 1;
                serde_json::to_writer(&mut w, &ErrorLine { error })?;
            }
        }
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(stats)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn parse_text(line: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Input {
        text: Option<serde_json::Value>,
    }
    let input: Input = serde_json::from_slice(line).map_err(|e| format!("invalid JSON: {e}"))?;
    match input.text {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err("`text` must be a string".to_string()),
        None => Err("missing `text`".to_string()),
    }
}

/// Replace entities with `<TYPE_n>`, numbered per type in order of first appearance; the same
/// value gets the same number.
pub fn redact(text: &str, entities: &[Entity]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut seen: HashMap<(EntityType, &str), usize> = HashMap::new();
    let mut counts: HashMap<EntityType, usize> = HashMap::new();
    let mut last = 0;
    for e in entities {
        if e.start < last || e.end > text.len() {
            continue;
        }
        out.push_str(&text[last..e.start]);
        let n = *seen.entry((e.kind, e.text.as_str())).or_insert_with(|| {
            let c = counts.entry(e.kind).or_default();
            *c += 1;
            *c
        });
        out.push('<');
        out.push_str(e.kind.as_str());
        out.push('_');
        out.push_str(&n.to_string());
        out.push('>');
        last = e.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PiiConfig;
    use serde_json::Value;

    fn run(input: &str) -> (Vec<Value>, JsonlStats) {
        let d = Detector::new(&PiiConfig::default()).unwrap();
        let mut out = Vec::new();
        let stats = detect_jsonl(&d, input.as_bytes(), &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, stats)
    }

    #[test]
    fn one_output_line_per_input_line() {
        let input = "{\"text\": \"Grüße, mail jürgen@example.de\"}\n\nnot json\n{\"text\": 5}\n{\"other\": 1}\n{\"text\": \"nothing\"}";
        let (lines, stats) = run(input);
        assert_eq!(lines.len(), 5);
        assert_eq!(
            stats,
            JsonlStats {
                lines: 5,
                errors: 3,
                entities: 1
            }
        );
        let e = &lines[0]["entities"][0];
        assert_eq!(e["type"], "EMAIL");
        // UTF-8 byte offsets: "Grüße, mail " is 14 bytes.
        assert_eq!(e["start"], 14);
        assert_eq!(e["end"], 14 + "jürgen@example.de".len());
        assert_eq!(e["text"], "jürgen@example.de");
        assert_eq!(lines[0]["redacted"], "Grüße, mail <EMAIL_1>");
        assert!(lines[1]["error"].as_str().unwrap().contains("invalid JSON"));
        assert!(lines[2]["error"].as_str().unwrap().contains("string"));
        assert!(lines[3]["error"].as_str().unwrap().contains("missing"));
        assert_eq!(lines[4]["entities"], serde_json::json!([]));
        assert_eq!(lines[4]["redacted"], "nothing");
    }

    #[test]
    fn redaction_numbers_per_type_and_value() {
        let d = Detector::new(&PiiConfig::default()).unwrap();
        let t = "a@x.com, b@x.com, a@x.com, 10.0.0.1";
        assert_eq!(
            redact(t, &d.detect(t)),
            "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>, <IP_ADDRESS_1>"
        );
    }
}
