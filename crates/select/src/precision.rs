//! Weight precisions and what one parameter costs in memory at each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SelectError;

/// How weights are stored at serving time. Names follow GGUF / PyTorch usage.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Precision {
    /// 32-bit float.
    #[serde(rename = "f32")]
    F32,
    /// 16-bit float.
    #[serde(rename = "f16")]
    F16,
    /// bfloat16.
    #[serde(rename = "bf16")]
    Bf16,
    /// GGUF Q8_0: blocks of 32 int8 weights plus one f16 scale (34 bytes per 32 weights).
    #[serde(rename = "q8_0")]
    Q8_0,
    /// GGUF Q6_K: 6.5625 bits per weight.
    #[serde(rename = "q6_k")]
    Q6K,
    /// GGUF Q4_K_M: a mix of Q4_K and Q6_K tensors, about 4.8 bits per weight.
    #[default]
    #[serde(rename = "q4_k_m")]
    Q4KM,
    /// GGUF Q4_1: 32 4-bit weights plus an f16 scale and an f16 minimum (20 bytes per 32).
    #[serde(rename = "q4_1")]
    Q4_1,
    /// GGUF Q4_0: 32 4-bit weights plus an f16 scale (18 bytes per 32).
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl Precision {
    /// Every precision, widest first.
    pub const ALL: [Precision; 8] = [
        Precision::F32,
        Precision::F16,
        Precision::Bf16,
        Precision::Q8_0,
        Precision::Q6K,
        Precision::Q4_1,
        Precision::Q4KM,
        Precision::Q4_0,
    ];

    /// Bytes one parameter takes on average, block scales included.
    ///
    /// Q4_K_M is a mix whose exact share depends on the model; 0.6 bytes (4.8 bits) is the
    /// usual figure for llama.cpp files.
    pub fn bytes_per_param(self) -> f64 {
        match self {
            Precision::F32 => 4.0,
            Precision::F16 | Precision::Bf16 => 2.0,
            Precision::Q8_0 => 34.0 / 32.0,
            Precision::Q6K => 6.5625 / 8.0,
            Precision::Q4KM => 0.6,
            Precision::Q4_1 => 20.0 / 32.0,
            Precision::Q4_0 => 18.0 / 32.0,
        }
    }

    /// The lower-case name used in catalogs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Q8_0 => "q8_0",
            Precision::Q6K => "q6_k",
            Precision::Q4KM => "q4_k_m",
            Precision::Q4_1 => "q4_1",
            Precision::Q4_0 => "q4_0",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = SelectError;

    /// Case-insensitive; `-` and `_` are interchangeable (`Q4_K_M`, `q4-k-m`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == norm)
            .ok_or_else(|| SelectError::UnknownPrecision(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_param_follow_the_block_layouts() {
        assert_eq!(Precision::F16.bytes_per_param(), 2.0);
        assert_eq!(Precision::Bf16.bytes_per_param(), 2.0);
        assert_eq!(Precision::Q8_0.bytes_per_param(), 1.0625);
        assert_eq!(Precision::Q4_0.bytes_per_param(), 0.5625);
        assert_eq!(Precision::Q4_1.bytes_per_param(), 0.625);
        assert_eq!(Precision::Q4KM.bytes_per_param(), 0.6);
        // Narrower formats never cost more than wider ones.
        for pair in Precision::ALL.windows(2) {
            assert!(
                pair[0].bytes_per_param() >= pair[1].bytes_per_param(),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("Q4-K-M".parse::<Precision>().unwrap(), Precision::Q4KM);
        let err = "q3_k".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("\"q3_k\"") && err.contains("q4_k_m"), "{err}");
        assert_eq!(Precision::default(), Precision::Q4KM);
    }
}
