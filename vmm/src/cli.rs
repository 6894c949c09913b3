//! The command line: `vfvm run [flags] VMNAME`, with bhyve's flags and
//! meanings. clap parses it into [`RunArgs`] (strings, as typed); converting
//! that into a [`VmConfig`] parses and validates each value, so every error
//! names the flag and value it is about.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_uuid, ConfigError, ConsoleConfig, CpuTopology, MemoryConfig, PciSlotConfig, VmConfig,
    DEFAULT_CMDLINE,
};

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
#[command(name = "vfvm", version)]
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
}

/// `vfvm ctl --api-sock PATH ACTION`: one API call; prints the JSON answer.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CtlArgs {
    /// The VM's API socket (as given to vfvm run --api-sock)
    #[arg(long = "api-sock", value_name = "PATH")]
    pub api_sock: PathBuf,
    /// What to do
    #[arg(value_enum, value_name = "ACTION")]
    pub action: CtlAction,
}

/// The calls `vfvm ctl` makes; each is one route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CtlAction {
    /// Configuration and state (GET /api/v1/vm.info)
    Info,
    /// Exit counters (GET /api/v1/vm.counters)
    Counters,
    /// Park every vCPU (PUT /api/v1/vm.pause)
    Pause,
    /// Run paused vCPUs again (PUT /api/v1/vm.resume)
    Resume,
    /// Stop the VM; vfvm run exits with status 1 (PUT /api/v1/vm.shutdown)
    Shutdown,
}

impl From<CtlAction> for api::ApiRequest {
    fn from(a: CtlAction) -> Self {
        match a {
            CtlAction::Info => api::ApiRequest::Info,
            CtlAction::Counters => api::ApiRequest::Counters,
            CtlAction::Pause => api::ApiRequest::Pause,
            CtlAction::Resume => api::ApiRequest::Resume,
            CtlAction::Shutdown => api::ApiRequest::Shutdown,
        }
    }
}

/// `vfvm run` as typed; [`VmConfig::try_from`] parses and validates it.
///
/// A flag given twice keeps the last value, as in bhyve; `-s` and `-l` add up.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// vCPUs: N, or a topology [cpus=N][,sockets=S][,cores=C][,threads=T]
    #[arg(
        short = 'c',
        long = "cpus",
        value_name = "TOPOLOGY",
        default_value = "1",
        long_help = "Number of vCPUs and their topology: N, or cpus=N,sockets=S,cores=C,threads=T \
            in any order and with any of them left out. cpus = sockets x cores x threads; \
            cores and threads default to 1, a missing count is derived from the others \
            (-c 4 is 4 sockets, as in bhyve; -c 4,cores=2 is 2 sockets of 2 cores).\n\
            Examples: -c 2, -c 8,sockets=2, -c sockets=1,cores=4,threads=2"
    )]
    pub cpus: String,

    /// Guest memory: a number with K/M/G/T suffix (binary); a bare number < 1048576 is MiB, else bytes
    #[arg(
        short = 'm',
        long = "memory",
        value_name = "SIZE",
        default_value = "256M",
        long_help = "Guest memory size, by bhyve's rule: a number with a K, M, G or T suffix \
            (either case, binary: 1K = 1024) is that size; a bare number below 1048576 is in \
            MiB, a bare number from 1048576 on is in bytes. Decimal numbers only. The size \
            must be a non-zero multiple of 4 KiB (it is not rounded), and with --hugepages \
            a multiple of 2 MiB.\n\
            Examples: -m 512M, -m 2G, -m 1024 (1 GiB), -m 1073741824 (1 GiB)"
    )]
    pub memory: String,

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
            virtio-blk,PATH[,ro][,nocache][,direct][,sectorsize=L[/P]][,serial=S]\n      \
            disk image file or block device; nocache opens with O_DIRECT, direct with O_SYNC;\n      \
            sector sizes 512, 1024, 2048 or 4096, physical >= logical; serial up to 20 chars\n  \
            passthru,ADDR[,mac=M][,vlan=N][,spoofchk=on|off][,trust=on|off][,managed]\n      \
            host PCI function, normally an SR-IOV VF, as bhyve's decimal B/S/F (1/16/0) or\n      \
            Linux's DDDD:BB:SS.F (0000:01:10.0); mac, vlan (0..4095, 0 = untagged), spoofchk\n      \
            and trust are set on the VF through its PF; managed: vfvm binds it to vfio-pci\n\
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

    /// Linux kernel to boot (bzImage or ELF vmlinux)
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,

    /// Initramfs to load with the kernel
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (printable ASCII, at most 2047 bytes)
    #[arg(long, value_name = "STRING", default_value = DEFAULT_CMDLINE, allow_hyphen_values = true)]
    pub cmdline: String,

    /// Back guest memory with huge pages (needs -m to be a multiple of 2 MiB and free huge pages)
    #[arg(long)]
    pub hugepages: bool,

    /// Serve the REST API on this Unix socket
    #[arg(long = "api-sock", value_name = "PATH")]
    pub api_sock: Option<PathBuf>,

    /// VM name: 1 to 64 characters from A-Z a-z 0-9 . _ - (names sockets, derives MACs)
    #[arg(value_name = "VMNAME")]
    pub name: String,
}

impl TryFrom<RunArgs> for VmConfig {
    type Error = ConfigError;

    /// Parses every value and validates the result ([`VmConfig::validate`]);
    /// does not touch the filesystem ([`VmConfig::check_files`] does).
    fn try_from(args: RunArgs) -> Result<Self, ConfigError> {
        let cpus: CpuTopology = args.cpus.parse()?;
        let mut memory: MemoryConfig = args.memory.parse()?;
        memory.hugepages = args.hugepages;
        let slots = args
            .slots
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<PciSlotConfig>, _>>()?;
        let mut console: Option<ConsoleConfig> = None;
        for lpc in &args.lpc {
            let parsed: ConsoleConfig = lpc.parse()?;
            if let Some(first) = &console {
                return Err(ConfigError::Console {
                    value: lpc.clone(),
                    reason: format!("com1 is already set by -l {first} (give it once)"),
                });
            }
            console = Some(parsed);
        }
        let uuid = args.uuid.as_deref().map(parse_uuid).transpose()?;
        let config = VmConfig {
            name: args.name,
            cpus,
            memory,
            console,
            slots,
            boot: crate::config::BootConfig {
                kernel: args.kernel,
                initrd: args.initrd,
                cmdline: args.cmdline,
            },
            uuid,
            api_socket: args.api_sock,
        };
        config.validate_with_slot_args(&args.slots)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BlkConfig, BootConfig, DeviceConfig, PassthruConfig};
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
        vf.mac = Some("aa:88:44:00:02:01".parse().unwrap());
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
                hugepages: false,
            },
            console: Some(ConsoleConfig::Stdio),
            slots: vec![
                PciSlotConfig {
                    slot: 0,
                    function: 0,
                    device: DeviceConfig::HostBridge,
                },
                PciSlotConfig {
                    slot: 5,
                    function: 0,
                    device: DeviceConfig::Passthru(vf),
                },
            ],
            boot: BootConfig {
                kernel: "bzImage".into(),
                initrd: Some("initrd.gz".into()),
                cmdline: "console=ttyS0".into(),
            },
            uuid: None,
            api_socket: None,
        };
        assert_eq!(got, want);
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
                hugepages: false
            }
        );
        assert_eq!(got.boot.cmdline, "console=ttyS0");
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
                hugepages: true
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
        vf.vlan = Some(100);
        vf.spoofchk = Some(true);
        vf.trust = Some(false);
        vf.managed = true;
        assert_eq!(got.slots[3].device, DeviceConfig::Passthru(vf));
        assert_eq!(got.slots.len(), 4);
        assert_eq!(
            got.uuid.as_deref(),
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
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
            (&["-s", "4:0,virtio-blk"], "-s 4:0,virtio-blk: missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            (&["-s", "4,virtio-net,tap0"], "-s 4,virtio-net,tap0: unknown emulation 'virtio-net' (known: hostbridge, lpc, virtio-blk, passthru)"),
            (&["-s", "1:4:0,passthru,1/16/0"], "-s 1:4:0,passthru,1/16/0: bus 1 is not supported, only bus 0 (use -s 4:0,...)"),
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
