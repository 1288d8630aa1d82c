//! GGUF header validation on crafted files: a valid file passes with its
//! facts read out, and each malformed field is rejected with an error that
//! names the value.

mod support;

use appliance_agent::inference::gguf::{
    self, GgufError, MAX_ARRAY_ELEMENTS, MAX_METADATA_ENTRIES, MAX_STRING_BYTES, MAX_TENSORS,
};
use support::gguf_writer::{GgufFile, Tensor, Value};

fn validate(file: &GgufFile) -> Result<gguf::GgufHeader, GgufError> {
    gguf::validate_bytes(&file.build())
}

fn expect_error(file: &GgufFile) -> GgufError {
    match validate(file) {
        Ok(header) => panic!("a malformed file passed validation: {header:?}"),
        Err(err) => err,
    }
}

#[test]
fn valid_file_passes() {
    let header = validate(&GgufFile::default()).expect("valid file");
    assert_eq!(header.version, 3);
    assert_eq!(header.tensor_count, 2);
    assert_eq!(header.metadata_count, 6);
    assert_eq!(header.architecture, "llama");
    assert_eq!(header.name.as_deref(), Some("test model"));
    assert_eq!(header.context_length, Some(256));
    assert_eq!(header.alignment, 32);
    assert_eq!(header.data_offset % 32, 0);
    assert!(header.chat_template.is_some());
}

#[test]
fn version_2_passes() {
    let file = GgufFile {
        version: 2,
        ..GgufFile::default()
    };
    assert_eq!(validate(&file).expect("version 2").version, 2);
}

#[test]
fn custom_alignment_applies() {
    let mut file = GgufFile {
        alignment: 64,
        ..GgufFile::default()
    };
    file.set("general.alignment", Value::U32(64));
    let header = validate(&file).expect("valid file");
    assert_eq!(header.alignment, 64);
    assert_eq!(header.data_offset % 64, 0);
}

#[test]
fn context_length_of_other_architecture_ignored() {
    let mut file = GgufFile::default();
    file.remove("llama.context_length");
    file.set("qwen2.context_length", Value::U32(999));
    let header = validate(&file).expect("valid file");
    assert_eq!(header.context_length, None);
}

#[test]
fn bad_magic_rejected() {
    let file = GgufFile {
        magic: *b"GGML",
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::Magic { found } if &found == b"GGML"));
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn empty_file_rejected() {
    let err = gguf::validate_bytes(&[]).expect_err("empty file");
    assert!(
        matches!(err, GgufError::Truncated { offset: 0, .. }),
        "{err}"
    );
}

#[test]
fn unsupported_versions_rejected() {
    for version in [0, 1, 4, u32::MAX] {
        let file = GgufFile {
            version,
            ..GgufFile::default()
        };
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::Version { version: v } if v == version),
            "version {version}: {err}"
        );
        assert!(err.to_string().contains(&version.to_string()), "{err}");
    }
}

#[test]
fn big_endian_file_named() {
    let file = GgufFile {
        version: 3u32.swap_bytes(),
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::BigEndian { .. }), "{err}");
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn huge_tensor_count_rejected() {
    for count in [MAX_TENSORS + 1, u64::MAX] {
        let file = GgufFile {
            tensor_count: Some(count),
            ..GgufFile::default()
        };
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::TooManyTensors { count: c, .. } if c == count),
            "{err}"
        );
    }
}

#[test]
fn huge_metadata_count_rejected() {
    let file = GgufFile {
        metadata_count: Some(MAX_METADATA_ENTRIES + 1),
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::TooManyMetadata { .. }), "{err}");
}

#[test]
fn metadata_count_past_entries_rejected() {
    let file = GgufFile {
        metadata_count: Some(7),
        tensors: Vec::new(),
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    // The seventh key is read from the zero padding or past the end.
    assert!(
        matches!(
            err,
            GgufError::Truncated { .. } | GgufError::InvalidKey { .. }
        ),
        "{err}"
    );
}

#[test]
fn huge_string_length_rejected() {
    let mut file = GgufFile::default();
    file.metadata.push((
        b"general.description".to_vec(),
        Value::Raw {
            type_code: 8,
            bytes: (MAX_STRING_BYTES + 1).to_le_bytes().to_vec(),
        },
    ));
    let err = expect_error(&file);
    assert!(
        matches!(err, GgufError::StringTooLong { len, .. } if len == MAX_STRING_BYTES + 1),
        "{err}"
    );
    assert!(err.to_string().contains("general.description"), "{err}");
}

#[test]
fn string_past_end_of_file_rejected() {
    let mut file = GgufFile {
        tensors: Vec::new(),
        ..GgufFile::default()
    };
    // Within the bound, but longer than what is left of the file.
    file.metadata.push((
        b"general.description".to_vec(),
        Value::Raw {
            type_code: 8,
            bytes: 4096u64.to_le_bytes().to_vec(),
        },
    ));
    let err = expect_error(&file);
    match err {
        GgufError::Truncated { needed, what, .. } => {
            assert_eq!(needed, 4096);
            assert!(what.contains("general.description"), "{what}");
        }
        other => panic!("expected Truncated, got {other}"),
    }
}

#[test]
fn huge_key_length_rejected() {
    let mut bytes = GgufFile {
        metadata: Vec::new(),
        metadata_count: Some(1),
        tensors: Vec::new(),
        ..GgufFile::default()
    }
    .build();
    // The header is 24 bytes; the key length follows it.
    bytes.truncate(24);
    bytes.extend(u64::MAX.to_le_bytes());
    let err = gguf::validate_bytes(&bytes).expect_err("huge key");
    assert!(matches!(err, GgufError::StringTooLong { .. }), "{err}");
}

#[test]
fn invalid_keys_rejected() {
    for key in [b"".to_vec(), vec![0xff, 0xfe]] {
        let mut file = GgufFile::default();
        file.metadata.insert(0, (key, Value::U32(1)));
        let err = expect_error(&file);
        assert!(matches!(err, GgufError::InvalidKey { index: 0 }), "{err}");
    }
}

#[test]
fn duplicate_key_rejected() {
    let mut file = GgufFile::default();
    file.metadata
        .push((b"general.name".to_vec(), Value::str("again")));
    let err = expect_error(&file);
    assert!(
        matches!(&err, GgufError::DuplicateKey { key } if key == "general.name"),
        "{err}"
    );
}

#[test]
fn unknown_value_type_rejected() {
    let mut file = GgufFile::default();
    file.metadata.push((
        b"general.odd".to_vec(),
        Value::Raw {
            type_code: 13,
            bytes: vec![0; 8],
        },
    ));
    let err = expect_error(&file);
    assert!(
        matches!(&err, GgufError::UnknownValueType { key, value_type: 13 } if key == "general.odd"),
        "{err}"
    );
}

#[test]
fn huge_array_rejected() {
    let mut file = GgufFile::default();
    file.set(
        "tokenizer.ggml.scores",
        Value::Array {
            element_type: 6,
            len: MAX_ARRAY_ELEMENTS + 1,
            elements: Vec::new(),
        },
    );
    let err = expect_error(&file);
    assert!(
        matches!(&err, GgufError::ArrayTooLong { key, .. } if key == "tokenizer.ggml.scores"),
        "{err}"
    );
}

#[test]
fn array_past_end_of_file_rejected() {
    let mut file = GgufFile {
        tensors: Vec::new(),
        ..GgufFile::default()
    };
    // 100,000 float32 values declared, none present.
    file.set(
        "tokenizer.ggml.scores",
        Value::Array {
            element_type: 6,
            len: 100_000,
            elements: Vec::new(),
        },
    );
    let err = expect_error(&file);
    assert!(
        matches!(
            &err,
            GgufError::Truncated {
                needed: 400_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn string_array_element_too_long_rejected() {
    let mut elements = Vec::new();
    elements.extend((MAX_STRING_BYTES + 1).to_le_bytes());
    let mut file = GgufFile::default();
    file.set(
        "tokenizer.ggml.tokens",
        Value::Array {
            element_type: 8,
            len: 1,
            elements,
        },
    );
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::StringTooLong { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
}

#[test]
fn nested_array_rejected() {
    let mut file = GgufFile::default();
    file.set(
        "tokenizer.ggml.merges",
        Value::Array {
            element_type: 9,
            len: 1,
            elements: Vec::new(),
        },
    );
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::NestedArray { .. }), "{err}");
}

#[test]
fn missing_architecture_rejected() {
    let mut file = GgufFile::default();
    file.remove("general.architecture");
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::MissingArchitecture), "{err}");
}

#[test]
fn architecture_of_wrong_type_rejected() {
    let mut file = GgufFile::default();
    file.set("general.architecture", Value::U32(7));
    let err = expect_error(&file);
    assert!(
        matches!(&err, GgufError::WrongType { key, expected: "string", found: "uint32" } if key == "general.architecture"),
        "{err}"
    );
}

#[test]
fn non_utf8_chat_template_rejected() {
    let mut file = GgufFile::default();
    file.set("tokenizer.chat_template", Value::Str(vec![b'{', 0xc3]));
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::WrongType { .. }), "{err}");
}

#[test]
fn bad_alignments_rejected() {
    for alignment in [0, 3, 48] {
        let mut file = GgufFile::default();
        file.set("general.alignment", Value::U32(alignment));
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::Alignment { value } if value == u64::from(alignment)),
            "alignment {alignment}: {err}"
        );
    }
}

#[test]
fn alignment_of_wrong_type_rejected() {
    let mut file = GgufFile::default();
    file.set("general.alignment", Value::U64(32));
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::WrongType { .. }), "{err}");
}

#[test]
fn bad_tensor_names_rejected() {
    for name in [Vec::new(), vec![b'x'; 64], vec![0xff]] {
        let mut file = GgufFile::default();
        file.tensors[1].name = name;
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::TensorName { index: 1, .. }),
            "{err}"
        );
    }
}

#[test]
fn longest_tensor_name_passes() {
    let mut file = GgufFile::default();
    file.tensors[1].name = vec![b'x'; 63];
    validate(&file).expect("63-byte name");
}

#[test]
fn duplicate_tensor_rejected() {
    let mut file = GgufFile::default();
    file.tensors[1].name = b"token_embd.weight".to_vec();
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::DuplicateTensor { .. }), "{err}");
}

#[test]
fn five_dimensions_rejected() {
    let mut file = GgufFile::default();
    file.tensors[0].shape = vec![1, 1, 1, 1, 1];
    let err = expect_error(&file);
    assert!(
        matches!(err, GgufError::TensorDims { dims: 5, .. }),
        "{err}"
    );
}

#[test]
fn scalar_tensor_passes() {
    let mut file = GgufFile::default();
    file.tensors[1].shape = Vec::new();
    validate(&file).expect("a tensor without dimensions is a scalar");
}

#[test]
fn overflowing_shape_rejected() {
    for shape in [vec![1 << 32, 1 << 32], vec![u64::MAX], vec![1 << 62, 4]] {
        let mut file = GgufFile {
            tensors: vec![Tensor {
                offset: Some(0),
                ..Tensor::f32("big", &[1])
            }],
            ..GgufFile::default()
        };
        file.tensors[0].shape = shape.clone();
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::TensorShape { .. }),
            "shape {shape:?}: {err}"
        );
    }
}

#[test]
fn unknown_tensor_types_rejected() {
    // 4 and 5 are types ggml removed; 43 is past the last one.
    for ggml_type in [4, 5, 31, 43, u32::MAX] {
        let mut file = GgufFile::default();
        file.tensors[0].ggml_type = ggml_type;
        let err = expect_error(&file);
        assert!(
            matches!(err, GgufError::TensorType { ggml_type: t, .. } if t == ggml_type),
            "{err}"
        );
    }
}

#[test]
fn partial_quantization_block_rejected() {
    let mut file = GgufFile::default();
    // Q4_0 packs 32 elements per block; a row of 8 is not a whole block.
    file.tensors[0].ggml_type = 2;
    let err = expect_error(&file);
    assert!(
        matches!(
            err,
            GgufError::TensorRow {
                row: 8,
                block: 32,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn misaligned_tensor_rejected() {
    let mut file = GgufFile::default();
    file.tensors[1].offset = Some(129);
    let err = expect_error(&file);
    assert!(
        matches!(err, GgufError::TensorMisaligned { offset: 129, .. }),
        "{err}"
    );
}

#[test]
fn overlapping_tensor_rejected() {
    let mut file = GgufFile::default();
    // The first tensor is 8 x 4 float32 = 128 bytes at offset 0.
    file.tensors[1].offset = Some(96);
    let err = expect_error(&file);
    assert!(
        matches!(
            err,
            GgufError::TensorOffset {
                offset: 96,
                expected: 128,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn tensor_past_end_of_file_rejected() {
    let file = GgufFile {
        truncate: 1,
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    match &err {
        GgufError::TensorOutOfBounds {
            name,
            end,
            file_len,
            ..
        } => {
            assert_eq!(name, "output_norm.weight");
            assert_eq!(*end, file_len + 1);
        }
        other => panic!("expected TensorOutOfBounds, got {other}"),
    }
    assert!(err.to_string().contains("output_norm.weight"), "{err}");
}

#[test]
fn huge_tensor_offset_rejected() {
    let file = GgufFile {
        tensors: vec![Tensor {
            offset: Some(u64::MAX - 31),
            ..Tensor::f32("far", &[8])
        }],
        ..GgufFile::default()
    };
    let err = expect_error(&file);
    assert!(matches!(err, GgufError::TensorOffset { .. }), "{err}");
}

#[test]
fn every_truncation_rejected() {
    let bytes = GgufFile::default().build();
    for len in 0..bytes.len() {
        let result = gguf::validate_bytes(&bytes[..len]);
        assert!(result.is_err(), "a file cut to {len} bytes passed");
    }
}

#[test]
fn file_error_names_path_and_fix() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF\x07\0\0\0").expect("write file");
    let err = gguf::validate_file(&path).expect_err("version 7");
    let message = err.to_string();
    assert!(message.contains("broken.gguf"), "{message}");
    assert!(message.contains("version 7"), "{message}");
    assert!(message.contains("replace it"), "{message}");
}
