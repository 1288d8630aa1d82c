//! PE/COFF parsing and layout checks for UKIs.
//!
//! goblin parses the headers and the section table. This module checks the bounds goblin needs
//! first, so that a truncated or foreign file gets an error that names the structure, and then
//! checks the section layout that PCR prediction relies on.

use std::ops::Range;
use std::path::Path;

use goblin::pe::header::Header;
use goblin::pe::section_table::SectionTable;

use crate::error::Error;

const DOS_HEADER_SIZE: u64 = 64;
const DOS_MAGIC: [u8; 2] = *b"MZ";
/// Offset of e_lfanew, the file offset of the PE signature.
const PE_POINTER_OFFSET: u64 = 0x3c;
const PE_MAGIC: [u8; 4] = *b"PE\0\0";
const COFF_HEADER_SIZE: u64 = 20;
const SECTION_HEADER_SIZE: u64 = 40;
const DATA_DIRECTORY_SIZE: u64 = 8;
const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// Standard plus Windows-specific optional header fields of PE32, before the data directories.
const PE32_FIXED_FIELDS_SIZE: u64 = 96;
/// Standard plus Windows-specific optional header fields of PE32+, before the data directories.
const PE32_PLUS_FIXED_FIELDS_SIZE: u64 = 112;
/// Maximum NumberOfRvaAndSizes that goblin accepts, as defined by the PE format.
const MAX_DATA_DIRECTORIES: u64 = 16;

/// A parsed PE image whose section table passed the layout checks.
#[derive(Debug)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    size_of_image: u32,
    sections: Vec<Section>,
}

/// One entry of the PE section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Position in the section table, counted from 0.
    pub index: usize,
    /// The 8-byte name field. Names shorter than 8 bytes are padded with NUL bytes.
    pub raw_name: [u8; 8],
    /// VirtualAddress: the section's address relative to the image base once loaded.
    pub virtual_address: u32,
    /// VirtualSize: the section's size once loaded.
    pub virtual_size: u32,
    /// PointerToRawData: the file offset of the section's data.
    pub pointer_to_raw_data: u32,
    /// SizeOfRawData: the data's size in the file, rounded up to FileAlignment.
    pub size_of_raw_data: u32,
    /// Characteristics flags (IMAGE_SCN_*).
    pub characteristics: u32,
}

impl Section {
    fn from_goblin(index: usize, table: &SectionTable) -> Self {
        Self {
            index,
            raw_name: table.name,
            virtual_address: table.virtual_address,
            virtual_size: table.virtual_size,
            pointer_to_raw_data: table.pointer_to_raw_data,
            size_of_raw_data: table.size_of_raw_data,
            characteristics: table.characteristics,
        }
    }

    /// Returns the name bytes up to the first NUL byte.
    ///
    /// systemd-stub compares names the same way, so ".linux\0X" matches ".linux".
    pub fn name_bytes(&self) -> &[u8] {
        let end = self
            .raw_name
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(self.raw_name.len());
        &self.raw_name[..end]
    }

    /// Returns the name for messages, with non-printable bytes escaped.
    pub fn name(&self) -> String {
        self.name_bytes().escape_ascii().to_string()
    }

    /// Returns the number of bytes that the loader copies from the file.
    ///
    /// SizeOfRawData is rounded up to FileAlignment, so the loaded data is the smaller of it and
    /// VirtualSize.
    pub fn file_data_len(&self) -> u32 {
        self.virtual_size.min(self.size_of_raw_data)
    }

    /// Returns the number of zero bytes that the loader appends after the file data.
    pub fn zero_fill_len(&self) -> u32 {
        self.virtual_size - self.file_data_len()
    }

    fn file_range(&self) -> Range<u64> {
        let start = u64::from(self.pointer_to_raw_data);
        start..start + u64::from(self.size_of_raw_data)
    }

    fn memory_range(&self) -> Range<u64> {
        let start = u64::from(self.virtual_address);
        start..start + u64::from(self.virtual_size)
    }
}

/// The loaded content of a section: bytes from the file followed by zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionData<'a> {
    /// Bytes copied from the file.
    pub file_data: &'a [u8],
    /// Number of zero bytes after them, up to VirtualSize.
    pub zero_fill: u64,
}

impl SectionData<'_> {
    /// Returns the total length in bytes, which equals the section's VirtualSize.
    pub fn len(&self) -> u64 {
        self.file_data.len() as u64 + self.zero_fill
    }

    /// Returns whether the section is empty once loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the content as one buffer, with the zero fill written out.
    pub fn to_vec(&self) -> Vec<u8> {
        let zero_fill = usize::try_from(self.zero_fill).unwrap_or(usize::MAX);
        let mut content = Vec::with_capacity(self.file_data.len().saturating_add(zero_fill));
        content.extend_from_slice(self.file_data);
        content.resize(self.file_data.len().saturating_add(zero_fill), 0);
        content
    }
}

/// Reads a whole image file into memory.
pub fn read_image(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl<'a> PeImage<'a> {
    /// Parses the headers and section table and checks the section layout.
    ///
    /// Rejects truncated headers, a wrong DOS, PE or optional header magic, sections whose raw
    /// data extends past the end of the file, sections that overlap in the file or in memory,
    /// and sections that end past SizeOfImage. Checks apply to every section, measured or not.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let file_len = bytes.len() as u64;
        let layout = check_header_bounds(bytes)?;

        let header = Header::parse(bytes).map_err(|source| Error::Parse {
            structure: "PE headers",
            offset: 0,
            source,
        })?;
        let Some(optional_header) = header.optional_header else {
            return Err(Error::MissingOptionalHeader);
        };
        let fixed_fields_size = if optional_header.standard_fields.magic == PE32_MAGIC {
            PE32_FIXED_FIELDS_SIZE
        } else {
            PE32_PLUS_FIXED_FIELDS_SIZE
        };
        // goblin reads the data directories without looking at SizeOfOptionalHeader.
        let directories = u64::from(optional_header.windows_fields.number_of_rva_and_sizes);
        let needed = fixed_fields_size + directories * DATA_DIRECTORY_SIZE;
        if needed > u64::from(layout.optional_header_size) {
            return Err(Error::OptionalHeaderSize {
                declared: layout.optional_header_size,
                needed,
            });
        }

        // The section table lies inside the file, so its offset fits in usize.
        let mut table_cursor = usize::try_from(layout.section_table_offset).unwrap_or(usize::MAX);
        let tables = header
            .coff_header
            .sections(bytes, &mut table_cursor)
            .map_err(|source| Error::Parse {
                structure: "section table",
                offset: layout.section_table_offset,
                source,
            })?;
        let sections: Vec<Section> = tables
            .iter()
            .enumerate()
            .map(|(index, table)| Section::from_goblin(index, table))
            .collect();

        let size_of_image = optional_header.windows_fields.size_of_image;
        check_sections(&sections, file_len, size_of_image)?;

        Ok(Self {
            bytes,
            size_of_image,
            sections,
        })
    }

    /// Returns the section table in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Returns SizeOfImage: the size of the loaded image in bytes.
    pub fn size_of_image(&self) -> u32 {
        self.size_of_image
    }

    /// Returns the loaded content of a section of this image.
    ///
    /// `section` must come from [`Self::sections`] of the same image. `parse` checked that its
    /// raw data lies inside the file, so an out-of-range section from another image yields an
    /// empty slice instead of a panic.
    pub fn section_data(&self, section: &Section) -> SectionData<'a> {
        let start = usize::try_from(section.pointer_to_raw_data).unwrap_or(usize::MAX);
        let len = usize::try_from(section.file_data_len()).unwrap_or(usize::MAX);
        let file_data = start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .unwrap_or_default();
        SectionData {
            file_data,
            zero_fill: u64::from(section.zero_fill_len()),
        }
    }
}

/// Header fields read by `check_header_bounds`.
struct HeaderLayout {
    optional_header_size: u16,
    section_table_offset: u64,
}

/// Checks the magic numbers and that the headers and section table lie inside the file.
fn check_header_bounds(bytes: &[u8]) -> Result<HeaderLayout, Error> {
    let file_len = bytes.len() as u64;
    // Checking the magic first gives a short file of another type the clearer error.
    check_in_file("DOS magic", 0, DOS_MAGIC.len() as u64, file_len)?;
    let dos_magic = read_array::<2>(bytes, 0);
    if dos_magic != DOS_MAGIC {
        return Err(Error::DosMagic { found: dos_magic });
    }
    check_in_file("DOS header", 0, DOS_HEADER_SIZE, file_len)?;

    let pe_offset = read_u32(bytes, PE_POINTER_OFFSET);
    if u64::from(pe_offset) < DOS_HEADER_SIZE {
        return Err(Error::PeHeaderOffset { offset: pe_offset });
    }
    let pe_offset = u64::from(pe_offset);
    check_in_file(
        "PE signature and COFF header",
        pe_offset,
        4 + COFF_HEADER_SIZE,
        file_len,
    )?;
    let pe_signature = read_array::<4>(bytes, pe_offset);
    if pe_signature != PE_MAGIC {
        return Err(Error::PeMagic {
            offset: pe_offset,
            found: pe_signature,
        });
    }

    let coff_offset = pe_offset + 4;
    let number_of_sections = read_u16(bytes, coff_offset + 2);
    let optional_header_size = read_u16(bytes, coff_offset + 16);
    let optional_header_offset = coff_offset + COFF_HEADER_SIZE;
    check_optional_header(bytes, optional_header_offset, optional_header_size)?;

    let section_table_offset = optional_header_offset + u64::from(optional_header_size);
    check_in_file(
        "section table",
        section_table_offset,
        u64::from(number_of_sections) * SECTION_HEADER_SIZE,
        file_len,
    )?;
    Ok(HeaderLayout {
        optional_header_size,
        section_table_offset,
    })
}

fn check_in_file(
    structure: &'static str,
    start: u64,
    len: u64,
    file_len: u64,
) -> Result<(), Error> {
    let end = start + len;
    if end > file_len {
        return Err(Error::Truncated {
            structure,
            start,
            end,
            file_len,
        });
    }
    Ok(())
}

/// Checks the optional header's extent and magic before goblin parses it.
fn check_optional_header(bytes: &[u8], offset: u64, declared_size: u16) -> Result<(), Error> {
    if declared_size == 0 {
        return Err(Error::MissingOptionalHeader);
    }
    check_in_file(
        "optional header",
        offset,
        u64::from(declared_size),
        bytes.len() as u64,
    )?;
    if declared_size < 2 {
        return Err(Error::OptionalHeaderSize {
            declared: declared_size,
            needed: PE32_FIXED_FIELDS_SIZE,
        });
    }

    let magic = read_u16(bytes, offset);
    let fixed_fields_size = match magic {
        PE32_MAGIC => PE32_FIXED_FIELDS_SIZE,
        PE32_PLUS_MAGIC => PE32_PLUS_FIXED_FIELDS_SIZE,
        found => return Err(Error::OptionalHeaderMagic { offset, found }),
    };
    if fixed_fields_size > u64::from(declared_size) {
        return Err(Error::OptionalHeaderSize {
            declared: declared_size,
            needed: fixed_fields_size,
        });
    }

    // NumberOfRvaAndSizes is the last fixed field. goblin rejects values above 16 with a
    // message that does not name the field, so check it here.
    let directories = u64::from(read_u32(bytes, offset + fixed_fields_size - 4));
    if directories > MAX_DATA_DIRECTORIES {
        return Err(Error::OptionalHeaderSize {
            declared: declared_size,
            needed: fixed_fields_size
                .saturating_add(directories.saturating_mul(DATA_DIRECTORY_SIZE)),
        });
    }
    Ok(())
}

/// Checks that each section lies inside the file and SizeOfImage and that no two overlap.
fn check_sections(sections: &[Section], file_len: u64, size_of_image: u32) -> Result<(), Error> {
    for section in sections {
        let file_range = section.file_range();
        if !file_range.is_empty() && file_range.end > file_len {
            return Err(Error::SectionPastEnd {
                name: section.name(),
                index: section.index,
                start: file_range.start,
                end: file_range.end,
                file_len,
            });
        }
        if section.memory_range().end > u64::from(size_of_image) {
            return Err(Error::VirtualSizeTooLarge {
                name: section.name(),
                index: section.index,
                virtual_address: section.virtual_address,
                virtual_size: section.virtual_size,
                size_of_image,
            });
        }
    }

    if let Some((first, second, overlap)) = find_overlap(sections, Section::file_range) {
        return Err(Error::SectionsOverlapInFile {
            first: first.name(),
            first_index: first.index,
            second: second.name(),
            second_index: second.index,
            overlap_start: overlap.start,
            overlap_end: overlap.end,
        });
    }
    if let Some((first, second, overlap)) = find_overlap(sections, Section::memory_range) {
        return Err(Error::SectionsOverlapInMemory {
            first: first.name(),
            first_index: first.index,
            second: second.name(),
            second_index: second.index,
            overlap_start: overlap.start,
            overlap_end: overlap.end,
        });
    }
    Ok(())
}

/// Returns the first pair of sections whose non-empty ranges overlap, ordered by start.
fn find_overlap(
    sections: &[Section],
    range_of: fn(&Section) -> Range<u64>,
) -> Option<(&Section, &Section, Range<u64>)> {
    let mut ranged: Vec<(Range<u64>, &Section)> = sections
        .iter()
        .map(|section| (range_of(section), section))
        .filter(|(range, _)| !range.is_empty())
        .collect();
    ranged.sort_by_key(|(range, section)| (range.start, section.index));

    // With ranges sorted by start, any overlap implies one between neighbors: if a later
    // range starts before an earlier one ends, so does every range that starts in between.
    ranged.windows(2).find_map(|pair| {
        let (previous, next) = (&pair[0], &pair[1]);
        (next.0.start < previous.0.end).then(|| {
            let overlap = next.0.start..next.0.end.min(previous.0.end);
            (previous.1, next.1, overlap)
        })
    })
}

// The readers below take offsets that the caller has bounds-checked with `check_in_file`.

fn read_array<const N: usize>(bytes: &[u8], offset: u64) -> [u8; N] {
    let mut array = [0; N];
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if let Some(source) = start.checked_add(N).and_then(|end| bytes.get(start..end)) {
        array.copy_from_slice(source);
    }
    array
}

fn read_u16(bytes: &[u8], offset: u64) -> u16 {
    u16::from_le_bytes(read_array(bytes, offset))
}

fn read_u32(bytes: &[u8], offset: u64) -> u32 {
    u32::from_le_bytes(read_array(bytes, offset))
}
