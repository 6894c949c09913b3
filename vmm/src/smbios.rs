//! What the guest learns about its machine from SMBIOS: the system UUID
//! and the OEM strings, from the [`VmConfig`].
//!
//! The system UUID is `-U`, or, without it, a name-based (version 5) UUID
//! of the VM name in [`NAME_NAMESPACE`]: the same name gives the same UUID
//! on every boot and every host, as the stable VF MAC does. Changing the
//! namespace or the derivation changes every user's guest UUID: don't.

use uuid::Uuid;
use vm_memory::GuestMemoryMmap;

use crate::config::VmConfig;

/// The namespace of name-derived system UUIDs (itself the version 5 UUID
/// of the URL `urn:vfvm:vm-name` in RFC 4122's URL namespace).
pub const NAME_NAMESPACE: Uuid = Uuid::from_u128(0xee92_d6ff_4c81_5bc4_b769_58eb_68b8_9f4c);

/// The VM's system UUID: `-U`, or derived from the VM name.
pub fn system_uuid(cfg: &VmConfig) -> Uuid {
    cfg.uuid
        .as_deref()
        .and_then(|u| Uuid::parse_str(u).ok())
        .unwrap_or_else(|| Uuid::new_v5(&NAME_NAMESPACE, cfg.name.as_bytes()))
}

/// Writes the SMBIOS tables for `cfg` into guest memory.
pub fn write_tables(
    cfg: &VmConfig,
    mem: &GuestMemoryMmap,
    topology: arch::cpuid::Topology,
) -> Result<(), arch::smbios::Error> {
    arch::smbios::create_smbios_tables(
        mem,
        &arch::smbios::SmbiosConfig {
            version: env!("CARGO_PKG_VERSION"),
            uuid: *system_uuid(cfg).as_bytes(),
            serial: &cfg.name,
            topology,
            mem_size: cfg.memory.size,
            oem_strings: &cfg.oem_strings,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_is_what_its_doc_says() {
        assert_eq!(
            NAME_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:vfvm:vm-name")
        );
    }

    #[test]
    fn uuid_is_the_flag_or_stable_per_name() {
        let mut a = VmConfig::new("vm1", "k");
        let derived = system_uuid(&a);
        assert_eq!(derived, system_uuid(&VmConfig::new("vm1", "k")));
        assert_ne!(derived, system_uuid(&VmConfig::new("vm2", "k")));
        assert_eq!(derived.get_version_num(), 5);
        // Pinned: a change here changes every user's guest UUID.
        assert_eq!(derived.to_string(), "fe8e35a6-4f41-5beb-8feb-2b18131e3438");
        a.uuid = Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8".into());
        assert_eq!(
            system_uuid(&a).to_string(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
    }
}
