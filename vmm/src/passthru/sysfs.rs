//! The PCI corner of sysfs: devices, drivers, IOMMU groups and SR-IOV links.
//!
//! The root (normally `/sys`) is a parameter so tests build a fake tree.
//! Links are resolved by their last component, which works for the
//! kernel's relative links and for a test's absolute ones.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A view of sysfs rooted at `root`.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

impl Sysfs {
    /// sysfs at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The real sysfs.
    pub fn host() -> Self {
        Sysfs::new("/sys")
    }

    /// `/sys/bus/pci/devices/ADDR` (`ADDR` as `DDDD:BB:SS.F`).
    pub fn device_dir(&self, addr: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr)
    }

    /// Whether the device exists.
    pub fn exists(&self, addr: &str) -> bool {
        self.device_dir(addr).is_dir()
    }

    /// The driver bound to the device, if any.
    pub fn driver(&self, addr: &str) -> Option<String> {
        link_name(&self.device_dir(addr).join("driver"))
    }

    /// Whether the kernel has an IOMMU (any IOMMU group exists).
    pub fn iommu_enabled(&self) -> bool {
        fs::read_dir(self.root.join("kernel/iommu_groups"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }

    /// The device's IOMMU group number.
    pub fn iommu_group(&self, addr: &str) -> Option<u32> {
        link_name(&self.device_dir(addr).join("iommu_group"))?
            .parse()
            .ok()
    }

    /// The devices in IOMMU group `group`, sorted.
    pub fn group_members(&self, group: u32) -> io::Result<Vec<String>> {
        let dir = self
            .root
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        let mut members: Vec<String> = fs::read_dir(dir)?
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        members.sort();
        Ok(members)
    }

    /// The PF of a VF (`physfn` link); `None` for anything else.
    pub fn physfn(&self, addr: &str) -> Option<String> {
        link_name(&self.device_dir(addr).join("physfn"))
    }

    /// The index N of the PF's `virtfnN` link that points at `vf`.
    pub fn vf_index(&self, pf: &str, vf: &str) -> Option<u32> {
        fs::read_dir(self.device_dir(pf)).ok()?.find_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let index = name.strip_prefix("virtfn")?.parse().ok()?;
            (link_name(&e.path())? == vf).then_some(index)
        })
    }

    /// The PF's network interface name (first entry of its `net` dir).
    pub fn netdev(&self, pf: &str) -> Option<String> {
        let mut names: Vec<String> = fs::read_dir(self.device_dir(pf).join("net"))
            .ok()?
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.into_iter().next()
    }

    /// Path of the device's `driver_override`.
    pub fn driver_override(&self, addr: &str) -> PathBuf {
        self.device_dir(addr).join("driver_override")
    }

    /// Path of driver `driver`'s `unbind` file.
    pub fn unbind(&self, driver: &str) -> PathBuf {
        self.root
            .join("bus/pci/drivers")
            .join(driver)
            .join("unbind")
    }

    /// Path of the PCI bus's `drivers_probe` file.
    pub fn drivers_probe(&self) -> PathBuf {
        self.root.join("bus/pci/drivers_probe")
    }
}

/// Builders of fake sysfs trees for tests.
#[cfg(test)]
pub mod fake {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    /// A fake `/sys` in a temporary directory, removed on drop.
    pub struct FakeSys {
        pub root: PathBuf,
        _dir: vmm_sys_util::tempdir::TempDir,
    }

    impl FakeSys {
        pub fn new() -> Self {
            let tmp = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vfvm-sysfs-").unwrap();
            let dir = tmp.as_path().to_path_buf();
            fs::create_dir_all(dir.join("bus/pci/devices")).unwrap();
            fs::write(dir.join("bus/pci/drivers_probe"), "").unwrap();
            fs::create_dir_all(dir.join("kernel/iommu_groups")).unwrap();
            FakeSys {
                root: dir,
                _dir: tmp,
            }
        }

        fn dev(&self, addr: &str) -> PathBuf {
            self.root.join("bus/pci/devices").join(addr)
        }

        /// A device with IDs, in IOMMU group `group` (if any).
        pub fn device(&self, addr: &str, ids: (u16, u16), group: Option<u32>) -> &Self {
            let d = self.dev(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("0x{:04x}\n", ids.0)).unwrap();
            fs::write(d.join("device"), format!("0x{:04x}\n", ids.1)).unwrap();
            fs::write(d.join("driver_override"), "(null)\n").unwrap();
            if let Some(g) = group {
                let gdir = self.root.join("kernel/iommu_groups").join(g.to_string());
                fs::create_dir_all(gdir.join("devices")).unwrap();
                symlink(&gdir, d.join("iommu_group")).unwrap();
                symlink(&d, gdir.join("devices").join(addr)).unwrap();
            }
            self
        }

        /// Binds `addr` to `driver` (creating the driver's dir).
        pub fn bind(&self, addr: &str, driver: &str) -> &Self {
            let ddir = self.root.join("bus/pci/drivers").join(driver);
            fs::create_dir_all(&ddir).unwrap();
            fs::write(ddir.join("unbind"), "").unwrap();
            let link = self.dev(addr).join("driver");
            let _ = fs::remove_file(&link);
            symlink(&ddir, link).unwrap();
            self
        }

        /// Makes `vf` virtual function `index` of `pf`.
        pub fn vf(&self, pf: &str, index: u32, vf: &str) -> &Self {
            symlink(self.dev(pf), self.dev(vf).join("physfn")).unwrap();
            symlink(self.dev(vf), self.dev(pf).join(format!("virtfn{index}"))).unwrap();
            self
        }

        /// Gives `pf` a network interface.
        pub fn netdev(&self, pf: &str, name: &str) -> &Self {
            fs::create_dir_all(self.dev(pf).join("net").join(name)).unwrap();
            self
        }

        pub fn read(&self, path: &Path) -> String {
            fs::read_to_string(path).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSys;
    use super::*;

    const PF: &str = "0000:01:00.0";
    const VF: &str = "0000:01:10.2";

    fn tree() -> FakeSys {
        let f = FakeSys::new();
        f.device(PF, (0x8086, 0x10c9), Some(10))
            .device(VF, (0x8086, 0x10ca), Some(12))
            .device("0000:01:10.0", (0x8086, 0x10ca), Some(11))
            .bind(PF, "igb")
            .bind(VF, "igbvf")
            .vf(PF, 0, "0000:01:10.0")
            .vf(PF, 1, VF)
            .netdev(PF, "eth0");
        f
    }

    #[test]
    fn reads_identity_driver_and_group() {
        let f = tree();
        let s = Sysfs::new(&f.root);
        assert!(s.exists(VF) && !s.exists("0000:02:00.0"));
        assert_eq!(s.driver(VF).as_deref(), Some("igbvf"));
        assert_eq!(s.driver("0000:01:10.0"), None);
        assert!(s.iommu_enabled());
        assert_eq!(s.iommu_group(VF), Some(12));
        assert_eq!(s.group_members(12).unwrap(), [VF]);
    }

    #[test]
    fn finds_the_pf_its_netdev_and_the_vf_index() {
        let f = tree();
        let s = Sysfs::new(&f.root);
        assert_eq!(s.physfn(VF).as_deref(), Some(PF));
        assert_eq!(s.physfn(PF), None);
        assert_eq!(s.vf_index(PF, VF), Some(1));
        assert_eq!(s.vf_index(PF, PF), None);
        assert_eq!(s.netdev(PF).as_deref(), Some("eth0"));
        assert_eq!(s.netdev(VF), None);
    }

    #[test]
    fn no_iommu_groups_means_no_iommu() {
        let f = FakeSys::new();
        assert!(!Sysfs::new(&f.root).iommu_enabled());
        assert!(!Sysfs::new("/nonexistent").iommu_enabled());
    }
}
