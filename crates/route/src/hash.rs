//! Stable 64-bit hashing: the same value on every machine, run and Rust release (a trained
//! [`Classifier`](crate::Classifier) is saved to disk keyed by these hashes), and a canonical
//! JSON hash that does not depend on key order or formatting, computed either while parsing
//! ([`CanonHash`], no tree built) or over a parsed [`Value`] ([`value_hash`]) — both give the
//! same number for the same JSON.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// The 64-bit finaliser of MurmurHash3: every input bit affects every output bit.
pub(crate) fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// Hashes bytes eight at a time (little-endian words), seeded.
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(K2).rotate_left(31);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut buf = [0u8; 8];
        buf[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(K2)
            .rotate_left(31);
    }
    fmix(h)
}

/// Combines two hashes, order-sensitively.
pub(crate) fn combine(a: u64, b: u64) -> u64 {
    fmix(a.rotate_left(23) ^ b.wrapping_mul(K1) ^ K2)
}

/// A stable hash of a string (e.g. a request id for [`decide`](crate::decide)).
pub fn stable_hash(s: &str) -> u64 {
    hash_bytes(0x5EED, s.as_bytes())
}

/// Hasher for keys that are already uniformly mixed 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by a precomputed 64-bit hash (no rehashing).
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

const NULL: u64 = 1;
const FALSE: u64 = 2;
const TRUE: u64 = 3;
const UINT: u64 = 4;
const NEG_INT: u64 = 5;
const FLOAT: u64 = 6;
const STRING: u64 = 7;
const ARRAY: u64 = 8;
const OBJECT: u64 = 9;

fn h_null() -> u64 {
    fmix(NULL)
}
fn h_bool(b: bool) -> u64 {
    fmix(if b { TRUE } else { FALSE })
}
fn h_u64(n: u64) -> u64 {
    combine(UINT, n)
}
fn h_i64(n: i64) -> u64 {
    match u64::try_from(n) {
        Ok(u) => h_u64(u),
        Err(_) => combine(NEG_INT, n as u64),
    }
}
fn h_f64(f: f64) -> u64 {
    // -0.0 and 0.0 are the same number.
    let f = if f == 0.0 { 0.0 } else { f };
    combine(FLOAT, f.to_bits())
}
fn h_str(s: &str) -> u64 {
    hash_bytes(STRING, s.as_bytes())
}
/// Array elements in order.
fn h_array(acc: u64, len: u64) -> u64 {
    combine(ARRAY ^ len.wrapping_mul(K2), acc)
}
fn array_step(acc: u64, element: u64) -> u64 {
    combine(acc, element)
}
/// Object members in any order: each (key, value) pair is hashed on its own and the pair
/// hashes are summed, which commutes.
fn object_step(acc: u64, key: u64, value: u64) -> u64 {
    acc.wrapping_add(combine(key, value))
}
fn h_object(acc: u64, len: u64) -> u64 {
    combine(OBJECT ^ len.wrapping_mul(K2), acc)
}

/// The canonical hash of a parsed JSON value: equal for values that are equal as JSON, whatever
/// their key order or formatting was. Same result as [`CanonHash`] over the value's text.
pub(crate) fn value_hash(v: &Value) -> u64 {
    match v {
        Value::Null => h_null(),
        Value::Bool(b) => h_bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                h_u64(u)
            } else if let Some(i) = n.as_i64() {
                h_i64(i)
            } else {
                h_f64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => h_str(s),
        Value::Array(items) => {
            let acc = items
                .iter()
                .fold(0, |acc, item| array_step(acc, value_hash(item)));
            h_array(acc, items.len() as u64)
        }
        Value::Object(map) => {
            let acc = map
                .iter()
                .fold(0, |acc, (k, v)| object_step(acc, h_str(k), value_hash(v)));
            h_object(acc, map.len() as u64)
        }
    }
}

/// A JSON value's canonical hash, computed while deserialising: nothing is allocated for the
/// value (strings are borrowed from the input when they have no escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CanonHash(pub u64);

impl<'de> Deserialize<'de> for CanonHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CanonVisitor).map(CanonHash)
    }
}

struct CanonVisitor;

impl<'de> Visitor<'de> for CanonVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(h_null())
    }
    fn visit_none<E: de::Error>(self) -> Result<u64, E> {
        Ok(h_null())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(CanonVisitor)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<u64, E> {
        Ok(h_bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(h_u64(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        Ok(h_i64(n))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<u64, E> {
        Ok(h_f64(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        Ok(h_str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let (mut acc, mut len) = (0u64, 0u64);
        while let Some(CanonHash(h)) = seq.next_element()? {
            acc = array_step(acc, h);
            len += 1;
        }
        Ok(h_array(acc, len))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let (mut acc, mut len) = (0u64, 0u64);
        while let Some(StrHash(k)) = map.next_key()? {
            let CanonHash(v) = map.next_value()?;
            acc = object_step(acc, k, v);
            len += 1;
        }
        Ok(h_object(acc, len))
    }
}

/// An object key's hash (as a string value).
struct StrHash(u64);

impl<'de> Deserialize<'de> for StrHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
                Ok(h_str(s))
            }
        }
        d.deserialize_str(V).map(StrHash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn streamed(text: &str) -> u64 {
        serde_json::from_str::<CanonHash>(text).unwrap().0
    }

    #[test]
    fn streamed_and_tree_hashes_agree_and_ignore_key_order() {
        let a = r#"{"type":"function","function":{"name":"f","parameters":{"a":[1,-2,3.5,true,null,"x\"y"],"b":{}}}}"#;
        let b = r#"{ "function": { "parameters": { "b": {}, "a": [1, -2, 3.5, true, null, "x\"y"] },
                     "name": "f" }, "type": "function" }"#;
        let v: Value = serde_json::from_str(a).unwrap();
        assert_eq!(streamed(a), streamed(b));
        assert_eq!(streamed(a), value_hash(&v));
        // Array order matters, and so does every value.
        assert_ne!(
            value_hash(&json!({"a": [1, 2]})),
            value_hash(&json!({"a": [2, 1]}))
        );
        assert_ne!(value_hash(&json!({"a": 1})), value_hash(&json!({"a": "1"})));
        assert_ne!(value_hash(&json!({"a": 1})), value_hash(&json!({"b": 1})));
        assert_ne!(
            value_hash(&json!({"a": 1, "b": 2})),
            value_hash(&json!({"a": 2, "b": 1}))
        );
        assert_ne!(value_hash(&json!([])), value_hash(&json!({})));
        assert_ne!(value_hash(&json!([[]])), value_hash(&json!([])));
    }

    #[test]
    fn hashes_are_stable() {
        // Saved classifiers and canary assignments depend on these numbers: changing them
        // needs a new CLASSIFIER_FORMAT (and moves canary traffic).
        assert_eq!(stable_hash("req-1"), 0x21ba_a047_eea6_6d7a);
        let k = crate::request_key(
            br#"{"messages":[{"role":"system","content":"Today is 2026-01-01."},{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert_eq!(
            (k.tools, k.template, k.format, k.hash()),
            (
                0xd68d_2cf6_0046_8097,
                0xe4d4_f060_dfdf_4711,
                0x9a48_37d5_d359_9487,
                0x5368_1511_a2ae_d612
            )
        );
        assert_eq!(stable_hash(""), hash_bytes(0x5EED, b""));
        assert_eq!(stable_hash("req-1"), stable_hash("req-1"));
        assert_ne!(stable_hash("req-1"), stable_hash("req-2"));
        assert_ne!(hash_bytes(1, b"abcdefgh"), hash_bytes(1, b"abcdefgh\0"));
    }
}
