//! A pragmatic JSON Schema validator for the subset tool definitions use.
//!
//! Supported keywords:
//! - `type` (a name or an array of names): `string`, `number`, `integer` (any number without a
//!   fractional part, so `1.0` is an integer, as in JSON Schema draft 6+), `boolean`, `object`,
//!   `array`, `null`; and the Berkeley Function Calling Leaderboard's aliases `dict` (object),
//!   `float` (number), `tuple` (array), `any` (anything). A type name outside these lifts the type
//!   constraint rather than failing every value.
//! - `nullable: true` (OpenAPI 3.0): `null` is accepted whatever the rest says.
//! - objects: `properties`, `required`, `additionalProperties` (`false` or a schema; not checked
//!   when `patternProperties` is present, since patterns are not evaluated).
//! - arrays: `items` (a schema, or an array of schemas for positional tuples), `prefixItems`,
//!   `minItems`, `maxItems`, `uniqueItems`.
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (number form, and the
//!   draft-4 boolean form).
//! - strings: `minLength`, `maxLength` (in characters).
//! - `enum`, `const` (compared canonically, so `1` equals `1.0` but not `"1"`).
//! - `anyOf`, `oneOf`, `allOf`, `not`; boolean schemas `true` / `false`.
//! - `$ref` to a JSON pointer inside the same schema (`#/$defs/Address`, `#/definitions/…`).
//!
//! Every other keyword (`pattern`, `format`, `patternProperties`, `dependentRequired`,
//! `if`/`then`/`else`, remote `$ref`s, …) is ignored: the validator errs towards accepting.
//!
//! Errors are readable paths into the value: `$.location: expected string, got 3`,
//! `$.stops[1].city: missing required property`.

use crate::canonical::{json_equal, normalized_json};
use serde_json::{Map, Value};

/// Deeper than this, a schema is taken to be a `$ref` cycle and validation stops there.
const MAX_DEPTH: usize = 64;
/// Values quoted in error messages are cut to this many characters.
const QUOTE_CHARS: usize = 60;

/// Validates `value` against a JSON Schema (the subset described in this module's docs).
/// `Err` holds one readable message per violation found.
pub fn validate_json(value: &Value, schema: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    Validator { root: schema }.check(value, schema, "$", 0, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Validator<'s> {
    root: &'s Value,
}

impl Validator<'_> {
    fn check(
        &self,
        value: &Value,
        schema: &Value,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            errors.push(format!("{path}: schema nested too deeply (a $ref cycle?)"));
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errors.push(format!("{path}: no value is allowed here"));
                return;
            }
            Value::Object(map) => map,
            // A malformed schema constrains nothing.
            _ => return,
        };
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| self.resolve(r))
        {
            self.check(value, target, path, depth + 1, errors);
        }
        if let Some(expected) = type_mismatch(value, schema.get("type")) {
            errors.push(format!("{path}: expected {expected}, got {}", quote(value)));
            // Further keywords would only repeat the same complaint.
            return;
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.iter().any(|o| json_equal(o, value))
        {
            errors.push(format!(
                "{path}: {} is not one of {}",
                quote(value),
                quote(&Value::Array(options.clone()))
            ));
        }
        if let Some(expected) = schema.get("const")
            && !json_equal(expected, value)
        {
            errors.push(format!(
                "{path}: expected {}, got {}",
                quote(expected),
                quote(value)
            ));
        }
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    check_bounds(x, schema, path, errors);
                }
            }
            Value::String(s) => check_length(s, schema, path, errors),
            Value::Array(items) => self.check_array(items, schema, path, depth, errors),
            Value::Object(map) => self.check_object(map, schema, path, depth, errors),
            _ => {}
        }
        self.check_combinators(value, schema, path, depth, errors);
    }

    fn check_array(
        &self,
        items: &[Value],
        schema: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            errors.push(format!(
                "{path}: expected at least {min} items, got {}",
                items.len()
            ));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            errors.push(format!(
                "{path}: expected at most {max} items, got {}",
                items.len()
            ));
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(normalized_json(item)) {
                    errors.push(format!("{path}[{i}]: duplicate item {}", quote(item)));
                }
            }
        }
        // Positional schemas: `prefixItems` (2020-12) or `items` as an array (older drafts);
        // `items` as a schema then covers the rest (or every item when there is no prefix).
        let prefix = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(p)), _) | (None, Some(Value::Array(p))) => p.as_slice(),
            _ => &[],
        };
        let rest = schema.get("items").filter(|s| !s.is_array());
        for (i, item) in items.iter().enumerate() {
            let item_schema = prefix.get(i).or(rest);
            if let Some(item_schema) = item_schema {
                let item_path = format!("{path}[{i}]");
                self.check(item, item_schema, &item_path, depth + 1, errors);
            }
        }
    }

    fn check_object(
        &self,
        map: &Map<String, Value>,
        schema: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    errors.push(format!("{}: missing required property", child(path, name)));
                }
            }
        }
        let additional = if schema.contains_key("patternProperties") {
            None
        } else {
            schema.get("additionalProperties")
        };
        // Keys in sorted order, so messages come out the same whatever the map's order.
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let item = &map[key];
            let item_path = child(path, key);
            match properties.and_then(|p| p.get(key)) {
                Some(property) => self.check(item, property, &item_path, depth + 1, errors),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{item_path}: unexpected property"));
                    }
                    Some(extra @ Value::Object(_)) => {
                        self.check(item, extra, &item_path, depth + 1, errors);
                    }
                    _ => {}
                },
            }
        }
    }

    fn check_combinators(
        &self,
        value: &Value,
        schema: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if let Some(Value::Array(branches)) = schema.get("allOf") {
            for branch in branches {
                self.check(value, branch, path, depth + 1, errors);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(Value::Array(branches)) = schema.get(keyword) else {
                continue;
            };
            if branches.is_empty() {
                continue;
            }
            let outcomes: Vec<Vec<String>> = branches
                .iter()
                .map(|branch| {
                    let mut branch_errors = Vec::new();
                    self.check(value, branch, path, depth + 1, &mut branch_errors);
                    branch_errors
                })
                .collect();
            let matched = outcomes.iter().filter(|e| e.is_empty()).count();
            if matched == 0 {
                let reasons: Vec<String> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("[{i}] {}", e.join("; ")))
                    .collect();
                errors.push(format!(
                    "{path}: matches none of {keyword} ({})",
                    reasons.join(" | ")
                ));
            } else if keyword == "oneOf" && matched > 1 {
                errors.push(format!(
                    "{path}: matches {matched} branches of oneOf, exactly one allowed"
                ));
            }
        }
        if let Some(negated) = schema.get("not") {
            let mut sub = Vec::new();
            self.check(value, negated, path, depth + 1, &mut sub);
            if sub.is_empty() {
                errors.push(format!("{path}: matches a schema it must not (not)"));
            }
        }
    }

    /// Resolves a same-document reference (`#`, `#/$defs/X`); other references are ignored.
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }
}

/// `Some(description of the expected types)` when `value` has none of the types `ty` allows.
fn type_mismatch(value: &Value, ty: Option<&Value>) -> Option<String> {
    let names: Vec<&str> = match ty? {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    if names.is_empty() {
        return None;
    }
    let mut any_known = false;
    for name in &names {
        match type_matches(value, name) {
            Some(true) => return None,
            Some(false) => any_known = true,
            // An unknown name (or `any`) lifts the constraint.
            None => return None,
        }
    }
    any_known.then(|| names.join(" or "))
}

/// Whether `value` is of the named type; `None` for `any` and for names this validator does not
/// know.
fn type_matches(value: &Value, name: &str) -> Option<bool> {
    let matched = match name {
        "string" => value.is_string(),
        "number" | "float" => value.is_number(),
        "integer" => is_integer(value),
        "boolean" => value.is_boolean(),
        "object" | "dict" => value.is_object(),
        "array" | "tuple" => value.is_array(),
        "null" => value.is_null(),
        _ => return None,
    };
    Some(matched)
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn check_bounds(x: f64, schema: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    let flag = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    if let Some(min) = number("minimum") {
        if flag("exclusiveMinimum") && x <= min {
            errors.push(format!("{path}: {x} is not greater than {min}"));
        } else if x < min {
            errors.push(format!("{path}: {x} is less than the minimum {min}"));
        }
    }
    if let Some(max) = number("maximum") {
        if flag("exclusiveMaximum") && x >= max {
            errors.push(format!("{path}: {x} is not less than {max}"));
        } else if x > max {
            errors.push(format!("{path}: {x} is greater than the maximum {max}"));
        }
    }
    if let Some(min) = number("exclusiveMinimum")
        && x <= min
    {
        errors.push(format!("{path}: {x} is not greater than {min}"));
    }
    if let Some(max) = number("exclusiveMaximum")
        && x >= max
    {
        errors.push(format!("{path}: {x} is not less than {max}"));
    }
}

fn check_length(s: &str, schema: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errors.push(format!(
            "{path}: expected at least {min} characters, got {len}"
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errors.push(format!(
            "{path}: expected at most {max} characters, got {len}"
        ));
    }
}

/// The path of an object member: `$.name` for identifier-like keys, `$["odd key"]` otherwise.
pub(crate) fn child(path: &str, key: &str) -> String {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

/// A value as compact JSON, cut to [`QUOTE_CHARS`] characters.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= QUOTE_CHARS {
        text
    } else {
        let cut: String = text.chars().take(QUOTE_CHARS).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(value: Value, schema: Value) -> Vec<String> {
        validate_json(&value, &schema).err().unwrap_or_default()
    }

    #[test]
    fn types_and_readable_paths() {
        let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}});
        assert_eq!(
            errors(json!({"location": 3}), schema.clone()),
            ["$.location: expected string, got 3"]
        );
        assert!(validate_json(&json!({"location": "Paris"}), &schema).is_ok());
        assert_eq!(
            errors(json!("x"), json!({"type": ["integer", "null"]})),
            [r#"$: expected integer or null, got "x""#]
        );
        assert!(validate_json(&json!(null), &json!({"type": ["integer", "null"]})).is_ok());
        assert_eq!(
            errors(
                json!({"odd key": 1}),
                json!({"properties": {"odd key": {"type": "string"}}})
            ),
            [r#"$["odd key"]: expected string, got 1"#]
        );
    }

    #[test]
    fn integers_numbers_booleans() {
        let int = json!({"type": "integer"});
        assert!(validate_json(&json!(3), &int).is_ok());
        assert!(validate_json(&json!(3.0), &int).is_ok());
        assert_eq!(errors(json!(3.5), int), ["$: expected integer, got 3.5"]);
        assert!(validate_json(&json!(3), &json!({"type": "number"})).is_ok());
        assert_eq!(
            errors(json!("true"), json!({"type": "boolean"})),
            [r#"$: expected boolean, got "true""#]
        );
        assert_eq!(
            errors(json!("3"), json!({"type": "number"})),
            [r#"$: expected number, got "3""#]
        );
    }

    #[test]
    fn bfcl_aliases() {
        let schema = json!({
            "type": "dict",
            "properties": {
                "base": {"type": "float"},
                "point": {"type": "tuple", "items": {"type": "integer"}},
                "extra": {"type": "any"},
                "opts": {"type": "dict", "properties": {"x": {"type": "float"}}}
            },
            "required": ["base"]
        });
        let ok = json!({"base": 2, "point": [1, 2], "extra": [null], "opts": {"x": 0.5}});
        assert!(validate_json(&ok, &schema).is_ok());
        assert_eq!(
            errors(json!({"base": "2", "point": [1, 2.5], "opts": []}), schema),
            [
                r#"$.base: expected float, got "2""#,
                "$.opts: expected dict, got []",
                "$.point[1]: expected integer, got 2.5",
            ]
        );
        assert_eq!(
            errors(json!([]), json!({"type": "dict"})),
            ["$: expected dict, got []"]
        );
    }

    #[test]
    fn required_and_additional_properties() {
        let schema = json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city", "unit"],
            "additionalProperties": false
        });
        assert_eq!(
            errors(json!({"city": "Oslo", "zip": "0150"}), schema.clone()),
            [
                "$.unit: missing required property",
                "$.zip: unexpected property"
            ]
        );
        let open = json!({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}});
        assert_eq!(
            errors(json!({"a": "x", "b": "y"}), open),
            [r#"$.b: expected integer, got "y""#]
        );
        let patterned = json!({"patternProperties": {"^x": {}}, "additionalProperties": false});
        assert!(validate_json(&json!({"y": 1}), &patterned).is_ok());
    }

    #[test]
    fn enum_and_const() {
        let schema = json!({"type": "string", "enum": ["celsius", "fahrenheit"]});
        assert!(validate_json(&json!("celsius"), &schema).is_ok());
        assert_eq!(
            errors(json!("kelvin"), schema),
            [r#"$: "kelvin" is not one of ["celsius","fahrenheit"]"#]
        );
        // Canonical comparison: 1.0 is in [1, 2]; "1" is not.
        let numbers = json!({"enum": [1, 2]});
        assert!(validate_json(&json!(1.0), &numbers).is_ok());
        assert!(validate_json(&json!("1"), &numbers).is_err());
        assert_eq!(
            errors(json!(2), json!({"const": 1})),
            ["$: expected 1, got 2"]
        );
    }

    #[test]
    fn nested_arrays() {
        let schema = json!({
            "type": "object",
            "properties": {"matrix": {
                "type": "array", "minItems": 1,
                "items": {"type": "array", "maxItems": 2, "items": {"type": "number"}}
            }}
        });
        assert!(validate_json(&json!({"matrix": [[1, 2], [3.5]]}), &schema).is_ok());
        assert_eq!(
            errors(json!({"matrix": [[1, 2, 3], [4, "5"]]}), schema.clone()),
            [
                "$.matrix[0]: expected at most 2 items, got 3",
                r#"$.matrix[1][1]: expected number, got "5""#,
            ]
        );
        assert_eq!(
            errors(json!({"matrix": []}), schema),
            ["$.matrix: expected at least 1 items, got 0"]
        );
        let tuple = json!({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]});
        assert_eq!(
            errors(json!(["a", "b", true]), tuple),
            [r#"$[1]: expected integer, got "b""#]
        );
        let unique = json!({"uniqueItems": true});
        assert_eq!(
            errors(json!([1, 2, 1.0]), unique),
            ["$[2]: duplicate item 1.0"]
        );
    }

    #[test]
    fn bounds_and_lengths() {
        let schema = json!({"minimum": 0, "maximum": 10, "exclusiveMaximum": 10});
        assert!(validate_json(&json!(0), &schema).is_ok());
        assert_eq!(
            errors(json!(-1), schema.clone()),
            ["$: -1 is less than the minimum 0"]
        );
        assert_eq!(errors(json!(10), schema), ["$: 10 is not less than 10"]);
        let draft4 = json!({"minimum": 0, "exclusiveMinimum": true});
        assert_eq!(errors(json!(0), draft4), ["$: 0 is not greater than 0"]);
        let s = json!({"minLength": 2, "maxLength": 3});
        assert!(validate_json(&json!("ñé"), &s).is_ok());
        assert_eq!(
            errors(json!("abcd"), s),
            ["$: expected at most 3 characters, got 4"]
        );
    }

    #[test]
    fn combinators_and_nullable() {
        let any = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(validate_json(&json!(3), &any).is_ok());
        assert_eq!(
            errors(json!(true), any),
            [
                "$: matches none of anyOf ([0] $: expected string, got true | [1] $: expected integer, got true)"
            ]
        );
        let one = json!({"oneOf": [{"type": "number"}, {"type": "integer"}]});
        assert!(validate_json(&json!(1.5), &one).is_ok());
        assert_eq!(
            errors(json!(1), one),
            ["$: matches 2 branches of oneOf, exactly one allowed"]
        );
        let nullable = json!({"type": "string", "nullable": true});
        assert!(validate_json(&json!(null), &nullable).is_ok());
        assert!(validate_json(&json!(1), &nullable).is_err());
        assert!(
            validate_json(
                &json!(1),
                &json!({"allOf": [{"minimum": 0}, {"maximum": 0}]})
            )
            .is_err()
        );
        assert!(validate_json(&json!(1), &json!({"not": {"type": "integer"}})).is_err());
        assert!(validate_json(&json!(1), &json!(false)).is_err());
        assert!(validate_json(&json!(1), &json!(true)).is_ok());
    }

    #[test]
    fn local_refs_and_cycles() {
        let schema = json!({
            "type": "object",
            "properties": {"home": {"$ref": "#/$defs/Address"}},
            "$defs": {"Address": {"type": "object", "required": ["city"]}}
        });
        assert_eq!(
            errors(json!({"home": {}}), schema),
            ["$.home.city: missing required property"]
        );
        let cyclic = json!({"$ref": "#"});
        assert_eq!(errors(json!(1), cyclic).len(), 1);
        // Remote references are ignored.
        assert!(validate_json(&json!(1), &json!({"$ref": "https://example.com/s.json"})).is_ok());
    }

    #[test]
    fn unknown_keywords_and_types_are_ignored() {
        let schema = json!({"type": "string", "pattern": "^[0-9]+$", "format": "email"});
        assert!(validate_json(&json!("abc"), &schema).is_ok());
        assert!(validate_json(&json!(1), &json!({"type": "HashMap"})).is_ok());
    }
}
