//! VM files: `vfvm run --config FILE`, TOML holding what the flags hold.
//!
//! ```toml
//! name = "guest0"                      # VMNAME
//! cpus = 2                             # -c (a number, or "cpus=4,sockets=1,cores=2,threads=2")
//! memory = "512M"                      # -m
//! hugepages = false                    # --hugepages (true or "2M"; "1G": --hugepages=1G)
//! console = "com1,stdio"               # -l
//! kernel = "/var/lib/vfvm/bzImage"     # --kernel
//! initrd = "/var/lib/vfvm/initrd.gz"   # --initrd
//! cmdline = "console=ttyS0"            # --cmdline
//! uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"  # -U
//! oem_strings = ["io.systemd.credential:hello=world"]  # --oem-string, each
//! api_socket = "/run/vfvm/guest0.sock" # --api-sock
//! api_group = "vfvm"                   # --api-group (a name or a gid)
//! seccomp = "on"                       # --seccomp (on, log or off; true/false too)
//!
//! [[device]]                           # -s 5:0,passthru,1/16/0,mac=aa:88:44:00:02:01,managed
//! slot = "5:0"
//! emulation = "passthru"
//! host = "1/16/0"
//! mac = "aa:88:44:00:02:01"
//! managed = true
//! ```
//!
//! Loading only turns each value into its flag's text ([`Settings`]): a
//! `[[device]]` entry becomes `SLOT,EMULATION,KEY=VALUE,...` (`true`/`false`
//! as `on`/`off`; `path` and `host` name the first option of virtio-blk and
//! passthru), which the `-s` parser reads like any other. [`render`] writes
//! a [`VmConfig`] back as such a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::settings::{Place, Setting, Settings, SlotSetting};
use super::slot::POSITIONAL_KEYS;
use super::SeccompMode;
use super::{HugePageSize, VmConfig};

/// A VM file that cannot be read or is not a VM file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// It cannot be read.
    #[error("{path}: cannot read the VM file: {reason}", path = path.display())]
    Read { path: PathBuf, reason: String },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}:{line}: {message}", path = path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

type Table = BTreeMap<Spanned<String>, Spanned<Value>>;

/// The file as TOML gives it; every value keeps its span.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<Spanned<Value>>,
    cpus: Option<Spanned<Value>>,
    memory: Option<Spanned<Value>>,
    hugepages: Option<Spanned<Value>>,
    console: Option<Spanned<Value>>,
    kernel: Option<Spanned<Value>>,
    initrd: Option<Spanned<Value>>,
    cmdline: Option<Spanned<Value>>,
    uuid: Option<Spanned<Value>>,
    oem_strings: Option<Spanned<Value>>,
    api_socket: Option<Spanned<Value>>,
    api_group: Option<Spanned<Value>>,
    seccomp: Option<Spanned<Value>>,
    #[serde(default)]
    device: Vec<Spanned<Table>>,
}

/// Reads `path` into settings; checks only what is the file's own business
/// (syntax, keys, value types). [`Settings::into_config`] does the rest.
pub fn load(path: &Path) -> Result<Settings, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// [`load`] of `text`, as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Settings, FileError> {
    let file: Rc<Path> = path.into();
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let invalid = |line: usize, message: String| FileError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(s.start));
        invalid(line, e.message().trim().replace('`', "'"))
    })?;
    let place = |key: String, span: std::ops::Range<usize>| Place {
        file: file.clone(),
        line: line_of(span.start),
        key,
    };
    // One top-level value as its flag's text.
    let top = |key: &str, value: &Option<Spanned<Value>>, numbers: bool| {
        let Some(v) = value else { return Ok(None) };
        let text = match v.get_ref() {
            Value::String(s) => s.clone(),
            Value::Integer(n) if numbers => n.to_string(),
            other => {
                let want = if numbers {
                    "a string or a number"
                } else {
                    "a string"
                };
                return Err(invalid(
                    line_of(v.span().start),
                    format!("{key}: expected {want}, not {}", other.type_str()),
                ));
            }
        };
        Ok(Some(Setting {
            value: text,
            place: Some(place(key.to_string(), v.span())),
        }))
    };
    // true is a bare --hugepages, a string its size, false none.
    let hugepages = match &raw.hugepages {
        None => None,
        Some(v) => {
            let size = match v.get_ref() {
                Value::Boolean(false) => None,
                Value::Boolean(true) => Some("2M".to_string()),
                Value::String(s) => Some(s.clone()),
                other => {
                    return Err(invalid(
                        line_of(v.span().start),
                        format!(
                            "hugepages: expected true, false, \"2M\" or \"1G\", not {}",
                            other.type_str()
                        ),
                    ))
                }
            };
            size.map(|value| Setting {
                value,
                place: Some(place("hugepages".into(), v.span())),
            })
        }
    };
    // A mode's name, or true/false for on/off.
    let seccomp = match &raw.seccomp {
        None => None,
        Some(v) => {
            let value = match v.get_ref() {
                Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                Value::String(s) => s.clone(),
                other => {
                    return Err(invalid(
                        line_of(v.span().start),
                        format!(
                            "seccomp: expected \"on\", \"log\", \"off\", true or false, not {}",
                            other.type_str()
                        ),
                    ))
                }
            };
            Some(Setting {
                value,
                place: Some(place("seccomp".into(), v.span())),
            })
        }
    };
    let mut oem_strings = Vec::new();
    if let Some(v) = &raw.oem_strings {
        let not_strings = || {
            invalid(
                line_of(v.span().start),
                format!(
                    "oem_strings: expected an array of strings, not {}",
                    v.get_ref().type_str()
                ),
            )
        };
        let Value::Array(items) = v.get_ref() else {
            return Err(not_strings());
        };
        for (i, item) in items.iter().enumerate() {
            let Value::String(text) = item else {
                return Err(not_strings());
            };
            oem_strings.push(Setting {
                value: text.clone(),
                place: Some(place(format!("oem_strings[{i}]"), v.span())),
            });
        }
    }
    let mut slots = Vec::new();
    for (i, entry) in raw.device.iter().enumerate() {
        slots.push(device(i, entry, &place, &invalid, &line_of)?);
    }
    Ok(Settings {
        name: top("name", &raw.name, false)?,
        cpus: top("cpus", &raw.cpus, true)?,
        memory: top("memory", &raw.memory, true)?,
        hugepages,
        console: top("console", &raw.console, false)?.into_iter().collect(),
        slots,
        kernel: top("kernel", &raw.kernel, false)?,
        initrd: top("initrd", &raw.initrd, false)?,
        cmdline: top("cmdline", &raw.cmdline, false)?,
        uuid: top("uuid", &raw.uuid, false)?,
        oem_strings,
        api_socket: top("api_socket", &raw.api_socket, false)?,
        api_group: top("api_group", &raw.api_group, true)?,
        seccomp,
    })
}

/// A `[[device]]` entry as a `-s` value: `slot`, `emulation`, the first
/// option by its key (`path`, `host`), then the other keys.
fn device(
    index: usize,
    entry: &Spanned<Table>,
    place: &dyn Fn(String, std::ops::Range<usize>) -> Place,
    invalid: &dyn Fn(usize, String) -> FileError,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<SlotSetting, FileError> {
    let table = entry.get_ref();
    let header = line_of(entry.span().start);
    let name = format!("device[{index}]");
    let text_of = |key: &str, v: &Spanned<Value>| match v.get_ref() {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(if *b { "on" } else { "off" }.to_string()),
        other => Err(invalid(
            line_of(v.span().start),
            format!(
                "{name}.{key}: expected a string, a number or true/false, not {}",
                other.type_str()
            ),
        )),
    };
    let required = |key: &str, example: &str| {
        table.get(key).ok_or_else(|| {
            invalid(
                header,
                format!("{name}: missing {key} (e.g. {key} = {example})"),
            )
        })
    };
    let slot = required("slot", "\"5:0\"")?;
    let emulation = required("emulation", "\"passthru\"")?;
    let emulation_text = text_of("emulation", emulation)?;
    let first_key = POSITIONAL_KEYS
        .iter()
        .find(|(e, _)| *e == emulation_text)
        .map(|&(_, k)| k);
    let mut keys = vec![("slot", slot), ("emulation", emulation)];
    if let Some(key) = first_key {
        keys.push((key, required(key, "\"...\"")?));
    }
    keys.extend(
        table
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v))
            .filter(|(k, _)| !matches!(*k, "slot" | "emulation") && Some(*k) != first_key),
    );
    let mut text = String::new();
    let mut prefixes = Vec::new();
    for (n, (key, value)) in keys.iter().enumerate() {
        let value = text_of(key, value)?;
        match n {
            0 => text.push_str(&value),
            1 => write!(text, ",{value}").unwrap_or_default(),
            _ => write!(text, ",{key}={value}").unwrap_or_default(),
        }
        let span = keys[n].1.span();
        prefixes.push((text.clone(), place(name.clone(), span)));
    }
    Ok(SlotSetting {
        text: Setting {
            value: text,
            place: Some(Place {
                file: prefixes[0].1.file.clone(),
                line: header,
                key: name,
            }),
        },
        keys: prefixes,
    })
}

/// `config` as a VM file that [`load`] reads back into the same config.
pub fn render(config: &VmConfig) -> String {
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("name", quote(&config.name));
    line("cpus", quote(&config.cpus.to_string()));
    line("memory", quote(&config.memory.to_string()));
    match config.memory.hugepages {
        Some(HugePageSize::Size2M) => line("hugepages", "true".into()),
        Some(HugePageSize::Size1G) => line("hugepages", quote("1G")),
        None => {}
    }
    if let Some(console) = &config.console {
        line("console", quote(&console.to_string()));
    }
    line("kernel", quote(&config.boot.kernel.to_string_lossy()));
    if let Some(initrd) = &config.boot.initrd {
        line("initrd", quote(&initrd.to_string_lossy()));
    }
    line("cmdline", quote(&config.boot.cmdline));
    if let Some(uuid) = &config.uuid {
        line("uuid", quote(uuid));
    }
    if !config.oem_strings.is_empty() {
        let items: Vec<String> = config.oem_strings.iter().map(|s| quote(s)).collect();
        line("oem_strings", format!("[{}]", items.join(", ")));
    }
    if let Some(sock) = &config.api_socket {
        line("api_socket", quote(&sock.to_string_lossy()));
    }
    if let Some(gid) = config.api_group {
        line("api_group", gid.to_string());
    }
    if config.seccomp != SeccompMode::default() {
        line("seccomp", quote(&config.seccomp.to_string()));
    }
    for slot in &config.slots {
        let text = slot.to_string();
        let mut parts = text.split(',');
        let _ = write!(
            out,
            "\n[[device]]\nslot = {}\nemulation = {}\n",
            quote(parts.next().unwrap_or_default()),
            quote(slot.device.emulation())
        );
        parts.next();
        let first_key = POSITIONAL_KEYS
            .iter()
            .find(|(e, _)| *e == slot.device.emulation())
            .map(|&(_, k)| k);
        for (n, option) in parts.enumerate() {
            let (key, value) = match (n, first_key, option.split_once('=')) {
                (0, Some(key), _) => (key, quote(option)),
                (_, _, Some((key, value))) => (key, toml_value(value)),
                (_, _, None) => (option, "true".to_string()),
            };
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out
}

/// An option's value as TOML: `on`/`off` as booleans, decimal numbers as
/// integers, anything else as a string; each reads back as the same text.
fn toml_value(value: &str) -> String {
    match value {
        "on" => "true".into(),
        "off" => "false".into(),
        v if !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && v.parse::<i64>().is_ok_and(|n| n.to_string() == v) =>
        {
            v.to_string()
        }
        v => Value::String(v.to_string()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<VmConfig, String> {
        parse(Path::new("vm.toml"), text)
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())
    }

    /// Every key of a VM file (`cli`'s tests check it means what the flags say).
    const FULL: &str = include_str!("full-vm.toml");

    #[test]
    fn the_packaged_example_is_a_valid_vm_file() {
        let text = include_str!("../../../resources/etc/vms/example.toml");
        let c = config(text).unwrap();
        assert_eq!((c.name.as_str(), c.slots.len()), ("example", 3));
    }

    #[test]
    fn renders_a_file_that_reads_back_the_same() {
        let c = config(FULL).unwrap();
        let text = render(&c);
        assert_eq!(config(&text), Ok(c.clone()), "{text}");
        assert!(text.contains("[[device]]\nslot = \"5:0\"\nemulation = \"passthru\"\nhost = \"0000:01:10.0\"\nmac = \"aa:88:44:00:02:01\"\nvlan = 100\nspoofchk = true\ntrust = false\nmanaged = true\n"), "{text}");
        // The minimal config too; seccomp = false is off.
        let off = config("name = \"a\"\nkernel = \"k\"\nseccomp = false\n").unwrap();
        assert_eq!(off.seccomp, SeccompMode::Off);
        assert_eq!(config(&render(&off)), Ok(off));
        let min = config("name = \"a\"\nkernel = \"k\"\n").unwrap();
        assert_eq!(config(&render(&min)), Ok(min));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let base = "name = \"g\"\nkernel = \"k\"\n";
        let cases: &[(&str, &str)] = &[
            ("cpus = 0\n", "vm.toml:3: cpus: -c 0: cpus must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("memory = \"lots\"\n", "vm.toml:3: memory: -m lots: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("memory = \"1001M\"\n\nhugepages = true\n", "vm.toml:3: memory: -m 1001M: not a multiple of 2 MiB, which --hugepages needs (use e.g. -m 1002M)"),
            ("hugepages = \"yes\"\n", "vm.toml:3: hugepages: --hugepages=yes: not a huge page size (use --hugepages=2M or --hugepages=1G)"),
            ("hugepages = 2\n", "vm.toml:3: hugepages: expected true, false, \"2M\" or \"1G\", not integer"),
            ("memroy = \"1G\"\n", "vm.toml:3: unknown field 'memroy', expected one of 'name', 'cpus', 'memory', 'hugepages', 'console', 'kernel', 'initrd', 'cmdline', 'uuid', 'oem_strings', 'api_socket', 'api_group', 'seccomp', 'device'"),
            ("seccomp = \"maybe\"\n", "vm.toml:3: seccomp: --seccomp maybe: expected on, log or off (default on)"),
            ("seccomp = 1\n", "vm.toml:3: seccomp: expected \"on\", \"log\", \"off\", true or false, not integer"),
            ("oem_strings = \"x\"\n", "vm.toml:3: oem_strings: expected an array of strings, not string"),
            ("oem_strings = [\"a\", 1]\n", "vm.toml:3: oem_strings: expected an array of strings, not array"),
            ("oem_strings = [\"a\", \"\"]\n", "vm.toml:3: oem_strings[1]: --oem-string \"\": empty string (SMBIOS cannot hold one; leave it out)"),
            ("console = \"com2,stdio\"\n", "vm.toml:3: console: -l com2,stdio: com2 is not supported (only com1 is supported for now)"),
            ("uuid = \"x\"\n", "vm.toml:3: uuid: -U x: not a UUID (use 8-4-4-4-12 hex digits, e.g. -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8)"),
            ("cmdline = \"a\\tb\"\n", "vm.toml:3: cmdline: --cmdline: character '\\t' is not allowed (only printable ASCII)"),
            ("memory = [1]\n", "vm.toml:3: memory: expected a string or a number, not array"),
            ("cpus = 2\ncpus = 3\n", "vm.toml:4: duplicate key"),
            ("\n[[device]]\nslot = 5\nemulation = \"passthru\"\nhost = \"1/16/0\"\nvlan = 5000\n",
             "vm.toml:8: device[0]: vlan must be a number 0..4095 (0 = untagged)"),
            ("\n[[device]]\nslot = 5\nemulation = \"passthru\"\nhost = \"1/16/0\"\nvlna = 5\n",
             "vm.toml:8: device[0]: unknown passthru option 'vlna' (known: mac=, vlan=, spoofchk=on|off, trust=on|off, managed, rom=off|FILE)"),
            ("\n[[device]]\nslot = 40\nemulation = \"lpc\"\n",
             "vm.toml:5: device[0]: slot is out of range (use 0..31)"),
            ("\n[[device]]\nslot = 4\nemulation = \"virtio-net\"\n",
             "vm.toml:6: device[0]: unknown emulation (known: hostbridge, lpc, virtio-blk, passthru)"),
            ("\n[[device]]\nslot = 4\nemulation = \"virtio-blk\"\n",
             "vm.toml:4: device[0]: missing path (e.g. path = \"...\")"),
            ("\n[[device]]\nemulation = \"lpc\"\n", "vm.toml:4: device[0]: missing slot (e.g. slot = \"5:0\")"),
            ("\n[[device]]\nslot = 4\nemulation = \"virtio-blk\"\npath = \"d\"\nsectorsize = \"4096/512\"\n",
             "vm.toml:8: device[0]: sectorsize: the physical size must be at least the logical one (e.g. sectorsize=512/4096)"),
            ("\n[[device]]\nslot = 4\nemulation = \"lpc\"\nx = 1.5\n", "vm.toml:7: device[0].x: expected a string, a number or true/false, not float"),
            ("\n[[device]]\nslot = 0\nemulation = \"hostbridge\"\n\n[[device]]\nslot = \"0:0\"\nemulation = \"lpc\"\n",
             "vm.toml:8: device[1]: slot 0:0 is already used by device[0] at vm.toml:4 (pick a free slot)"),
        ];
        for (extra, want) in cases {
            let text = format!("{base}{extra}");
            assert_eq!(config(&text).unwrap_err(), *want, "{text}");
        }
        assert_eq!(
            config("kernel = \"k\"\n").unwrap_err(),
            "the VM name is missing (give VMNAME, or name = \"NAME\" in the VM file)"
        );
        assert_eq!(
            load(Path::new("/nonexistent/vm.toml"))
                .unwrap_err()
                .to_string(),
            "/nonexistent/vm.toml: cannot read the VM file: No such file or directory (os error 2)"
        );
    }
}
