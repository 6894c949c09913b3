//! Test harness: boots the emulated SR-IOV host (QEMU TCG with nested SVM,
//! an Intel IOMMU and an igb NIC, see `resources/README.md`) with a shell
//! scenario, and returns its console output.
//!
//! ```no_run
//! use std::time::Duration;
//! use vfvm_tests::Testbed;
//!
//! let run = Testbed::new()
//!     .file("guest.sh", "marker guest.cpus \"$(nproc)\"\n")
//!     .scenario("pf_up; make_vfs 1; img=$(guest_initrd g /guest.sh); ...")
//!     .timeout(Duration::from_secs(240))
//!     .run()
//!     .unwrap();
//! assert_eq!(run.marker("guest.cpus"), Some("2"));
//! ```
//!
//! Scenarios report results as marker lines `@@KEY=VALUE` (the shell helper
//! `marker KEY VALUE`), from the emulated host or from a guest whose serial
//! console the VMM forwards. The images come from `resources/build-images.sh`,
//! run once per process; one emulated host runs at a time (a file lock), as
//! the machines have two cores. Each run keeps its console log, initrd and a
//! `qemu.sh` that boots it again by hand in `target/testbed/<name>/`.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The guest memory above which the emulated igb PF stops serving its VFs.
const IGB_MAX_MEMORY_MIB: u32 = 2048;
/// AMD with nested paging, minus what TCG lacks anyway (QEMU would warn).
const CPU: &str = "EPYC,+svm,+npt,-fxsr-opt,-misalignsse,-osvw,-topoext,-nrip-save,-xsavec";
/// The e1000's option ROM (Debian's ipxe-qemu, which setup-host.sh installs).
pub const E1000_ROM: &str = "/usr/lib/ipxe/qemu/efi-e1000.rom";
/// What a kernel prints when it panics: the run fails as soon as it shows.
const PANIC: &str = "Kernel panic - not syncing";
/// Where QEMU logs the emulated host's CPU resets (`-d cpu_reset`).
const CPU_RESET_LOG: &str = "qemu-cpu-reset.log";
/// How long to keep reading the console after a panic or an RCU stall
/// report, for its backtrace.
const PANIC_GRACE: Duration = Duration::from_secs(2);
/// How many times a run boots the emulated host when QEMU's emulation
/// itself fails (see [`Booted::EmulationFault`]).
const MAX_BOOTS: u32 = 3;

/// A run of the emulated SR-IOV host, configured builder-style.
#[derive(Clone, Debug)]
pub struct Testbed {
    memory_mib: u32,
    kernel_args: String,
    igb: bool,
    e1000: bool,
    qemu: bool,
    name: Option<String>,
    files: Vec<(String, Vec<u8>)>,
    scenario: String,
    timeout: Duration,
    echo: bool,
}

impl Default for Testbed {
    fn default() -> Self {
        Self::new()
    }
}

impl Testbed {
    /// 2048 MiB, igb NIC, no QEMU layer, empty scenario, 300 s timeout;
    /// echo if the environment has `VFVM_TESTBED_ECHO`.
    pub fn new() -> Self {
        Testbed {
            memory_mib: IGB_MAX_MEMORY_MIB,
            kernel_args: String::new(),
            igb: true,
            e1000: false,
            qemu: false,
            name: None,
            files: Vec::new(),
            scenario: String::new(),
            timeout: Duration::from_secs(300),
            echo: std::env::var_os("VFVM_TESTBED_ECHO").is_some(),
        }
    }

    /// Memory of the emulated host; at most 2048 MiB with the igb NIC.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// More arguments for the emulated host's kernel command line, e.g.
    /// `hugepagesz=1G hugepages=1` for a 1 GiB page pool that the kernel
    /// sets aside before memory fragments.
    pub fn kernel_args(mut self, args: &str) -> Self {
        self.kernel_args = args.to_owned();
        self
    }

    /// Whether the emulated host has the igb NIC (PF 0000:01:00.0).
    pub fn igb(mut self, on: bool) -> Self {
        self.igb = on;
        self
    }

    /// Whether the emulated host also has QEMU's e1000 (82540EM, 8086:100e)
    /// at 0000:00:06.0: a whole function with INTx only, an I/O BAR and an
    /// option ROM (iPXE's, from Debian's ipxe-qemu), on the same emulated
    /// hub as the igb PF so that it reaches the PF and nothing else.
    pub fn e1000(mut self, on: bool) -> Self {
        self.e1000 = on;
        self
    }

    /// Whether the emulated host also gets qemu-system-x86_64 (see the
    /// `qemu_guest` shell helper), for reference runs against QEMU/KVM.
    pub fn qemu(mut self, on: bool) -> Self {
        self.qemu = on;
        self
    }

    /// Name of the run's directory `target/testbed/<name>/`; defaults to
    /// the current test's name. Set it when a test makes several runs.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a file at `/<path>` in the emulated host, e.g. a guest scenario
    /// for the `guest_initrd` shell helper.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_owned(), contents.into()));
        self
    }

    /// The host scenario: a busybox `sh` script sourced with `set -e` after
    /// the helpers of `/lib/testbed.sh`, in `/tmp`.
    pub fn scenario(mut self, script: &str) -> Self {
        self.scenario = script.to_owned();
        self
    }

    /// Wall-clock limit of the whole run, boot included; QEMU is killed
    /// when it is reached.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to copy the console to stderr as it comes (libtest captures
    /// it unless `--nocapture`).
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Boots the emulated host, runs the scenario and powers off. Fails if
    /// the scenario exits non-zero, a kernel panics, or the time runs out.
    pub fn run(self) -> Result<Run, Error> {
        if self.igb && self.memory_mib > IGB_MAX_MEMORY_MIB {
            return Err(Error::setup(format!(
                "{} MiB with the igb NIC: the emulated PF stops serving its VFs above \
                 {IGB_MAX_MEMORY_MIB} MiB; use less memory or .igb(false)",
                self.memory_mib
            )));
        }
        let name = self.name.clone().unwrap_or_else(test_name);
        let dir = target_dir().join("testbed").join(&name);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::setup(format!("cannot create {}: {e}", dir.display())))?;
        let _lock = lock()?;
        build_images(self.qemu)?;
        let initrd = dir.join("initrd.img");
        self.write_initrd(&dir, &initrd)
            .map_err(|e| Error::setup(format!("cannot write {}: {e}", initrd.display())))?;
        // QEMU's multi-threaded TCG has races of its own (e.g.
        // `iotlb_to_section: Assertion ... failed`, QEMU issue 1921) that
        // abort the emulated host, and its software nested SVM sometimes
        // triple-faults the host's kernel or stops delivering one CPU's
        // timer interrupts; nothing vfvm does in the host's userspace can
        // cause either. Such a run says nothing about the scenario: boot
        // again, from the same initrd, keeping the faulted run's logs.
        let mut attempt = 1;
        loop {
            match self.boot(&dir, &initrd) {
                Err(Booted::EmulationFault(fault)) if attempt < MAX_BOOTS => {
                    let kept = keep_faulted_logs(&dir, attempt);
                    eprintln!(
                        "testbed: the emulated host failed on its own ({fault}); booting it once \
                         more (the faulted run's log: {})",
                        kept.display()
                    );
                    attempt += 1;
                }
                Err(Booted::EmulationFault(fault)) => {
                    return Err(Error::setup(format!(
                        "the emulated host failed on its own {MAX_BOOTS} times, last: {fault}"
                    )))
                }
                Err(Booted::Failed(e)) => return Err(e),
                Ok(run) => return Ok(run),
            }
        }
    }

    /// The initrd: the host's base image, the QEMU layer if wanted, and
    /// this run's files as a last archive (the kernel unpacks each in turn).
    fn write_initrd(&self, dir: &Path, initrd: &Path) -> std::io::Result<()> {
        let mut files = vec![("scenario.sh".to_owned(), self.scenario.clone().into_bytes())];
        files.extend(self.files.iter().cloned());
        let overlay = dir.join("overlay.cpio");
        fs::write(&overlay, newc(&files)?)?;
        let status = Command::new("gzip").arg("-1f").arg(&overlay).status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("gzip failed: {status}")));
        }
        let mut parts = vec![images_dir().join("host-base.cpio.gz")];
        if self.qemu {
            parts.push(images_dir().join("qemu-layer.cpio.gz"));
        }
        parts.push(dir.join("overlay.cpio.gz"));
        let mut out = File::create(initrd)?;
        for part in parts {
            std::io::copy(&mut File::open(part)?, &mut out)?;
        }
        Ok(())
    }

    fn qemu_args(&self, dir: &Path, initrd: &Path) -> Vec<String> {
        let mut args = format!(
            "-machine q35 -accel tcg -cpu {CPU} -smp 2 -m {} -device intel-iommu,intremap=on \
             -nodefaults -no-user-config -display none -serial stdio -no-reboot",
            self.memory_mib
        );
        if self.igb {
            // Only a hubport netdev: all traffic stays inside the emulated NIC.
            args += " -device pcie-root-port,id=rp0,slot=1 -device igb,bus=rp0,netdev=n0 \
                     -netdev hubport,id=n0,hubid=0";
        }
        if self.e1000 {
            args += &format!(
                " -device e1000,netdev=n1,addr=06.0,romfile={E1000_ROM} \
                 -netdev hubport,id=n1,hubid=0"
            );
        }
        let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
        // QEMU's CPU resets go to a file of their own: a triple fault of the
        // emulated host (which QEMU turns into a silent reset, and with
        // -no-reboot into an exit) is then named, not guessed at.
        args.extend([
            "-d".into(),
            "cpu_reset".into(),
            "-D".into(),
            dir.join(CPU_RESET_LOG).display().to_string(),
        ]);
        args.extend([
            "-kernel".into(),
            images_dir().join("vmlinuz").display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            // no_timer_check: on a loaded machine TCG is too slow for the
            // kernel's IO-APIC timer check, which then panics ("timer
            // doesn't work through Interrupt-remapped IO-APIC").
            format!(
                "console=ttyS0 panic=-1 intel_iommu=on quiet no_timer_check {}",
                self.kernel_args
            )
            .trim_end()
            .to_owned(),
        ]);
        args
    }

    fn boot(&self, dir: &Path, initrd: &Path) -> Result<Run, Booted> {
        let args = self.qemu_args(dir, initrd);
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!("#!/bin/sh\nexec qemu-system-x86_64 {}\n", quoted.join(" "));
        let log_path = dir.join("console.log");
        fs::write(dir.join("qemu.sh"), script)
            .map_err(|e| Error::setup(format!("cannot write to {}: {e}", dir.display())))?;
        let mut log = File::create(&log_path)
            .map_err(|e| Error::setup(format!("cannot create {}: {e}", log_path.display())))?;

        let start = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::setup(format!(
                    "cannot start qemu-system-x86_64 ({e}); run: bash resources/setup-host.sh"
                ))
            })?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(stdout, "", tx.clone());
        forward_lines(stderr, "qemu: ", tx);

        let mut lines = Vec::new();
        let mut deadline = start + self.timeout;
        let mut panicked = false;
        // The emulated host kernel's report of a stalled CPU, if any.
        let mut stall: Option<String> = None;
        // Why the run stopped before QEMU exited, if it did.
        let stopped = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    // Losing log lines is better than failing the run.
                    let _ = writeln!(log, "{:7.2}| {line}", start.elapsed().as_secs_f64());
                    if self.echo {
                        eprintln!("{line}");
                    }
                    if !panicked && line.contains(PANIC) {
                        panicked = true;
                        deadline = deadline.min(Instant::now() + PANIC_GRACE);
                    }
                    if stall.is_none() && rcu_stall(&line) {
                        stall = Some(line.trim().to_owned());
                        deadline = deadline.min(Instant::now() + PANIC_GRACE);
                    }
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) if stall.is_some() => {
                    break Some("RCU stall".to_owned())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if panicked => {
                    break Some("kernel panic".to_owned())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Some(format!("timed out after {:?}", self.timeout))
                }
            }
        };
        // Kill and reap QEMU in every case; it has exited already unless
        // the run timed out or panicked.
        let _ = child.kill();
        let status = child.wait();
        let run = Run {
            console: lines.join("\n"),
            log_path,
            elapsed: start.elapsed(),
        };
        if let Some(stall) = stall {
            // The host's guests log to files (the `vm` helpers), so this is
            // the emulated host's own kernel: one of its CPUs stopped taking
            // timer interrupts under QEMU's emulation. A scenario that still
            // finished has its result.
            if run.marker("host.exit") == Some("0") {
                return Ok(run);
            }
            return Err(Booted::EmulationFault(format!(
                "its kernel reported an RCU stall: {stall}"
            )));
        }
        let failure = match (stopped, run.marker("host.exit")) {
            (Some(why), _) => why,
            (None, _) if panicked => "kernel panic".to_owned(),
            (None, Some("0")) => return Ok(run),
            (None, Some(rc)) => format!("scenario failed with exit status {rc}"),
            (None, None) => {
                if let Some(crash) = qemu_crash(&run.console) {
                    return Err(Booted::EmulationFault(format!("QEMU crashed: {crash}")));
                }
                let resets = fs::read_to_string(dir.join(CPU_RESET_LOG)).unwrap_or_default();
                if resets.lines().any(|l| l.trim() == "Triple fault") {
                    // The emulated host's own kernel triple-faulted under
                    // QEMU's software-emulated nested SVM: vfvm runs in its
                    // userspace and cannot cause that.
                    return Err(Booted::EmulationFault(format!(
                        "it triple-faulted (see {CPU_RESET_LOG})"
                    )));
                }
                format!(
                    "the emulated host stopped without reporting the scenario's exit status \
                     (qemu: {status:?})"
                )
            }
        };
        Err(Booted::Failed(Error::run(failure, &run)))
    }
}

/// How a boot that did not succeed ended.
enum Booted {
    /// QEMU's emulation failed before the scenario reported (QEMU aborted on
    /// an assertion of its own, the host triple-faulted, or its kernel saw a
    /// CPU stall): a QEMU bug, not a result.
    EmulationFault(String),
    Failed(Error),
}

impl From<Error> for Booted {
    fn from(e: Error) -> Self {
        Booted::Failed(e)
    }
}

/// Renames a faulted run's console and CPU-reset logs so that the next boot
/// starts fresh; returns where the console log went.
fn keep_faulted_logs(dir: &Path, attempt: u32) -> PathBuf {
    let kept = dir.join(format!("console.log.fault{attempt}"));
    let _ = fs::rename(dir.join("console.log"), &kept);
    let _ = fs::rename(
        dir.join(CPU_RESET_LOG),
        dir.join(format!("{CPU_RESET_LOG}.fault{attempt}")),
    );
    kept
}

/// Whether a console line is a kernel's RCU CPU stall report
/// (`rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:`, or a CPU's
/// `self-detected stall`).
fn rcu_stall(line: &str) -> bool {
    line.split_once("rcu: INFO: ")
        .is_some_and(|(_, rest)| rest.contains("detected stall"))
}

/// QEMU's own assertion failure on its stderr (forwarded as `qemu: ...`),
/// if the run has one.
fn qemu_crash(console: &str) -> Option<&str> {
    console.lines().find_map(|line| {
        let msg = line.strip_prefix("qemu: qemu-system-x86_64: ")?;
        (msg.contains("Assertion") && msg.ends_with("failed.")).then_some(msg)
    })
}

/// The console output of a finished run.
#[derive(Debug)]
pub struct Run {
    console: String,
    log_path: PathBuf,
    elapsed: Duration,
}

impl Run {
    /// The value of the last `@@KEY=VALUE` line with this key.
    pub fn marker(&self, key: &str) -> Option<&str> {
        self.markers(key)
            .into_iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The value of marker `key`, which the scenario must have printed.
    ///
    /// # Panics
    /// If there is no such marker: the panic names the key and the log.
    pub fn expect_marker(&self, key: &str) -> &str {
        self.marker(key)
            .unwrap_or_else(|| panic!("no marker {key}; see {}", self.log_path.display()))
    }

    /// All markers whose key starts with `prefix`, as (key, value), in the
    /// order they were printed.
    pub fn markers(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.console
            .lines()
            .filter_map(parse_marker)
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }

    /// The value of marker `key` parsed as JSON (the shell's `json_marker`
    /// and `check` write them); `None` if there is no such marker.
    ///
    /// # Panics
    /// If the value is not JSON: the scenario is wrong.
    pub fn json(&self, key: &str) -> Option<serde_json::Value> {
        let value = self.marker(key)?;
        Some(serde_json::from_str(value).unwrap_or_else(|e| {
            panic!(
                "marker {key} is not JSON ({e}): {value}; see {}",
                self.log_path.display()
            )
        }))
    }

    /// How the command that the shell's `check NAME ...` ran ended.
    ///
    /// # Panics
    /// If the case did not run (no marker `host.NAME`) or its marker is not
    /// what `check` writes.
    pub fn outcome(&self, name: &str) -> Outcome {
        let key = format!("host.{name}");
        let value = self
            .json(&key)
            .unwrap_or_else(|| panic!("case {name} did not run; see {}", self.log_path.display()));
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("marker {key} is not a `check` outcome: {e}"))
    }

    /// Asserts that `check NAME ...` ran a vfvm that refused to start:
    /// status 4 (bhyve's "error"), nothing on stdout, and exactly one line
    /// on stderr, `vfvm: error: ` followed by a message that contains every
    /// string of `wants`.
    pub fn assert_error(&self, name: &str, wants: &[&str]) {
        let out = self.outcome(name);
        let stderr = out.stderr.join("|");
        assert_eq!(out.status, 4, "{name}: exit status; stderr: {stderr}");
        assert_eq!(
            out.stderr.len(),
            1,
            "{name}: stderr must be one line: {stderr}"
        );
        assert_eq!(out.stdout_bytes, 0, "{name}: stdout");
        let line = &out.stderr[0];
        assert!(
            line.starts_with("vfvm: error: "),
            "{name}: not an error line: {line}"
        );
        for want in wants {
            assert!(
                line.contains(want),
                "{name}: {line:?} does not name {want:?}"
            );
        }
    }

    /// The whole console output (the emulated host's, QEMU's stderr lines
    /// prefixed `qemu: `), without the `\r`s.
    pub fn console(&self) -> &str {
        &self.console
    }

    /// The saved console log, each line prefixed with the seconds since
    /// QEMU started.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Wall-clock time from starting QEMU to its exit.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// How a command run by the shell's `check` ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Outcome {
    /// Its exit status (124: killed by `timeout` after 60 s).
    pub status: i32,
    /// Its standard error, line by line.
    pub stderr: Vec<String>,
    /// How many bytes it wrote on standard output.
    pub stdout_bytes: u64,
}

/// Parses `@@KEY=VALUE` anywhere in a line, so that console noise printed
/// before it on the same line does not hide it.
fn parse_marker(line: &str) -> Option<(&str, &str)> {
    line.match_indices("@@").find_map(|(i, _)| {
        let (key, value) = line[i + 2..].split_once('=')?;
        let valid = |c: char| c.is_ascii_alphanumeric() || "_.-:".contains(c);
        (!key.is_empty() && key.chars().all(valid)).then(|| (key, value.trim_end()))
    })
}

/// Why a run failed, with what is needed to debug it.
pub struct Error {
    what: String,
    log: Option<(PathBuf, String)>,
}

impl Error {
    fn setup(what: String) -> Self {
        Error { what, log: None }
    }

    fn run(what: String, run: &Run) -> Self {
        let lines: Vec<&str> = run.console.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        Error {
            what,
            log: Some((run.log_path.clone(), tail)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "testbed: {}", self.what)?;
        if let Some((path, tail)) = &self.log {
            write!(f, "\nfull log: {}\nlast lines:\n{tail}", path.display())?;
        }
        Ok(())
    }
}

// `Debug` is what `unwrap()` and a test returning `Err` print.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// Sends each line read from `r`, without `\r`, prefixed, until EOF.
fn forward_lines(r: impl Read + Send + 'static, prefix: &'static str, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).replace('\r', "");
            if tx
                .send(format!("{prefix}{}", line.trim_end_matches('\n')))
                .is_err()
            {
                return;
            }
            buf.clear();
        }
    });
}

/// A gzip-less newc cpio archive of regular files (mode 0755) and the
/// directories leading to them, all owned by root.
fn newc(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    fn entry(out: &mut Vec<u8>, ino: usize, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            ino,
            mode as usize,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    let mut dirs: Vec<&str> = Vec::new();
    let mut ino = 0;
    for (path, data) in files {
        let bad = path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..");
        if bad {
            let msg = format!("overlay path {path:?}: want a relative path without ..");
            return Err(std::io::Error::other(msg));
        }
        for (i, _) in path.match_indices('/') {
            if !dirs.contains(&&path[..i]) {
                dirs.push(&path[..i]);
                ino += 1;
                entry(&mut out, ino, &path[..i], 0o040755, &[]);
            }
        }
        ino += 1;
        entry(&mut out, ino, path, 0o100755, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    Ok(out)
}

/// The guest's kernel (the bzImage at `/guest/vmlinuz` in the emulated
/// host), building the images first if needed: for tests that derive files
/// from it.
pub fn guest_kernel() -> Result<PathBuf, Error> {
    let _lock = lock()?;
    build_images(false)?;
    Ok(images_dir().join("vmlinuz"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn images_dir() -> PathBuf {
    workspace_root().join("resources/out")
}

fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

/// The current test's name (libtest names its threads after the tests).
fn test_name() -> String {
    let name = thread::current()
        .name()
        .unwrap_or("testbed")
        .replace("::", ".");
    name.replace(
        |c: char| !c.is_ascii_alphanumeric() && !"_.-".contains(c),
        "_",
    )
}

/// Serializes emulated hosts, across processes too: two cores, one host.
/// Takes the machine-wide testbed lock: one emulated host at a time on this
/// machine, whichever checkout or process boots it. Each uses both of the
/// machines' two cores; two at once only slow each other down and starve
/// their emulated CPUs (which then report RCU stalls).
fn lock() -> Result<File, Error> {
    let path = std::env::temp_dir().join("vfvm-testbed.lock");
    let file = File::create(&path)
        .map_err(|e| Error::setup(format!("cannot create {}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| Error::setup(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Runs `resources/build-images.sh` once per process (and once more for the
/// QEMU layer). Call with the lock held.
fn build_images(qemu: bool) -> Result<(), Error> {
    static BUILT: AtomicU8 = AtomicU8::new(0);
    let level = 1 + u8::from(qemu);
    if BUILT.load(Ordering::SeqCst) >= level {
        return Ok(());
    }
    let script = workspace_root().join("resources/build-images.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if qemu {
        cmd.arg("--with-qemu");
    }
    let out = cmd
        .output()
        .map_err(|e| Error::setup(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Error::setup(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    BUILT.store(level, Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemus_own_assertion_counts_as_its_crash() {
        let crashed = "@@host.booted=3.18\nqemu: qemu-system-x86_64: system/physmem.c:2678: \
                       iotlb_to_section: Assertion `section_index < d->map.sections_nb' failed.";
        assert_eq!(
            qemu_crash(crashed),
            Some(
                "system/physmem.c:2678: iotlb_to_section: \
                 Assertion `section_index < d->map.sections_nb' failed."
            )
        );
        // The guest's or vfvm's own assertions are results, not QEMU crashes.
        assert_eq!(qemu_crash("vfvm: Assertion `x' failed."), None);
        assert_eq!(
            qemu_crash("qemu: qemu-system-x86_64: warning: hub 0 is not connected"),
            None
        );
    }

    #[test]
    fn rcu_stall_reports_are_recognised() {
        assert!(rcu_stall(
            "[   34.626905] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"
        ));
        assert!(rcu_stall(
            "[   12.000001] rcu: INFO: rcu_preempt self-detected stall on CPU"
        ));
        // The stall's details and other RCU lines do not start a retry.
        assert!(!rcu_stall(
            "[   34.627501] rcu: RCU grace-period kthread stack dump:"
        ));
        assert!(!rcu_stall("@@g.note=rcu: fine"));
    }

    #[test]
    fn markers_survive_carriage_returns_and_noise() {
        let run = Run {
            console: "boot\n@@a.b=1 2\n[ 1.0] x@@a.c=3\n@@a.b=4\n@@bad key=5\n@@=6\n".into(),
            log_path: PathBuf::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(run.marker("a.b"), Some("4"));
        assert_eq!(run.marker("a.c"), Some("3"));
        assert_eq!(run.marker("a"), None);
        assert_eq!(
            run.markers("a."),
            [("a.b", "1 2"), ("a.c", "3"), ("a.b", "4")]
        );
    }

    #[test]
    fn json_markers_and_check_outcomes_parse() {
        let run = Run {
            console: concat!(
                r#"@@host.c={"status":4,"stderr":["vfvm: error: -m 0: \"x\""],"stdout_bytes":0}"#,
                "\n@@host.j={ \"a\": [1, 2]}\n"
            )
            .into(),
            log_path: PathBuf::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(run.json("host.j").unwrap()["a"][1], 2);
        assert_eq!(run.json("host.none"), None);
        let c = run.outcome("c");
        assert_eq!((c.status, c.stdout_bytes), (4, 0));
        assert_eq!(c.stderr, [r#"vfvm: error: -m 0: "x""#]);
        run.assert_error("c", &["-m 0"]);
    }

    #[test]
    fn newc_has_parent_dirs_and_aligned_entries() {
        let files = [("g/x.sh".to_owned(), b"abc".to_vec())];
        let out = newc(&files).unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("070701").count(), 3);
        assert!(text.find("g\0").unwrap() < text.find("g/x.sh\0").unwrap());
        assert!(text.contains("abc") && text.ends_with("TRAILER!!!\0\0\0\0"));
        assert!(newc(&[("../x".to_owned(), vec![])]).is_err());
    }
}
