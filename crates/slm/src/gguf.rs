//! GGUF reader: header, metadata, tensor infos, and bounds-checked access to tensor data.
//!
//! Every length and offset read from the file is checked against the file size before it is
//! used, so a truncated or corrupt file yields an [`Error`] instead of a panic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const GGUF_MAGIC: u32 = 0x4655_4747; // "GGUF" little endian
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: usize = 4;

/// Element types of GGUF tensors (the `ggml_type` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE 16-bit float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, blocks of 32 with a scale.
    Q4_0,
    /// 4-bit, blocks of 32 with a scale and a minimum.
    Q4_1,
    /// 5-bit, blocks of 32 with a scale.
    Q5_0,
    /// 5-bit, blocks of 32 with a scale and a minimum.
    Q5_1,
    /// 8-bit, blocks of 32 with a scale.
    Q8_0,
    /// 8-bit, blocks of 32 with a scale and the block's sum.
    Q8_1,
    /// 2-bit k-quant (super-blocks of 256).
    Q2K,
    /// 3-bit k-quant (super-blocks of 256).
    Q3K,
    /// 4-bit k-quant (super-blocks of 256).
    Q4K,
    /// 5-bit k-quant (super-blocks of 256).
    Q5K,
    /// 6-bit k-quant (super-blocks of 256).
    Q6K,
    /// 8-bit k-quant (super-blocks of 256).
    Q8K,
}

impl GgmlType {
    /// Maps the numeric id stored in the file; `None` for types this crate cannot read.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::Q8_1 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
        }
    }

    /// Whether the type is a block-quantized format (as opposed to a float type).
    pub fn is_quantized(self) -> bool {
        !matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    pub(crate) fn to_candle(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType as G;
        match self {
            Self::F32 => G::F32,
            Self::F16 => G::F16,
            Self::BF16 => G::BF16,
            Self::Q4_0 => G::Q4_0,
            Self::Q4_1 => G::Q4_1,
            Self::Q5_0 => G::Q5_0,
            Self::Q5_1 => G::Q5_1,
            Self::Q8_0 => G::Q8_0,
            Self::Q8_1 => G::Q8_1,
            Self::Q2K => G::Q2K,
            Self::Q3K => G::Q3K,
            Self::Q4K => G::Q4K,
            Self::Q5K => G::Q5K,
            Self::Q6K => G::Q6K,
            Self::Q8K => G::Q8K,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Unsigned 8-bit integer.
    U8(u8),
    /// Signed 8-bit integer.
    I8(i8),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Signed 16-bit integer.
    I16(i16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Signed 32-bit integer.
    I32(i32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Signed 64-bit integer.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array of values (GGUF arrays hold one element type).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Any integer type as `i64` (GGUF writers disagree on integer widths).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => i64::try_from(v).ok()?,
            Self::I64(v) => v,
            Self::Bool(v) => v.into(),
            _ => return None,
        })
    }

    /// Any numeric type as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if it is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<usize>,
    /// How its elements are stored.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Row-major shape (outermost first), e.g. `[out_features, in_features]` for a weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.dims.iter().product()
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened GGUF file. Tensor data stays in the (memory-mapped) file until asked for.
pub struct Gguf {
    path: Option<PathBuf>,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Every metadata key and its value.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensors, in the order the file lists them.
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    bytes: Bytes,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-maps and parses a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped would
        // fault, which is the usual contract of memory-mapped model files (llama.cpp does the same).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut g = Self::parse(Bytes::Mapped(map))?;
        g.path = Some(path.to_path_buf());
        Ok(g)
    }

    /// Parses a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Bytes::Owned(bytes))
    }

    /// The file it was opened from (`None` when parsed from memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn parse(bytes: Bytes) -> Result<Self> {
        let mut r = Reader {
            buf: &bytes,
            pos: 0,
        };
        let magic = r.u32("magic")?;
        if magic != GGUF_MAGIC {
            return Err(Error::NotGguf(magic));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::GgufVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each metadata entry needs at least 8 (key length) + 4 (type) bytes, each tensor info
        // at least 8 + 4 + 4 + 8; reject absurd counts before allocating anything.
        let remaining = (r.buf.len() - r.pos) as u64;
        if n_kv.saturating_mul(12) > remaining || n_tensors.saturating_mul(24) > remaining {
            return Err(Error::Corrupt(format!(
                "header claims {n_kv} metadata entries and {n_tensors} tensors in a {} byte file",
                r.buf.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata type")?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_i64() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => {
                    return Err(Error::Corrupt(format!(
                        "general.alignment {v:?} is not a power of two"
                    )));
                }
            },
        };
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dims")? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::Corrupt(format!(
                    "tensor {name} has {n_dims} dimensions (1..={MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = r.u64("tensor dim")?;
                let d = usize::try_from(d)
                    .ok()
                    .filter(|&d| d > 0 && d < (1 << 40))
                    .ok_or_else(|| Error::Corrupt(format!("tensor {name} has dimension {d}")))?;
                dims.push(d);
            }
            let type_id = r.u32("tensor type")?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownQuantType {
                tensor: name.clone(),
                id: type_id,
            })?;
            let offset = r.u64("tensor offset")?;
            raw.push((name, dims, ggml_type, offset));
        }
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = HashMap::with_capacity(raw.len());
        for (name, dims, ggml_type, rel) in raw {
            let elems = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| Error::Corrupt(format!("tensor {name} is too large")))?;
            let bs = ggml_type.block_size();
            if dims[0] % bs != 0 {
                return Err(Error::Corrupt(format!(
                    "tensor {name}: row length {} is not a multiple of the {ggml_type:?} block size {bs}",
                    dims[0]
                )));
            }
            let size = elems / bs as u64 * ggml_type.type_size() as u64;
            if rel % alignment != 0 {
                return Err(Error::Corrupt(format!(
                    "tensor {name}: offset {rel} is not aligned to {alignment}"
                )));
            }
            let offset = data_start
                .checked_add(rel)
                .ok_or_else(|| Error::Corrupt(format!("tensor {name}: offset overflows")))?;
            let end = offset
                .checked_add(size)
                .ok_or_else(|| Error::Corrupt(format!("tensor {name}: size overflows")))?;
            if end > file_len {
                return Err(Error::Truncated {
                    what: format!("tensor {name}"),
                    start: offset,
                    end,
                    len: file_len,
                });
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::Corrupt(format!("tensor {name} appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size,
            });
        }
        Ok(Self {
            path: None,
            version,
            metadata,
            tensors,
            index,
            bytes,
        })
    }

    /// The value of a metadata key, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The value of `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// A string value: [`Error::MissingMetadata`] when the key is absent, [`Error::MetadataType`]
    /// when it holds something else (as for every `get_*`).
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.require(key)?
            .as_str()
            .ok_or_else(|| Error::MetadataType {
                key: key.into(),
                expected: "string",
            })
    }

    /// A non-negative integer of any integer width.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.require(key)?
            .as_i64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| Error::MetadataType {
                key: key.into(),
                expected: "non-negative integer",
            })
    }

    /// Any number, as `f64`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.require(key)?
            .as_f64()
            .ok_or_else(|| Error::MetadataType {
                key: key.into(),
                expected: "number",
            })
    }

    /// A boolean (an integer counts: non-zero is true).
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => v
                .as_i64()
                .map(|v| v != 0)
                .ok_or_else(|| Error::MetadataType {
                    key: key.into(),
                    expected: "bool",
                }),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let err = || Error::MetadataType {
            key: key.into(),
            expected: "array of strings",
        };
        self.require(key)?
            .as_array()
            .ok_or_else(err)?
            .iter()
            .map(|v| v.as_str().ok_or_else(err))
            .collect()
    }

    /// An array of integers of any width.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let err = || Error::MetadataType {
            key: key.into(),
            expected: "array of integers",
        };
        self.require(key)?
            .as_array()
            .ok_or_else(err)?
            .iter()
            .map(|v| v.as_i64().ok_or_else(err))
            .collect()
    }

    /// A metadata array of numbers as `f32` (SentencePiece's token scores); an error naming
    /// the key when it is missing or not an array of numbers.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let err = || Error::MetadataType {
            key: key.into(),
            expected: "array of numbers",
        };
        self.require(key)?
            .as_array()
            .ok_or_else(err)?
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32).ok_or_else(err))
            .collect()
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::MissingMetadata(key.into()))
    }

    /// Where a tensor lives; [`Error::MissingTensor`] when the file has none of that name.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::MissingTensor(name.into()))
    }

    /// Whether the file has a tensor of that name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Tells the OS the mapped pages of a tensor are no longer needed (after its data was
    /// copied or repacked), so they stop counting towards the process's resident memory.
    pub fn release(&self, info: &TensorInfo) {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = &self.bytes
            && info.size > 0
        {
            // SAFETY: the map is a read-only shared file mapping: MADV_DONTNEED only drops
            // pages, and any later read faults them back in from the file unchanged.
            let _ = unsafe {
                m.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    info.offset as usize,
                    info.size as usize,
                )
            };
        }
    }

    /// The raw (possibly quantized) bytes of a tensor; bounds were checked at open time.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = info.offset as usize;
        let end = start + info.size as usize;
        self.bytes.get(start..end).unwrap_or(&[])
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const MAX_NESTING: usize = 4;

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                what: what.to_string(),
                start: self.pos as u64,
                end: self.pos as u64 + n as u64,
                len: self.buf.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Corrupt(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(key)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => MetaValue::Bool(self.array::<1>(key)?[0] != 0),
            8 => MetaValue::String(self.string(key)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(Error::Corrupt(format!(
                        "metadata {key}: arrays nested too deep"
                    )));
                }
                let elem_ty = self.u32(key)?;
                let n = self.u64(key)?;
                let remaining = (self.buf.len() - self.pos) as u64;
                if n > remaining {
                    return Err(Error::Truncated {
                        what: format!("metadata array {key} of {n} elements"),
                        start: self.pos as u64,
                        end: self.pos as u64 + n,
                        len: self.buf.len() as u64,
                    });
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem_ty, key, depth + 1)?);
                }
                MetaValue::Array(v)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(key)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            t => {
                return Err(Error::Corrupt(format!(
                    "metadata {key} has unknown value type {t}"
                )));
            }
        })
    }
}

/// Helpers to write small GGUF images (used by tests and fixtures).
pub mod writer {
    use super::MetaValue;

    /// Serialises metadata and `(name, ggml dims, type id, data)` tensors into a GGUF v3 image.
    pub fn write(
        metadata: &[(&str, MetaValue)],
        tensors: &[(&str, Vec<u64>, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&super::GGUF_MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            put_str(&mut out, k);
            put_value(&mut out, v, true);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        let start = out.len();
        for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
            out.resize(start + off as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn type_id(v: &MetaValue) -> u32 {
        match v {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    fn put_value(out: &mut Vec<u8>, v: &MetaValue, with_type: bool) {
        if with_type {
            out.extend_from_slice(&type_id(v).to_le_bytes());
        }
        match v {
            MetaValue::U8(x) => out.push(*x),
            MetaValue::I8(x) => out.push(*x as u8),
            MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::Bool(x) => out.push(u8::from(*x)),
            MetaValue::String(s) => put_str(out, s),
            MetaValue::Array(a) => {
                let elem = a.first().map(type_id).unwrap_or(4);
                out.extend_from_slice(&elem.to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for x in a {
                    put_value(out, x, false);
                }
            }
        }
    }
}
