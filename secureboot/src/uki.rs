//! UKI sections and the selection of the sections that systemd-stub measures.
//!
//! The rules follow systemd-stub in systemd 257:
//!
//! - A UKI may contain profiles. The base sections come before the first `.profile` section.
//!   Profile N starts at the (N+1)-th `.profile` section and ends before the next one. Booting
//!   profile N uses the base sections, with the profile's own sections replacing base sections
//!   of the same name. Without `.profile` sections, profile 0 is the base alone.
//! - Within the base or a profile, systemd-stub uses the first section of each name. This crate
//!   rejects a second one instead, because other tools (ukify 257, for one) use the last.
//! - Sections with VirtualSize 0 count as absent.
//! - The selected sections are measured in the order of [`UnifiedSection::ALL`], whatever their
//!   order in the file. `.pcrsig` is not measured, because it signs the measurement result.

use std::fmt;

use crate::error::{Error, ProfileScope};
use crate::pe::{PeImage, Section, SectionData};

/// A PE section with a defined meaning in a UKI.
///
/// The variant order is the order in which systemd 257's systemd-stub measures sections into
/// PCR 11 (`UnifiedSection` in src/fundamental/uki.h). systemd 258 appends `.efifw`, which
/// systemd 257 ignores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnifiedSection {
    /// `.linux`: the kernel image.
    Linux,
    /// `.osrel`: the os-release file.
    Osrel,
    /// `.cmdline`: the kernel command line.
    Cmdline,
    /// `.initrd`: the initrd.
    Initrd,
    /// `.ucode`: a microcode initrd, loaded before `.initrd`.
    Ucode,
    /// `.splash`: a BMP image shown during boot.
    Splash,
    /// `.dtb`: a device tree.
    Dtb,
    /// `.uname`: the kernel release, as `uname -r` prints it.
    Uname,
    /// `.sbat`: SBAT revocation metadata.
    Sbat,
    /// `.pcrsig`: signatures of expected PCR 11 values. Not measured.
    Pcrsig,
    /// `.pcrpkey`: the public key that verifies `.pcrsig`.
    Pcrpkey,
    /// `.profile`: the description of a profile.
    Profile,
    /// `.dtbauto`: a device tree that systemd-stub uses only if it matches the machine.
    Dtbauto,
    /// `.hwids`: hardware IDs that select a `.dtbauto` section.
    ///
    /// NOTE: systemd-measure 257 measures its `--hwids=` file under the name `.dtbauto` and its
    /// `--dtbauto=` file under `.hwids`. This crate measures `.hwids` under its own name, last,
    /// as systemd-stub's section list orders it, so the two differ for UKIs with `.hwids`.
    Hwids,
}

impl UnifiedSection {
    /// All UKI sections that systemd 257 defines, in measurement order.
    pub const ALL: [Self; 14] = [
        Self::Linux,
        Self::Osrel,
        Self::Cmdline,
        Self::Initrd,
        Self::Ucode,
        Self::Splash,
        Self::Dtb,
        Self::Uname,
        Self::Sbat,
        Self::Pcrsig,
        Self::Pcrpkey,
        Self::Profile,
        Self::Dtbauto,
        Self::Hwids,
    ];

    /// Returns the section name, with the leading dot.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Linux => ".linux",
            Self::Osrel => ".osrel",
            Self::Cmdline => ".cmdline",
            Self::Initrd => ".initrd",
            Self::Ucode => ".ucode",
            Self::Splash => ".splash",
            Self::Dtb => ".dtb",
            Self::Uname => ".uname",
            Self::Sbat => ".sbat",
            Self::Pcrsig => ".pcrsig",
            Self::Pcrpkey => ".pcrpkey",
            Self::Profile => ".profile",
            Self::Dtbauto => ".dtbauto",
            Self::Hwids => ".hwids",
        }
    }

    /// Returns whether systemd-stub measures this section into PCR 11 when present.
    pub const fn is_measured(self) -> bool {
        !matches!(self, Self::Pcrsig)
    }

    /// Finds the UKI section with this name, given without trailing NUL bytes.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|section| section.name().as_bytes() == name)
    }

    /// Returns the event that systemd-stub measures before the content: the name with its
    /// terminating NUL byte.
    pub fn name_event(self) -> Vec<u8> {
        let mut event = self.name().as_bytes().to_vec();
        event.push(0);
        event
    }
}

impl fmt::Display for UnifiedSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A section that systemd-stub measures into PCR 11 when it boots the selected profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredSection<'a> {
    /// The UKI section type.
    pub kind: UnifiedSection,
    /// The section table entry.
    pub section: &'a Section,
    /// Whether the entry belongs to the base sections or to the selected profile.
    pub scope: ProfileScope,
    /// The loaded content, which is what gets hashed.
    pub data: SectionData<'a>,
}

/// A parsed UKI.
#[derive(Debug)]
pub struct Uki<'a> {
    image: PeImage<'a>,
}

impl<'a> Uki<'a> {
    /// Parses a UKI and checks its PE layout (see [`PeImage::parse`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        PeImage::parse(bytes).map(|image| Self { image })
    }

    /// Returns the underlying PE image.
    pub fn image(&self) -> &PeImage<'a> {
        &self.image
    }

    /// Returns the section table in file order.
    pub fn sections(&self) -> &[Section] {
        self.image.sections()
    }

    /// Returns the number of profiles: the number of `.profile` sections.
    pub fn profile_count(&self) -> usize {
        self.sections()
            .iter()
            .filter(|section| is_kind(section, UnifiedSection::Profile))
            .count()
    }

    /// Returns the sections that systemd-stub measures when it boots `profile`, in
    /// measurement order.
    ///
    /// Profile 0 is what systemd-stub boots when the boot loader selects none. Fails if the
    /// profile does not exist, if the base or the profile contains a measured section twice,
    /// if a `.dtbauto` section would be considered, or if no non-empty `.linux` section is
    /// selected.
    pub fn measured_sections(&self, profile: u32) -> Result<Vec<MeasuredSection<'_>>, Error> {
        let (base, profile_sections) = self.split_profiles(profile)?;

        // systemd-stub picks a .dtbauto section by matching it against the firmware's device
        // tree or the .hwids table, so which one it measures, if any, depends on the machine.
        let considered = base.iter().chain(profile_sections);
        if let Some(dtbauto) = considered
            .filter(|section| is_kind(section, UnifiedSection::Dtbauto))
            .find(|section| section.virtual_size > 0)
        {
            return Err(Error::UnpredictableSection {
                name: UnifiedSection::Dtbauto.name(),
                index: dtbauto.index,
            });
        }

        let mut selected = select_unique(base, ProfileScope::Base)?;
        let overrides = select_unique(profile_sections, ProfileScope::Profile(profile))?;
        for (slot, replacement) in selected.iter_mut().zip(overrides) {
            if replacement.is_some() {
                *slot = replacement;
            }
        }

        let mut measured = Vec::new();
        for (kind, entry) in UnifiedSection::ALL.into_iter().zip(selected) {
            let Some((section, scope)) = entry else {
                continue;
            };
            if section.virtual_size == 0 || !kind.is_measured() {
                continue;
            }
            measured.push(MeasuredSection {
                kind,
                section,
                scope,
                data: self.image.section_data(section),
            });
        }

        if !measured
            .iter()
            .any(|entry| entry.kind == UnifiedSection::Linux)
        {
            return Err(Error::MissingLinux { profile });
        }
        Ok(measured)
    }

    /// Splits the section table into the base sections and the sections of `profile`.
    fn split_profiles(&self, profile: u32) -> Result<(&[Section], &[Section]), Error> {
        let sections = self.sections();
        let starts: Vec<usize> = sections
            .iter()
            .enumerate()
            .filter(|(_, section)| is_kind(section, UnifiedSection::Profile))
            .map(|(position, _)| position)
            .collect();

        let base_end = starts.first().copied().unwrap_or(sections.len());
        let base = &sections[..base_end];
        let requested = usize::try_from(profile).unwrap_or(usize::MAX);
        match starts.get(requested) {
            Some(&start) => {
                let end = starts.get(requested + 1).copied().unwrap_or(sections.len());
                Ok((base, &sections[start..end]))
            }
            // systemd-stub treats profile 0 of a UKI without profiles as the base alone.
            None if profile == 0 && starts.is_empty() => Ok((base, &[])),
            None => Err(Error::ProfileNotFound {
                requested: profile,
                available: starts.len(),
            }),
        }
    }
}

type Selection<'a> = [Option<(&'a Section, ProfileScope)>; UnifiedSection::ALL.len()];

/// Picks each UKI section from `sections`, rejecting a second occurrence of a measured one.
///
/// `.dtbauto` may occur many times, one per device tree.
fn select_unique(sections: &[Section], scope: ProfileScope) -> Result<Selection<'_>, Error> {
    let mut selected: Selection<'_> = [None; UnifiedSection::ALL.len()];
    for section in sections {
        let Some(kind) = UnifiedSection::from_name(section.name_bytes()) else {
            continue;
        };
        let slot = &mut selected[kind as usize];
        match slot {
            None => *slot = Some((section, scope)),
            Some((first, _)) => {
                if kind.is_measured() && kind != UnifiedSection::Dtbauto {
                    return Err(Error::DuplicateSection {
                        name: kind.name(),
                        scope,
                        first_index: first.index,
                        second_index: section.index,
                    });
                }
            }
        }
    }
    Ok(selected)
}

fn is_kind(section: &Section, kind: UnifiedSection) -> bool {
    section.name_bytes() == kind.name().as_bytes()
}
