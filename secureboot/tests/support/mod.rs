//! Test support: a minimal PE image builder, an independent section reader and a hand-written
//! PCR 11 computation to check the library against.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod tools;

use sha2::Digest;

pub const FILE_ALIGNMENT: u32 = 0x200;
pub const SECTION_ALIGNMENT: u32 = 0x1000;
/// Offset of the PE signature in built images. The 64 bytes after the DOS header stay zero.
pub const PE_OFFSET: usize = 0x80;
pub const COFF_HEADER_SIZE: usize = 20;
pub const SECTION_HEADER_SIZE: usize = 40;

/// Offsets of fields inside one section header.
pub const SECTION_VIRTUAL_SIZE: usize = 8;
pub const SECTION_VIRTUAL_ADDRESS: usize = 12;
pub const SECTION_SIZE_OF_RAW_DATA: usize = 16;
pub const SECTION_POINTER_TO_RAW_DATA: usize = 20;

/// One section to place in a built image.
#[derive(Debug, Clone)]
pub struct SectionSpec {
    pub name: [u8; 8],
    pub data: Vec<u8>,
    pub virtual_size: u32,
}

/// Builds small PE32+ (or PE32) EFI images with the given sections, in the given file order.
///
/// Sections are laid out one after another: raw data aligned to 0x200 in the file, addresses
/// aligned to 0x1000 in memory. The padding after each section's data is 0xcc unless set
/// otherwise, so that a reader that hashes SizeOfRawData bytes instead of VirtualSize bytes
/// gets a different digest.
#[derive(Debug, Clone)]
pub struct PeBuilder {
    sections: Vec<SectionSpec>,
    pe32: bool,
    padding: u8,
    spare_section_headers: usize,
}

impl Default for PeBuilder {
    fn default() -> Self {
        Self {
            sections: Vec::new(),
            pe32: false,
            padding: 0xcc,
            spare_section_headers: 0,
        }
    }
}

/// A built image and the offsets a test needs to corrupt it.
#[derive(Debug, Clone)]
pub struct BuiltPe {
    pub bytes: Vec<u8>,
    pub optional_header_offset: usize,
    pub section_table_offset: usize,
}

impl PeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Switches to a PE32 optional header (magic 0x10b) instead of PE32+.
    pub fn pe32(mut self) -> Self {
        self.pe32 = true;
        self
    }

    /// Sets the byte that fills each raw block after the section data. Linkers write zeros,
    /// and ukify 257 fails to decode a stub's .sbat section padded with anything else.
    pub fn padding(mut self, byte: u8) -> Self {
        self.padding = byte;
        self
    }

    /// Leaves room in the headers for `count` more section headers, which ukify needs to
    /// append sections to a stub.
    pub fn spare_section_headers(mut self, count: usize) -> Self {
        self.spare_section_headers = count;
        self
    }

    /// Adds a section whose VirtualSize is the data length.
    pub fn section(self, name: &str, data: &[u8]) -> Self {
        self.section_with_virtual_size(name.as_bytes(), data, to_u32(data.len()))
    }

    /// Adds a section with a raw 8-byte-or-shorter name and an explicit VirtualSize.
    pub fn section_with_virtual_size(
        mut self,
        name: &[u8],
        data: &[u8],
        virtual_size: u32,
    ) -> Self {
        assert!(name.len() <= 8, "PE section names have at most 8 bytes");
        let mut raw_name = [0u8; 8];
        raw_name[..name.len()].copy_from_slice(name);
        self.sections.push(SectionSpec {
            name: raw_name,
            data: data.to_vec(),
            virtual_size,
        });
        self
    }

    pub fn build(&self) -> BuiltPe {
        let optional_header_size: u16 = if self.pe32 { 224 } else { 240 };
        let optional_header_offset = PE_OFFSET + 4 + COFF_HEADER_SIZE;
        let section_table_offset = optional_header_offset + usize::from(optional_header_size);
        let header_slots = self.sections.len() + self.spare_section_headers;
        let headers_end = section_table_offset + SECTION_HEADER_SIZE * header_slots;
        let size_of_headers = align(to_u32(headers_end), FILE_ALIGNMENT);

        // Lay out the sections first, so the headers can state SizeOfImage.
        let mut placements = Vec::new();
        let mut file_cursor = size_of_headers;
        let mut memory_cursor = SECTION_ALIGNMENT;
        for spec in &self.sections {
            let raw_size = align(to_u32(spec.data.len()), FILE_ALIGNMENT);
            let pointer = if raw_size == 0 { 0 } else { file_cursor };
            placements.push((memory_cursor, raw_size, pointer));
            file_cursor += raw_size;
            memory_cursor = align(memory_cursor + spec.virtual_size.max(1), SECTION_ALIGNMENT);
        }
        let size_of_image = memory_cursor;

        let mut bytes = vec![0u8; file_cursor as usize];
        bytes[0..2].copy_from_slice(b"MZ");
        put_u32(&mut bytes, 0x3c, to_u32(PE_OFFSET));
        bytes[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(b"PE\0\0");

        let coff = PE_OFFSET + 4;
        let machine: u16 = if self.pe32 { 0x014c } else { 0x8664 };
        put_u16(&mut bytes, coff, machine);
        let section_count = u16::try_from(self.sections.len()).expect("at most 65535 sections");
        put_u16(&mut bytes, coff + 2, section_count);
        put_u16(&mut bytes, coff + 16, optional_header_size);
        // IMAGE_FILE_EXECUTABLE_IMAGE, plus LARGE_ADDRESS_AWARE or 32BIT_MACHINE.
        let characteristics: u16 = if self.pe32 { 0x0102 } else { 0x0022 };
        put_u16(&mut bytes, coff + 18, characteristics);

        // pefile, and so ukify, rejects an entry point outside the sections.
        let entry_point = placements.first().map_or(0, |(address, _, _)| *address);
        self.write_optional_header(
            &mut bytes,
            optional_header_offset,
            entry_point,
            size_of_image,
            size_of_headers,
        );

        for (index, (spec, (address, raw_size, pointer))) in
            self.sections.iter().zip(&placements).enumerate()
        {
            let header = section_table_offset + index * SECTION_HEADER_SIZE;
            bytes[header..header + 8].copy_from_slice(&spec.name);
            put_u32(&mut bytes, header + SECTION_VIRTUAL_SIZE, spec.virtual_size);
            put_u32(&mut bytes, header + SECTION_VIRTUAL_ADDRESS, *address);
            put_u32(&mut bytes, header + SECTION_SIZE_OF_RAW_DATA, *raw_size);
            put_u32(&mut bytes, header + SECTION_POINTER_TO_RAW_DATA, *pointer);
            // IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
            put_u32(&mut bytes, header + 36, 0x4000_0040);

            let start = *pointer as usize;
            let end = start + *raw_size as usize;
            bytes[start..end].fill(self.padding);
            bytes[start..start + spec.data.len()].copy_from_slice(&spec.data);
        }

        BuiltPe {
            bytes,
            optional_header_offset,
            section_table_offset,
        }
    }

    fn write_optional_header(
        &self,
        bytes: &mut [u8],
        offset: usize,
        entry_point: u32,
        size_of_image: u32,
        size_of_headers: u32,
    ) {
        put_u16(bytes, offset, if self.pe32 { 0x10b } else { 0x20b });
        put_u32(bytes, offset + 16, entry_point);
        // PE32 has BaseOfData and a 4-byte ImageBase where PE32+ has an 8-byte ImageBase, so
        // the fields after ImageBase sit at the same offsets in both formats.
        put_u32(bytes, offset + 32, SECTION_ALIGNMENT);
        put_u32(bytes, offset + 36, FILE_ALIGNMENT);
        put_u32(bytes, offset + 56, size_of_image);
        put_u32(bytes, offset + 60, size_of_headers);
        // IMAGE_SUBSYSTEM_EFI_APPLICATION
        put_u16(bytes, offset + 68, 10);
        let directory_count_offset = if self.pe32 { offset + 92 } else { offset + 108 };
        put_u32(bytes, directory_count_offset, 16);
    }
}

impl BuiltPe {
    /// Returns the file offset of section header `index`.
    pub fn section_header(&self, index: usize) -> usize {
        self.section_table_offset + index * SECTION_HEADER_SIZE
    }

    /// Overwrites a field of section header `index`.
    pub fn set_section_field(&mut self, index: usize, field: usize, value: u32) {
        let offset = self.section_header(index) + field;
        put_u32(&mut self.bytes, offset, value);
    }
}

pub fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

pub fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("test images are smaller than 4 GiB")
}

fn align(value: u32, alignment: u32) -> u32 {
    value.div_ceil(alignment) * alignment
}

/// Reads every section's loaded content (VirtualSize bytes, zero-filled past the raw data)
/// without the library, for feeding systemd-measure.
pub fn loaded_sections(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let read_u16 = |offset: usize| u16::from_le_bytes([bytes[offset], bytes[offset + 1]]);
    let read_u32 = |offset: usize| {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize
    };

    let pe = read_u32(0x3c);
    let count = usize::from(read_u16(pe + 6));
    let optional_header_size = usize::from(read_u16(pe + 20));
    let table = pe + 4 + COFF_HEADER_SIZE + optional_header_size;

    (0..count)
        .map(|index| {
            let header = table + index * SECTION_HEADER_SIZE;
            let raw_name = &bytes[header..header + 8];
            let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
            let name = String::from_utf8_lossy(&raw_name[..name_len]).into_owned();
            let virtual_size = read_u32(header + SECTION_VIRTUAL_SIZE);
            let raw_size = read_u32(header + SECTION_SIZE_OF_RAW_DATA);
            let pointer = read_u32(header + SECTION_POINTER_TO_RAW_DATA);

            let copied = virtual_size.min(raw_size);
            let mut content = bytes[pointer..pointer + copied].to_vec();
            content.resize(virtual_size, 0);
            (name, content)
        })
        .collect()
}

/// Computes PCR 11 in hex without the library.
///
/// For each (name, content) pair in the given order, the PCR is extended with the digest of the
/// name plus a NUL byte and then with the digest of the content. Each phase word follows.
pub fn hand_pcr11<D: Digest>(sections: &[(&str, &[u8])], phase_words: &[&str]) -> String {
    let mut value = vec![0u8; <D as Digest>::output_size()];
    let mut extend = |event: &[u8]| {
        let event_digest = D::digest(event);
        let mut hasher = D::new();
        hasher.update(&value);
        hasher.update(&event_digest);
        value = hasher.finalize().to_vec();
    };

    for (name, content) in sections {
        let mut name_event = name.as_bytes().to_vec();
        name_event.push(0);
        extend(&name_event);
        extend(content);
    }
    for word in phase_words {
        extend(word.as_bytes());
    }

    value.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Splits a phase path into its words, for `hand_pcr11`.
pub fn words(path: &str) -> Vec<&str> {
    path.split(':').collect()
}
