//! UKI parsing, PCR prediction and Secure Boot key handling.
