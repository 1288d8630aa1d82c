//! Boot phases that systemd-pcrphase measures into PCR 11.
//!
//! systemd 257 ships three units that run `systemd-pcrextend WORD` when they start and stop:
//! systemd-pcrphase-initrd.service, systemd-pcrphase-sysinit.service and
//! systemd-pcrphase.service. They run only when the system booted a measured UKI
//! (`ConditionSecurity=measured-uki`). Each word is measured as its bytes without a NUL byte.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Measured in the initrd before sysinit.target.
pub const ENTER_INITRD: &str = "enter-initrd";
/// Measured in the initrd before the switch to the root file system.
pub const LEAVE_INITRD: &str = "leave-initrd";
/// Measured on the root file system after sysinit.target, before basic.target.
pub const SYSINIT: &str = "sysinit";
/// Measured after remote file systems are mounted, before user sessions are allowed.
pub const READY: &str = "ready";
/// Measured when shutdown stops systemd-pcrphase.service.
pub const SHUTDOWN: &str = "shutdown";
/// Measured later in shutdown, when systemd-pcrphase-sysinit.service stops.
pub const FINAL: &str = "final";

/// All phase words, in boot order.
pub const PHASE_WORDS: [&str; 6] = [ENTER_INITRD, LEAVE_INITRD, SYSINIT, READY, SHUTDOWN, FINAL];

/// The phase paths that `systemd-measure calculate` uses when given no `--phase`: from entering
/// the initrd to the end of boot.
pub const DEFAULT_PHASE_PATHS: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

/// A series of phase words, written colon-separated: the phases measured so far.
///
/// Parsing drops empty words, so "::enter-initrd:" becomes "enter-initrd", as
/// systemd-measure's `--phase=` does. Unlike systemd-measure, parsing rejects words that are
/// not in [`PHASE_WORDS`], so that a typo cannot yield a value that never occurs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhasePath(String);

impl PhasePath {
    /// Returns the paths that systemd-measure uses by default, see [`DEFAULT_PHASE_PATHS`].
    pub fn defaults() -> Vec<Self> {
        DEFAULT_PHASE_PATHS
            .iter()
            .map(|path| Self((*path).to_owned()))
            .collect()
    }

    /// Returns the phase words in the order they are measured.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split(':')
    }

    /// Returns the path in its normalized form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhasePath {
    type Err = Error;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = path.split(':').filter(|word| !word.is_empty()).collect();
        if words.is_empty() {
            return Err(Error::EmptyPhasePath(path.to_owned()));
        }
        if let Some(unknown) = words.iter().find(|word| !PHASE_WORDS.contains(word)) {
            return Err(Error::UnknownPhase {
                path: path.to_owned(),
                word: (*unknown).to_owned(),
            });
        }
        Ok(Self(words.join(":")))
    }
}

impl fmt::Display for PhasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
