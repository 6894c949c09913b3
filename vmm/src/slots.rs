//! KVM memory slots: guest RAM and directly mapped BAR pieces.

use std::collections::BTreeMap;
use std::io;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
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
        self.insert(vm, gpa, len, host_addr, 0)
    }

    /// As [`MemorySlots::add`], read-only: a guest write exits to
    /// userspace as MMIO, where nothing claims it (an expansion ROM).
    pub fn add_readonly(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        len: u64,
        host_addr: u64,
    ) -> io::Result<()> {
        self.insert(vm, gpa, len, host_addr, KVM_MEM_READONLY)
    }

    fn insert(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        len: u64,
        host_addr: u64,
        flags: u32,
    ) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        let region = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host_addr,
        };
        // SAFETY: `host_addr..+len` is a live mapping owned by guest memory or
        // by the device whose BAR it is; both outlive the VM's use of the slot:
        // a moved BAR's slot is removed before its mapping moves, and when the
        // VM ends `Vm`'s drop removes every slot before the devices and guest
        // memory (its later fields) are dropped.
        if let Err(e) = unsafe { vm.set_user_memory_region(region) } {
            self.free.push(slot);
            return Err(e.into());
        }
        self.by_addr.insert(gpa, slot);
        Ok(())
    }

    /// Removes every slot (RAM and BAR pieces), so that their memory can be
    /// unmapped; a slot KVM refuses to remove is logged.
    pub fn remove_all(&mut self, vm: &VmFd) {
        let addrs: Vec<u64> = self.by_addr.keys().copied().collect();
        for gpa in addrs {
            if let Err(e) = self.remove(vm, gpa) {
                log::warn!("cannot remove the KVM memory slot at {gpa:#x}: {e}");
            }
        }
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
