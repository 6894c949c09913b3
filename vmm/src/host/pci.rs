//! The PCI corner of sysfs: functions, drivers, IOMMU groups, driver
//! binding and SR-IOV (VF count, PF/VF links, NUMA node).
//!
//! The root (normally `/sys`) is a parameter so tests build a fake tree.
//! Links are resolved by their last component, which works for the
//! kernel's relative links and for a test's absolute ones. Reads return
//! `None` for what is absent; writes return an [`Error`] naming the file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A sysfs file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct Error {
    /// `read`, `write` or `list`.
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

fn write(path: PathBuf, value: &str) -> Result<(), Error> {
    fs::write(&path, value).map_err(|source| Error {
        op: "write",
        path,
        source,
    })
}

#[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
fn read_number<T: std::str::FromStr>(path: PathBuf) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// vfio_iommu_type1's switch for devices without interrupt remapping.
pub const UNSAFE_INTERRUPTS: &str = "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts";

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

    /// Whether vfio_iommu_type1 lets devices be used without interrupt
    /// remapping (its `allow_unsafe_interrupts` parameter is `Y`).
    pub fn unsafe_interrupts_allowed(&self) -> bool {
        fs::read_to_string(self.root.join(UNSAFE_INTERRUPTS))
            .is_ok_and(|v| v.trim() == "Y" || v.trim() == "1")
    }

    /// The device's IOMMU group number.
    pub fn iommu_group(&self, addr: &str) -> Option<u32> {
        link_name(&self.device_dir(addr).join("iommu_group"))?
            .parse()
            .ok()
    }

    /// The devices in IOMMU group `group`, sorted.
    pub fn group_members(&self, group: u32) -> Result<Vec<String>, Error> {
        let dir = self
            .root
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        let entries = fs::read_dir(&dir).map_err(|source| Error {
            op: "list",
            path: dir,
            source,
        })?;
        let mut members: Vec<String> = entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        members.sort();
        Ok(members)
    }

    /// The PF of a VF (`physfn` link); `None` for anything else.
    pub fn physfn(&self, addr: &str) -> Option<String> {
        link_name(&self.device_dir(addr).join("physfn"))
    }

    /// The PF's VFs as (N of `virtfnN`, VF address), by N.
    pub fn virtfns(&self, pf: &str) -> Vec<(u32, String)> {
        let Ok(dir) = fs::read_dir(self.device_dir(pf)) else {
            return Vec::new();
        };
        let mut vfs: Vec<(u32, String)> = dir
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                let index = name.strip_prefix("virtfn")?.parse().ok()?;
                Some((index, link_name(&e.path())?))
            })
            .collect();
        vfs.sort();
        vfs
    }

    /// The index N of the PF's `virtfnN` link that points at `vf`.
    pub fn vf_index(&self, pf: &str, vf: &str) -> Option<u32> {
        self.virtfns(pf)
            .into_iter()
            .find_map(|(index, addr)| (addr == vf).then_some(index))
    }

    /// How many VFs the PF has enabled (`sriov_numvfs`); `None`: not SR-IOV capable.
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn sriov_numvfs(&self, pf: &str) -> Option<u32> {
        read_number(self.device_dir(pf).join("sriov_numvfs"))
    }

    /// How many VFs the PF can have (`sriov_totalvfs`).
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn sriov_totalvfs(&self, pf: &str) -> Option<u32> {
        read_number(self.device_dir(pf).join("sriov_totalvfs"))
    }

    /// Enables `n` VFs on the PF (0 removes them all; the kernel refuses
    /// to change a non-zero count to another non-zero one).
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn set_sriov_numvfs(&self, pf: &str, n: u32) -> Result<(), Error> {
        write(self.device_dir(pf).join("sriov_numvfs"), &n.to_string())
    }

    /// The device's NUMA node; `None` where the platform has none (-1).
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn numa_node(&self, addr: &str) -> Option<u32> {
        read_number::<i64>(self.device_dir(addr).join("numa_node"))
            .and_then(|n| u32::try_from(n).ok())
    }

    /// Every device that can have VFs (`sriov_totalvfs` above 0), sorted.
    pub fn sriov_pfs(&self) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.root.join("bus/pci/devices")) else {
            return Vec::new();
        };
        let mut pfs: Vec<String> = dir
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .filter(|d| self.sriov_totalvfs(d).is_some_and(|n| n > 0))
            .collect();
        pfs.sort();
        pfs
    }

    /// Whether the kernel probes drivers for new VFs (`sriov_drivers_autoprobe`).
    pub fn sriov_autoprobe(&self, pf: &str) -> Option<bool> {
        read_number::<u8>(self.device_dir(pf).join("sriov_drivers_autoprobe")).map(|v| v != 0)
    }

    /// Sets `sriov_drivers_autoprobe`: with it off, a VF gets a driver only
    /// when one is named in its `driver_override` and it is probed.
    pub fn set_sriov_autoprobe(&self, pf: &str, on: bool) -> Result<(), Error> {
        write(
            self.device_dir(pf).join("sriov_drivers_autoprobe"),
            if on { "1" } else { "0" },
        )
    }

    /// The PCI function behind network interface `name`.
    pub fn netdev_device(&self, name: &str) -> Option<String> {
        link_name(&self.netdev_dir(name).join("device"))
    }

    /// `/sys/class/net/NAME`.
    pub fn netdev_dir(&self, name: &str) -> PathBuf {
        self.root.join("class/net").join(name)
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

    /// The device's `driver_override`; `None` when none is set.
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn driver_override(&self, addr: &str) -> Option<String> {
        let value = fs::read_to_string(self.device_dir(addr).join("driver_override")).ok()?;
        let value = value.trim();
        (!value.is_empty() && value != "(null)").then(|| value.to_string())
    }

    /// Sets (`Some`) or clears (`None`) the device's `driver_override`: the
    /// only driver the next probe may bind it to.
    pub fn set_driver_override(&self, addr: &str, driver: Option<&str>) -> Result<(), Error> {
        write(
            self.device_dir(addr).join("driver_override"),
            driver.unwrap_or("\n"),
        )
    }

    /// Unbinds the device from `driver`.
    pub fn unbind(&self, addr: &str, driver: &str) -> Result<(), Error> {
        write(self.driver_dir(driver).join("unbind"), addr)
    }

    /// Binds the device to `driver` directly.
    #[allow(dead_code, reason = "for `vfvm iov` and VF pools (issue 8)")]
    pub fn bind(&self, addr: &str, driver: &str) -> Result<(), Error> {
        write(self.driver_dir(driver).join("bind"), addr)
    }

    /// Asks the kernel to probe a driver for the device (`drivers_probe`),
    /// which honours `driver_override`.
    pub fn probe(&self, addr: &str) -> Result<(), Error> {
        write(self.root.join("bus/pci/drivers_probe"), addr)
    }

    fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("bus/pci/drivers").join(driver)
    }
}

/// Builders of fake sysfs trees for tests.
#[cfg(test)]
pub mod fake {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

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

        /// Sets vfio_iommu_type1's `allow_unsafe_interrupts` to `value`.
        pub fn unsafe_interrupts(&self, value: &str) -> &Self {
            let path = self.root.join(super::UNSAFE_INTERRUPTS);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{value}\n")).unwrap();
            self
        }

        /// Gives `pf` a network interface.
        pub fn netdev(&self, pf: &str, name: &str) -> &Self {
            fs::create_dir_all(self.dev(pf).join("net").join(name)).unwrap();
            self
        }

        /// What was last written to `rel` (relative to the root).
        pub fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.root.join(rel)).unwrap()
        }

        /// Writes `value` to `rel` (relative to the root), as the kernel would.
        pub fn write(&self, rel: &str, value: &str) -> &Self {
            let path: PathBuf = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, value).unwrap();
            self
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
        assert_eq!(
            s.virtfns(PF),
            [(0, "0000:01:10.0".to_string()), (1, VF.to_string())]
        );
        assert!(s.virtfns(VF).is_empty());
    }

    #[test]
    fn reads_and_writes_sriov_numa_and_binding() {
        let f = tree();
        let s = Sysfs::new(&f.root);
        let pf = format!("bus/pci/devices/{PF}");
        f.write(&format!("{pf}/sriov_numvfs"), "2\n")
            .write(&format!("{pf}/sriov_totalvfs"), "7\n")
            .write(&format!("{pf}/numa_node"), "-1\n")
            .write(&format!("bus/pci/devices/{VF}/numa_node"), "1\n");
        assert_eq!(s.sriov_numvfs(PF), Some(2));
        assert_eq!(s.sriov_totalvfs(PF), Some(7));
        assert_eq!(s.sriov_numvfs(VF), None);
        assert_eq!((s.numa_node(PF), s.numa_node(VF)), (None, Some(1)));
        s.set_sriov_numvfs(PF, 0).unwrap();
        assert_eq!(f.read(&format!("{pf}/sriov_numvfs")), "0");
        assert_eq!(s.driver_override(VF), None, "(null) is none");
        s.set_driver_override(VF, Some("vfio-pci")).unwrap();
        assert_eq!(s.driver_override(VF).as_deref(), Some("vfio-pci"));
        s.set_driver_override(VF, None).unwrap();
        assert_eq!(s.driver_override(VF), None);
        s.unbind(VF, "igbvf").unwrap();
        assert_eq!(f.read("bus/pci/drivers/igbvf/unbind"), VF);
        s.probe(VF).unwrap();
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
        let e = s.bind(VF, "nodriver").unwrap_err().to_string();
        assert!(
            e.starts_with("cannot write ") && e.contains("nodriver/bind"),
            "{e}"
        );
    }

    #[test]
    fn no_iommu_groups_means_no_iommu() {
        let f = FakeSys::new();
        assert!(!Sysfs::new(&f.root).iommu_enabled());
        assert!(!Sysfs::new("/nonexistent").iommu_enabled());
    }
}
