//! The VM configuration: one validated value built from the command line
//! (see `cli`) or, later, from the REST API.
//!
//! This module does not depend on clap. Every option string has a
//! [`FromStr`] parser whose errors name the flag and value;
//! [`VmConfig::validate`] checks a whole configuration however it was built,
//! and [`VmConfig::check_files`] does the checks that need the filesystem.

mod address;
mod cpu;
pub mod file;
mod memory;
mod settings;
mod slot;
mod vf;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use address::{MacAddr, PciAddress, PfDevice};
pub use cpu::CpuTopology;
pub use memory::{parse_hugepages, HugePageSize, MemoryConfig};
pub use settings::{Setting, Settings, SettingsError, SlotSetting};
pub use slot::{BlkConfig, DeviceConfig, HostDevice, PassthruConfig, PciSlotConfig, RomConfig};
pub use vf::{VfLinkState, VfSettings};

/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";
/// Longest kernel command line, without the NUL (x86 `COMMAND_LINE_SIZE` is 2048).
pub const CMDLINE_MAX: usize = 2047;
/// Longest VM name.
pub const NAME_MAX: usize = 64;
/// Longest Unix socket path, without the NUL (`sun_path` is 108 bytes).
pub const SOCKET_PATH_MAX: usize = 107;

/// A configuration error: one line that names the flag and value and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Bad VM name.
    #[error("VMNAME '{value}': {reason}")]
    Name { value: String, reason: String },
    /// Bad `-c` value.
    #[error("-c {value}: {reason}")]
    Cpus { value: String, reason: String },
    /// Bad `-m` value (or `-m` with `--hugepages`).
    #[error("-m {value}: {reason}")]
    Memory { value: String, reason: String },
    /// Bad `--hugepages` size.
    #[error("--hugepages={0}: not a huge page size (use --hugepages=2M or --hugepages=1G)")]
    HugePages(String),
    /// A `-s` value that is refused on its own: its text and the reason,
    /// which names the part at fault once and the fix.
    #[error("-s {value}: {reason}")]
    Slot { value: String, reason: String },
    /// A `-s` value that cannot be beside another.
    #[error("-s {value}: {conflict}")]
    SlotConflict {
        value: String,
        conflict: SlotConflict,
    },
    /// Bad `-l` value, or a second com1.
    #[error("-l {value}: {reason}")]
    Console { value: String, reason: String },
    /// Bad `-U` value.
    #[error("-U {value}: {reason}")]
    Uuid { value: String, reason: String },
    /// Bad `--oem-string` value, or too many of them.
    #[error("--oem-string {value:?}: {reason}")]
    OemString { value: String, reason: String },
    /// `--kernel` or `--initrd` (`flag`) is empty or not a readable file.
    #[error("{flag} {path}: {reason}")]
    BootFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Bad `--cmdline`.
    #[error("--cmdline: {reason}")]
    Cmdline { reason: String },
    /// Bad `--api-sock` path.
    #[error("--api-sock {path}: {reason}")]
    ApiSocket { path: PathBuf, reason: String },
    /// An `--api-group` that names no group.
    #[error("--api-group {value}: {reason}")]
    ApiGroup { value: String, reason: String },
    /// A `--seccomp` that is not on, log or off.
    #[error("--seccomp {value}: {reason}")]
    Seccomp { value: String, reason: String },
    /// A host PCI address that does not parse (inside `-s` it comes wrapped in [`ConfigError::Slot`]).
    #[error("PCI address {value:?}: {reason}")]
    PciAddress { value: String, reason: String },
    /// A MAC address that does not parse (inside `-s` it comes wrapped in [`ConfigError::Slot`]).
    #[error("MAC address {value:?}: {reason}")]
    MacAddr { value: String, reason: String },
}

/// Why a `-s` value cannot be beside the others. `first` names the one
/// given first: `-s TEXT`, or where a VM file has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotConflict {
    /// Two at one slot:function.
    #[error("slot {slot}:{function} is already used by {first} (pick a free slot)")]
    InUse {
        slot: u8,
        function: u8,
        first: String,
    },
    /// A second hostbridge or lpc.
    #[error("only one {emulation} is allowed (already {first})")]
    SecondOne {
        emulation: &'static str,
        first: String,
    },
    /// The same host device passed through twice.
    #[error("host device {host} is already passed through by {first} (each host device can be used once)")]
    HostTwice { host: PciAddress, first: String },
    /// A function above 0 in a slot without function 0.
    #[error("slot {slot} has function {function} but no function 0 (PCI needs function 0: add -s {slot}:0,...)")]
    NoFunctionZero { slot: u8, function: u8 },
}

impl SlotConflict {
    /// How the slot given first is named, if the conflict has one.
    pub fn first_mut(&mut self) -> Option<&mut String> {
        match self {
            SlotConflict::InUse { first, .. }
            | SlotConflict::SecondOne { first, .. }
            | SlotConflict::HostTwice { first, .. } => Some(first),
            SlotConflict::NoFunctionZero { .. } => None,
        }
    }
}

/// Everything needed to build and boot one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// VM name: 1..=64 of `A-Z a-z 0-9 . _ -`; names sockets and derives MACs.
    pub name: String,
    /// `-c`: vCPUs and topology.
    pub cpus: CpuTopology,
    /// `-m`, `--hugepages`: guest RAM.
    pub memory: MemoryConfig,
    /// `-l com1,...`: where the guest's first serial port goes; `None`: nowhere.
    pub console: Option<ConsoleConfig>,
    /// `-s`: PCI devices on bus 0, in command-line order.
    pub slots: Vec<PciSlotConfig>,
    /// `--kernel`, `--initrd`, `--cmdline`: direct Linux boot.
    pub boot: BootConfig,
    /// `-U`: the SMBIOS system UUID, lowercase RFC 4122 text form.
    pub uuid: Option<String>,
    /// `--oem-string`: SMBIOS type 11 strings, in order.
    pub oem_strings: Vec<String>,
    /// `--api-sock`: the REST API's Unix socket.
    pub api_socket: Option<PathBuf>,
    /// `--api-group`: a group (gid) whose members may use the API too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<u32>,
    /// `--seccomp`: the threads' system call filters.
    #[serde(default)]
    pub seccomp: SeccompMode,
}

/// Direct Linux boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootConfig {
    /// `--kernel`: bzImage or ELF vmlinux.
    pub kernel: PathBuf,
    /// `--initrd`: initramfs.
    pub initrd: Option<PathBuf>,
    /// `--cmdline`: kernel command line, printable ASCII, at most 2047 bytes.
    pub cmdline: String,
}

/// Where com1 goes (`-l com1,stdio` or `-l com1,PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleConfig {
    /// vfvm's stdin/stdout.
    Stdio,
    /// Output written to this file; no input.
    File(PathBuf),
}

impl VmConfig {
    /// Checks everything that can be checked without the filesystem or
    /// /dev/kvm. Errors about slots name them in `-s` syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name(&self.name)?;
        self.cpus.validate()?;
        self.memory.validate()?;
        slot::check_slots(&self.slots)?;
        if let Some(console) = &self.console {
            console.validate()?;
        }
        self.boot.validate()?;
        if let Some(uuid) = &self.uuid {
            parse_uuid(uuid)?;
        }
        check_oem_strings(&self.oem_strings)?;
        if let Some(path) = &self.api_socket {
            check_api_socket(path)?;
        }
        Ok(())
    }

    /// Checks what needs the filesystem: the kernel and initrd are readable
    /// regular files, and the directories of the console file and API
    /// socket exist. Creates nothing. (Disk images and `rom=` files are
    /// opened, once, by `slot_devices::prepare_slots`, before anything on
    /// the host changes.)
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let boot_file = |flag: &'static str, path: &Path| {
            open_checked(path).map_err(|reason| ConfigError::BootFile {
                flag,
                path: path.to_path_buf(),
                reason,
            })
        };
        boot_file("--kernel", &self.boot.kernel)?;
        // Before any memory is reserved: a file that is no kernel at all
        // would otherwise only be noticed after the (slow) reservation.
        check_kernel_format(&self.boot.kernel).map_err(|reason| ConfigError::BootFile {
            flag: "--kernel",
            path: self.boot.kernel.clone(),
            reason,
        })?;
        if let Some(initrd) = &self.boot.initrd {
            boot_file("--initrd", initrd)?;
        }
        if let Some(ConsoleConfig::File(path)) = &self.console {
            check_parent_dir(path).map_err(|reason| ConfigError::Console {
                value: format!("com1,{}", path.display()),
                reason,
            })?;
        }
        if let Some(path) = &self.api_socket {
            check_parent_dir(path).map_err(|reason| ConfigError::ApiSocket {
                path: path.clone(),
                reason,
            })?;
        }
        Ok(())
    }
}

impl VmConfig {
    /// A configuration with bhyve's defaults: 1 vCPU, 256 MiB, no devices,
    /// no console, `console=ttyS0`. Not validated.
    pub fn new(name: impl Into<String>, kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            name: name.into(),
            cpus: CpuTopology::default(),
            memory: MemoryConfig::default(),
            console: None,
            slots: Vec::new(),
            boot: BootConfig {
                kernel: kernel.into(),
                initrd: None,
                cmdline: DEFAULT_CMDLINE.to_string(),
            },
            uuid: None,
            oem_strings: Vec::new(),
            api_socket: None,
            api_group: None,
            seccomp: SeccompMode::On,
        }
    }
}

/// Looks at the first bytes of the kernel with the loader's own format
/// check (`arch::boot::kernel_format`); the loader checks the rest.
fn check_kernel_format(path: &Path) -> Result<(), String> {
    let mut head = Vec::with_capacity(arch::boot::KERNEL_HEAD_LEN);
    File::open(path)
        .and_then(|f| {
            f.take(arch::boot::KERNEL_HEAD_LEN as u64)
                .read_to_end(&mut head)
        })
        .map_err(|e| format!("cannot read: {e}"))?;
    if head.is_empty() {
        return Err("empty file (use a bzImage or an ELF vmlinux)".to_string());
    }
    if arch::boot::kernel_format(&head).is_some() {
        Ok(())
    } else {
        Err("not a Linux kernel (neither a bzImage nor an ELF vmlinux)".to_string())
    }
}

/// Reads a `rom=FILE` image: a regular file of 1 byte to 16 MiB.
pub fn read_rom(path: &Path) -> Result<Vec<u8>, String> {
    let why = |reason: String| format!("rom={}: {reason}", path.display());
    open_checked(path).map_err(why)?;
    let max = devices::vfio::ROM_MAX_SIZE;
    let mut image = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut image))
        .map_err(|e| why(format!("cannot read: {e}")))?;
    match image.len() as u64 {
        0 => Err(why("empty file (give a ROM image, or rom=off)".to_string())),
        n if n > max => Err(why(format!(
            "larger than {} MiB, the most a PCI expansion ROM can be",
            max >> 20
        ))),
        _ => Ok(image),
    }
}

/// Opens `path` to see that it can be used: a readable regular file.
/// (Disk images are opened, once, when the slots are prepared.)
fn open_checked(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "not found (check the path)".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (make it readable by this user)".to_string()
        }
        _ => format!("cannot open: {e}"),
    })?;
    let file_type = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .file_type();
    if file_type.is_file() {
        Ok(())
    } else {
        Err("not a regular file".to_string())
    }
}

fn check_parent_dir(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "directory {} does not exist (create it first)",
            parent.display()
        ))
    }
}

/// Checks a VM name: 1..=64 characters from `A-Z a-z 0-9 . _ -`, not `.` or
/// `..`, not starting with `-`.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::Name {
        value: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(err(format!(
            "empty name (use 1 to {NAME_MAX} characters from A-Z a-z 0-9 . _ -)"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(err(format!(
            "character {c:?} is not allowed (use A-Z a-z 0-9 . _ -)"
        )));
    }
    if name.len() > NAME_MAX {
        return Err(err(format!(
            "{} characters is too long (at most {NAME_MAX})",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(err(
            "'.' and '..' are not allowed, the name is used in file names".to_string(),
        ));
    }
    if name.starts_with('-') {
        return Err(err("must not start with '-'".to_string()));
    }
    Ok(())
}

/// Parses a `-U` value: RFC 4122 text form (8-4-4-4-12 hex digits, either
/// case). Returns it in lowercase.
pub fn parse_uuid(s: &str) -> Result<String, ConfigError> {
    let groups: Vec<&str> = s.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12]
        || !groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ConfigError::Uuid {
            value: s.to_string(),
            reason: "not a UUID (use 8-4-4-4-12 hex digits, e.g. -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8)"
                .to_string(),
        });
    }
    Ok(s.to_ascii_lowercase())
}

/// Most `--oem-string`s (SMBIOS numbers a structure's strings with a byte).
pub const OEM_STRINGS_MAX: usize = 255;
/// Most bytes of all `--oem-string`s together (with a NUL each): what fits
/// the SMBIOS area beside the other tables, whatever the topology.
pub const OEM_STRINGS_MAX_BYTES: usize = 32 * 1024;

/// Checks the `--oem-string` values: each non-empty without NUL bytes
/// (SMBIOS strings cannot hold either), and all of them within
/// [`OEM_STRINGS_MAX`] and [`OEM_STRINGS_MAX_BYTES`].
pub fn check_oem_strings(strings: &[String]) -> Result<(), ConfigError> {
    let err = |value: &str, reason: String| ConfigError::OemString {
        value: value.to_string(),
        reason,
    };
    let mut bytes = 0;
    for (i, s) in strings.iter().enumerate() {
        if s.is_empty() {
            return Err(err(
                s,
                "empty string (SMBIOS cannot hold one; leave it out)".into(),
            ));
        }
        if s.contains('\0') {
            return Err(err(
                s,
                "contains a NUL byte, which SMBIOS strings cannot hold".into(),
            ));
        }
        if i >= OEM_STRINGS_MAX {
            return Err(err(
                s,
                format!("more than {OEM_STRINGS_MAX} --oem-string values (SMBIOS type 11 holds at most {OEM_STRINGS_MAX})"),
            ));
        }
        bytes += s.len() + 1;
        if bytes > OEM_STRINGS_MAX_BYTES {
            return Err(err(
                s,
                format!("the --oem-string values add up to more than {OEM_STRINGS_MAX_BYTES} bytes (shorten them)"),
            ));
        }
    }
    Ok(())
}

/// `--seccomp`: what a thread's forbidden system call does (see
/// `crate::sandbox`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// The call traps: one line on stderr, then vfvm ends.
    #[default]
    On,
    /// The kernel logs the call and lets it run.
    Log,
    /// No filters (capabilities are still dropped).
    Off,
}

/// `--seccomp on|log|off` (Cloud Hypervisor's `true`/`false` too).
impl FromStr for SeccompMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "on" | "true" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" | "false" => Ok(SeccompMode::Off),
            _ => Err(ConfigError::Seccomp {
                value: s.to_string(),
                reason: "expected on, log or off (default on)".into(),
            }),
        }
    }
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeccompMode::On => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        })
    }
}

/// `--api-group GROUP`: a group name or a gid, as the gid.
pub fn parse_api_group(s: &str) -> Result<u32, ConfigError> {
    let err = |reason: &str| ConfigError::ApiGroup {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(s).map_err(|_| err("not a group name"))?;
    let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `name` is a C string,
    // `group` and `buf` (with its length) are ours and outlive it, and
    // `found` is written by the call only.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            group.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(err("no such group (see getent group; a gid works too)"));
    }
    // SAFETY: getgrnam_r succeeded and `found` points at `group`, filled in.
    Ok(unsafe { group.assume_init() }.gr_gid)
}

fn check_api_socket(path: &Path) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::ApiSocket {
        path: path.to_path_buf(),
        reason,
    };
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(err(
            "empty path (e.g. --api-sock /run/vfvm/guest0.sock)".to_string()
        ));
    }
    if len > SOCKET_PATH_MAX {
        return Err(err(format!(
            "{len} bytes is too long for a Unix socket path (at most {SOCKET_PATH_MAX}; use a shorter path)"
        )));
    }
    Ok(())
}

impl BootConfig {
    /// Checks that the paths are not empty and the command line is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let empty = |flag: &'static str, path: &Path, example: &str| ConfigError::BootFile {
            flag,
            path: path.to_path_buf(),
            reason: format!("empty path (e.g. {flag} {example})"),
        };
        if self.kernel.as_os_str().is_empty() {
            return Err(empty("--kernel", &self.kernel, "bzImage"));
        }
        if let Some(initrd) = &self.initrd {
            if initrd.as_os_str().is_empty() {
                return Err(empty("--initrd", initrd, "initrd.gz"));
            }
        }
        let cmdline = &self.cmdline;
        if let Some(c) = cmdline.chars().find(|c| !matches!(c, ' '..='~')) {
            return Err(ConfigError::Cmdline {
                reason: format!("character {c:?} is not allowed (only printable ASCII)"),
            });
        }
        if cmdline.len() > CMDLINE_MAX {
            return Err(ConfigError::Cmdline {
                reason: format!(
                    "{} bytes is too long (at most {CMDLINE_MAX})",
                    cmdline.len()
                ),
            });
        }
        Ok(())
    }
}

/// LPC devices bhyve has that vfvm does not, with what to do instead.
const UNSUPPORTED_LPC: &[(&str, &str)] = &[
    ("com2", "only com1 is supported for now"),
    ("com3", "only com1 is supported for now"),
    ("com4", "only com1 is supported for now"),
    ("bootrom", "vfvm boots Linux directly (use --kernel)"),
    ("bootvars", "vfvm boots Linux directly (use --kernel)"),
    (
        "fwcfg",
        "vfvm has no fw_cfg (use --kernel, --initrd, --cmdline)",
    ),
    ("tpm", "vfvm has no TPM"),
    ("pc-testdev", "vfvm has no pc-testdev"),
];

impl ConsoleConfig {
    /// Checks that a file path is not empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ConsoleConfig::File(path) if path.as_os_str().is_empty() => Err(ConfigError::Console {
                value: "com1,".to_string(),
                reason: "empty path (use -l com1,stdio or -l com1,PATH)".to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Parses a `-l` value: `com1,stdio` or `com1,PATH` (everything after the
/// first comma is the path).
impl FromStr for ConsoleConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::Console {
            value: s.to_string(),
            reason,
        };
        let (device, backend) = match s.split_once(',') {
            Some((device, backend)) => (device, Some(backend)),
            None => (s, None),
        };
        if device != "com1" {
            if let Some((_, why)) = UNSUPPORTED_LPC.iter().find(|(name, _)| *name == device) {
                return Err(err(format!("{device} is not supported ({why})")));
            }
            return Err(err(format!(
                "unknown LPC device '{device}' (known: com1; use -l com1,stdio)"
            )));
        }
        match backend {
            None | Some("") => Err(err(
                "missing backend (use -l com1,stdio or -l com1,PATH)".to_string()
            )),
            Some("stdio") => Ok(ConsoleConfig::Stdio),
            Some(tcp) if tcp.starts_with("tcp=") => Err(err(
                "tcp= is not supported (use -l com1,stdio or -l com1,PATH)".to_string(),
            )),
            Some(path) => Ok(ConsoleConfig::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for ConsoleConfig {
    /// `-l` syntax: `com1,stdio` or `com1,PATH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleConfig::Stdio => f.write_str("com1,stdio"),
            ConsoleConfig::File(path) => write!(f, "com1,{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_names() {
        for name in [
            "guest0",
            "a",
            "vm-1.prod_eu",
            "A.B-C_D",
            "-".repeat(0).as_str(),
            &"x".repeat(64),
            "...",
        ] {
            if name.is_empty() {
                continue;
            }
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        let long = "x".repeat(65);
        let cases: &[(&str, &str)] = &[
            (
                "",
                "VMNAME '': empty name (use 1 to 64 characters from A-Z a-z 0-9 . _ -)",
            ),
            (
                &long,
                &format!("VMNAME '{long}': 65 characters is too long (at most 64)"),
            ),
            (
                "my vm",
                "VMNAME 'my vm': character ' ' is not allowed (use A-Z a-z 0-9 . _ -)",
            ),
            (
                "a/b",
                "VMNAME 'a/b': character '/' is not allowed (use A-Z a-z 0-9 . _ -)",
            ),
            (
                "vm:1",
                "VMNAME 'vm:1': character ':' is not allowed (use A-Z a-z 0-9 . _ -)",
            ),
            (
                "gäst",
                "VMNAME 'gäst': character 'ä' is not allowed (use A-Z a-z 0-9 . _ -)",
            ),
            (
                ".",
                "VMNAME '.': '.' and '..' are not allowed, the name is used in file names",
            ),
            (
                "..",
                "VMNAME '..': '.' and '..' are not allowed, the name is used in file names",
            ),
            ("-vm", "VMNAME '-vm': must not start with '-'"),
        ];
        for &(name, want) in cases {
            let err = check_name(name).expect_err(name);
            assert!(matches!(err, ConfigError::Name { .. }));
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn parses_uuids() {
        let cases: &[(&str, &str)] = &[
            (
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            ),
            (
                "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            ),
            (
                "00000000-0000-0000-0000-000000000000",
                "00000000-0000-0000-0000-000000000000",
            ),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_uuid(input).as_deref(), Ok(want));
        }
        for input in [
            "",
            "6ba7b8109dad11d180b400c04fd430c8",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8a",
            "6ba7b810-9dad-11d1-80b400c04fd430c8",
            "6ba7b81-09dad-11d1-80b4-00c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8-",
            "+ba7b810-9dad-11d1-80b4-00c04fd430c8",
        ] {
            assert_eq!(
                parse_uuid(input).unwrap_err().to_string(),
                format!("-U {input}: not a UUID (use 8-4-4-4-12 hex digits, e.g. -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8)")
            );
        }
    }

    #[test]
    fn parses_consoles() {
        let cases: &[(&str, ConsoleConfig)] = &[
            ("com1,stdio", ConsoleConfig::Stdio),
            (
                "com1,/var/log/vm0.console",
                ConsoleConfig::File("/var/log/vm0.console".into()),
            ),
            (
                "com1,console.log",
                ConsoleConfig::File("console.log".into()),
            ),
            ("com1,/tmp/a,b", ConsoleConfig::File("/tmp/a,b".into())),
            ("com1,/dev/pts/3", ConsoleConfig::File("/dev/pts/3".into())),
        ];
        for (input, want) in cases {
            let got: ConsoleConfig = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got, want);
            assert_eq!(got.to_string(), *input);
            assert_eq!(got.validate(), Ok(()));
        }
        let cases: &[(&str, &str)] = &[
            ("", "unknown LPC device '' (known: com1; use -l com1,stdio)"),
            (
                "com1",
                "missing backend (use -l com1,stdio or -l com1,PATH)",
            ),
            (
                "com1,",
                "missing backend (use -l com1,stdio or -l com1,PATH)",
            ),
            (
                "com1,tcp=127.0.0.1:4444",
                "tcp= is not supported (use -l com1,stdio or -l com1,PATH)",
            ),
            (
                "com2,stdio",
                "com2 is not supported (only com1 is supported for now)",
            ),
            (
                "com3,stdio",
                "com3 is not supported (only com1 is supported for now)",
            ),
            (
                "com4,/tmp/x",
                "com4 is not supported (only com1 is supported for now)",
            ),
            (
                "bootrom,/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
                "bootrom is not supported (vfvm boots Linux directly (use --kernel))",
            ),
            (
                "bootvars,vars.fd",
                "bootvars is not supported (vfvm boots Linux directly (use --kernel))",
            ),
            (
                "fwcfg,qemu",
                "fwcfg is not supported (vfvm has no fw_cfg (use --kernel, --initrd, --cmdline))",
            ),
            (
                "tpm,passthru,/dev/tpm0",
                "tpm is not supported (vfvm has no TPM)",
            ),
            (
                "pc-testdev",
                "pc-testdev is not supported (vfvm has no pc-testdev)",
            ),
            (
                "COM1,stdio",
                "unknown LPC device 'COM1' (known: com1; use -l com1,stdio)",
            ),
            (
                "ttyS0,stdio",
                "unknown LPC device 'ttyS0' (known: com1; use -l com1,stdio)",
            ),
        ];
        for &(input, reason) in cases {
            let err = input.parse::<ConsoleConfig>().expect_err(input);
            assert_eq!(err.to_string(), format!("-l {input}: {reason}"));
        }
        assert_eq!(
            ConsoleConfig::File(PathBuf::new())
                .validate()
                .unwrap_err()
                .to_string(),
            "-l com1,: empty path (use -l com1,stdio or -l com1,PATH)"
        );
    }

    /// A valid config whose slots were built in code (no `-s` text), so
    /// that the cases can edit them and errors show their `-s` form.
    fn valid() -> VmConfig {
        let mut c = VmConfig::new("guest0", "bzImage");
        c.slots = ["0,hostbridge", "5,passthru,1/16/0"]
            .map(|s| PciSlotConfig {
                text: None,
                ..s.parse().unwrap()
            })
            .into();
        c
    }

    #[test]
    fn validates_whole_configs() {
        assert_eq!(valid().validate(), Ok(()));
        type Edit = fn(&mut VmConfig);
        let cases: &[(Edit, &str)] = &[
            (|c| c.name = "a b".into(), "VMNAME 'a b': character ' ' is not allowed (use A-Z a-z 0-9 . _ -)"),
            (|c| c.cpus.cpus = 2, "-c cpus=2,sockets=1,cores=1,threads=1: sockets=1 x cores=1 x threads=1 is 1 vCPUs, not cpus=2 (make them agree, or leave one out to derive it)"),
            (|c| c.memory.size = 0, "-m 0B: memory size must be greater than 0 (e.g. -m 512M)"),
            (|c| c.memory = MemoryConfig { size: 3 << 20, hugepages: Some(HugePageSize::Size2M) }, "-m 3M: not a multiple of 2 MiB, which --hugepages needs (use e.g. -m 4M)"),
            (|c| c.slots[1].slot = 0, "-s 0:0,passthru,0000:01:10.0: slot 0:0 is already used by -s 0:0,hostbridge (pick a free slot)"),
            (|c| c.slots[1].function = 1, "-s 5:1,passthru,0000:01:10.0: slot 5 has function 1 but no function 0 (PCI needs function 0: add -s 5:0,...)"),
            (|c| c.console = Some(ConsoleConfig::File("".into())), "-l com1,: empty path (use -l com1,stdio or -l com1,PATH)"),
            (|c| c.boot.kernel = "".into(), "--kernel : empty path (e.g. --kernel bzImage)"),
            (|c| c.boot.initrd = Some("".into()), "--initrd : empty path (e.g. --initrd initrd.gz)"),
            (|c| c.boot.cmdline = "console=ttyS0\n".into(), "--cmdline: character '\\n' is not allowed (only printable ASCII)"),
            (|c| c.boot.cmdline = "root=/dev/vda\tquiet".into(), "--cmdline: character '\\t' is not allowed (only printable ASCII)"),
            (|c| c.boot.cmdline = "x".repeat(2048), "--cmdline: 2048 bytes is too long (at most 2047)"),
            (|c| c.uuid = Some("nope".into()), "-U nope: not a UUID (use 8-4-4-4-12 hex digits, e.g. -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8)"),
            (|c| c.oem_strings = vec!["a".into(), "".into()], "--oem-string \"\": empty string (SMBIOS cannot hold one; leave it out)"),
            (|c| c.oem_strings = vec!["a\0b".into()], "--oem-string \"a\\0b\": contains a NUL byte, which SMBIOS strings cannot hold"),
            (|c| c.oem_strings = vec!["s".into(); 256], "--oem-string \"s\": more than 255 --oem-string values (SMBIOS type 11 holds at most 255)"),
            (|c| c.oem_strings = vec!["x".repeat(20_000), "y".repeat(20_000)], &format!("--oem-string \"{}\": the --oem-string values add up to more than 32768 bytes (shorten them)", "y".repeat(20_000))),
            (|c| c.api_socket = Some("".into()), "--api-sock : empty path (e.g. --api-sock /run/vfvm/guest0.sock)"),
            (|c| c.api_socket = Some(format!("/run/{}", "s".repeat(103)).into()), "--api-sock /run/sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss: 108 bytes is too long for a Unix socket path (at most 107; use a shorter path)"),
        ];
        for (edit, want) in cases {
            let mut c = valid();
            edit(&mut c);
            assert_eq!(c.validate().unwrap_err().to_string(), *want);
        }
        let mut c = valid();
        c.boot.cmdline = "x".repeat(2047);
        c.api_socket = Some(format!("/run/{}", "s".repeat(102)).into());
        c.uuid = Some("6BA7B810-9DAD-11D1-80B4-00C04FD430C8".into());
        c.oem_strings = vec!["z".repeat(127); 255];
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn serializes() {
        let mut c = valid();
        c.console = Some(ConsoleConfig::File("/tmp/c.log".into()));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["name"], "guest0");
        assert_eq!(json["cpus"]["cpus"], 1);
        assert_eq!(json["memory"]["size"], 256 << 20);
        assert_eq!(json["console"]["file"], "/tmp/c.log");
        assert_eq!(json["slots"][1]["device"]["host"], "0000:01:10.0");
        assert_eq!(json["boot"]["cmdline"], "console=ttyS0");
        assert_eq!(serde_json::to_value(ConsoleConfig::Stdio).unwrap(), "stdio");
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("vfvm-config-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.file_with(name, b"x")
        }

        fn file_with(&self, name: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }

        /// A file that passes the kernel format check (an ELF header).
        fn kernel(&self) -> PathBuf {
            self.file_with("vmlinux", b"\x7fELF\x02\x01\x01")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn checks_files() {
        let dir = Scratch::new("files");
        let kernel = dir.kernel();
        let initrd = dir.file("initrd.gz");
        let disk = dir.file("disk.img");
        let mut c = VmConfig::new("guest0", &kernel);
        c.boot.initrd = Some(initrd.clone());
        c.slots = vec![format!("4,virtio-blk,{}", disk.display()).parse().unwrap()];
        c.console = Some(ConsoleConfig::File(dir.0.join("console.log")));
        c.api_socket = Some(dir.0.join("api.sock"));
        assert_eq!(c.check_files(), Ok(()));
        let mut bz_image = vec![0u8; 0x400];
        bz_image[0x202..0x206].copy_from_slice(b"HdrS");
        let mut bz = c.clone();
        bz.boot.kernel = dir.file_with("bzImage", &bz_image);
        assert_eq!(bz.check_files(), Ok(()));
        // Relative paths in the current directory have a parent.
        let mut rel = c.clone();
        rel.console = Some(ConsoleConfig::File("console.log".into()));
        rel.api_socket = Some("api.sock".into());
        assert_eq!(rel.check_files(), Ok(()));

        let missing = dir.0.join("missing");
        let e1 = dir.file_with("empty", b"");
        let j1 = dir.file_with("junk", &[0u8; 0x300]);
        let d = dir.0.display();
        type Edit = Box<dyn Fn(&mut VmConfig)>;
        let (m1, m2, m4, m5) = (
            missing.clone(),
            missing.clone(),
            missing.clone(),
            dir.0.clone(),
        );
        let cases: Vec<(Edit, String)> = vec![
            (Box::new(move |c| c.boot.kernel = m1.clone()), format!("--kernel {d}/missing: not found (check the path)")),
            (Box::new(move |c| c.boot.kernel = m5.clone()), format!("--kernel {d}: not a regular file")),
            (Box::new(move |c| c.boot.kernel = e1.clone()), format!("--kernel {d}/empty: empty file (use a bzImage or an ELF vmlinux)")),
            (Box::new(move |c| c.boot.kernel = j1.clone()), format!("--kernel {d}/junk: not a Linux kernel (neither a bzImage nor an ELF vmlinux)")),
            (Box::new(move |c| c.boot.initrd = Some(m2.clone())), format!("--initrd {d}/missing: not found (check the path)")),
            (
                Box::new(move |c| c.console = Some(ConsoleConfig::File(m4.join("console.log")))),
                format!("-l com1,{d}/missing/console.log: directory {d}/missing does not exist (create it first)"),
            ),
            (
                Box::new(move |c| c.api_socket = Some(missing.join("api.sock"))),
                format!("--api-sock {d}/missing/api.sock: directory {d}/missing does not exist (create it first)"),
            ),
        ];
        for (edit, want) in cases {
            let mut bad = c.clone();
            edit(&mut bad);
            assert_eq!(bad.check_files().unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn checks_rom_files() {
        let dir = Scratch::new("rom");
        let rom = dir.file_with("e1000.rom", &[0x55, 0xaa, 1]);
        let empty = dir.file_with("empty.rom", b"");
        let d = dir.0.display();
        assert_eq!(read_rom(&rom), Ok(vec![0x55, 0xaa, 1]));
        assert_eq!(
            read_rom(&empty),
            Err(format!(
                "rom={d}/empty.rom: empty file (give a ROM image, or rom=off)"
            ))
        );
        assert_eq!(
            read_rom(&dir.0.join("missing")),
            Err(format!("rom={d}/missing: not found (check the path)"))
        );
    }

    #[test]
    fn checks_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        // Root ignores permissions, so only check where they apply.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return;
        }
        let dir = Scratch::new("perms");
        let kernel = dir.kernel();
        let c = VmConfig::new("guest0", &kernel);
        assert_eq!(c.check_files(), Ok(()));
        std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(
            c.check_files().unwrap_err().to_string(),
            format!(
                "--kernel {}: permission denied (make it readable by this user)",
                kernel.display()
            )
        );
    }

    #[test]
    fn api_group_by_name_or_gid() {
        assert_eq!(parse_api_group("0"), Ok(0));
        assert_eq!(parse_api_group("4242"), Ok(4242));
        assert_eq!(parse_api_group("root"), Ok(0));
        assert_eq!(
            parse_api_group("no-such-group-here")
                .unwrap_err()
                .to_string(),
            "--api-group no-such-group-here: no such group (see getent group; a gid works too)"
        );
        assert!(parse_api_group("a\0b").is_err());
    }
}
