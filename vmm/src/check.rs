//! `vfvm check`: whether this host can run VF passthrough. One line per
//! item, OK, WARN or FAIL, and for each failure the exact fix. It reads the
//! host (through [`crate::host`] and a few files of /proc and /dev) and
//! changes nothing; the exit status is 0 only when nothing FAILs.
//!
//! The roots of /sys, /proc and /dev are parameters, so the tests build
//! fake hosts.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use kvm_ioctls::{Cap, Kvm};
use serde::Serialize;

use crate::cli::CheckArgs;
use crate::config::{DeviceConfig, MemoryConfig, PassthruConfig, PciSlotConfig};
use crate::host::claim::RUN_DIR;
use crate::host::netlink::Rtnetlink;
use crate::host::pci::Sysfs;
use crate::passthru::plan::{self, GuestPlace, Host};
use crate::{logger, memory};

/// `vfvm check`: prints the items (or JSON); status 0 only without a FAIL,
/// 1 with one, 4 when the arguments are wrong (as `vfvm run`).
pub fn main(args: &CheckArgs) -> Result<bool, crate::config::ConfigError> {
    let mut req = Request::default();
    if let Some(m) = &args.memory {
        let mut memory: MemoryConfig = m.parse()?;
        memory.hugepages = args
            .hugepages
            .as_deref()
            .map(crate::config::parse_hugepages)
            .transpose()?;
        req.memory = Some(memory);
    }
    for s in &args.slots {
        req.slots.push((s.clone(), s.parse()?));
    }
    let items = run(&HostRoots::host(), &req, &|slot| match &slot.device {
        DeviceConfig::Passthru(p) => check_passthru(p, slot),
        _ => Ok(String::new()),
    });
    if args.json {
        match serde_json::to_string_pretty(&items) {
            Ok(text) => logger::stdout_line(&text),
            Err(e) => logger::stderr_line(&format!("vfvm: error: {e}")),
        }
    } else {
        for item in &items {
            logger::stdout_line(&item.line());
        }
    }
    Ok(!items.iter().any(|i| i.status == Status::Fail))
}

/// What `vfvm run` checks for the device (taking and releasing its
/// lock), without changing anything.
fn check_passthru(p: &PassthruConfig, slot: &PciSlotConfig) -> Result<String, String> {
    let netlink = Rtnetlink::new().map_err(|e| e.to_string())?;
    let host = Host {
        sysfs: Sysfs::host(),
        vf_control: &netlink,
        lock_dir: PathBuf::from(RUN_DIR),
    };
    let place = GuestPlace {
        vm: "check",
        slot: slot.slot,
        function: slot.function,
    };
    let plan = plan::check(p, place, &host).map_err(|e| e.to_string())?;
    let device = plan.device().to_string();
    let sysfs = &host.sysfs;
    let driver = sysfs.driver(&device).unwrap_or_else(|| "no driver".into());
    let group = sysfs
        .iommu_group(&device)
        .map_or(String::new(), |g| format!(", IOMMU group {g}"));
    let vf = match sysfs.physfn(&device) {
        Some(pf) => format!("VF of {}", sysfs.netdev(&pf).unwrap_or(pf)),
        None => "not a VF".to_string(),
    };
    let binding = if driver == "vfio-pci" {
        "on vfio-pci".to_string()
    } else {
        format!("on {driver}, vfvm moves it to vfio-pci (managed)")
    };
    Ok(format!("{device}: {vf}, {binding}{group}; ready"))
}

/// What an item's line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ready.
    Ok,
    /// Works, but not as well as it could, or nothing to check.
    Warn,
    /// VF passthrough cannot work until the fix is made.
    Fail,
}

/// One checked item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    /// OK, WARN or FAIL.
    pub status: Status,
    /// What was checked (`kvm`, `iommu`, `-s 5,passthru,...`).
    pub item: String,
    /// What was found.
    pub detail: String,
    /// For a FAIL (and some WARNs): what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Item {
    fn new(status: Status, item: impl Into<String>, detail: impl Into<String>) -> Self {
        Item {
            status,
            item: item.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    fn ok(item: impl Into<String>, detail: impl Into<String>) -> Self {
        Item::new(Status::Ok, item, detail)
    }

    fn fail(item: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Item {
            fix: Some(fix.into()),
            ..Item::new(Status::Fail, item, detail)
        }
    }

    fn warn(item: impl Into<String>, detail: impl Into<String>, fix: Option<String>) -> Self {
        Item {
            fix,
            ..Item::new(Status::Warn, item, detail)
        }
    }

    /// The item as one line: `FAIL iommu: ... Fix: ...`.
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let mut line = format!("{status} {}: {}", self.item, self.detail);
        if let Some(fix) = &self.fix {
            line.push_str(". Fix: ");
            line.push_str(fix);
        }
        line
    }
}

/// What the user asked to check besides the host itself.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `-m SIZE [--hugepages[=2M|1G]]`: guest memory to check the limits against.
    pub memory: Option<MemoryConfig>,
    /// `-s` arguments as typed, and as parsed.
    pub slots: Vec<(String, PciSlotConfig)>,
}

/// Where the host's files are.
pub struct HostRoots {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// devtmpfs (`/dev`).
    pub dev: PathBuf,
}

impl HostRoots {
    /// The real host.
    pub fn host() -> Self {
        HostRoots {
            sys: "/sys".into(),
            proc: "/proc".into(),
            dev: "/dev".into(),
        }
    }
}

/// Every check, in the order printed. `slot_check` checks one `-s`
/// passthrough device the way `vfvm run` would (the real one is
/// [`crate::passthru::check_slot`]); it returns the refusal, if any.
pub fn run(
    roots: &HostRoots,
    req: &Request,
    slot_check: &dyn Fn(&PciSlotConfig) -> Result<String, String>,
) -> Vec<Item> {
    let sysfs = Sysfs::new(&roots.sys);
    let mut items = vec![kvm(&roots.dev.join("kvm"))];
    let iommu = iommu(&roots.sys, &sysfs);
    let iommu_on = iommu.status == Status::Ok;
    items.push(iommu);
    items.push(interrupt_remapping(&roots.proc, iommu_on));
    items.extend(unsafe_interrupts(&roots.sys));
    items.push(vfio(&roots.sys, &roots.dev));
    items.extend(sriov(&sysfs));
    items.push(memory_item(req));
    for (arg, slot) in &req.slots {
        let DeviceConfig::Passthru(_) = &slot.device else {
            continue;
        };
        let name = format!("-s {arg}");
        items.push(match slot_check(slot) {
            Ok(detail) => Item::ok(name, detail),
            // Its reason names the fix, as `vfvm run` would print it.
            Err(reason) => Item::new(Status::Fail, name, reason),
        });
    }
    items
}

/// The KVM capabilities `vfvm run` uses.
const KVM_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "in-kernel irqchip"),
    (Cap::UserMemory, "user memory regions"),
    (Cap::SetTssAddr, "TSS address"),
    (Cap::ExtCpuid, "CPUID"),
    (Cap::IrqRouting, "GSI routing"),
    (Cap::Irqfd, "irqfd"),
    (Cap::Ioeventfd, "ioeventfd"),
    (Cap::Pit2, "PIT"),
    (Cap::SignalMsi, "MSI injection"),
];

fn kvm(path: &Path) -> Item {
    const ITEM: &str = "kvm";
    const LOAD: &str = "enable VT-x/AMD-V in the firmware and load the module: modprobe kvm_intel (Intel) or modprobe kvm_amd (AMD)";
    if let Err(e) = OpenOptions::new().read(true).write(true).open(path) {
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => {
                Item::fail(ITEM, format!("no {}", path.display()), LOAD)
            }
            Some(libc::EACCES) | Some(libc::EPERM) => Item::fail(
                ITEM,
                format!("{} is not readable and writable by this user", path.display()),
                "add the user to the kvm group (usermod -aG kvm USER, then log in again) or run vfvm as root",
            ),
            _ => Item::fail(ITEM, format!("cannot open {}: {e}", path.display()), LOAD),
        };
    }
    let c_path = match std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(e) => return Item::fail(ITEM, e.to_string(), LOAD),
    };
    let kvm = match Kvm::new_with_path(&c_path) {
        Ok(k) => k,
        Err(e) => return Item::fail(ITEM, format!("{}: {e}", path.display()), LOAD),
    };
    let version = kvm.get_api_version();
    let missing: Vec<&str> = KVM_CAPS
        .iter()
        .filter(|(cap, _)| !kvm.check_extension(*cap))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Item::ok(
            ITEM,
            format!(
                "{} opens, KVM API {version}, with every capability vfvm uses",
                path.display()
            ),
        )
    } else {
        Item::fail(
            ITEM,
            format!("KVM lacks {}", missing.join(", ")),
            "run a kernel whose KVM has them (any mainline kernel since 4.x with kvm_intel or kvm_amd)",
        )
    }
}

fn iommu(sys: &Path, sysfs: &Sysfs) -> Item {
    const ITEM: &str = "iommu";
    let tables: Vec<&str> = ["DMAR", "IVRS"]
        .into_iter()
        .filter(|t| sys.join("firmware/acpi/tables").join(t).exists())
        .collect();
    let groups = fs::read_dir(sys.join("kernel/iommu_groups"))
        .map(|d| d.count())
        .unwrap_or(0);
    if sysfs.iommu_enabled() {
        let from = if tables.is_empty() {
            String::new()
        } else {
            format!(" (ACPI {})", tables.join(", "))
        };
        return Item::ok(ITEM, format!("on{from}, {groups} IOMMU groups"));
    }
    if tables.is_empty() {
        Item::fail(
            ITEM,
            "no IOMMU: the firmware reports none (no ACPI DMAR or IVRS table) and there are no IOMMU groups",
            "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, then boot with intel_iommu=on (Intel) or amd_iommu=on (AMD) on the kernel command line",
        )
    } else {
        Item::fail(
            ITEM,
            format!(
                "the firmware has an IOMMU (ACPI {}) but the kernel did not enable it: no IOMMU groups",
                tables.join(", ")
            ),
            "add intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot",
        )
    }
}

/// Interrupt remapping is on when the kernel routes interrupts through
/// remapping domains, which /proc/interrupts names `IR-...`.
fn interrupt_remapping(proc: &Path, iommu_on: bool) -> Item {
    const ITEM: &str = "interrupt remapping";
    const FIX: &str = "enable interrupt remapping (x2APIC / Interrupt Remapping in the firmware setup) and remove intremap=off or nointremap from the kernel command line";
    let interrupts = fs::read_to_string(proc.join("interrupts")).unwrap_or_default();
    if interrupts.contains(" IR-") {
        return Item::ok(ITEM, "on (interrupts go through IR- domains)");
    }
    if !iommu_on {
        return Item::fail(ITEM, "off: it needs the IOMMU (see the iommu line)", FIX);
    }
    Item::fail(
        ITEM,
        "off: no interrupt uses a remapping (IR-) domain, so VFIO refuses to give a VF to a VM",
        FIX,
    )
}

fn unsafe_interrupts(sys: &Path) -> Option<Item> {
    const ITEM: &str = "vfio_iommu_type1.allow_unsafe_interrupts";
    let path = sys.join("module/vfio_iommu_type1/parameters/allow_unsafe_interrupts");
    let value = fs::read_to_string(path).ok()?;
    Some(match value.trim() {
        "Y" | "1" => Item::fail(
            ITEM,
            "on: a VF could forge interrupts, and vfvm refuses to pass VFs through while it is on",
            "echo 0 > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts, and remove allow_unsafe_interrupts from the kernel command line and /etc/modprobe.d",
        ),
        _ => Item::ok(ITEM, "off"),
    })
}

fn vfio(sys: &Path, dev: &Path) -> Item {
    const ITEM: &str = "vfio";
    let vfio = sys.join("module/vfio").exists();
    let vfio_pci =
        sys.join("module/vfio_pci").exists() || sys.join("bus/pci/drivers/vfio-pci").exists();
    if !vfio || !vfio_pci {
        return Item::fail(
            ITEM,
            "vfio-pci is not loaded",
            "modprobe vfio-pci (and add vfio-pci to /etc/modules-load.d/ to load it at boot)",
        );
    }
    let container = dev.join("vfio/vfio");
    match OpenOptions::new().read(true).write(true).open(&container) {
        Ok(_) => Item::ok(
            ITEM,
            format!("vfio and vfio-pci loaded, {} usable", container.display()),
        ),
        Err(e) => Item::fail(
            ITEM,
            format!(
                "vfio-pci is loaded but {} cannot be opened: {e}",
                container.display()
            ),
            "run vfvm as root (VF passthrough rebinds devices and locks memory)",
        ),
    }
}

/// Every SR-IOV capable device, and each of its VFs on vfio-pci alone in
/// its IOMMU group.
fn sriov(sysfs: &Sysfs) -> Vec<Item> {
    let mut items = Vec::new();
    for pf in sysfs.sriov_pfs() {
        let total = sysfs.sriov_totalvfs(&pf).unwrap_or(0);
        let current = sysfs.sriov_numvfs(&pf).unwrap_or(0);
        let netdev = sysfs.netdev(&pf);
        let driver = sysfs.driver(&pf).unwrap_or_else(|| "no driver".into());
        let numa = sysfs
            .numa_node(&pf)
            .map_or("no NUMA node".to_string(), |n| format!("NUMA node {n}"));
        let name = match &netdev {
            Some(n) => format!("{n}, {driver}"),
            None => driver,
        };
        items.push(Item::ok(
            format!("SR-IOV {pf}"),
            format!("({name}) {current} of {total} VFs, {numa}"),
        ));
        for (_, vf) in sysfs.virtfns(&pf) {
            if sysfs.driver(&vf).as_deref() == Some("vfio-pci") {
                items.push(vf_group(sysfs, &vf));
            }
        }
    }
    if items.is_empty() {
        items.push(Item::warn(
            "SR-IOV",
            "no SR-IOV capable device",
            Some("enable SR-IOV in the firmware setup and load the NIC's PF driver".into()),
        ));
    }
    items
}

fn vf_group(sysfs: &Sysfs, vf: &str) -> Item {
    let item = format!("VF {vf}");
    let Some(group) = sysfs.iommu_group(vf) else {
        return Item::fail(
            item,
            "on vfio-pci but in no IOMMU group",
            "enable the IOMMU (see the iommu line)",
        );
    };
    let others: Vec<String> = sysfs
        .group_members(group)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m != vf)
        .map(|m| {
            let drv = sysfs.driver(&m).unwrap_or_else(|| "no driver".into());
            format!("{m} ({drv})")
        })
        .collect();
    if others.is_empty() {
        Item::ok(item, format!("on vfio-pci, alone in IOMMU group {group}"))
    } else {
        Item::fail(
            item,
            format!("shares IOMMU group {group} with {}", others.join(", ")),
            "put the NIC in a slot with ACS (or enable ACS in the firmware) so each VF gets its own group",
        )
    }
}

fn memory_item(req: &Request) -> Item {
    const ITEM: &str = "memory";
    let limit = memory::Size(memory::memlock_limit());
    let limit = if memory::has_cap_ipc_lock() {
        format!("RLIMIT_MEMLOCK {limit}, not binding: this process has CAP_IPC_LOCK")
    } else {
        format!("RLIMIT_MEMLOCK {limit}")
    };
    let Some(m) = &req.memory else {
        return Item::ok(
            ITEM,
            format!("{limit} (give -m SIZE to check it against a guest)"),
        );
    };
    // As for a VM with a VF: VFIO pins every guest page (charged once).
    let how = memory::Reservation {
        pages: m.hugepages,
        threads: 1,
        dma_pinned: true,
        progress: false,
    };
    match memory::check_limits(m.size, &how) {
        Ok(()) => Item::ok(
            ITEM,
            format!(
                "-m {}{}: the host can reserve and lock it for a VM with a VF ({limit})",
                memory::Size(m.size),
                m.hugepages
                    .map_or(String::new(), |p| format!(" {}", p.flag()))
            ),
        ),
        Err(e) => {
            let text = e.to_string();
            let (detail, fix) = text.split_once("; ").unwrap_or((&text, "see the reason"));
            Item::fail(ITEM, format!("-m {}: {detail}", memory::Size(m.size)), fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::pci::fake::FakeSys;

    const PF: &str = "0000:01:00.0";
    const VF0: &str = "0000:01:10.0";
    const VF1: &str = "0000:01:10.2";

    struct Fake {
        sys: FakeSys,
        other: vmm_sys_util::tempdir::TempDir,
    }

    impl Fake {
        fn roots(&self) -> HostRoots {
            HostRoots {
                sys: self.sys.root.clone(),
                proc: self.other.as_path().join("proc"),
                dev: self.other.as_path().join("dev"),
            }
        }
    }

    /// A host with an IOMMU, interrupt remapping and an igb PF whose two
    /// VFs are on vfio-pci (VF1 sharing its group with an igbvf device).
    fn host() -> Fake {
        let sys = FakeSys::new();
        sys.device(PF, (0x8086, 0x10c9), Some(10))
            .device(VF0, (0x8086, 0x10ca), Some(11))
            .device(VF1, (0x8086, 0x10ca), Some(12))
            .device("0000:01:10.4", (0x8086, 0x10ca), Some(12))
            .bind(PF, "igb")
            .bind(VF0, "vfio-pci")
            .bind(VF1, "vfio-pci")
            .bind("0000:01:10.4", "igbvf")
            .vf(PF, 0, VF0)
            .vf(PF, 1, VF1)
            .netdev(PF, "eth0")
            .write("bus/pci/devices/0000:01:00.0/sriov_totalvfs", "7\n")
            .write("bus/pci/devices/0000:01:00.0/sriov_numvfs", "2\n")
            .write("bus/pci/devices/0000:01:00.0/numa_node", "-1\n")
            .write("firmware/acpi/tables/DMAR", "")
            .write("module/vfio/refcnt", "1")
            .write("module/vfio_pci/refcnt", "1")
            .write(
                "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
                "N\n",
            );
        let other = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vfvm-check-").unwrap();
        let p = other.as_path();
        fs::create_dir_all(p.join("proc")).unwrap();
        fs::create_dir_all(p.join("dev/vfio")).unwrap();
        fs::write(
            p.join("proc/interrupts"),
            "           CPU0\n 24:  10  IR-PCI-MSIX-0000:01:00.0    0-edge      eth0\n",
        )
        .unwrap();
        fs::write(p.join("dev/vfio/vfio"), "").unwrap();
        Fake { sys, other }
    }

    fn lines(f: &Fake, req: &Request) -> Vec<String> {
        run(&f.roots(), req, &|_| Ok("ready".into()))
            .iter()
            .filter(|i| i.item != "kvm" && i.item != "memory")
            .map(Item::line)
            .collect()
    }

    #[test]
    fn a_ready_host_and_a_shared_group() {
        let f = host();
        assert_eq!(
            lines(&f, &Request::default()),
            [
                "OK   iommu: on (ACPI DMAR), 3 IOMMU groups",
                "OK   interrupt remapping: on (interrupts go through IR- domains)",
                "OK   vfio_iommu_type1.allow_unsafe_interrupts: off",
                "OK   vfio: vfio and vfio-pci loaded, DEV/vfio/vfio usable",
                "OK   SR-IOV 0000:01:00.0: (eth0, igb) 2 of 7 VFs, no NUMA node",
                "OK   VF 0000:01:10.0: on vfio-pci, alone in IOMMU group 11",
                "FAIL VF 0000:01:10.2: shares IOMMU group 12 with 0000:01:10.4 (igbvf). Fix: put the NIC in a slot with ACS (or enable ACS in the firmware) so each VF gets its own group",
            ]
            .map(|l| l.replace("DEV", &f.roots().dev.display().to_string()))
        );
    }

    #[test]
    fn no_iommu_no_remapping_unsafe_interrupts_no_vfio() {
        let f = host();
        let p = f.roots();
        fs::remove_file(p.sys.join("firmware/acpi/tables/DMAR")).unwrap();
        fs::remove_dir_all(p.sys.join("kernel/iommu_groups")).unwrap();
        fs::write(
            p.proc.join("interrupts"),
            " 24: 1 PCI-MSIX-0000:01:00.0 eth0\n",
        )
        .unwrap();
        fs::write(
            p.sys
                .join("module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"),
            "Y\n",
        )
        .unwrap();
        fs::remove_dir_all(p.sys.join("module/vfio")).unwrap();
        let got = lines(&f, &Request::default());
        assert_eq!(got[0], "FAIL iommu: no IOMMU: the firmware reports none (no ACPI DMAR or IVRS table) and there are no IOMMU groups. Fix: enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, then boot with intel_iommu=on (Intel) or amd_iommu=on (AMD) on the kernel command line");
        assert!(
            got[1].starts_with("FAIL interrupt remapping: off: it needs the IOMMU"),
            "{}",
            got[1]
        );
        assert!(got[2].starts_with("FAIL vfio_iommu_type1.allow_unsafe_interrupts: on: a VF could forge interrupts, and vfvm refuses"), "{}", got[2]);
        assert_eq!(got[3], "FAIL vfio: vfio-pci is not loaded. Fix: modprobe vfio-pci (and add vfio-pci to /etc/modules-load.d/ to load it at boot)");
        // Firmware with an IOMMU the kernel left off.
        fs::write(p.sys.join("firmware/acpi/tables/IVRS"), "").unwrap();
        assert_eq!(lines(&f, &Request::default())[0], "FAIL iommu: the firmware has an IOMMU (ACPI IVRS) but the kernel did not enable it: no IOMMU groups. Fix: add intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot");
    }

    #[test]
    fn kvm_missing_and_slots() {
        let f = host();
        let items = run(&f.roots(), &Request::default(), &|_| Ok(String::new()));
        assert_eq!(
            items[0].line(),
            format!("FAIL kvm: no {}/kvm. Fix: enable VT-x/AMD-V in the firmware and load the module: modprobe kvm_intel (Intel) or modprobe kvm_amd (AMD)", f.roots().dev.display())
        );
        let slot = |s: &str| (s.to_string(), s.parse::<PciSlotConfig>().unwrap());
        let req = Request {
            memory: None,
            slots: vec![
                slot("5,passthru,1/16/0"),
                slot("4,virtio-blk,d.img"),
                slot("6,passthru,1/16/2"),
            ],
        };
        let got = run(&f.roots(), &req, &|s| match &s.device {
            DeviceConfig::Passthru(p) if p.host.device().is_some_and(|d| d.function == 0) => {
                Ok("ready (vfio-pci)".into())
            }
            _ => Err("0000:01:10.2: in use by another VM".into()),
        });
        let slots: Vec<String> = got
            .iter()
            .filter(|i| i.item.starts_with("-s"))
            .map(Item::line)
            .collect();
        assert_eq!(
            slots,
            [
                "OK   -s 5,passthru,1/16/0: ready (vfio-pci)",
                "FAIL -s 6,passthru,1/16/2: 0000:01:10.2: in use by another VM",
            ]
        );
    }

    #[test]
    fn no_sriov_device_is_a_warning() {
        let f = host();
        let p = f.roots();
        fs::remove_file(p.sys.join("bus/pci/devices/0000:01:00.0/sriov_totalvfs")).unwrap();
        let got = lines(&f, &Request::default());
        assert!(got.contains(&"WARN SR-IOV: no SR-IOV capable device. Fix: enable SR-IOV in the firmware setup and load the NIC's PF driver".to_string()), "{got:?}");
    }
}
