//! The command line: `vfvm run [flags] VMNAME`, with bhyve's flags and
//! meanings. clap parses it into [`RunArgs`] (strings, as typed); converting
//! that into a [`VmConfig`] parses and validates each value, so every error
//! names the flag and value it is about.

use std::path::PathBuf;

use api::Route;
use clap::{Args, Parser, Subcommand};

use crate::config::{file, Setting, Settings, SettingsError, SlotSetting, VmConfig};

const RUN_EXAMPLES: &str = "\
Examples:
  Two vCPUs, 512 MiB, console on the terminal, one VF (host 0000:01:10.0) with a MAC:
    vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge \\
        -s 5:0,passthru,1/16/0,mac=aa:88:44:00:02:01 --kernel bzImage --initrd initrd.gz guest0

  Four vCPUs as 1 socket x 2 cores x 2 threads, 2 GiB of huge pages, console to a file,
  a disk, and a VF on VLAN 100 that vfvm binds to vfio-pci itself:
    vfvm run -c 4,sockets=1,cores=2,threads=2 -m 2G --hugepages \\
        -l com1,/var/log/guest1.console -s 0,hostbridge \\
        -s 4,virtio-blk,/dev/zvol/tank/guest1,sectorsize=512/4096 \\
        -s 5,passthru,0000:01:10.1,vlan=100,spoofchk=on,trust=off,managed \\
        --kernel bzImage --cmdline 'console=ttyS0 root=/dev/vda' guest1";

/// vfvm: a KVM virtual machine monitor for SR-IOV VF passthrough, with
/// bhyve's command line.
#[derive(Debug, Parser)]
#[command(name = "vfvm", version = env!("VFVM_VERSION"))]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// vfvm's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a Linux guest (bhyve's flags: -c -m -s -l -A -S -H -U).
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Ask a running VM (started with --api-sock) for its state, or to pause, resume or stop.
    Ctl(CtlArgs),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write man/ and completions/
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Say whether this host can run VF passthrough: OK/WARN/FAIL per item, with the fix.
    Check(CheckArgs),
    /// Create, delete and show SR-IOV VFs from iovctl.conf(5) files (FreeBSD's iovctl(8)).
    #[command(after_help = IOV_EXAMPLES)]
    Iov(IovArgs),
    /// Put back what a killed vfvm left changed on the host (VF drivers and settings).
    Recover,
}

/// `vfvm check [-m SIZE [--hugepages]] [-s SLOT,passthru,...]... [--json]`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CheckArgs {
    /// Guest memory to check RLIMIT_MEMLOCK and huge pages against (as vfvm run -m)
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    pub memory: Option<String>,
    /// Check free huge pages (2M or 1G) for -m (as vfvm run --hugepages)
    #[arg(
        long,
        requires = "memory",
        value_name = "2M|1G",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "2M"
    )]
    pub hugepages: Option<String>,
    /// A passthrough device to check as vfvm run -s would use it; may repeat
    #[arg(
        short = 's',
        long = "slot",
        value_name = "SLOT[:FUNC],passthru,ADDR[,...]"
    )]
    pub slots: Vec<String>,
    /// Print the items as JSON
    #[arg(long)]
    pub json: bool,
}

const IOV_EXAMPLES: &str = "\
The file is FreeBSD's iovctl.conf(5); device may be a Linux interface or a PCI address:
  PF { device : \"eth0\"; num_vfs : 3; }
  DEFAULT { allow-set-mac : true; }
  VF-0 { mac-addr : \"02:56:48:7e:d9:f7\"; passthrough : true; }

Examples:
  vfvm iov create -f /etc/vfvm/iov/eth0.conf -n   (or iovctl's -C -f FILE -n: only show the changes)
  vfvm iov create -f /etc/vfvm/iov/eth0.conf      (-C)
  vfvm iov show eth0 --json                        (-L)
  vfvm iov schema -d eth0                          (-S)
  vfvm iov delete -d eth0                          (-D)";

/// `vfvm iov`: subcommands, or iovctl(8)'s flags with its meanings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct IovArgs {
    /// What to do (or one of -C, -D, -L, -S)
    #[command(subcommand)]
    pub action: Option<IovAction>,
    /// iovctl -C: create the VFs -f FILE describes
    #[arg(short = 'C', conflicts_with_all = ["delete", "list", "schema"])]
    pub create: bool,
    /// iovctl -D: delete the VFs of -f FILE's PF or of -d PF
    #[arg(short = 'D', conflicts_with_all = ["list", "schema"])]
    pub delete: bool,
    /// List each PF's VFs (vfvm iov show)
    #[arg(short = 'L', conflicts_with = "schema")]
    pub list: bool,
    /// iovctl -S: print what -d PF accepts in a file
    #[arg(short = 'S')]
    pub schema: bool,
    /// The iovctl.conf(5) file
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,
    /// The PF: a network interface (eth0) or a PCI address (0000:01:00.0)
    #[arg(short = 'd', long = "device", value_name = "PF", global = true)]
    pub device: Option<String>,
    /// Validate and print what would be done; change nothing
    #[arg(short = 'n', long = "dry-run", global = true)]
    pub dry_run: bool,
    /// show: print JSON
    #[arg(long, global = true)]
    pub json: bool,
}

/// `vfvm iov` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum IovAction {
    /// Create the VFs -f FILE describes and apply their settings (-n: only print the changes)
    Create,
    /// Delete the VFs of -f FILE's PF, or of -d PF
    Delete,
    /// One table per PF: each VF's address, driver, MAC, VLAN, trust, spoof check, link, IOMMU group, use, VM
    Show {
        /// Only this PF (interface or PCI address)
        #[arg(value_name = "PF")]
        pf: Option<String>,
    },
    /// Print the keys -d PF accepts, in iovctl -S's layout
    Schema,
}

/// What `vfvm iov` was asked, whichever way it was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IovCommand {
    /// Create (or, with `dry_run`, print) the file's VFs.
    Create { file: PathBuf, dry_run: bool },
    /// Delete a PF's VFs: the file's, or `-d`'s.
    Delete {
        file: Option<PathBuf>,
        device: Option<String>,
    },
    /// Show one PF, or all.
    Show { pf: Option<String>, json: bool },
    /// Print a PF's schema.
    Schema { device: String },
}

impl IovArgs {
    /// The command, or one line saying what is missing.
    pub fn command(&self) -> Result<IovCommand, String> {
        let action = match (&self.action, self.create, self.delete, self.list, self.schema) {
            (Some(a), false, false, false, false) => a.clone(),
            (None, true, false, false, false) => IovAction::Create,
            (None, false, true, false, false) => IovAction::Delete,
            (None, false, false, true, false) => IovAction::Show { pf: None },
            (None, false, false, false, true) => IovAction::Schema,
            (None, false, false, false, false) => {
                return Err("vfvm iov: say what to do: create, delete, show or schema (or iovctl's -C, -D, -L, -S)".into())
            }
            _ => return Err("vfvm iov: give either a subcommand or one of -C, -D, -L, -S".into()),
        };
        Ok(match action {
            IovAction::Create => IovCommand::Create {
                file: self
                    .file
                    .clone()
                    .ok_or("vfvm iov create: -f FILE is required (an iovctl.conf(5) file)")?,
                dry_run: self.dry_run,
            },
            IovAction::Delete => {
                if self.file.is_none() && self.device.is_none() {
                    return Err("vfvm iov delete: give -f FILE or -d PF".into());
                }
                IovCommand::Delete {
                    file: self.file.clone(),
                    device: self.device.clone(),
                }
            }
            IovAction::Show { pf } => IovCommand::Show {
                pf: pf.or_else(|| self.device.clone()),
                json: self.json,
            },
            IovAction::Schema => IovCommand::Schema {
                device: self
                    .device
                    .clone()
                    .ok_or("vfvm iov schema: -d PF is required (e.g. -d eth0)")?,
            },
        })
    }
}

/// `vfvm ctl --api-sock PATH ACTION`: one API call; prints the answer as
/// a table (or its JSON with --json).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CtlArgs {
    /// The VM's API socket (as given to vfvm run --api-sock)
    #[arg(long = "api-sock", value_name = "PATH")]
    pub api_sock: PathBuf,
    /// Print the API's JSON answer as it comes instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do
    #[command(subcommand)]
    pub action: CtlAction,
}

/// The calls `vfvm ctl` makes; each is one route of the API, and its help
/// names the route as [`api::ROUTES`] has it.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlAction {
    #[command(about = calls(Route::VmmPing, "vfvm's version and process"))]
    Ping,
    #[command(about = calls(
        Route::VmInfo,
        "State, memory, vCPUs and devices, each VF as its PF reports it now"
    ))]
    Info {
        /// Print the VM's configuration as a VM file (vfvm run --config FILE starts the same VM)
        #[arg(long = "config")]
        config: bool,
    },
    #[command(about = calls(
        Route::VmCounters,
        "Exit, disk, interrupt and per-VF traffic counters, read from the PF"
    ))]
    Counters {
        /// Print them in Prometheus' text format (the API's answer to Accept: text/plain)
        #[arg(long)]
        prometheus: bool,
    },
    #[command(about = calls(Route::VmPause, "Park every vCPU"))]
    Pause,
    #[command(about = calls(Route::VmResume, "Run paused vCPUs again"))]
    Resume,
    #[command(about = calls(Route::VmPowerButton, "Press the guest's ACPI power button"))]
    PowerButton,
    #[command(about = calls(
        Route::VmNmi,
        "Send every vCPU a non-maskable interrupt (a hung guest's dump, kdump)"
    ))]
    Nmi,
    #[command(about = calls(
        Route::VmShutdown,
        "Power button, then a forced stop after --timeout; vfvm run exits 1"
    ))]
    Shutdown {
        /// Seconds the guest has to power off before vfvm stops it (0: at once)
        #[arg(long, value_name = "S", default_value_t = api::DEFAULT_SHUTDOWN_TIMEOUT_S)]
        timeout: u64,
    },
    #[command(about = calls(
        Route::VmReboot,
        "Reset the VM; vfvm run exits 0, as after the guest's own reboot"
    ))]
    Reboot,
    #[command(
        about = calls(
            Route::VmAddDevice,
            "Hot-add a VF, -s as vfvm run takes it (a virtio-blk -s goes to vm.add-disk)"
        ),
        after_help = "Examples:\n  vfvm ctl --api-sock /run/g.sock add-device -s 6:0,passthru,1/16/1,mac=aa:88:44:00:02:01\n  vfvm ctl --api-sock /run/g.sock add-device -s 7:0,virtio-blk,disk.img,ro"
    )]
    AddDevice {
        /// SLOT[:FUNCTION],passthru,HOST[,OPTIONS] or SLOT[:FUNCTION],virtio-blk,PATH[,OPTIONS]
        #[arg(short = 's', value_name = "SLOT,EMULATION,CONF")]
        slot: String,
        /// The device's id (default: its slot, e.g. 6:0)
        #[arg(long)]
        id: Option<String>,
    },
    #[command(about = calls(
        Route::VmRemoveDevice,
        "Ask the guest to eject a device, and release it once it has"
    ))]
    RemoveDevice {
        /// The device's id, as vfvm ctl info shows it (e.g. 6:0)
        id: String,
        /// Seconds to wait for the guest's eject
        #[arg(long, value_name = "S", default_value_t = api::DEFAULT_EJECT_TIMEOUT_S)]
        timeout: u64,
    },
}

/// `WHAT (METHOD PATH)`: a `vfvm ctl` action's help, with the method and
/// path of its route taken from [`api::ROUTES`].
fn calls(route: Route, what: &str) -> String {
    let (method, path) = route.endpoint();
    format!("{what} ({} {path})", method.as_str())
}

impl TryFrom<&CtlAction> for api::ApiRequest {
    type Error = String;

    /// The request of `a`; an `add-device -s` that does not parse is the
    /// `-s` parser's error.
    fn try_from(a: &CtlAction) -> Result<Self, String> {
        Ok(match a {
            CtlAction::Ping => api::ApiRequest::Ping,
            CtlAction::Info { .. } => api::ApiRequest::Info,
            CtlAction::Counters { .. } => api::ApiRequest::Counters,
            CtlAction::Pause => api::ApiRequest::Pause,
            CtlAction::Resume => api::ApiRequest::Resume,
            CtlAction::PowerButton => api::ApiRequest::PowerButton,
            CtlAction::Nmi => api::ApiRequest::Nmi,
            CtlAction::Shutdown { timeout } => api::ApiRequest::Shutdown(api::VmShutdown {
                timeout_s: Some(*timeout),
            }),
            CtlAction::Reboot => api::ApiRequest::Reboot,
            CtlAction::AddDevice { slot, id } => {
                let mut parsed: crate::config::PciSlotConfig = slot
                    .parse()
                    .map_err(|e: crate::config::ConfigError| e.to_string())?;
                parsed.id = id.clone();
                crate::hotplug::body::add_request(&parsed)?
            }
            CtlAction::RemoveDevice { id, timeout } => {
                api::ApiRequest::RemoveDevice(api::VmRemoveDevice {
                    id: id.clone(),
                    timeout_s: Some(*timeout),
                })
            }
        })
    }
}

/// `vfvm run` as typed; [`VmConfig::try_from`] parses and validates it.
///
/// A flag given twice keeps the last value, as in bhyve; `-s` and `-l` add up.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// A VM file (TOML) with these settings; the flags given as well override it
    #[arg(
        long = "config",
        value_name = "FILE",
        long_help = "Read the VM's settings from FILE, a TOML VM file (see vfvm-run(1) and \
            /etc/vfvm/vms/example.toml): the same settings as the flags, with the same meaning \
            and checks. Flags given as well override the file's values; a -s at a slot the file \
            uses replaces that device, other -s add devices. Errors name FILE:LINE and the key."
    )]
    pub config: Option<PathBuf>,

    /// vCPUs: N, or a topology [cpus=N][,sockets=S][,cores=C][,threads=T] (default 1)
    #[arg(
        short = 'c',
        long = "cpus",
        value_name = "TOPOLOGY",
        long_help = "Number of vCPUs and their topology: N, or cpus=N,sockets=S,cores=C,threads=T \
            in any order and with any of them left out. cpus = sockets x cores x threads; \
            cores and threads default to 1, a missing count is derived from the others \
            (-c 4 is 4 sockets, as in bhyve; -c 4,cores=2 is 2 sockets of 2 cores). Default: 1.\n\
            Examples: -c 2, -c 8,sockets=2, -c sockets=1,cores=4,threads=2"
    )]
    pub cpus: Option<String>,

    /// Guest memory: a number with K/M/G/T suffix (binary); a bare number < 1048576 is MiB, else bytes (default 256M)
    #[arg(
        short = 'm',
        long = "memory",
        value_name = "SIZE",
        long_help = "Guest memory size, by bhyve's rule: a number with a K, M, G or T suffix \
            (either case, binary: 1K = 1024) is that size; a bare number below 1048576 is in \
            MiB, a bare number from 1048576 on is in bytes. Decimal numbers only. The size \
            must be a non-zero multiple of 4 KiB (it is not rounded), and with --hugepages \
            a multiple of 2 MiB. Default: 256M.\n\
            Examples: -m 512M, -m 2G, -m 1024 (1 GiB), -m 1073741824 (1 GiB)"
    )]
    pub memory: Option<String>,

    /// PCI device at a slot: SLOT[:FUNC],EMULATION[,CONF]; may repeat
    #[arg(
        short = 's',
        long = "slot",
        value_name = "SLOT[:FUNC],EMULATION[,CONF]",
        long_help = "A PCI device on guest bus 0 at SLOT (0..31) and FUNC (0..7, default 0); \
            bhyve's BUS:SLOT:FUNC is accepted with bus 0. May repeat; a slot that uses \
            functions above 0 needs function 0 too. Emulations:\n  \
            hostbridge (or amd_hostbridge)   host bridge, usually -s 0,hostbridge\n  \
            lpc                              PCI-ISA bridge for -l com1, usually -s 31,lpc\n  \
            virtio-blk,PATH[,ro][,nocache][,direct][,sectorsize=L[/P]][,serial=S][,num_queues=N][,iothreads=N]\n      \
            disk image file or block device; nocache opens with O_DIRECT, direct with O_SYNC;\n      \
            flags (ro, nocache, direct, managed) also take =on or =off;\n      \
            sector sizes 512, 1024, 2048 or 4096, physical >= logical; serial up to 20 chars;\n      \
            num_queues: 1..64 request queues (default: one per vCPU); iothreads: threads\n      \
            serving them, queue i on thread i % N (default: one per queue if the host has\n      \
            a CPU for each besides the vCPUs, else one per CPU they leave, at least 1)\n  \
            passthru,ADDR[,mac=M][,vlan=N][,spoofchk=on|off][,trust=on|off][,managed]\n      \
            host PCI function, normally an SR-IOV VF, as bhyve's decimal B/S/F (1/16/0) or\n      \
            Linux's DDDD:BB:SS.F (0000:01:10.0); mac, vlan (0..4095, 0 = untagged), spoofchk\n      \
            and trust are set on the VF through its PF; managed: vfvm binds it to vfio-pci\n  \
            passthru,pf=PF[,mac=M][,...]   any free passthrough VF of PF (eth0 or 0000:01:00.0),\n      \
            taken when the VM starts; the VM keeps its stable MAC whichever VF it gets\n\
            Examples: -s 0,hostbridge -s 4,virtio-blk,disk.img,ro -s 5:0,passthru,1/16/0,mac=aa:88:44:00:02:01"
    )]
    pub slots: Vec<String>,

    /// LPC device: com1,stdio or com1,PATH (guest serial console)
    #[arg(
        short = 'l',
        long = "lpc",
        value_name = "com1,stdio|com1,PATH",
        long_help = "Where the guest's first serial port (com1, Linux ttyS0) goes: stdio \
            (this terminal) or PATH (output written to that file). Only com1 for now; \
            bhyve's com2-com4, bootrom, fwcfg and tpm are not supported.\n\
            Examples: -l com1,stdio, -l com1,/var/log/guest0.console"
    )]
    pub lpc: Vec<String>,

    /// Generate ACPI tables (always done; accepted for bhyve compatibility)
    #[arg(short = 'A', long = "acpi")]
    pub acpi: bool,

    /// Wire guest memory (always done; accepted for bhyve compatibility)
    #[arg(short = 'S', long = "wire-memory")]
    pub wire_memory: bool,

    /// Yield the vCPU thread when the guest halts (always done; accepted for bhyve compatibility)
    #[arg(short = 'H', long = "yield-on-hlt")]
    pub yield_on_hlt: bool,

    /// System UUID for SMBIOS, e.g. 6ba7b810-9dad-11d1-80b4-00c04fd430c8
    #[arg(short = 'U', long = "uuid", value_name = "UUID")]
    pub uuid: Option<String>,

    /// SMBIOS OEM string (type 11), repeatable, e.g. io.systemd.credential:NAME=VALUE
    #[arg(long = "oem-string", value_name = "STRING", allow_hyphen_values = true)]
    pub oem_strings: Vec<String>,

    /// Linux kernel to boot (bzImage or ELF vmlinux)
    #[arg(long, value_name = "PATH", required_unless_present = "config")]
    pub kernel: Option<PathBuf>,

    /// Initramfs to load with the kernel
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (printable ASCII, at most 2047 bytes; default console=ttyS0)
    #[arg(long, value_name = "STRING", allow_hyphen_values = true)]
    pub cmdline: Option<String>,

    /// Back guest memory with huge pages: 2M (the default) or 1G; needs -m to be a multiple and free pages
    #[arg(
        long,
        value_name = "2M|1G",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "2M",
        long_help = "Back guest memory with huge pages from the host's hugetlb pool: \
            --hugepages or --hugepages=2M for 2 MiB pages, --hugepages=1G for 1 GiB pages. \
            -m must be a multiple of the page size, and the pool must have enough free pages \
            (/proc/sys/vm/nr_hugepages; 1 GiB pages: hugepagesz=1G hugepages=N on the host's \
            command line)."
    )]
    pub hugepages: Option<String>,

    /// Serve the REST API on this Unix socket
    #[arg(long = "api-sock", value_name = "PATH")]
    pub api_sock: Option<PathBuf>,

    /// Let this group's members use the API too (a name or a gid; the socket becomes 0660)
    #[arg(long = "api-group", value_name = "GROUP")]
    pub api_group: Option<String>,

    /// System call filters for vfvm's threads: on (a forbidden call stops vfvm with one line naming it), log (the kernel logs it), off
    #[arg(
        long,
        value_name = "on|log|off",
        long_help = "System call filters (seccomp) for vfvm's threads, one allowlist per kind of \
            thread (vCPUs, the event loop, the API, disk I/O, the console writer). on (the \
            default): a call outside its thread's list stops vfvm at once with one line naming \
            the thread and the call; log: the kernel logs such a call (audit log or dmesg) and \
            lets it run; off: no filters. Whatever the mode, each thread keeps only the \
            capabilities it needs (the event loop: CAP_NET_ADMIN and CAP_IPC_LOCK), with \
            no_new_privs."
    )]
    pub seccomp: Option<String>,

    /// VM name: 1 to 64 characters from A-Z a-z 0-9 . _ - (names sockets, derives MACs)
    #[arg(value_name = "VMNAME", required_unless_present = "config")]
    pub name: Option<String>,
}

impl RunArgs {
    /// The settings the flags give (those not given are `None`).
    pub fn settings(&self) -> Settings {
        let flag = |v: &Option<String>| v.clone().map(Setting::flag);
        let path = |v: &Option<PathBuf>| {
            v.as_ref()
                .map(|p| Setting::flag(p.to_string_lossy().into_owned()))
        };
        Settings {
            name: flag(&self.name),
            cpus: flag(&self.cpus),
            memory: flag(&self.memory),
            hugepages: flag(&self.hugepages),
            console: self.lpc.iter().cloned().map(Setting::flag).collect(),
            slots: self.slots.iter().cloned().map(SlotSetting::flag).collect(),
            kernel: path(&self.kernel),
            initrd: path(&self.initrd),
            cmdline: flag(&self.cmdline),
            uuid: flag(&self.uuid),
            oem_strings: self
                .oem_strings
                .iter()
                .cloned()
                .map(Setting::flag)
                .collect(),
            api_socket: path(&self.api_sock),
            api_group: flag(&self.api_group),
            seccomp: flag(&self.seccomp),
        }
    }
}

impl TryFrom<RunArgs> for VmConfig {
    type Error = SettingsError;

    /// Reads the VM file (`--config`), lets the flags override it, parses
    /// every value and validates the result ([`VmConfig::validate`]); does
    /// not look at the kernel, disks... ([`VmConfig::check_files`] does).
    fn try_from(args: RunArgs) -> Result<Self, SettingsError> {
        let settings = match &args.config {
            Some(path) => file::load(path)?.overridden_by(args.settings()),
            None => args.settings(),
        };
        settings.into_config()
    }
}

/// The [`VmConfig`] of `vfvm run ARGS...`, for tests elsewhere.
#[cfg(test)]
pub fn run_config(args: &[String]) -> Result<VmConfig, String> {
    let cli = Cli::try_parse_from(
        ["vfvm", "run"]
            .iter()
            .map(|s| s.to_string())
            .chain(args.iter().cloned()),
    )
    .map_err(|e| format!("clap: {e}"))?;
    match cli.command {
        Command::Run(args) => VmConfig::try_from(*args).map_err(|e| e.to_string()),
        other => Err(format!("not run: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HugePageSize;
    use crate::config::SeccompMode;
    use crate::config::{
        BlkConfig, BootConfig, ConsoleConfig, CpuTopology, DeviceConfig, MemoryConfig,
        PassthruConfig, PciSlotConfig,
    };
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn run_args(argv: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["vfvm", "run"].iter().chain(argv))?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("not run: {other:?}"),
        }
    }

    fn config(argv: &[&str]) -> Result<VmConfig, String> {
        let args = run_args(argv).map_err(|e| format!("clap: {e}"))?;
        VmConfig::try_from(args).map_err(|e| e.to_string())
    }

    fn iov(argv: &[&str]) -> Result<IovCommand, String> {
        let cli = Cli::try_parse_from(["vfvm", "iov"].iter().chain(argv))
            .map_err(|e| e.kind().to_string())?;
        match cli.command {
            Command::Iov(args) => args.command(),
            other => panic!("not iov: {other:?}"),
        }
    }

    /// Each action's help names the route its request goes to: the route
    /// written in its `about` is the one `From<CtlAction>` calls.
    #[test]
    fn ctl_help_names_the_route_each_action_calls() {
        let cli = Cli::command();
        let ctl = cli.find_subcommand("ctl").unwrap();
        let names: Vec<&str> = ctl.get_subcommands().map(|c| c.get_name()).collect();
        assert!(names.len() >= 8, "{names:?}");
        for sub in ctl.get_subcommands() {
            let name = sub.get_name();
            // The actions that take arguments get some.
            let args: &[&str] = match name {
                "add-device" => &["-s", "6:0,passthru,1/16/1"],
                "remove-device" => &["6:0"],
                _ => &[],
            };
            let line = ["vfvm", "ctl", "--api-sock", "s", name];
            let parsed = Cli::try_parse_from(line.iter().chain(args));
            let Ok(Cli {
                command: Command::Ctl(args),
                ..
            }) = parsed
            else {
                panic!("vfvm ctl {name}: {parsed:?}");
            };
            let request = api::ApiRequest::try_from(&args.action).unwrap();
            let (method, path) = request.route().endpoint();
            let about = sub.get_about().unwrap().to_string();
            assert!(
                about.ends_with(&format!(" ({} {path})", method.as_str())),
                "vfvm ctl {name}: {about}"
            );
        }
    }

    #[test]
    fn iov_takes_subcommands_and_iovctl_flags() {
        let create = IovCommand::Create {
            file: "a.conf".into(),
            dry_run: true,
        };
        assert_eq!(iov(&["create", "-f", "a.conf", "-n"]), Ok(create.clone()));
        assert_eq!(iov(&["-C", "-f", "a.conf", "-n"]), Ok(create.clone()));
        assert_eq!(iov(&["-Cn", "-f", "a.conf"]), Ok(create));
        let delete = IovCommand::Delete {
            file: None,
            device: Some("eth0".into()),
        };
        assert_eq!(iov(&["delete", "-d", "eth0"]), Ok(delete.clone()));
        assert_eq!(iov(&["-D", "-d", "eth0"]), Ok(delete));
        assert_eq!(
            iov(&["show", "eth0", "--json"]),
            Ok(IovCommand::Show {
                pf: Some("eth0".into()),
                json: true
            })
        );
        assert_eq!(
            iov(&["-L"]),
            Ok(IovCommand::Show {
                pf: None,
                json: false
            })
        );
        assert_eq!(
            iov(&["-S", "-d", "0000:01:00.0"]),
            Ok(IovCommand::Schema {
                device: "0000:01:00.0".into()
            })
        );
        assert_eq!(
            iov(&["create"]),
            Err("vfvm iov create: -f FILE is required (an iovctl.conf(5) file)".into())
        );
        assert_eq!(
            iov(&["-D"]),
            Err("vfvm iov delete: give -f FILE or -d PF".into())
        );
        assert_eq!(
            iov(&["schema"]),
            Err("vfvm iov schema: -d PF is required (e.g. -d eth0)".into())
        );
        assert!(iov(&[])
            .unwrap_err()
            .starts_with("vfvm iov: say what to do"));
        assert_eq!(
            iov(&["-C", "-D", "-f", "a"]),
            Err(
                "an argument cannot be used with one or more of the other specified arguments"
                    .into()
            )
        );
        assert!(iov(&["-C", "show"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn readme_example() {
        let got = config(&[
            "-c",
            "2",
            "-m",
            "512M",
            "-l",
            "com1,stdio",
            "-s",
            "0,hostbridge",
            "-s",
            "5:0,passthru,1/16/0,mac=aa:88:44:00:02:01",
            "--kernel",
            "bzImage",
            "--initrd",
            "initrd.gz",
            "guest0",
        ])
        .unwrap();
        let mut vf = PassthruConfig::new("0000:01:10.0".parse().unwrap());
        vf.vf.mac = Some("aa:88:44:00:02:01".parse().unwrap());
        let want = VmConfig {
            name: "guest0".into(),
            cpus: CpuTopology {
                cpus: 2,
                sockets: 2,
                cores: 1,
                threads: 1,
            },
            memory: MemoryConfig {
                size: 512 << 20,
                hugepages: None,
            },
            console: Some(ConsoleConfig::Stdio),
            slots: vec![
                PciSlotConfig::new(0, 0, DeviceConfig::HostBridge),
                PciSlotConfig::new(5, 0, DeviceConfig::Passthru(vf)),
            ],
            boot: BootConfig {
                kernel: "bzImage".into(),
                initrd: Some("initrd.gz".into()),
                cmdline: "console=ttyS0".into(),
            },
            uuid: None,
            oem_strings: Vec::new(),
            api_socket: None,
            api_group: None,
            seccomp: SeccompMode::On,
        };
        assert_eq!(got, want);
    }

    #[test]
    fn seccomp_is_on_unless_told() {
        let mode = |extra: &[&str]| {
            let mut argv = vec!["--kernel", "k"];
            argv.extend_from_slice(extra);
            argv.push("vm");
            config(&argv).map(|c| c.seccomp)
        };
        assert_eq!(mode(&[]), Ok(SeccompMode::On));
        assert_eq!(mode(&["--seccomp=log"]), Ok(SeccompMode::Log));
        assert_eq!(mode(&["--seccomp", "off"]), Ok(SeccompMode::Off));
        assert_eq!(mode(&["--seccomp=false"]), Ok(SeccompMode::Off));
        assert_eq!(
            mode(&["--seccomp=strict"]),
            Err("--seccomp strict: expected on, log or off (default on)".into())
        );
    }

    #[test]
    fn defaults() {
        let got = config(&["--kernel", "bzImage", "vm"]).unwrap();
        assert_eq!(got, VmConfig::new("vm", "bzImage"));
        assert_eq!(
            got.cpus,
            CpuTopology {
                cpus: 1,
                sockets: 1,
                cores: 1,
                threads: 1
            }
        );
        assert_eq!(
            got.memory,
            MemoryConfig {
                size: 256 << 20,
                hugepages: None
            }
        );
        assert_eq!(got.boot.cmdline, "console=ttyS0");
    }

    #[test]
    fn hugepage_sizes() {
        let size = |argv: &[&str]| config(argv).unwrap().memory.hugepages;
        // A bare --hugepages before the name does not take the name as its size.
        assert_eq!(
            size(&["--kernel", "k", "--hugepages", "vm"]),
            Some(HugePageSize::Size2M)
        );
        assert_eq!(
            size(&["--hugepages=2M", "--kernel", "k", "vm"]),
            Some(HugePageSize::Size2M)
        );
        assert_eq!(
            size(&["-m", "2G", "--hugepages=1G", "--kernel", "k", "vm"]),
            Some(HugePageSize::Size1G)
        );
        assert_eq!(size(&["--kernel", "k", "vm"]), None);
    }

    #[test]
    fn long_forms_and_all_options() {
        let got = config(&[
            "--cpus",
            "cpus=4,sockets=1,cores=2,threads=2",
            "--memory",
            "2G",
            "--hugepages",
            "--lpc",
            "com1,/var/log/g1.console",
            "--slot",
            "0,hostbridge",
            "--slot",
            "31,lpc",
            "--slot",
            "4,virtio-blk,/dev/zvol/tank/g1,ro,sectorsize=512/4096,ser=G1",
            "--slot",
            "5,passthru,0000:01:10.1,vlan=100,spoofchk=on,trust=off,managed",
            "--acpi",
            "--wire-memory",
            "--yield-on-hlt",
            "--uuid",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "--oem-string",
            "io.systemd.credential:hello=world",
            "--oem-string",
            "-second, with spaces",
            "--kernel",
            "vmlinux",
            "--cmdline",
            "console=ttyS0 root=/dev/vda",
            "--api-sock",
            "/run/vfvm/g1.sock",
            "g1",
        ])
        .unwrap();
        assert_eq!(
            got.cpus,
            CpuTopology {
                cpus: 4,
                sockets: 1,
                cores: 2,
                threads: 2
            }
        );
        assert_eq!(
            got.memory,
            MemoryConfig {
                size: 2 << 30,
                hugepages: Some(HugePageSize::Size2M)
            }
        );
        assert_eq!(
            got.console,
            Some(ConsoleConfig::File("/var/log/g1.console".into()))
        );
        let mut blk = BlkConfig::new("/dev/zvol/tank/g1");
        blk.readonly = true;
        blk.physical_sector = 4096;
        blk.serial = Some("G1".into());
        assert_eq!(got.slots[2].device, DeviceConfig::VirtioBlk(blk));
        let mut vf = PassthruConfig::new("0000:01:10.1".parse().unwrap());
        vf.vf.vlan = Some(100);
        vf.vf.spoofchk = Some(true);
        vf.vf.trust = Some(false);
        vf.managed = true;
        assert_eq!(got.slots[3].device, DeviceConfig::Passthru(vf));
        assert_eq!(got.slots.len(), 4);
        assert_eq!(
            got.uuid.as_deref(),
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
        );
        assert_eq!(
            got.oem_strings,
            ["io.systemd.credential:hello=world", "-second, with spaces"]
        );
        assert_eq!(got.boot.kernel, PathBuf::from("vmlinux"));
        assert_eq!(got.boot.initrd, None);
        assert_eq!(got.boot.cmdline, "console=ttyS0 root=/dev/vda");
        assert_eq!(got.api_socket, Some(PathBuf::from("/run/vfvm/g1.sock")));
        assert_eq!(got.name, "g1");
    }

    #[test]
    fn bhyve_style_short_flags() {
        // Bundled no-op flags, as in bhyve scripts: -AHS (or -A -H -P -w ...).
        let args = run_args(&[
            "-AHS",
            "-U",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "--kernel",
            "k",
            "vm",
        ])
        .unwrap();
        assert!(args.acpi && args.yield_on_hlt && args.wire_memory);
        // A repeated flag keeps the last value, as bhyve's getopt loop does.
        let got = config(&[
            "-m", "1G", "-m", "2G", "-c", "2", "-c", "4", "-A", "-A", "--kernel", "k", "vm",
        ])
        .unwrap();
        assert_eq!(got.memory.size, 2 << 30);
        assert_eq!(got.cpus.cpus, 4);
        // -s and -l accumulate.
        let args = run_args(&[
            "-s",
            "0,hostbridge",
            "-s",
            "31,lpc",
            "-l",
            "com1,stdio",
            "--kernel",
            "k",
            "vm",
        ])
        .unwrap();
        assert_eq!(args.slots, ["0,hostbridge", "31,lpc"]);
        assert_eq!(args.lpc, ["com1,stdio"]);
        // --cmdline may start with '-'.
        let got = config(&["--cmdline", "-b", "--kernel", "k", "vm"]).unwrap();
        assert_eq!(got.boot.cmdline, "-b");
        // An empty --cmdline is allowed.
        assert_eq!(
            config(&["--cmdline", "", "--kernel", "k", "vm"])
                .unwrap()
                .boot
                .cmdline,
            ""
        );
    }

    #[test]
    fn clap_errors() {
        let cases: &[(&[&str], ErrorKind)] = &[
            (&["vm"], ErrorKind::MissingRequiredArgument),
            (&["--kernel", "k"], ErrorKind::MissingRequiredArgument),
            (
                &["--kernel", "k", "vm", "extra"],
                ErrorKind::UnknownArgument,
            ),
            (&["-P", "--kernel", "k", "vm"], ErrorKind::UnknownArgument),
            (&["-c", "--kernel", "k", "vm"], ErrorKind::InvalidValue),
            (
                &["--kernel", "k", "vm", "--bogus"],
                ErrorKind::UnknownArgument,
            ),
            // clap refuses empty paths itself.
            (&["--kernel", "", "vm"], ErrorKind::InvalidValue),
            (
                &["--initrd", "", "--kernel", "k", "vm"],
                ErrorKind::InvalidValue,
            ),
            (
                &["--api-sock", "", "--kernel", "k", "vm"],
                ErrorKind::InvalidValue,
            ),
        ];
        for (argv, kind) in cases {
            let err = run_args(argv).expect_err(&format!("{argv:?}"));
            assert_eq!(err.kind(), *kind, "{argv:?}: {err}");
        }
    }

    #[test]
    fn config_errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["-c", "0"], "-c 0: cpus must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            (&["-c", "4,sockets=2,cores=4,threads=1"], "-c 4,sockets=2,cores=4,threads=1: sockets=2 x cores=4 x threads=1 is 8 vCPUs, not cpus=4 (make them agree, or leave one out to derive it)"),
            (&["-m", "0"], "-m 0: memory size must be greater than 0 (e.g. -m 512M)"),
            (&["-m", "lots"], "-m lots: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            (&["-m", "1001M", "--hugepages"], "-m 1001M: not a multiple of 2 MiB, which --hugepages needs (use e.g. -m 1002M)"),
            (&["-m", "1001M", "--hugepages=1G"], "-m 1001M: not a multiple of 1 GiB, which --hugepages=1G needs (use e.g. -m 1G)"),
            (&["--hugepages=3M"], "--hugepages=3M: not a huge page size (use --hugepages=2M or --hugepages=1G)"),
            (&["-s", "4:0,virtio-blk"], "-s 4:0,virtio-blk: missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            (&["-s", "4,virtio-net,tap0"], "-s 4,virtio-net,tap0: unknown emulation (known: hostbridge, lpc, virtio-blk, passthru)"),
            (&["-s", "1:4:0,passthru,1/16/0"], "-s 1:4:0,passthru,1/16/0: bus must be 0, the only one (use -s 4:0,...)"),
            (&["-s", "0,hostbridge", "-s", "0:0,lpc"], "-s 0:0,lpc: slot 0:0 is already used by -s 0,hostbridge (pick a free slot)"),
            (&["-s", "5,passthru,1/16/0", "-s", "6,passthru,0000:01:10.0"], "-s 6,passthru,0000:01:10.0: host device 0000:01:10.0 is already passed through by -s 5,passthru,1/16/0 (each host device can be used once)"),
            (&["-s", "5:1,passthru,1/16/1"], "-s 5:1,passthru,1/16/1: slot 5 has function 1 but no function 0 (PCI needs function 0: add -s 5:0,...)"),
            (&["-s", "31,lpc", "-s", "30,lpc"], "-s 30,lpc: only one lpc is allowed (already -s 31,lpc)"),
            (&["-l", "com2,stdio"], "-l com2,stdio: com2 is not supported (only com1 is supported for now)"),
            (&["-l", "bootrom,BHYVE_UEFI.fd"], "-l bootrom,BHYVE_UEFI.fd: bootrom is not supported (vfvm boots Linux directly (use --kernel))"),
            (&["-l", "com1,stdio", "-l", "com1,/tmp/c"], "-l com1,/tmp/c: com1 is already set by -l com1,stdio (give it once)"),
            (&["-U", "1234"], "-U 1234: not a UUID (use 8-4-4-4-12 hex digits, e.g. -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8)"),
            (&["--cmdline", "a\u{7f}"], "--cmdline: character '\\u{7f}' is not allowed (only printable ASCII)"),
        ];
        for (flags, want) in cases {
            let mut argv = flags.to_vec();
            argv.extend(["--kernel", "k", "vm"]);
            assert_eq!(config(&argv), Err(want.to_string()), "{argv:?}");
        }
        // The name and the kernel, which come last.
        assert_eq!(
            config(&["--kernel", "k", "my vm"]),
            Err("VMNAME 'my vm': character ' ' is not allowed (use A-Z a-z 0-9 . _ -)".to_string())
        );
        assert_eq!(
            config(&["--kernel", "k", "--", "-vm"]),
            Err("VMNAME '-vm': must not start with '-'".to_string())
        );
    }

    #[test]
    fn help_explains_the_rules() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").unwrap();
        let long = run.render_long_help().to_string();
        for needle in [
            "a bare number below 1048576 is in MiB",
            "multiple of 4 KiB",
            "sockets x cores x threads",
            "passthru,ADDR[,mac=M][,vlan=N]",
            "virtio-blk,PATH[,ro]",
            "vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge",
            "-s 5:0,passthru,1/16/0,mac=aa:88:44:00:02:01 --kernel bzImage --initrd initrd.gz guest0",
        ] {
            assert!(long.contains(needle), "long help lacks {needle:?}:\n{long}");
        }
        let short = run.render_help().to_string();
        assert!(
            short.contains("a bare number < 1048576 is MiB, else bytes"),
            "{short}"
        );
    }
}

/// VM files against the flags: a file means what its flags mean, and flags
/// override it.
#[cfg(test)]
mod vm_file_tests {
    use std::path::Path;

    use super::run_config;
    use crate::config::file::parse;
    use crate::config::HugePageSize;
    use crate::config::VmConfig;

    /// Every key of a VM file.
    const FULL: &str = include_str!("config/full-vm.toml");

    /// The flags that say what FULL says.
    fn full_by_flags() -> VmConfig {
        let flags: Vec<String> = [
            "--seccomp=log",
            "-c",
            "4,sockets=1,cores=2,threads=2",
            "-m",
            "2G",
            "--hugepages",
            "-l",
            "com1,/var/log/g.console",
            "--kernel",
            "/boot/bzImage",
            "--initrd",
            "/boot/initrd.gz",
            "--cmdline",
            "console=ttyS0 root=/dev/vda",
            "-U",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "--oem-string",
            "io.systemd.credential:hello=world",
            "--oem-string",
            "two words",
            "--api-sock",
            "/run/vfvm/guest0.sock",
            "-s",
            "0,hostbridge",
            "-s",
            "4,virtio-blk,/dev/zvol/tank/g,ro,sectorsize=512/4096,serial=G1",
            "-s",
            "5:0,passthru,1/16/0,mac=aa:88:44:00:02:01,vlan=100,spoofchk=on,trust=off,managed",
            "guest0",
        ]
        .map(String::from)
        .to_vec();
        run_config(&flags).unwrap()
    }

    #[test]
    fn a_file_means_what_the_flags_mean() {
        let file = parse(Path::new("vm.toml"), FULL).unwrap().into_config();
        assert_eq!(file, Ok(full_by_flags()));
    }

    #[test]
    fn flags_override_the_file() {
        let path = std::env::temp_dir().join(format!("vfvm-file-{}.toml", std::process::id()));
        std::fs::write(&path, FULL).unwrap();
        let p = path.display().to_string();
        let run = |extra: &[&str]| {
            let mut args = vec!["--config".to_string(), p.clone()];
            args.extend(extra.iter().map(|s| s.to_string()));
            crate::cli::run_config(&args)
        };
        assert_eq!(run(&[]), Ok(full_by_flags()));
        let c = run(&[
            "-m",
            "1G",
            "-c",
            "2",
            "-s",
            "5,passthru,1/16/2",
            "-s",
            "6,lpc",
            "other",
        ])
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.memory.size, c.cpus.cpus),
            ("other", 1 << 30, 2)
        );
        assert_eq!(
            c.memory.hugepages,
            Some(HugePageSize::Size2M),
            "the file's hugepages stay"
        );
        let slots: Vec<String> = c.slots.iter().map(ToString::to_string).collect();
        assert_eq!(
            slots[2], "5:0,passthru,0000:01:10.2",
            "-s at the file's slot replaces it"
        );
        assert_eq!(slots[3], "6:0,lpc");
        assert_eq!(slots.len(), 4);
        // A flag's error is the flag's; the file's errors name the file.
        assert_eq!(
            run(&["-m", "x"]).unwrap_err(),
            "-m x: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"
        );
        // A device from the file is named by where the file has it.
        assert_eq!(
            run(&["-s", "7,passthru,1/16/0"]).unwrap_err(),
            format!(
                "-s 7,passthru,1/16/0: host device 0000:01:10.0 is already passed through by \
                 device[2] at {p}:27 (each host device can be used once)"
            )
        );
        let _ = std::fs::remove_file(&path);
    }
}
