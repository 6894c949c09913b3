//! A reset stub at the x86 reset vector.
//!
//! There is no firmware, but Linux may still jump to the BIOS's reset
//! vector (F000:FFF0) to reboot: with hardware-reduced ACPI, `reboot_init`
//! selects the EFI method, which, without EFI, falls through to
//! `machine_real_restart` and a real-mode jump to 0xFFFF0. Without code
//! there the guest would run whatever bytes it finds, forever. The stub
//! writes the ACPI reset value to the power-management port, so that path
//! ends in a clean reset like every other.

use vm_memory::{Bytes, GuestMemoryBackend};

pub use crate::layout::RESET_VECTOR;
use crate::layout::{PM_PORT, PM_RESET_VALUE};

/// Errors of writing the stub.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the reset stub at {RESET_VECTOR:?}: {0}")]
pub struct Error(#[source] vm_memory::GuestMemoryError);

/// The 16-bit stub: `mov al, RESET; mov dx, PORT; out dx, al; hlt; jmp $-1`.
pub fn reset_stub() -> [u8; 9] {
    let port = PM_PORT.to_le_bytes();
    [
        0xb0,
        PM_RESET_VALUE,
        0xba,
        port[0],
        port[1],
        0xee,
        0xf4,
        0xeb,
        0xfd,
    ]
}

/// Writes the stub at the reset vector.
pub fn write_reset_stub<M: GuestMemoryBackend>(mem: &M) -> Result<(), Error> {
    mem.write_slice(&reset_stub(), RESET_VECTOR).map_err(Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BIOS_END;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    #[test]
    fn stub_fits_below_1mib_and_resets_through_the_pm_port() {
        let s = reset_stub();
        assert!(RESET_VECTOR.0 + s.len() as u64 <= BIOS_END.0);
        assert_eq!(&s[..2], &[0xb0, PM_RESET_VALUE]);
        assert_eq!(u16::from_le_bytes([s[3], s[4]]), PM_PORT);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_reset_stub(&mem).unwrap();
        let mut back = [0u8; 9];
        mem.read_slice(&mut back, RESET_VECTOR).unwrap();
        assert_eq!(back, s);
    }
}
