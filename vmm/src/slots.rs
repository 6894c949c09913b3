//! KVM memory slots: guest RAM and directly mapped BAR pieces.

use std::collections::BTreeMap;
use std::io;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

/// Allocates KVM slot numbers and remembers which guest address uses which.
#[derive(Default)]
pub struct MemorySlots {
    by_addr: BTreeMap<u64, u32>,
    free: Vec<u32>,
    next: u32,
}

impl MemorySlots {
    /// Maps `len` bytes of host memory at `host_addr` to guest address `gpa`.
    pub fn add(&mut self, vm: &VmFd, gpa: u64, len: u64, host_addr: u64) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host_addr,
        };
        // SAFETY: `host_addr..+len` is a live mapping owned by guest memory or
        // by the device whose BAR it is; both outlive the VM's use of the slot
        // (the slot is removed before the mapping is dropped).
        if let Err(e) = unsafe { vm.set_user_memory_region(region) } {
            self.free.push(slot);
            return Err(e.into());
        }
        self.by_addr.insert(gpa, slot);
        Ok(())
    }

    /// Removes the slot mapped at guest address `gpa`.
    pub fn remove(&mut self, vm: &VmFd, gpa: u64) -> io::Result<()> {
        let slot = self
            .by_addr
            .remove(&gpa)
            .ok_or_else(|| io::Error::other(format!("no memory slot at {gpa:#x}")))?;
        let region = kvm_userspace_memory_region {
            slot,
            memory_size: 0,
            ..Default::default()
        };
        // SAFETY: a zero-sized region deletes the slot; no memory is referenced.
        unsafe { vm.set_user_memory_region(region) }?;
        self.free.push(slot);
        Ok(())
    }
}
