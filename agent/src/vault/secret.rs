//! Buffers for key material: locked in RAM, wiped on drop.

use std::fmt;

use zeroize::Zeroize;

/// Key material (a volume key, an unsealed TPM secret, a recovery key or a PIN).
///
/// The bytes live in one heap allocation that never grows, so no copy is left behind by a
/// reallocation. The pages are locked with mlock(2) so they never reach swap; if the kernel
/// refuses (RLIMIT_MEMLOCK), the buffer still works and the failure is logged once per
/// buffer. `Debug` prints only the length.
pub struct Secret {
    bytes: Box<[u8]>,
    locked: bool,
}

impl Secret {
    /// Copies `bytes` into a new locked buffer. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut secret = Self::zeroed(bytes.len());
        secret.bytes.copy_from_slice(bytes);
        secret
    }

    /// Moves `bytes` into a new locked buffer and wipes the vector.
    pub fn from_vec(mut bytes: Vec<u8>) -> Self {
        let secret = Self::from_slice(&bytes);
        bytes.zeroize();
        secret
    }

    /// Allocates `len` zero bytes, locked.
    pub fn zeroed(len: usize) -> Self {
        let bytes = vec![0u8; len].into_boxed_slice();
        let locked = lock(&bytes);
        Self { bytes, locked }
    }

    /// Fills a new buffer of `len` bytes from the kernel's CSPRNG.
    pub fn random(len: usize) -> Result<Self, getrandom::Error> {
        let mut secret = Self::zeroed(len);
        getrandom::fill(&mut secret.bytes)?;
        Ok(secret)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if self.locked {
            // SAFETY: the pointer and length describe the allocation locked in `lock`, which
            // is still alive until this function returns.
            unsafe {
                libc::munlock(self.bytes.as_ptr().cast(), self.bytes.len());
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Secret({} bytes)", self.bytes.len())
    }
}

impl PartialEq for Secret {
    /// Compares in constant time for equal lengths.
    fn eq(&self, other: &Self) -> bool {
        if self.bytes.len() != other.bytes.len() {
            return false;
        }
        self.bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn lock(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    // SAFETY: mlock only reads the address range, which is a live allocation of that length.
    let rc = unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lock a key buffer in RAM; it may reach swap if swap is enabled"
        );
        return false;
    }
    true
}

/// Marks this process non-dumpable and sets its core size limit to zero, so that no core
/// dump or ptrace attach by an unprivileged user exposes key material.
pub fn harden_process() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let secret = Secret::from_slice(b"hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(7 bytes)");
    }

    #[test]
    fn random_secrets_differ() {
        let a = Secret::random(32).expect("getrandom");
        let b = Secret::random(32).expect("getrandom");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
