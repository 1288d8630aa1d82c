//! Validation of GGUF model file headers before llama.cpp reads the file.
//!
//! The layout and the rules follow llama.cpp's own reader,
//! `ggml/src/gguf.cpp` in the llama.cpp that llama-cpp-sys-2 0.1.161
//! bundles: magic, version, tensor count, metadata count, the metadata
//! key/value pairs, the tensor descriptions, padding to the alignment, then
//! the tensor data.
//! Every length is checked against the bytes left in the file before it is
//! used, and no buffer is sized from a length the file states unless that
//! length is within the bounds below.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// `GGUF` as the first four bytes of the file.
const MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Upper bound on the tensor count. Large models have a few thousand tensors.
pub const MAX_TENSORS: u64 = 1 << 16;

/// Upper bound on the metadata key/value count. Models have a few dozen.
pub const MAX_METADATA_ENTRIES: u64 = 1 << 16;

/// Upper bound on one string's length: keys, values and array elements.
/// Chat templates, the longest strings in real models, are tens of KiB.
pub const MAX_STRING_BYTES: u64 = 1 << 22;

/// Upper bound on one array's element count. Tokenizer vocabularies and
/// merge lists have up to about a million entries.
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 24;

/// Dimensions of a ggml tensor (`GGML_MAX_DIMS`).
pub const MAX_TENSOR_DIMS: u32 = 4;

/// ggml stores tensor names in a 64-byte buffer with a NUL terminator
/// (`GGML_MAX_NAME`), and llama.cpp rejects longer names.
pub const MAX_TENSOR_NAME_BYTES: u64 = 63;

/// Facts from a header that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufHeader {
    /// Format version, 2 or 3.
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// Alignment of the tensor data in bytes.
    pub alignment: u64,
    /// Offset of the tensor data from the start of the file.
    pub data_offset: u64,
    /// Length of the file in bytes.
    pub file_len: u64,
    /// `general.architecture`, such as `llama`.
    pub architecture: String,
    /// `general.name`, when present and valid UTF-8.
    pub name: Option<String>,
    /// `<architecture>.context_length`: the context the model was trained with.
    pub context_length: Option<u64>,
    /// `tokenizer.chat_template`, when present and valid UTF-8.
    pub chat_template: Option<String>,
}

/// A header that is malformed or outside the bounds this reader accepts.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("failed to read the file: {0}")]
    Io(#[from] io::Error),

    #[error(
        "the file is {file_len} bytes long, but {what} needs {needed} bytes at offset {offset}"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },

    #[error("not a GGUF file: it starts with {found:02x?} instead of \"GGUF\"")]
    Magic { found: [u8; 4] },

    #[error("GGUF version {version} is not supported; versions 2 and 3 are")]
    Version { version: u32 },

    #[error("the file is a big-endian GGUF (version field {raw:#010x}); only little-endian files are supported")]
    BigEndian { raw: u32 },

    #[error("tensor count {count} is above the maximum of {max}")]
    TooManyTensors { count: u64, max: u64 },

    #[error("metadata count {count} is above the maximum of {max}")]
    TooManyMetadata { count: u64, max: u64 },

    #[error("{what} is {len} bytes long, above the maximum of {max}")]
    StringTooLong { what: String, len: u64, max: u64 },

    #[error("metadata key #{index} is not valid UTF-8 or is empty")]
    InvalidKey { index: u64 },

    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },

    #[error("metadata key {key:?} has the unknown value type {value_type}")]
    UnknownValueType { key: String, value_type: u32 },

    #[error("metadata key {key:?} holds an array of {len} elements, above the maximum of {max}")]
    ArrayTooLong { key: String, len: u64, max: u64 },

    #[error("metadata key {key:?} holds an array of arrays, which GGUF readers do not support")]
    NestedArray { key: String },

    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("general.alignment is {value}; it must be a power of two")]
    Alignment { value: u64 },

    #[error(
        "the metadata has no general.architecture string, so no loader can tell what model this is"
    )]
    MissingArchitecture,

    #[error(
        "tensor #{index} has a name that is empty, not valid UTF-8 or longer than {max} bytes"
    )]
    TensorName { index: u64, max: u64 },

    #[error("tensor name {name:?} appears twice")]
    DuplicateTensor { name: String },

    #[error("tensor {name:?} has {dims} dimensions, above the maximum of {max}")]
    TensorDims { name: String, dims: u32, max: u32 },

    #[error("tensor {name:?} has the shape {shape:?}, whose element count overflows")]
    TensorShape { name: String, shape: Vec<u64> },

    #[error("tensor {name:?} has the unknown ggml type {ggml_type}")]
    TensorType { name: String, ggml_type: u32 },

    #[error("tensor {name:?} has {row} elements per row, which is not a multiple of its type's block of {block}")]
    TensorRow { name: String, row: u64, block: u64 },

    #[error("tensor {name:?} starts at data offset {offset}, which is not a multiple of the alignment {alignment}")]
    TensorMisaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },

    #[error("tensor {name:?} starts at data offset {offset}, but the tensors before it end at {expected}; tensors must follow each other in order")]
    TensorOffset {
        name: String,
        offset: u64,
        expected: u64,
    },

    #[error(
        "tensor {name:?} occupies bytes {start}..{end}, past the end of the file at {file_len}"
    )]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
}

/// A model file that failed validation, with its path.
#[derive(Debug, thiserror::Error)]
#[error("invalid GGUF model file {path}: {source}. The file is damaged, incomplete or not a GGUF model: replace it with a complete copy from its publisher")]
pub struct GgufFileError {
    pub path: PathBuf,
    #[source]
    pub source: GgufError,
}

/// Validates the header of the GGUF file at `path`.
pub fn validate_file(path: &Path) -> Result<GgufHeader, GgufFileError> {
    let wrap = |source: GgufError| GgufFileError {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|err| wrap(err.into()))?;
    let file_len = file.metadata().map_err(|err| wrap(err.into()))?.len();
    parse(file, file_len).map_err(wrap)
}

/// Validates a header held in memory.
pub fn validate_bytes(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    parse(io::Cursor::new(bytes), bytes.len() as u64)
}

/// Validates the header read from `reader`, which contains `file_len` bytes.
pub fn parse<R: Read + Seek>(reader: R, file_len: u64) -> Result<GgufHeader, GgufError> {
    let mut input = Input {
        // Skipping a value moves within this buffer where it can, so a
        // vocabulary of 100,000 strings costs no syscall per string.
        reader: BufReader::with_capacity(1 << 16, reader),
        position: 0,
        file_len,
    };

    let magic: [u8; 4] = input.array("the magic number")?;
    if magic != MAGIC {
        return Err(GgufError::Magic { found: magic });
    }
    let version = input.u32("the version")?;
    match version {
        2 | 3 => {}
        // A big-endian file stores 2 or 3 with its bytes reversed.
        0x0200_0000 | 0x0300_0000 => return Err(GgufError::BigEndian { raw: version }),
        _ => return Err(GgufError::Version { version }),
    }

    let tensor_count = input.u64("the tensor count")?;
    if tensor_count > MAX_TENSORS {
        return Err(GgufError::TooManyTensors {
            count: tensor_count,
            max: MAX_TENSORS,
        });
    }
    let metadata_count = input.u64("the metadata count")?;
    if metadata_count > MAX_METADATA_ENTRIES {
        return Err(GgufError::TooManyMetadata {
            count: metadata_count,
            max: MAX_METADATA_ENTRIES,
        });
    }

    let metadata = read_metadata(&mut input, metadata_count)?;
    let tensors = read_tensor_infos(&mut input, tensor_count)?;

    let alignment = metadata.alignment.unwrap_or(DEFAULT_ALIGNMENT);
    let data_offset =
        align_up(input.position, alignment).ok_or(GgufError::Alignment { value: alignment })?;
    check_tensor_data(&tensors, alignment, data_offset, file_len)?;

    let architecture = metadata
        .architecture
        .ok_or(GgufError::MissingArchitecture)?;
    let context_length = metadata
        .context_lengths
        .get(&format!("{architecture}.context_length"))
        .copied();
    Ok(GgufHeader {
        version,
        tensor_count,
        metadata_count,
        alignment,
        data_offset,
        file_len,
        architecture,
        name: metadata.name,
        context_length,
        chat_template: metadata.chat_template,
    })
}

/// GGUF metadata value types (`gguf_type` in ggml's `gguf.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// Size of one value in bytes, for the fixed-size types.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::U16 => "uint16",
            Self::I16 => "int16",
            Self::U32 => "uint32",
            Self::I32 => "int32",
            Self::F32 => "float32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Array => "array",
            Self::U64 => "uint64",
            Self::I64 => "int64",
            Self::F64 => "float64",
        }
    }
}

/// The metadata values that validation or the caller needs.
#[derive(Default)]
struct Metadata {
    architecture: Option<String>,
    name: Option<String>,
    alignment: Option<u64>,
    chat_template: Option<String>,
    /// Every `*.context_length` with an integer value, because the
    /// architecture that picks one may come later in the file.
    context_lengths: HashMap<String, u64>,
}

fn read_metadata<R: Read + Seek>(input: &mut Input<R>, count: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Metadata::default();
    let mut keys = HashSet::new();
    for index in 0..count {
        let key_bytes = input.string(&format!("metadata key #{index}"))?;
        let key = match String::from_utf8(key_bytes) {
            Ok(key) if !key.is_empty() => key,
            _ => return Err(GgufError::InvalidKey { index }),
        };
        if !keys.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { key });
        }

        let code = input.u32(&format!("the value type of {key:?}"))?;
        let value_type = ValueType::from_code(code).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            value_type: code,
        })?;

        match key.as_str() {
            "general.architecture" => {
                metadata.architecture = Some(read_utf8_value(input, &key, value_type)?);
            }
            "general.name" => {
                metadata.name = Some(read_utf8_value(input, &key, value_type)?);
            }
            "tokenizer.chat_template" => {
                metadata.chat_template = Some(read_utf8_value(input, &key, value_type)?);
            }
            "general.alignment" => {
                if value_type != ValueType::U32 {
                    return Err(GgufError::WrongType {
                        key,
                        expected: "uint32",
                        found: value_type.name(),
                    });
                }
                let value = u64::from(input.u32("general.alignment")?);
                if !value.is_power_of_two() {
                    return Err(GgufError::Alignment { value });
                }
                metadata.alignment = Some(value);
            }
            _ if key.ends_with(".context_length") => {
                if let Some(value) = read_unsigned(input, &key, value_type)? {
                    metadata.context_lengths.insert(key, value);
                }
            }
            _ => skip_value(input, &key, value_type)?,
        }
    }
    Ok(metadata)
}

/// Reads a string value that must be valid UTF-8.
fn read_utf8_value<R: Read + Seek>(
    input: &mut Input<R>,
    key: &str,
    value_type: ValueType,
) -> Result<String, GgufError> {
    if value_type != ValueType::String {
        return Err(GgufError::WrongType {
            key: key.to_owned(),
            expected: "string",
            found: value_type.name(),
        });
    }
    let bytes = input.string(&format!("the value of {key:?}"))?;
    String::from_utf8(bytes).map_err(|_| GgufError::WrongType {
        key: key.to_owned(),
        expected: "UTF-8 string",
        found: "string with invalid UTF-8",
    })
}

/// Reads an unsigned integer value of any width. Other types are skipped
/// and give `None`.
fn read_unsigned<R: Read + Seek>(
    input: &mut Input<R>,
    key: &str,
    value_type: ValueType,
) -> Result<Option<u64>, GgufError> {
    let value = match value_type {
        ValueType::U8 => u64::from(input.array::<1>(key)?[0]),
        ValueType::U16 => u64::from(u16::from_le_bytes(input.array(key)?)),
        ValueType::U32 => u64::from(input.u32(key)?),
        ValueType::U64 => input.u64(key)?,
        _ => {
            skip_value(input, key, value_type)?;
            return Ok(None);
        }
    };
    Ok(Some(value))
}

fn skip_value<R: Read + Seek>(
    input: &mut Input<R>,
    key: &str,
    value_type: ValueType,
) -> Result<(), GgufError> {
    if let Some(size) = value_type.fixed_size() {
        return input.skip(size, &format!("the value of {key:?}"));
    }
    match value_type {
        ValueType::String => input.skip_string(&format!("the value of {key:?}")),
        _ => skip_array(input, key),
    }
}

fn skip_array<R: Read + Seek>(input: &mut Input<R>, key: &str) -> Result<(), GgufError> {
    let code = input.u32(&format!("the element type of {key:?}"))?;
    let element_type = ValueType::from_code(code).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        value_type: code,
    })?;
    let len = input.u64(&format!("the array length of {key:?}"))?;
    if len > MAX_ARRAY_ELEMENTS {
        return Err(GgufError::ArrayTooLong {
            key: key.to_owned(),
            len,
            max: MAX_ARRAY_ELEMENTS,
        });
    }
    match element_type {
        ValueType::Array => Err(GgufError::NestedArray {
            key: key.to_owned(),
        }),
        ValueType::String => {
            let what = format!("a string element of {key:?}");
            for _ in 0..len {
                input.skip_string(&what)?;
            }
            Ok(())
        }
        fixed => {
            // Both factors are bounded (2^24 elements of at most 8 bytes).
            let size = fixed.fixed_size().unwrap_or(1) * len;
            input.skip(size, &format!("the elements of {key:?}"))
        }
    }
}

/// One tensor's description from the header.
struct TensorInfo {
    name: String,
    /// Size of its data in bytes.
    size: u64,
    /// Offset of its data from the start of the data section.
    offset: u64,
}

fn read_tensor_infos<R: Read + Seek>(
    input: &mut Input<R>,
    count: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    let mut names = HashSet::new();
    // The count is bounded by MAX_TENSORS, so this allocation is too.
    let mut tensors = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for index in 0..count {
        let name = read_tensor_name(input, index)?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name });
        }

        let dims = input.u32(&format!("the dimension count of tensor {name:?}"))?;
        if dims > MAX_TENSOR_DIMS {
            return Err(GgufError::TensorDims {
                name,
                dims,
                max: MAX_TENSOR_DIMS,
            });
        }
        let mut shape = Vec::with_capacity(MAX_TENSOR_DIMS as usize);
        for _ in 0..dims {
            shape.push(input.u64(&format!("the shape of tensor {name:?}"))?);
        }
        let ggml_type = input.u32(&format!("the type of tensor {name:?}"))?;
        let offset = input.u64(&format!("the data offset of tensor {name:?}"))?;

        let size = tensor_size(&name, &shape, ggml_type)?;
        tensors.push(TensorInfo { name, size, offset });
    }
    Ok(tensors)
}

fn read_tensor_name<R: Read + Seek>(input: &mut Input<R>, index: u64) -> Result<String, GgufError> {
    let what = format!("the name of tensor #{index}");
    let len = input.u64(&what)?;
    if len == 0 || len > MAX_TENSOR_NAME_BYTES {
        return Err(GgufError::TensorName {
            index,
            max: MAX_TENSOR_NAME_BYTES,
        });
    }
    let bytes = input.bytes(len, &what)?;
    String::from_utf8(bytes).map_err(|_| GgufError::TensorName {
        index,
        max: MAX_TENSOR_NAME_BYTES,
    })
}

/// Computes a tensor's data size in bytes as ggml does (`ggml_nbytes` for a
/// contiguous tensor): rows of blocks, each block `type_size` bytes.
fn tensor_size(name: &str, shape: &[u64], ggml_type: u32) -> Result<u64, GgufError> {
    let (block, type_size) = ggml_type_layout(ggml_type).ok_or_else(|| GgufError::TensorType {
        name: name.to_owned(),
        ggml_type,
    })?;
    let overflow = || GgufError::TensorShape {
        name: name.to_owned(),
        shape: shape.to_vec(),
    };

    // ggml keeps element counts in int64_t, so each dimension and their
    // product must fit in it.
    let mut elements: u64 = 1;
    for &dim in shape {
        if dim > i64::MAX as u64 {
            return Err(overflow());
        }
        elements = elements.checked_mul(dim).ok_or_else(overflow)?;
    }
    if elements > i64::MAX as u64 {
        return Err(overflow());
    }

    // A tensor without dimensions is a scalar, as in llama.cpp.
    let row = shape.first().copied().unwrap_or(1);
    if !row.is_multiple_of(block) {
        return Err(GgufError::TensorRow {
            name: name.to_owned(),
            row,
            block,
        });
    }
    (elements / block)
        .checked_mul(type_size)
        .ok_or_else(overflow)
}

/// Returns a ggml type's block size in elements and block size in bytes,
/// as `ggml_type_traits` in ggml.c defines them. Codes that ggml removed
/// give `None`.
fn ggml_type_layout(ggml_type: u32) -> Option<(u64, u64)> {
    const QK_K: u64 = 256;
    Some(match ggml_type {
        0 => (1, 4),       // F32
        1 => (1, 2),       // F16
        2 => (32, 18),     // Q4_0
        3 => (32, 20),     // Q4_1
        6 => (32, 22),     // Q5_0
        7 => (32, 24),     // Q5_1
        8 => (32, 34),     // Q8_0
        9 => (32, 36),     // Q8_1
        10 => (QK_K, 84),  // Q2_K
        11 => (QK_K, 110), // Q3_K
        12 => (QK_K, 144), // Q4_K
        13 => (QK_K, 176), // Q5_K
        14 => (QK_K, 210), // Q6_K
        15 => (QK_K, 292), // Q8_K
        16 => (QK_K, 66),  // IQ2_XXS
        17 => (QK_K, 74),  // IQ2_XS
        18 => (QK_K, 98),  // IQ3_XXS
        19 => (QK_K, 50),  // IQ1_S
        20 => (32, 18),    // IQ4_NL
        21 => (QK_K, 110), // IQ3_S
        22 => (QK_K, 82),  // IQ2_S
        23 => (QK_K, 136), // IQ4_XS
        24 => (1, 1),      // I8
        25 => (1, 2),      // I16
        26 => (1, 4),      // I32
        27 => (1, 8),      // I64
        28 => (1, 8),      // F64
        29 => (QK_K, 56),  // IQ1_M
        30 => (1, 2),      // BF16
        34 => (QK_K, 54),  // TQ1_0
        35 => (QK_K, 66),  // TQ2_0
        39 => (32, 17),    // MXFP4
        40 => (64, 36),    // NVFP4
        41 => (128, 18),   // Q1_0
        42 => (64, 18),    // Q2_0
        _ => return None,
    })
}

/// Checks that each tensor's data is aligned, follows the previous tensor
/// as llama.cpp requires, and lies inside the file.
fn check_tensor_data(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let mut expected: u64 = 0;
    for tensor in tensors {
        if !tensor.offset.is_multiple_of(alignment) {
            return Err(GgufError::TensorMisaligned {
                name: tensor.name.clone(),
                offset: tensor.offset,
                alignment,
            });
        }
        if tensor.offset != expected {
            return Err(GgufError::TensorOffset {
                name: tensor.name.clone(),
                offset: tensor.offset,
                expected,
            });
        }
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            name: tensor.name.clone(),
            start: data_offset.saturating_add(tensor.offset),
            end: data_offset
                .saturating_add(tensor.offset)
                .saturating_add(tensor.size),
            file_len,
        };
        let end = data_offset
            .checked_add(tensor.offset)
            .and_then(|start| start.checked_add(tensor.size))
            .ok_or_else(out_of_bounds)?;
        if end > file_len {
            return Err(out_of_bounds());
        }
        expected = tensor
            .offset
            .checked_add(tensor.size)
            .and_then(|next| align_up(next, alignment))
            .ok_or_else(out_of_bounds)?;
    }
    Ok(())
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    if alignment == 0 {
        return None;
    }
    value.checked_next_multiple_of(alignment)
}

/// A reader that tracks its position and checks each read against the
/// file length first.
struct Input<R> {
    reader: BufReader<R>,
    position: u64,
    file_len: u64,
}

impl<R: Read + Seek> Input<R> {
    fn ensure(&self, needed: u64, what: &str) -> Result<(), GgufError> {
        let available = self.file_len.saturating_sub(self.position);
        if needed > available {
            return Err(GgufError::Truncated {
                what: what.to_owned(),
                offset: self.position,
                needed,
                file_len: self.file_len,
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.ensure(N as u64, what)?;
        let mut buffer = [0; N];
        self.reader.read_exact(&mut buffer)?;
        self.position += N as u64;
        Ok(buffer)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads `len` bytes. The caller bounds `len` first, and `ensure`
    /// checks it against the file, so the buffer never outgrows the file.
    fn bytes(&mut self, len: u64, what: &str) -> Result<Vec<u8>, GgufError> {
        self.ensure(len, what)?;
        let mut buffer = Vec::new();
        (&mut self.reader).take(len).read_to_end(&mut buffer)?;
        if buffer.len() as u64 != len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        self.position += len;
        Ok(buffer)
    }

    fn skip(&mut self, len: u64, what: &str) -> Result<(), GgufError> {
        self.ensure(len, what)?;
        let delta = i64::try_from(len).map_err(|_| GgufError::Truncated {
            what: what.to_owned(),
            offset: self.position,
            needed: len,
            file_len: self.file_len,
        })?;
        self.reader.seek_relative(delta)?;
        self.position += len;
        Ok(())
    }

    fn string_len(&mut self, what: &str) -> Result<u64, GgufError> {
        let len = self.u64(what)?;
        if len > MAX_STRING_BYTES {
            return Err(GgufError::StringTooLong {
                what: what.to_owned(),
                len,
                max: MAX_STRING_BYTES,
            });
        }
        Ok(len)
    }

    fn string(&mut self, what: &str) -> Result<Vec<u8>, GgufError> {
        let len = self.string_len(what)?;
        self.bytes(len, what)
    }

    fn skip_string(&mut self, what: &str) -> Result<(), GgufError> {
        let len = self.string_len(what)?;
        self.skip(len, what)
    }
}
