//! Stable MAC addresses for VFs the user gave no `mac=`.
//!
//! A guest's NIC must keep its MAC across runs (DHCP leases, udev names).
//! The address is derived from (VM name, guest slot, guest function) with
//! 64-bit FNV-1a over `name`, a 0 byte, `slot`, `function` (FNV offset
//! basis 0xcbf29ce484222325, prime 0x100000001b3); the low six bytes of the
//! hash, big-endian, with the first octet made locally administered (bit 1
//! set) and unicast (bit 0 clear). Changing this breaks users' MACs: don't.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The stable MAC of the VF at guest `slot`.`function` of VM `name`.
pub fn stable_mac(name: &str, slot: u8, function: u8) -> [u8; 6] {
    let hash = fnv1a(name.bytes().chain([0, slot, function]));
    let b = hash.to_be_bytes();
    [b[2] & 0xfc | 0x02, b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a([]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stable_mac_is_deterministic_local_unicast_and_distinct() {
        let a = stable_mac("vm1", 5, 0);
        assert_eq!(a, stable_mac("vm1", 5, 0));
        assert_eq!(a[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(a, stable_mac("vm1", 5, 1));
        assert_ne!(a, stable_mac("vm1", 6, 0));
        assert_ne!(a, stable_mac("vm2", 5, 0));
        assert_ne!(stable_mac("vm1\u{5}", 0, 0), stable_mac("vm1", 5, 0));
        // Pinned: a change here changes every user's guest MAC.
        assert_eq!(a, [0xaa, 0xbe, 0x69, 0x15, 0x64, 0x60]);
    }
}
