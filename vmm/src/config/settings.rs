//! What the user typed for one VM, setting by setting, in flag syntax, and
//! where each value came from: the command line or a line of a VM file.
//!
//! Both `vfvm run` flags and VM files (`file`) become [`Settings`];
//! [`Settings::overridden_by`] lets flags override a file, and
//! [`Settings::into_config`] parses every value with the flags' own parsers
//! and validates the result with [`VmConfig::validate`]'s code, so a value
//! means the same wherever it was written. Errors about a value from a file
//! name the file, line and key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::slot::guest_address_of;
use super::{
    parse_api_group, parse_hugepages, parse_uuid, BootConfig, ConfigError, ConsoleConfig,
    CpuTopology, MemoryConfig, PciSlotConfig, SeccompMode, VmConfig, DEFAULT_CMDLINE,
};

/// Where a value was written in a VM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The VM file.
    pub file: Rc<Path>,
    /// 1-based line.
    pub line: usize,
    /// The key, as a TOML path (`memory`, `oem_strings[0]`), or the
    /// `[[device]]` entry (`device[1]`) whose option is on `line`.
    pub key: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.key)
    }
}

/// One value in flag syntax (`-m` text for `memory`, ...); `place` is
/// `None` for the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T = String> {
    /// The value as the flag takes it.
    pub value: T,
    /// Where it was written, if in a VM file.
    pub place: Option<Place>,
}

impl<T> Setting<T> {
    /// A value from the command line.
    pub fn flag(value: T) -> Self {
        Setting { value, place: None }
    }
}

/// A `-s` value; from a VM file it also knows each key of its `[[device]]`
/// entry, to name the one that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSetting {
    /// The `-s` text.
    pub text: Setting,
    /// For a `[[device]]` entry: `(the -s text up to and including this key,
    /// the entry at this key's line)`, `slot` and `emulation` first, then
    /// each option.
    pub keys: Vec<(String, Place)>,
}

impl SlotSetting {
    /// A `-s` flag.
    pub fn flag(text: String) -> Self {
        SlotSetting {
            text: Setting::flag(text),
            keys: Vec::new(),
        }
    }

    /// Parses it; an error from a VM file names the first key whose
    /// addition makes the entry fail (its `slot`, `emulation`, or an option).
    fn parse(&self) -> Result<PciSlotConfig, SettingsError> {
        self.text.value.parse().map_err(|error| {
            let place = self
                .keys
                .iter()
                .find(|(prefix, _)| {
                    // A prefix that ends before the emulation's required first
                    // option fails only for want of it: that is not the error.
                    let missing = prefix.matches(',').count() < 2;
                    prefix.parse::<PciSlotConfig>().is_err_and(|e| {
                        !missing || !matches!(&e, ConfigError::Slot { reason, .. } if reason.starts_with("missing "))
                    })
                })
                .map(|(_, place)| place.clone())
                .or_else(|| self.text.place.clone());
            SettingsError::at(place, error)
        })
    }
}

/// Everything `vfvm run` takes, as typed. `None`: not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// VMNAME.
    pub name: Option<Setting>,
    /// `-c`.
    pub cpus: Option<Setting>,
    /// `-m`.
    pub memory: Option<Setting>,
    /// `--hugepages[=SIZE]`: the size (`2M` for a bare `--hugepages`).
    pub hugepages: Option<Setting>,
    /// `-l`, each given (only one com1 is allowed).
    pub console: Vec<Setting>,
    /// `-s`, in order.
    pub slots: Vec<SlotSetting>,
    /// `--kernel`.
    pub kernel: Option<Setting>,
    /// `--initrd`.
    pub initrd: Option<Setting>,
    /// `--cmdline`.
    pub cmdline: Option<Setting>,
    /// `-U`.
    pub uuid: Option<Setting>,
    /// `--oem-string`, in order.
    pub oem_strings: Vec<Setting>,
    /// `--api-sock`.
    pub api_socket: Option<Setting>,
    /// `--api-group`.
    pub api_group: Option<Setting>,
    /// `--seccomp`.
    pub seccomp: Option<Setting>,
}

/// A value that cannot be used, named by flag or by file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A value from the command line.
    #[error("{0}")]
    Flag(ConfigError),
    /// A value from a VM file (a `[[device]]` entry's error is the `-s`
    /// parser's reason alone: the place names the entry and the key's line).
    #[error("{place}: {}", in_file(error))]
    InFile {
        /// Where it was written.
        place: Place,
        /// What is wrong, in flag terms.
        error: ConfigError,
    },
    /// The VM file cannot be read or is not one.
    #[error(transparent)]
    Load(#[from] super::file::FileError),
    /// Something needed that neither the flags nor the file give.
    #[error("{what} is missing (give {flag}, or {key} in the VM file)")]
    Missing {
        /// What it is.
        what: &'static str,
        /// The flag that gives it.
        flag: &'static str,
        /// The VM file key that gives it.
        key: &'static str,
    },
}

/// How `error` reads after the place in a VM file.
fn in_file(error: &ConfigError) -> String {
    match error {
        ConfigError::Slot { reason, .. } => reason.clone(),
        ConfigError::SlotConflict { conflict, .. } => conflict.to_string(),
        other => other.to_string(),
    }
}

impl SettingsError {
    fn at(place: Option<Place>, error: ConfigError) -> Self {
        match place {
            Some(place) => SettingsError::InFile { place, error },
            None => SettingsError::Flag(error),
        }
    }
}

impl Settings {
    /// These settings with every one `flags` gives replacing this one's.
    /// A `-s` at a `slot:function` this has replaces that device; other
    /// `-s` add devices after this one's.
    pub fn overridden_by(mut self, flags: Settings) -> Settings {
        fn pick<T>(base: &mut Option<T>, over: Option<T>) {
            if over.is_some() {
                *base = over;
            }
        }
        pick(&mut self.name, flags.name);
        pick(&mut self.cpus, flags.cpus);
        pick(&mut self.memory, flags.memory);
        pick(&mut self.hugepages, flags.hugepages);
        pick(&mut self.kernel, flags.kernel);
        pick(&mut self.initrd, flags.initrd);
        pick(&mut self.cmdline, flags.cmdline);
        pick(&mut self.uuid, flags.uuid);
        pick(&mut self.api_socket, flags.api_socket);
        pick(&mut self.api_group, flags.api_group);
        pick(&mut self.seccomp, flags.seccomp);
        if !flags.console.is_empty() {
            self.console = flags.console;
        }
        if !flags.oem_strings.is_empty() {
            self.oem_strings = flags.oem_strings;
        }
        for slot in flags.slots {
            let address = guest_address_of(&slot.text.value);
            match self
                .slots
                .iter_mut()
                .find(|s| address.is_some() && guest_address_of(&s.text.value) == address)
            {
                Some(same) => *same = slot,
                None => self.slots.push(slot),
            }
        }
        self
    }

    /// Parses every value with its flag's parser, fills in the defaults
    /// (`-c 1`, `-m 256M`, `--cmdline console=ttyS0`) and validates the
    /// whole. Does not touch the filesystem ([`VmConfig::check_files`] does).
    pub fn into_config(self) -> Result<VmConfig, SettingsError> {
        fn parse<T: std::str::FromStr<Err = ConfigError>>(
            setting: &Option<Setting>,
            default: &str,
        ) -> Result<T, SettingsError> {
            match setting {
                Some(s) => s
                    .value
                    .parse()
                    .map_err(|e| SettingsError::at(s.place.clone(), e)),
                None => default.parse().map_err(SettingsError::Flag),
            }
        }
        let place = |s: &Option<Setting>| s.as_ref().and_then(|s| s.place.clone());
        let name = self.name.as_ref().ok_or(SettingsError::Missing {
            what: "the VM name",
            flag: "VMNAME",
            key: "name = \"NAME\"",
        })?;
        let kernel = self.kernel.as_ref().ok_or(SettingsError::Missing {
            what: "the kernel",
            flag: "--kernel PATH",
            key: "kernel = \"PATH\"",
        })?;
        let cpus: CpuTopology = parse(&self.cpus, "1")?;
        let mut memory: MemoryConfig = parse(&self.memory, "256M")?;
        memory.hugepages = match &self.hugepages {
            Some(h) => {
                Some(parse_hugepages(&h.value).map_err(|e| SettingsError::at(h.place.clone(), e))?)
            }
            None => None,
        };
        let slots = self
            .slots
            .iter()
            .map(SlotSetting::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut console: Option<ConsoleConfig> = None;
        for lpc in &self.console {
            let err = |e| SettingsError::at(lpc.place.clone(), e);
            let parsed: ConsoleConfig = lpc.value.parse().map_err(err)?;
            if let Some(first) = &console {
                return Err(err(ConfigError::Console {
                    value: lpc.value.clone(),
                    reason: format!("com1 is already set by -l {first} (give it once)"),
                }));
            }
            console = Some(parsed);
        }
        let uuid = match &self.uuid {
            Some(u) => {
                Some(parse_uuid(&u.value).map_err(|e| SettingsError::at(u.place.clone(), e))?)
            }
            None => None,
        };
        let api_group = match &self.api_group {
            Some(g) => {
                Some(parse_api_group(&g.value).map_err(|e| SettingsError::at(g.place.clone(), e))?)
            }
            None => None,
        };
        let seccomp: SeccompMode = parse(&self.seccomp, "on")?;
        let path = |s: &Option<Setting>| s.as_ref().map(|s| PathBuf::from(&s.value));
        let config = VmConfig {
            name: name.value.clone(),
            cpus,
            memory,
            console,
            slots,
            boot: BootConfig {
                kernel: PathBuf::from(&kernel.value),
                initrd: path(&self.initrd),
                cmdline: self
                    .cmdline
                    .as_ref()
                    .map_or(DEFAULT_CMDLINE.to_string(), |c| c.value.clone()),
            },
            uuid,
            oem_strings: self.oem_strings.iter().map(|s| s.value.clone()).collect(),
            api_socket: path(&self.api_socket),
            api_group,
            seccomp,
        };
        config.validate().map_err(|mut error| {
            // A device a VM file gave first is named by its entry there,
            // not by the -s text made of it.
            if let ConfigError::SlotConflict { conflict, .. } = &mut error {
                if let Some(first) = conflict.first_mut() {
                    let entry = self
                        .slots
                        .iter()
                        .find(|s| format!("-s {}", s.text.value) == *first)
                        .and_then(|s| s.text.place.as_ref());
                    if let Some(place) = entry {
                        *first =
                            format!("{} at {}:{}", place.key, place.file.display(), place.line);
                    }
                }
            }
            // The setting the error is about; for two devices, the second.
            let slot_place = |label: &str| {
                self.slots
                    .iter()
                    .rev()
                    .find(|s| s.text.value == label)
                    .and_then(|s| s.text.place.clone())
            };
            let place = match &error {
                ConfigError::Name { .. } => name.place.clone(),
                ConfigError::Cpus { .. } => place(&self.cpus),
                ConfigError::Memory { .. } => place(&self.memory)
                    .or_else(|| self.hugepages.as_ref().and_then(|h| h.place.clone())),
                ConfigError::HugePages(_) => place(&self.hugepages),
                ConfigError::Slot { value, .. } | ConfigError::SlotConflict { value, .. } => {
                    slot_place(value)
                }
                ConfigError::Console { .. } => self.console.last().and_then(|c| c.place.clone()),
                ConfigError::Uuid { .. } => place(&self.uuid),
                ConfigError::OemString { value, .. } => self
                    .oem_strings
                    .iter()
                    .find(|s| s.value == *value)
                    .and_then(|s| s.place.clone()),
                ConfigError::BootFile { flag, .. } if *flag == "--initrd" => place(&self.initrd),
                ConfigError::BootFile { .. } => kernel.place.clone(),
                ConfigError::Cmdline { .. } => place(&self.cmdline),
                ConfigError::ApiSocket { .. } => place(&self.api_socket),
                ConfigError::ApiGroup { .. } => place(&self.api_group),
                ConfigError::Seccomp { .. } => place(&self.seccomp),
                ConfigError::PciAddress { .. } | ConfigError::MacAddr { .. } => None,
            };
            SettingsError::at(place, error)
        })?;
        Ok(config)
    }
}
