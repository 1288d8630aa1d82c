//! Whether inference and diffusion may use the GPU, shared between the API
//! that changes it and the workers that read it.
//!
//! On bare metal the GPU is always used. In a VM it is used only while
//! `vm.gpu_passthrough` is on, because the host can read a passed-through
//! GPU's memory.

use tokio::sync::{watch, Mutex, MutexGuard};

/// The GPU decision and the lock that orders changes to it.
pub struct GpuAccess {
    is_vm: bool,
    allowed: watch::Sender<bool>,
    vm_setting: watch::Sender<bool>,
    change: Mutex<()>,
}

impl GpuAccess {
    /// Starts from the detected platform and the configured setting.
    pub fn new(is_vm: bool, vm_gpu_passthrough: bool) -> Self {
        Self {
            is_vm,
            allowed: watch::Sender::new(!is_vm || vm_gpu_passthrough),
            vm_setting: watch::Sender::new(vm_gpu_passthrough),
            change: Mutex::new(()),
        }
    }

    /// Returns true when GPU work is allowed now.
    pub fn allowed(&self) -> bool {
        *self.allowed.borrow()
    }

    /// Returns a receiver notified of every change of [`GpuAccess::allowed`].
    /// A worker holding a GPU context should drop it when this turns false.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.allowed.subscribe()
    }

    /// Returns the value of `vm.gpu_passthrough` in effect.
    pub fn vm_setting(&self) -> bool {
        *self.vm_setting.borrow()
    }

    /// Takes the lock that serialises changes, so two requests cannot
    /// interleave their file edits.
    pub async fn lock_for_change(&self) -> MutexGuard<'_, ()> {
        self.change.lock().await
    }

    /// Records a new value of `vm.gpu_passthrough`, already written to the
    /// configuration file.
    pub fn set_vm_setting(&self, enabled: bool) {
        self.vm_setting.send_replace(enabled);
        self.allowed.send_replace(!self.is_vm || enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_follows_setting() {
        let access = GpuAccess::new(true, false);
        let receiver = access.subscribe();
        assert!(!access.allowed());

        access.set_vm_setting(true);

        assert!(access.allowed());
        assert!(*receiver.borrow());
        assert!(access.vm_setting());
    }

    #[test]
    fn bare_metal_always_allowed() {
        let access = GpuAccess::new(false, false);
        assert!(access.allowed());

        access.set_vm_setting(false);

        assert!(access.allowed());
        assert!(!access.vm_setting());
    }
}
