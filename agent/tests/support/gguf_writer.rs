//! Writes small GGUF files for the header validation tests, with every
//! field under the test's control so a test can break exactly one.

#![allow(dead_code)]

/// A metadata value in its GGUF encoding.
pub enum Value {
    U32(u32),
    U64(u64),
    F32(f32),
    Str(Vec<u8>),
    /// An array with its element type code, declared length and the
    /// encoded elements.
    Array {
        element_type: u32,
        len: u64,
        elements: Vec<u8>,
    },
    /// Any type code with raw value bytes.
    Raw {
        type_code: u32,
        bytes: Vec<u8>,
    },
}

impl Value {
    pub fn str(text: &str) -> Value {
        Value::Str(text.as_bytes().to_vec())
    }

    /// Returns an array of strings with its true length.
    pub fn strings(items: &[&str]) -> Value {
        let mut elements = Vec::new();
        for item in items {
            put_string(&mut elements, item.as_bytes());
        }
        Value::Array {
            element_type: 8,
            len: items.len() as u64,
            elements,
        }
    }

    /// Returns an array of float32 with its true length.
    pub fn floats(items: &[f32]) -> Value {
        Value::Array {
            element_type: 6,
            len: items.len() as u64,
            elements: items.iter().flat_map(|item| item.to_le_bytes()).collect(),
        }
    }

    fn type_code(&self) -> u32 {
        match self {
            Value::U32(_) => 4,
            Value::U64(_) => 10,
            Value::F32(_) => 6,
            Value::Str(_) => 8,
            Value::Array { .. } => 9,
            Value::Raw { type_code, .. } => *type_code,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U32(value) => out.extend(value.to_le_bytes()),
            Value::U64(value) => out.extend(value.to_le_bytes()),
            Value::F32(value) => out.extend(value.to_le_bytes()),
            Value::Str(bytes) => put_string(out, bytes),
            Value::Array {
                element_type,
                len,
                elements,
            } => {
                out.extend(element_type.to_le_bytes());
                out.extend(len.to_le_bytes());
                out.extend(elements);
            }
            Value::Raw { bytes, .. } => out.extend(bytes),
        }
    }
}

/// One tensor description. `offset: None` places it after the previous
/// tensor, as a valid file does.
pub struct Tensor {
    pub name: Vec<u8>,
    pub shape: Vec<u64>,
    pub ggml_type: u32,
    pub offset: Option<u64>,
}

impl Tensor {
    pub fn f32(name: &str, shape: &[u64]) -> Tensor {
        Tensor {
            name: name.as_bytes().to_vec(),
            shape: shape.to_vec(),
            ggml_type: 0,
            offset: None,
        }
    }
}

/// A GGUF file under construction. The defaults give a valid version 3
/// file with a llama architecture and two float32 tensors.
pub struct GgufFile {
    pub magic: [u8; 4],
    pub version: u32,
    /// Overrides the tensor count written in the header.
    pub tensor_count: Option<u64>,
    /// Overrides the metadata count written in the header.
    pub metadata_count: Option<u64>,
    pub metadata: Vec<(Vec<u8>, Value)>,
    pub tensors: Vec<Tensor>,
    pub alignment: u64,
    /// Bytes removed from the end of the finished file.
    pub truncate: usize,
}

impl Default for GgufFile {
    fn default() -> Self {
        GgufFile {
            magic: *b"GGUF",
            version: 3,
            tensor_count: None,
            metadata_count: None,
            metadata: vec![
                (b"general.architecture".to_vec(), Value::str("llama")),
                (b"general.name".to_vec(), Value::str("test model")),
                (b"llama.context_length".to_vec(), Value::U32(256)),
                (
                    b"tokenizer.ggml.tokens".to_vec(),
                    Value::strings(&["<unk>", "<s>", "</s>", "a"]),
                ),
                (
                    b"tokenizer.ggml.scores".to_vec(),
                    Value::floats(&[0.0, 0.0, 0.0, -1.0]),
                ),
                (
                    b"tokenizer.chat_template".to_vec(),
                    Value::str("{% for m in messages %}{{ m.content }}{% endfor %}"),
                ),
            ],
            tensors: vec![
                Tensor::f32("token_embd.weight", &[8, 4]),
                Tensor::f32("output_norm.weight", &[8]),
            ],
            alignment: 32,
            truncate: 0,
        }
    }
}

impl GgufFile {
    /// Replaces the value of a metadata key, or appends the key.
    pub fn set(&mut self, key: &str, value: Value) {
        let key = key.as_bytes().to_vec();
        match self.metadata.iter_mut().find(|(name, _)| *name == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Removes a metadata key.
    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(name, _)| name != key.as_bytes());
    }

    /// Encodes the file.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version.to_le_bytes());
        let tensor_count = self.tensor_count.unwrap_or(self.tensors.len() as u64);
        out.extend(tensor_count.to_le_bytes());
        let metadata_count = self.metadata_count.unwrap_or(self.metadata.len() as u64);
        out.extend(metadata_count.to_le_bytes());

        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend(value.type_code().to_le_bytes());
            value.encode(&mut out);
        }

        let mut next_offset = 0u64;
        let mut data_len = 0u64;
        for tensor in &self.tensors {
            put_string(&mut out, &tensor.name);
            out.extend(
                u32::try_from(tensor.shape.len())
                    .expect("dimension count")
                    .to_le_bytes(),
            );
            for dim in &tensor.shape {
                out.extend(dim.to_le_bytes());
            }
            out.extend(tensor.ggml_type.to_le_bytes());
            let offset = tensor.offset.unwrap_or(next_offset);
            out.extend(offset.to_le_bytes());
            let size = f32_size(&tensor.shape);
            let end = offset.saturating_add(size);
            next_offset = end
                .checked_next_multiple_of(self.alignment)
                .unwrap_or(u64::MAX);
            // Files that state huge sizes or offsets get no data for them.
            if end <= MAX_DATA_BYTES {
                data_len = data_len.max(end);
            }
        }

        let padded = (out.len() as u64).next_multiple_of(self.alignment);
        out.resize(usize::try_from(padded).expect("header size"), 0);
        let data_start = out.len();
        out.resize(
            data_start + usize::try_from(data_len).expect("data size"),
            0x3c,
        );
        out.truncate(out.len().saturating_sub(self.truncate));
        out
    }
}

/// Most tensor data a test file holds.
const MAX_DATA_BYTES: u64 = 1 << 20;

fn f32_size(shape: &[u64]) -> u64 {
    shape
        .iter()
        .fold(4u64, |size, dim| size.saturating_mul(*dim))
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend(bytes);
}
