//! Validates arbitrary bytes as a GGUF file, and checks that every header
//! that passes describes data inside the input.

#![no_main]

use appliance_agent::inference::gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = gguf::validate_bytes(data) else {
        return;
    };
    assert_eq!(header.file_len, data.len() as u64);
    assert!(header.version == 2 || header.version == 3);
    assert!(header.alignment.is_power_of_two());
    assert!(header.tensor_count == 0 || header.data_offset <= header.file_len);
});
