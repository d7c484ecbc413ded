//! Normalised JSON for comparison ([`normalized_json`]): object keys sorted, numbers
//! normalised, no whitespace.
//!
//! Unlike `downshift_api::canonical_json` (which keeps numbers as written, for replay matching),
//! this form is about *meaning*: `1`, `1.0` and `1e0` are the same number here, so a model that
//! writes `{"n": 1.0}` agrees with an LLM that wrote `{"n": 1}`. Strings are never numbers:
//! `"1"` and `1` differ.

use serde_json::{Number, Value};

/// Serialises `value` in normal form: keys sorted (by bytes) at every level, no insignificant
/// whitespace, and every number written in one normal form — an integral value that fits in
/// `i64`/`u64` is written as an integer (`1.0` → `1`, `-0.0` → `0`), any other value as the
/// shortest decimal that round-trips (`0.5`; exponent form outside 1e-6 ≤ |x| < 1e21).
pub fn normalized_json(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_canonical(value, &mut out);
    out
}

/// Whether two values are equal once canonicalised (key order and number spelling ignored).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => {
            let (mut sx, mut sy) = (String::new(), String::new());
            write_number(x, &mut sx);
            write_number(y, &mut sy);
            sx == sy
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => false,
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted explicitly: the result must not depend on whether some dependency switched
            // serde_json to insertion-ordered maps.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping is the reference; a string value always serialises.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// 2^63 and 2^64 as f64 (both exact).
const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

fn write_number(n: &Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_float(f, out);
    } else {
        // Only reachable with serde_json's arbitrary_precision: keep the literal.
        out.push_str(&n.to_string());
    }
}

fn write_float(f: f64, out: &mut String) {
    use std::fmt::Write;
    if f == 0.0 {
        out.push('0'); // also -0.0
    } else if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) {
        // Integral and in i64 range: the cast is exact.
        let _ = write!(out, "{}", f as i64);
    } else if f.fract() == 0.0 && (0.0..TWO_64).contains(&f) {
        let _ = write!(out, "{}", f as u64);
    } else if (1e-6..1e21).contains(&f.abs()) {
        // Display prints the shortest digits that round-trip.
        let _ = write!(out, "{f}");
    } else {
        let _ = write!(out, "{f:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn keys_sorted_recursively_without_whitespace() {
        let v = parse(r#"{ "b": [ {"z": 1, "a": 2} ], "a": {"y": null, "x": true} }"#);
        assert_eq!(
            normalized_json(&v),
            r#"{"a":{"x":true,"y":null},"b":[{"a":2,"z":1}]}"#
        );
    }

    #[test]
    fn one_spelled_three_ways_is_one_number() {
        for s in ["1", "1.0", "1e0", "10e-1", "1.000"] {
            assert_eq!(normalized_json(&parse(s)), "1", "{s}");
        }
        assert!(json_equal(&parse(r#"{"n":1}"#), &parse(r#"{"n":1.0}"#)));
        assert!(json_equal(&parse("-0.0"), &parse("0")));
        assert_eq!(normalized_json(&parse("-3.0")), "-3");
    }

    #[test]
    fn string_one_is_not_number_one() {
        assert_ne!(normalized_json(&json!("1")), normalized_json(&json!(1)));
        assert!(!json_equal(&json!({"n": "1"}), &json!({"n": 1})));
    }

    #[test]
    fn non_integral_and_huge_numbers() {
        assert_eq!(normalized_json(&parse("0.50")), "0.5");
        assert_eq!(normalized_json(&parse("2.5e-1")), "0.25");
        assert_eq!(normalized_json(&parse("1e-7")), "1e-7");
        assert_eq!(normalized_json(&parse("1e300")), "1e300");
        // Integral floats beyond i64 still print as integers while u64 holds them.
        assert_eq!(normalized_json(&parse("1e19")), "10000000000000000000");
        assert_eq!(normalized_json(&json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(normalized_json(&json!(i64::MIN)), i64::MIN.to_string());
        assert!(!json_equal(&parse("0.1"), &parse("0.10000001")));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(normalized_json(&json!("a\"b\n")), r#""a\"b\n""#);
        assert_eq!(
            normalized_json(&json!({"k\"": 1})),
            r#"{"k\"":1}"#.to_string()
        );
    }

    #[test]
    fn json_equal_agrees_with_canonical_text() {
        let cases = [
            ("[1,2]", "[2,1]"),
            ("[1,2]", "[1.0,2e0]"),
            (r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1}"#),
            (r#"{"a":1}"#, r#"{"a":1,"b":2}"#),
            ("null", "false"),
            ("[]", "{}"),
        ];
        for (a, b) in cases {
            let (a, b) = (parse(a), parse(b));
            assert_eq!(
                json_equal(&a, &b),
                normalized_json(&a) == normalized_json(&b),
                "{a} vs {b}"
            );
        }
    }
}
