//! The error type of this crate.

use std::fmt;
use std::path::PathBuf;

/// Errors from reading a UKI, checking its layout and predicting PCR values.
///
/// Offsets and sizes are in bytes. Section indices count entries of the PE section table from 0,
/// as `objdump -h` numbers them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// File that was opened.
        path: PathBuf,
        /// Error from the operating system.
        #[source]
        source: std::io::Error,
    },

    /// A header or table ends past the end of the file.
    #[error(
        "the {structure} needs bytes {start:#x}..{end:#x}, but the file has only {file_len:#x} \
         bytes; the file is truncated or not a PE image, so copy or rebuild the UKI"
    )]
    Truncated {
        /// Header or table that does not fit.
        structure: &'static str,
        /// File offset where the structure starts.
        start: u64,
        /// File offset where the structure ends (exclusive).
        end: u64,
        /// Length of the file.
        file_len: u64,
    },

    /// The file does not start with the DOS magic "MZ".
    #[error(
        "invalid DOS magic {found:02x?} at offset 0x0, expected \"MZ\" (4d 5a); the file is \
         not a PE/EFI image"
    )]
    DosMagic {
        /// The first two bytes of the file.
        found: [u8; 2],
    },

    /// The DOS header points at a PE header inside the DOS header itself.
    #[error(
        "the DOS header field e_lfanew points to offset {offset:#x}, inside the 64-byte DOS \
         header; the file is not a valid PE image"
    )]
    PeHeaderOffset {
        /// Value of e_lfanew.
        offset: u32,
    },

    /// The PE signature is not "PE\0\0".
    #[error(
        "invalid PE signature {found:02x?} at offset {offset:#x}, expected \"PE\\0\\0\" \
         (50 45 00 00); the file is not a PE/EFI image"
    )]
    PeMagic {
        /// File offset of the signature.
        offset: u64,
        /// The four bytes found there.
        found: [u8; 4],
    },

    /// The COFF header declares no optional header, so the image has no SizeOfImage.
    #[error(
        "the COFF header declares an optional header of 0 bytes; a UKI is a PE image and \
         needs one, so the file is an object file or corrupt"
    )]
    MissingOptionalHeader,

    /// The optional header magic is neither PE32 nor PE32+.
    #[error(
        "invalid optional header magic {found:#06x} at offset {offset:#x}, expected 0x010b \
         (PE32) or 0x020b (PE32+)"
    )]
    OptionalHeaderMagic {
        /// File offset of the magic.
        offset: u64,
        /// The value found there.
        found: u16,
    },

    /// SizeOfOptionalHeader is too small for the fields and data directories it must hold.
    #[error(
        "the COFF header declares an optional header of {declared} bytes, but its fields and \
         data directories need {needed} bytes; the headers are corrupt"
    )]
    OptionalHeaderSize {
        /// SizeOfOptionalHeader from the COFF header.
        declared: u16,
        /// Bytes that the magic and NumberOfRvaAndSizes require.
        needed: u64,
    },

    /// goblin rejected a structure that passed this crate's own bounds checks.
    #[error("failed to parse the {structure} at offset {offset:#x}")]
    Parse {
        /// Header or table that goblin was parsing.
        structure: &'static str,
        /// File offset of the structure.
        offset: u64,
        /// Error from goblin.
        #[source]
        source: goblin::error::Error,
    },

    /// A section's raw data extends past the end of the file.
    #[error(
        "section {name} (index {index}) has raw data at file offsets {start:#x}..{end:#x}, \
         past the end of the file ({file_len:#x} bytes); the UKI is truncated or its section \
         table is corrupt, so copy or rebuild it"
    )]
    SectionPastEnd {
        /// Section name, with non-printable bytes escaped.
        name: String,
        /// Index in the section table.
        index: usize,
        /// PointerToRawData.
        start: u64,
        /// PointerToRawData + SizeOfRawData.
        end: u64,
        /// Length of the file.
        file_len: u64,
    },

    /// Two sections share bytes of the file.
    #[error(
        "sections {first} (index {first_index}) and {second} (index {second_index}) overlap \
         in the file at offsets {overlap_start:#x}..{overlap_end:#x}; the section table is \
         corrupt or crafted, so rebuild the UKI"
    )]
    SectionsOverlapInFile {
        /// Name of the section that starts first.
        first: String,
        /// Its index in the section table.
        first_index: usize,
        /// Name of the other section.
        second: String,
        /// Its index in the section table.
        second_index: usize,
        /// First shared file offset.
        overlap_start: u64,
        /// End of the shared range (exclusive).
        overlap_end: u64,
    },

    /// Two sections share addresses of the loaded image.
    #[error(
        "sections {first} (index {first_index}) and {second} (index {second_index}) overlap \
         in memory at RVAs {overlap_start:#x}..{overlap_end:#x}; the section table is corrupt \
         or crafted, so rebuild the UKI"
    )]
    SectionsOverlapInMemory {
        /// Name of the section that starts first.
        first: String,
        /// Its index in the section table.
        first_index: usize,
        /// Name of the other section.
        second: String,
        /// Its index in the section table.
        second_index: usize,
        /// First shared relative virtual address.
        overlap_start: u64,
        /// End of the shared range (exclusive).
        overlap_end: u64,
    },

    /// A section ends past SizeOfImage, so a PE loader cannot map it.
    #[error(
        "section {name} (index {index}) has VirtualSize {virtual_size:#x} at RVA \
         {virtual_address:#x}, which ends past SizeOfImage {size_of_image:#x}; the VirtualSize \
         is corrupt, so rebuild the UKI"
    )]
    VirtualSizeTooLarge {
        /// Section name, with non-printable bytes escaped.
        name: String,
        /// Index in the section table.
        index: usize,
        /// VirtualAddress of the section.
        virtual_address: u32,
        /// VirtualSize of the section.
        virtual_size: u32,
        /// SizeOfImage from the optional header.
        size_of_image: u32,
    },

    /// A measured UKI section occurs twice in the base sections or in one profile.
    #[error(
        "section {name} occurs twice in the {scope} (indices {first_index} and {second_index}); \
         systemd-stub measures only the first, while other tools may use the second, so remove \
         the duplicate before predicting PCR 11"
    )]
    DuplicateSection {
        /// Section name.
        name: &'static str,
        /// The part of the section table that contains both.
        scope: ProfileScope,
        /// Index of the first occurrence.
        first_index: usize,
        /// Index of the second occurrence.
        second_index: usize,
    },

    /// The UKI contains a section whose measurement depends on the machine it boots on.
    #[error(
        "section {name} (index {index}) is measured only if it matches the device tree or \
         hardware IDs of the machine at boot, so PCR 11 cannot be predicted from the file alone"
    )]
    UnpredictableSection {
        /// Section name.
        name: &'static str,
        /// Index in the section table.
        index: usize,
    },

    /// Neither the selected profile nor the base sections contain a non-empty .linux section.
    #[error(
        "no non-empty .linux section in profile {profile} or the base sections, so the file is \
         not a bootable UKI (an add-on or a plain EFI binary?)"
    )]
    MissingLinux {
        /// Profile that was selected.
        profile: u32,
    },

    /// The requested profile does not exist.
    #[error(
        "profile {requested} not found: the UKI has {available} .profile section(s); profile 0 \
         is also valid for a UKI without .profile sections"
    )]
    ProfileNotFound {
        /// Requested profile number.
        requested: u32,
        /// Number of .profile sections in the UKI.
        available: usize,
    },

    /// The PCR bank name is not one this crate computes.
    #[error("unknown PCR bank {0:?}, expected sha1, sha256, sha384 or sha512")]
    UnknownBank(String),

    /// A phase path contains a word that systemd-pcrphase does not measure.
    #[error(
        "invalid phase path {path:?}: {word:?} is not a boot phase, expected colon-separated \
         words out of enter-initrd, leave-initrd, sysinit, ready, shutdown and final"
    )]
    UnknownPhase {
        /// The phase path as given.
        path: String,
        /// The word that is not a boot phase.
        word: String,
    },

    /// A phase path contains no words.
    #[error(
        "invalid phase path {0:?}: it contains no phase words, expected e.g. \
         enter-initrd:leave-initrd"
    )]
    EmptyPhasePath(String),
}

/// The part of a multi-profile UKI's section table that a section belongs to.
///
/// The base sections come before the first `.profile` section. Profile N starts at the
/// (N+1)-th `.profile` section and ends before the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileScope {
    /// Sections before the first `.profile` section, shared by all profiles.
    Base,
    /// Sections of one profile, by number.
    Profile(u32),
}

impl fmt::Display for ProfileScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Base => f.write_str("base sections"),
            Self::Profile(number) => write!(f, "profile {number}"),
        }
    }
}
