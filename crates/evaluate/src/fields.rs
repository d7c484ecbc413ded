//! Partial credit for JSON answers: how many of the reference's fields the prediction got right.

use crate::canonical::json_equal;
use crate::message::parse_json_text;
use serde_json::Value;

/// The fraction of the reference's leaf paths at which the prediction holds a canonically equal
/// value ([`json_equal`]). Leaves are scalars and empty objects/arrays; array elements are
/// matched by index, so order matters; a scalar reference is one leaf at `$`. Fields the
/// prediction adds are not penalised (exact match catches them). Both texts are read with
/// [`parse_json_text`]; `None` when either is not JSON.
pub fn json_field_accuracy(pred: &str, reference: &str) -> Option<f64> {
    let pred = parse_json_text(pred)?;
    let reference = parse_json_text(reference)?;
    Some(field_accuracy(&pred, &reference))
}

/// [`json_field_accuracy`] on parsed values.
pub fn field_accuracy(pred: &Value, reference: &Value) -> f64 {
    let (mut hits, mut leaves) = (0usize, 0usize);
    walk(Some(pred), reference, &mut hits, &mut leaves);
    // A reference has at least one leaf (itself, if nothing else).
    hits as f64 / leaves.max(1) as f64
}

fn walk(pred: Option<&Value>, reference: &Value, hits: &mut usize, leaves: &mut usize) {
    match reference {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                walk(
                    pred.and_then(|p| p.as_object()?.get(key)),
                    item,
                    hits,
                    leaves,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                walk(pred.and_then(|p| p.as_array()?.get(i)), item, hits, leaves);
            }
        }
        leaf => {
            *leaves += 1;
            if pred.is_some_and(|p| json_equal(p, leaf)) {
                *hits += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_of_reference_leaves() {
        let reference = r#"{"name": "Ada", "age": 36, "address": {"city": "London", "zip": "W1"}, "tags": ["a", "b"]}"#;
        // 6 leaves: name, age, address.city, address.zip, tags[0], tags[1].
        assert_eq!(json_field_accuracy(reference, reference), Some(1.0));
        let pred = r#"{"age": 36.0, "name": "ada", "address": {"city": "London"}, "tags": ["b", "a"], "extra": 1}"#;
        // Hits: age (1 == 36.0 canonically), address.city. Misses: name (case), zip (missing), tags (order).
        assert_eq!(json_field_accuracy(pred, reference), Some(2.0 / 6.0));
    }

    #[test]
    fn not_json_is_none_and_wrong_shapes_score_zero() {
        assert_eq!(json_field_accuracy("sorry, I can't", r#"{"a": 1}"#), None);
        assert_eq!(json_field_accuracy(r#"{"a": 1}"#, "plain text"), None);
        assert_eq!(json_field_accuracy("[1]", r#"{"a": 1}"#), Some(0.0));
        assert_eq!(
            json_field_accuracy(r#"{"a": "1"}"#, r#"{"a": 1}"#),
            Some(0.0)
        );
        assert_eq!(
            json_field_accuracy("```json\n{\"a\": 1}\n```", r#"{"a": 1}"#),
            Some(1.0)
        );
    }

    #[test]
    fn nested_arrays_and_empty_containers() {
        let reference = r#"{"m": [[1, 2], [3]], "e": {}, "l": []}"#;
        // Leaves: m[0][0], m[0][1], m[1][0], e, l.
        assert_eq!(
            json_field_accuracy(r#"{"m": [[1, 5], [3, 4]], "e": {}, "l": [0]}"#, reference),
            Some(3.0 / 5.0)
        );
        assert_eq!(json_field_accuracy("7", "7.0"), Some(1.0));
    }
}
