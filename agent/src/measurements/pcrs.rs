//! PCR values as the kernel exposes them in sysfs
//! (`/sys/class/tpm/tpm0/pcr-<bank>/<index>`, Linux 5.12 and newer). Reading
//! sysfs needs no TPM session, so it works in the initrd before any TPM
//! client library is set up, and it never changes TPM state.

use std::collections::BTreeMap;
use std::io;

use crate::rootfs::RootFs;

/// PCRs a PC Client TPM has: 0 to 23.
pub const PCR_COUNT: u32 = 24;

/// PCR 11: systemd-stub measures the UKI's sections here, and
/// systemd-pcrphase extends the boot phase words.
pub const PCR_UKI: u32 = 11;

/// PCR 15: systemd-cryptsetup extends the volume key measurement of every
/// opened LUKS volume here, so it must still be all zeros before the vault
/// opens, or another volume was opened first.
pub const PCR_VOLUME_KEY: u32 = 15;

/// Reads every PCR of one bank ("sha1", "sha256", ...). Returns an empty
/// map when the kernel exposes no such bank.
pub fn read_bank(fs: &RootFs, bank: &str) -> io::Result<BTreeMap<u32, Vec<u8>>> {
    let directory = format!("/sys/class/tpm/tpm0/pcr-{bank}");
    let mut values = BTreeMap::new();
    if !fs.exists(&directory)? {
        return Ok(values);
    }
    for index in 0..PCR_COUNT {
        let path = format!("{directory}/{index}");
        let text = fs.read_first_line(&path)?;
        let value = decode_hex(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} contains {text:?}, expected a hex PCR value"),
            )
        })?;
        values.insert(index, value);
    }
    Ok(values)
}

/// Decodes hex digits of either case; `None` on an odd length or a non-hex digit.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Encodes bytes as lowercase hex, the form systemd and tpm2-tools print.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::rootfs::FsOverrides;

    #[test]
    fn bank_read_from_sysfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bank = dir.path().join("sys/class/tpm/tpm0/pcr-sha256");
        fs::create_dir_all(&bank).expect("mkdir");
        for index in 0..PCR_COUNT {
            let value = format!("{:064X}\n", index);
            fs::write(bank.join(index.to_string()), value).expect("write");
        }
        let fs_view = RootFs::new(dir.path().to_path_buf(), FsOverrides::default());

        let values = read_bank(&fs_view, "sha256").expect("read");

        assert_eq!(values.len(), 24);
        assert_eq!(values[&11][31], 11);
        assert!(values[&0].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn missing_bank_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs_view = RootFs::new(dir.path().to_path_buf(), FsOverrides::default());

        assert!(read_bank(&fs_view, "sha384").expect("read").is_empty());
    }

    #[test]
    fn invalid_value_names_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bank = dir.path().join("sys/class/tpm/tpm0/pcr-sha1");
        fs::create_dir_all(&bank).expect("mkdir");
        fs::write(bank.join("0"), "zz\n").expect("write");
        let fs_view = RootFs::new(dir.path().to_path_buf(), FsOverrides::default());

        let err = read_bank(&fs_view, "sha1").expect_err("invalid hex");

        assert!(err.to_string().contains("pcr-sha1/0"), "{err}");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(decode_hex("00Ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(encode_hex(&[0, 255, 16]), "00ff10");
    }
}
