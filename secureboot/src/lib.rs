//! UKI parsing, PCR 11 prediction, signed PCR policies and TCG event logs.
//!
//! The appliance boots a unified kernel image (UKI): systemd-stub with the kernel, initrd,
//! command line and other resources as PE sections. This crate parses a UKI and predicts the
//! PCR 11 values that systemd 257's systemd-stub and systemd-pcrphase produce when it boots.
//! The tests compare the JSON output with `systemd-measure calculate` byte for byte. UKIs with a
//! `.hwids` section are the exception, see [`UnifiedSection::Hwids`].
//!
//! [`pcrsig`] checks a UKI's signed PCR 11 policy (`.pcrsig`, `.pcrpkey`) against that
//! prediction, [`signer`] signs such a policy through a [`signer::PolicySigner`] (a PEM key file
//! today, an HSM later), and [`eventlog`] parses and replays TCG event logs.
//!
//! ```no_run
//! use appliance_secureboot::{predict_pcr11, read_image, Pcr11Options, Uki};
//!
//! let bytes = read_image("appliance.efi".as_ref())?;
//! let uki = Uki::parse(&bytes)?;
//! let prediction = predict_pcr11(&uki, &Pcr11Options::default())?;
//! for bank in &prediction.banks {
//!     for phase in &bank.phases {
//!         println!("{} {} {}", bank.bank, phase.phase, phase.value.to_hex());
//!     }
//! }
//! # Ok::<(), appliance_secureboot::Error>(())
//! ```

#![deny(missing_docs)]

mod error;
pub mod eventlog;
pub mod pcr;
pub mod pcrsig;
pub mod pe;
pub mod phase;
mod predict;
pub mod signer;
pub mod uki;

pub use error::{Error, ProfileScope};
pub use pcr::{PcrBank, PcrIndex, PcrValue};
pub use pe::{read_image, PeImage, Section, SectionData};
pub use phase::PhasePath;
pub use predict::{predict_pcr11, BankPrediction, Pcr11Options, Pcr11Prediction, PhaseValue};
pub use uki::{MeasuredSection, Uki, UnifiedSection};
