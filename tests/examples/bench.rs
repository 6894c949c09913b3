//! Benchmarks (`resources/bench.sh`, see `resources/BENCH.md`): vfvm against
//! QEMU/KVM, both run inside the same emulated SR-IOV host in the same
//! emulated-host boot. Absolute times there are noise (nested KVM under TCG);
//! only the ratios vfvm/QEMU mean something.
//!
//! `cargo run --release -p vfvm-tests --example bench -- [boot|blk|vf|all]`
//!
//! Each part is one emulated-host boot. Every VMM's console and stderr go
//! through a FIFO that a shell loop in the emulated host reads: it stamps the
//! guest's first marker with the host's monotonic clock (`/proc/uptime`, read
//! without forking), samples the VMM's memory while the guest runs, prefixes
//! the guest's markers with the run's label and picks up vfvm's exit
//! counters. A part that cannot run prints "n/a: reason".

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use vfvm_tests::{Run, Testbed};

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// Guest boots per VMM in the boot and pages parts, unless
/// `VFVM_BENCH_BOOTS` says otherwise.
fn boots() -> usize {
    std::env::var("VFVM_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}
/// `VFVM_BENCH_PEERS_RESERVE=1`: the boot part's QEMU and Cloud Hypervisor
/// reserve guest RAM before the guest runs, as vfvm always does (QEMU
/// `-mem-prealloc -overcommit mem-lock=on`, CH `prefault=on`): the like-for-
/// like start of a VM whose RAM a VF will pin anyway.
fn peers_reserve() -> bool {
    std::env::var("VFVM_BENCH_PEERS_RESERVE").is_ok_and(|v| v == "1")
}
/// The virtio-blk image, in the emulated host's tmpfs.
const DISK_MIB: u32 = 128;
/// What the guest streams to the PF over the VF with nc.
const NC_MIB: u32 = 16;
const VF_MAC: &str = "aa:88:44:00:02:01";
/// The VMMs a part compares, vfvm first: the peers are the rest.
const VMMS: [&str; 3] = ["vfvm", "qemu", "ch"];

/// Host-side helpers shared by the parts (sourced after /lib/testbed.sh).
const HOST_LIB: &str = r#"
# up: the host's monotonic seconds (0.01 s), without a fork.
up() { read -r _up _ </proc/uptime; echo "$_up"; }
el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# mem LABEL PID: the VMM's memory while its guest runs. smaps: the RSS of
# every mapping smaller than 64 MiB (everything but guest RAM), and the size
# and RSS of the big ones (guest RAM).
# Last, the big mappings' AnonHugePages (guest RAM in transparent huge pages).
mem() {
  awk '$1 == "Size:" { sz = $2 }
       $1 == "Rss:" { if (sz >= 65536) { big += sz; bigrss += $2 } else small += $2 }
       END { printf "%d %d %d", small, big, bigrss }' "/proc/$2/smaps" >/tmp/mem.$1
  thp=$(awk '$1 == "Size:" { sz = $2 } $1 == "AnonHugePages:" && sz >= 65536 { t += $2 }
       END { print t + 0 }' "/proc/$2/smaps")
  s=/proc/$2/status
  marker "b.$1.mem" "$(cat /tmp/mem.$1) $(awk '/^VmRSS/ { r = $2 } /^VmLck/ { l = $2 }
       /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } END { printf "%d %d %d %d", r, l, a, f }' $s) $thp"
  kvm_stats "$1" init
  marker "b.$1.cpu" "$(cputime "$2")"
}

# cputime PID: the process's CPU time so far (utime + stime, in USER_HZ
# ticks, threads that ended included) as total=TICKS, then each live
# thread's name (spaces as _) and its own, as NAME=TICKS.
cputime() {
  s=$(cat /proc/$1/stat)
  set -- "$1" ${s##*) }
  printf 'total=%s ' $((${13} + ${14}))
  for t in /proc/$1/task/*; do
    read -r c <$t/comm
    s=$(cat $t/stat)
    set -- ${s##*) }
    printf '%s=%s ' "$(echo "$c" | tr ' ' _)" $((${12} + ${13}))
  done
}

# vmm LABEL CMD...: runs a VMM, its console and stderr through a FIFO read
# here; stamps the guest's @@guest.init (and @@guest.ping1, its first ping
# over a VF), samples memory then, relabels the guest's markers
# @@b.LABEL.guest.*, keeps vfvm's exit counters, its start-phase line and
# the last error line, and stamps the VMM's exit. Never fails (the status is
# a marker).
vmm() {
  label=$1; shift
  rm -f /tmp/vmm.fifo; mkfifo /tmp/vmm.fifo
  marker b.run "$label"
  t0=$(up)
  "$@" </dev/null >/tmp/vmm.fifo 2>&1 &
  pid=$!
  while IFS= read -r l; do
    case $l in
      *@@guest.*.pre=*|*@@guest.*.post=*)
        key=${l#*@@guest.}; kvm_stats "$label" "${key%%=*}" ;;
    esac
    case $l in
      *@@guest.init=*)
        t1=$(up)
        marker "b.$label.boot" "$(el "$t0" "$t1")"
        mem "$label" "$pid" ;;
      *@@guest.ping1=*) marker "b.$label.ping1" "$(el "$t0" "$(up)")" ;;
    esac
    case $l in
      *@@guest.*) echo "@@b.$label.${l#*@@}" ;;
      *"exits handled in userspace: "*) marker "b.$label.exits" "${l#*userspace: }" ;;
      *"virtio-blk /tmp/disk.img: "*) marker "b.$label.blkq" "${l#*disk.img: }" ;;
      *"vfvm: info: started in "*) echo "$l"; marker "b.$label.start" "${l#*started in }" ;;
      "["*) echo "$l" ;;
      *[Ee]rror*|*panic*|*failed*) echo "$l"; marker "b.$label.err" "$l" ;;
      *) echo "$l" ;;
    esac
  done </tmp/vmm.fifo
  rc=0; wait "$pid" || rc=$?
  marker "b.$label.total" "$(el "$t0" "$(up)")"
  marker "b.$label.rc" "$rc"
}

# kvm_stats LABEL KEY: the host kernel's KVM counters (summed over its VMs:
# one runs at a time) as marker b.LABEL.kvm.KEY: exits (to the host kernel
# or beyond), of which port I/O and MMIO to userspace, HLT, and interrupts
# injected. Nothing without debugfs.
KVM_STATS="exits io_exits mmio_exits halt_exits irq_injections"
kvm_stats() {
  d=/sys/kernel/debug/kvm
  [ -r $d/exits ] || return 0
  v=; for f in $KVM_STATS; do read -r n <$d/$f; v="$v $n"; done
  marker "b.$1.kvm.$2" "$v"
}

# qemu_vm KERNEL IMG CMDLINE [QEMU-ARGS...]: the reference VMM, as vfvm's
# guest (KERNEL: the bzImage, or the vmlinux, which QEMU enters through its
# PVH note). exec: `vmm` runs it in a background subshell whose PID it samples.
qemu_vm() {
  _k=$1 _img=$2 _app=$3; shift 3
  exec qemu-system-x86_64 -machine q35 -accel kvm -cpu host -smp 2 -m 512 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    ${PEERS_RESERVE:+-mem-prealloc -overcommit mem-lock=on} \
    -kernel "$_k" -initrd "$_img" -append "$_app" "$@"
}

# ch_vm KERNEL IMG CMDLINE [CH-ARGS...]: Cloud Hypervisor (/ch, when the
# bench has one), the same guest, its serial port on stdout.
ch_vm() {
  _k=$1 _img=$2 _app=$3; shift 3
  exec /ch --kernel "$_k" --initramfs "$_img" --cmdline "$_app" --cpus boot=2 \
    --memory size=512M${PEERS_RESERVE:+,prefault=on} --serial tty --console off "$@"
}
"#;

/// Guest-side helper: the guest's monotonic seconds.
const GUEST_LIB: &str = r#"
up() { read -r _up _ </proc/uptime; echo "$_up"; }
el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
idle() { grep -q bench=idle /proc/cmdline; }
"#;

fn main() -> ExitCode {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let parts: &[&str] = match what.as_str() {
        "all" => &["boot", "pages", "blk", "vf"],
        "boot" => &["boot"],
        "blk" => &["blk"],
        "vf" => &["vf"],
        "trace" => &["trace"],
        "pages" => &["pages"],
        _ => {
            eprintln!("usage: bench [boot|blk|vf|pages|trace|all]");
            return ExitCode::FAILURE;
        }
    };
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = load();
    let mut table = Table::default();
    for part in parts {
        eprintln!("bench: {part} (one emulated-host boot) ...");
        let before = loadavg();
        match *part {
            "boot" => boot(&mut table),
            "blk" => blk(&mut table),
            "trace" => trace(),
            "pages" => pages(&mut table),
            _ => vf(&mut table),
        }
        table.note(format!(
            "({part}: this machine's load average {before} at the start, {} at the end)",
            loadavg()
        ));
    }
    println!("{}", table.render());
    println!(
        "load average (1, 5, 15 min) before: {}, after: {}",
        load_before.trim(),
        load().trim()
    );
    println!(
        "(TCG-emulated host with nested KVM: absolute figures are noise, only the \
         vfvm/QEMU ratios mean something)"
    );
    ExitCode::SUCCESS
}

/// The rows of the printed table: each figure for vfvm, QEMU and (where
/// the bench has it) Cloud Hypervisor, with the ratios vfvm/QEMU, vfvm/CH.
#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

enum Row {
    Figure {
        part: &'static str,
        what: String,
        /// vfvm, QEMU, Cloud Hypervisor.
        values: [Option<f64>; 3],
    },
    NA {
        part: &'static str,
        what: String,
        why: String,
    },
    Note(String),
}

impl Table {
    fn figure(&mut self, part: &'static str, what: &str, vfvm: Option<f64>, qemu: Option<f64>) {
        self.figure3(part, what, [vfvm, qemu, None]);
    }

    fn figure3(&mut self, part: &'static str, what: &str, values: [Option<f64>; 3]) {
        self.rows.push(Row::Figure {
            part,
            what: what.into(),
            values,
        });
    }

    fn na(&mut self, part: &'static str, what: &str, why: impl Into<String>) {
        let why = why.into();
        let why = why.lines().next().unwrap_or("").to_owned();
        self.rows.push(Row::NA {
            part,
            what: what.into(),
            why,
        });
    }

    /// A line printed as it is (e.g. the machine's load average).
    fn note(&mut self, line: String) {
        self.rows.push(Row::Note(line));
    }

    fn render(&self) -> String {
        let ch = self
            .rows
            .iter()
            .any(|r| matches!(r, Row::Figure { values, .. } if values[2].is_some()));
        let mut s = String::new();
        let _ = write!(
            s,
            "{:<5} {:<48} {:>9} {:>9} {:>9}",
            "part", "figure", "vfvm", "qemu", "vfvm/qemu"
        );
        if ch {
            let _ = write!(s, " {:>9} {:>9}", "ch", "vfvm/ch");
        }
        s.push('\n');
        let f = |v: &Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let ratio = |a: &Option<f64>, b: &Option<f64>| match (a, b) {
            (Some(a), Some(b)) if *b != 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        for row in &self.rows {
            match row {
                Row::Figure { part, what, values } => {
                    let [v, q, c] = values;
                    let _ = write!(
                        s,
                        "{part:<5} {what:<48} {:>9} {:>9} {:>9}",
                        f(v),
                        f(q),
                        ratio(v, q)
                    );
                    if ch {
                        let _ = write!(s, " {:>9} {:>9}", f(c), ratio(v, c));
                    }
                    s.push('\n');
                }
                Row::NA { part, what, why } => {
                    let _ = writeln!(s, "{part:<5} {what:<48} n/a: {why}");
                }
                Row::Note(line) => {
                    let _ = writeln!(s, "{line}");
                }
            }
        }
        s
    }
}

/// This machine's load average (1, 5, 15 min), to print with the figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let v: Vec<&str> = l.split_whitespace().take(3).collect();
            (v.len() == 3).then(|| v.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A phase's seconds from vfvm's start line (`3.1 s: reserve 0.5 s (...),
/// DMA map 0.0 s, load kernel 0.9 s (...)`): the number after `key` (the
/// first one for `started in`).
fn phase(run: &Run, label: &str, key: &str) -> Option<f64> {
    let line = run.marker(&format!("b.{label}.start"))?;
    let rest = if key == "started in" {
        line
    } else {
        let i = line.rfind(&format!("{key} "))?;
        &line[i + key.len() + 1..]
    };
    rest.split_whitespace().next()?.parse().ok()
}

fn num(run: &Run, key: &str) -> Option<f64> {
    run.marker(key)?.split_whitespace().next()?.parse().ok()
}

fn nums(run: &Run, key: &str) -> Option<Vec<f64>> {
    run.marker(key)?
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect()
}

/// Why a VMM run gave no figure: its last error line, or its status.
fn why(run: &Run, label: &str) -> String {
    if let Some(e) = run.marker(&format!("b.{label}.err")) {
        return format!("{label}: {e}");
    }
    match run.marker(&format!("b.{label}.rc")) {
        Some(rc) => format!("{label}: exited with {rc} before the guest's marker"),
        None => format!("{label}: did not run (see the log)"),
    }
}

/// The sum of vfvm's userspace exits from `io_in=A io_out=B ...`.
fn exits(run: &Run, label: &str) -> Option<f64> {
    let line = run.marker(&format!("b.{label}.exits"))?;
    let mut total = 0.0;
    for kv in line.split_whitespace() {
        total += kv.split_once('=')?.1.parse::<f64>().ok()?;
    }
    Some(total)
}

/// vfvm's MMIO exits (reads + writes) from the same line: the virtio and
/// passthrough devices' share, as port I/O here is the serial console.
fn mmio_exits(run: &Run, label: &str) -> Option<f64> {
    let line = run.marker(&format!("b.{label}.exits"))?;
    let mut total = 0.0;
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        if k.starts_with("mmio") {
            total += v.parse::<f64>().ok()?;
        }
    }
    Some(total)
}

/// RSS outside guest RAM (smaps mappings < 64 MiB), in MiB.
fn rss_mib(run: &Run, label: &str) -> Option<f64> {
    nums(run, &format!("b.{label}.mem")).map(|v| v[0] / 1024.0)
}

fn testbed(name: &str, igb: bool) -> Testbed {
    Testbed::new()
        .name(name)
        .igb(igb)
        .qemu(true)
        .timeout(Duration::from_secs(900))
}

fn vfvm_cmd(img: &str, extra: &str, cmdline: &str, name: &str) -> String {
    format!(
        "vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge {extra} \
         --kernel /guest/vmlinuz --initrd {img} --cmdline \"{cmdline}\" {name}"
    )
}

/// The guest kernel's forms the boot part runs: (label suffix, the
/// kernel's path in the emulated host, what the table calls it).
const KERNELS: [(&str, &str, &str); 2] = [
    ("bz", "/guest/vmlinuz", "bzImage"),
    ("elf", "/vmlinux", "vmlinux"),
];

/// The guest's vmlinux, from the bzImage both VMMs boot (vfvm's own
/// decompressor), for the runs that boot it directly.
fn guest_vmlinux() -> Result<Vec<u8>, String> {
    let path = vfvm_tests::guest_kernel().map_err(|e| e.to_string())?;
    let bzimage = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match arch::boot::bzimage_vmlinux(&path, &bzimage) {
        Ok(Some((_, vmlinux))) => Ok(vmlinux),
        Ok(None) => Err("the guest kernel's payload is not one vfvm decompresses".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Cloud Hypervisor for the third column: a static binary named by
/// `VFVM_BENCH_CH` (see BENCH.md), or why there is none.
fn cloud_hypervisor() -> Result<Vec<u8>, String> {
    let path = std::env::var_os("VFVM_BENCH_CH")
        .ok_or("set VFVM_BENCH_CH to a static cloud-hypervisor binary")?;
    std::fs::read(&path).map_err(|e| format!("VFVM_BENCH_CH: {e}"))
}

/// Issues 2 and 13: time from launching the VMM to the guest's first
/// marker, and the VMM's own memory, `boots()` times each, alternating vfvm,
/// QEMU (and Cloud Hypervisor), each with the bzImage and with the vmlinux
/// inside it.
fn boot(t: &mut Table) {
    let n = boots();
    let vmlinux = match guest_vmlinux() {
        Ok(v) => v,
        Err(e) => return t.na("boot", "boot", e),
    };
    let ch = cloud_hypervisor();
    let guest = format!("{GUEST_LIB}\nmarker guest.init 1\n{GUEST_CLOCK}\nsleep 1\n");
    let mut host = format!(
        "{HOST_LIB}\nmount -t debugfs none /sys/kernel/debug 2>/dev/null || true\n\
         guest_initrd g /guest.sh >/dev/null\n"
    );
    if peers_reserve() {
        host += "PEERS_RESERVE=1\n";
    }
    for i in 1..=n {
        boot_runs(&mut host, &i.to_string(), GUEST_CMDLINE, ch.is_ok());
    }
    let mut bed = testbed("bench-boot", false)
        .timeout(Duration::from_secs(1800))
        .file("vmlinux", vmlinux)
        .file("guest.sh", guest);
    if let Ok(bin) = &ch {
        bed = bed.file("ch", bin.clone());
    }
    let run = match bed.scenario(&host).run() {
        Ok(run) => run,
        Err(e) => return t.na("boot", "boot", e.to_string()),
    };
    if peers_reserve() {
        t.note(
            "(boot: QEMU with -mem-prealloc -overcommit mem-lock=on, CH with prefault=on: \
             every VMM reserves guest RAM before the guest runs)"
                .to_owned(),
        );
    }
    // The samples of one figure for `vmm` with kernel form `form`.
    let samples =
        |vmm: &str, form: &str, f: &dyn Fn(&str) -> Option<f64>| round_samples(n, vmm, form, f);
    let row = |t: &mut Table, what: &str, form: &str, f: &dyn Fn(&str) -> Option<f64>| {
        let values = VMMS.map(|vmm| median(samples(vmm, form, f)));
        t.figure3("boot", what, values);
    };
    let boot_time = |l: &str| num(&run, &format!("b.{l}.boot"));
    if samples("vfvm", "bz", &boot_time).is_empty() {
        return t.na("boot", "boot", why(&run, "vfvm_bz1"));
    }
    if samples("qemu", "bz", &boot_time).is_empty() {
        return t.na("boot", "boot", why(&run, "qemu_bz1"));
    }
    for (form, _, name) in KERNELS {
        row(
            t,
            &format!("launch -> guest init, {name}, median of {n} (s)"),
            form,
            &boot_time,
        );
        note_round_ratios(
            t,
            &format!("boot: launch -> init, {name}"),
            n,
            form,
            &boot_time,
        );
        row(
            t,
            &format!("launch -> exit (init + 1 s + power-off), {name} (s)"),
            form,
            &|l| num(&run, &format!("b.{l}.total")),
        );
        // vfvm's own phases, from its start line (issue 13).
        for (what, key) in [
            ("start -> first vCPU entry", "started in"),
            ("  of which reserve 512 MiB", "reserve"),
            ("  of which load (+ decompress) kernel", "load kernel"),
        ] {
            let v = samples("vfvm", form, &|l| phase(&run, l, key));
            t.figure(
                "boot",
                &format!("  vfvm {name}: {what} (s)"),
                median(v),
                None,
            );
        }
        row(
            t,
            &format!("  KVM exits to guest init, {name} (all, in-kernel too)"),
            form,
            &|l| kvm_exits_at_init(&run, l),
        );
        row(
            t,
            &format!("  VM creation -> guest kernel's clock, {name} (s)"),
            form,
            &|l| guest_clock_secs(&run, l),
        );
    }
    for (what, vcpus) in [("outside vCPU threads", false), ("in vCPU threads", true)] {
        row(
            t,
            &format!("VMM CPU {what} to guest init, bzImage (s)"),
            "bz",
            &|l| cpu_secs(&run, l, vcpus),
        );
    }
    row(t, "RSS outside guest RAM, bzImage (MiB)", "bz", &|l| {
        rss_mib(&run, l)
    });
    row(
        t,
        "  (for reference: guest-RAM RSS, bzImage (MiB))",
        "bz",
        &|l| nums(&run, &format!("b.{l}.mem")).map(|v| v[2] / 1024.0),
    );
    if let Err(e) = &ch {
        t.note(format!("(boot: no Cloud Hypervisor column: {e})"));
    }
    // Every sample, for BENCH.md.
    for vmm in VMMS {
        for (form, _, _) in KERNELS {
            let v = samples(vmm, form, &boot_time);
            if !v.is_empty() {
                t.note(format!(
                    "(boot: launch -> init samples {vmm} {form}: {v:?})"
                ));
            }
            let c = samples(vmm, form, &|l| guest_clock_secs(&run, l));
            if !c.is_empty() {
                t.note(format!(
                    "(boot: VM creation -> guest kernel's clock samples {vmm} {form}: {c:?})"
                ));
            }
            let p = samples(vmm, form, &|l| phase(&run, l, "started in"));
            if !p.is_empty() {
                t.note(format!(
                    "(boot: start -> first vCPU entry samples {vmm} {form}: {p:?})"
                ));
            }
        }
    }
}

/// CPU seconds of the VMM at the guest's init (`cputime`): of its vCPU
/// threads (vfvm's and Cloud Hypervisor's `vcpuN`), or of everything else
/// (the process's total, threads that ended included, minus those). QEMU
/// names no thread (without `-name debug-threads=on`): `None` for its vCPUs.
fn cpu_secs(run: &Run, label: &str, vcpus: bool) -> Option<f64> {
    let line = run.marker(&format!("b.{label}.cpu"))?;
    let (mut total, mut in_vcpus, mut named) = (None, 0.0, false);
    for kv in line.split_whitespace() {
        let (name, n) = kv.rsplit_once('=')?;
        let n: f64 = n.parse().ok()?;
        if name == "total" {
            total = Some(n);
        } else if name.starts_with("vcpu") {
            in_vcpus += n;
            named = true;
        }
    }
    let ticks = if vcpus {
        named.then_some(in_vcpus)?
    } else {
        total? - in_vcpus
    };
    Some(ticks / 100.0)
}

/// One boot of each VMM (Cloud Hypervisor if `ch`) per kernel form, each
/// run labelled VMM_FORM`round`, the guest's command line `cmdline`.
fn boot_runs(host: &mut String, round: &str, cmdline: &str, ch: bool) {
    for (form, kernel, _) in KERNELS {
        let v = vfvm_cmd("/tmp/g.img", "", cmdline, "g").replace("/guest/vmlinuz", kernel);
        let _ = writeln!(host, "vmm vfvm_{form}{round} {v}");
        let args = format!("{kernel} /tmp/g.img \"{cmdline}\"");
        let _ = writeln!(host, "vmm qemu_{form}{round} qemu_vm {args}");
        if ch {
            let _ = writeln!(host, "vmm ch_{form}{round} ch_vm {args}");
        }
    }
}

/// The samples of figure `f` for `vmm` over `n` rounds whose runs are
/// labelled `{vmm}_{tag}{round}`.
fn round_samples(n: usize, vmm: &str, tag: &str, f: &dyn Fn(&str) -> Option<f64>) -> Vec<f64> {
    (1..=n)
        .filter_map(|i| f(&format!("{vmm}_{tag}{i}")))
        .collect()
}

/// Notes vfvm's figure `f` over each peer's of the same round, round by
/// round (runs labelled as for [`round_samples`]), to two decimals, and
/// their median, as `({what}, vfvm/PEER round by round: ...)`: neighbours
/// in time share the machine's load. A peer without such rounds gets no
/// note.
fn note_round_ratios(
    t: &mut Table,
    what: &str,
    n: usize,
    tag: &str,
    f: &dyn Fn(&str) -> Option<f64>,
) {
    for other in &VMMS[1..] {
        let r: Vec<f64> = (1..=n)
            .filter_map(|i| Some(f(&format!("vfvm_{tag}{i}"))? / f(&format!("{other}_{tag}{i}"))?))
            .map(|r| (r * 100.0).round() / 100.0)
            .collect();
        if !r.is_empty() {
            t.note(format!(
                "({what}, vfvm/{other} round by round: {r:?}, median {:.2})",
                median(r.clone()).unwrap_or(0.0)
            ));
        }
    }
}

/// Guest-side: the kvm-clock reading at which the guest kernel started its
/// clock (`kvm-clock: using sched offset of N cycles`, in fact ns since the
/// VMM created the KVM VM), as marker `guest.clock`. What a VMM does after
/// creating the VM (Cloud Hypervisor: populating and loading) and what the
/// guest does before its kernel runs (firmware, a bzImage's decompressor)
/// are in it.
const GUEST_CLOCK: &str =
    r#"marker guest.clock "$(dmesg | grep -o 'sched offset of [0-9]*' | grep -o '[0-9]*$')""#;

/// The guest kernel's clock start (`GUEST_CLOCK`) in seconds.
fn guest_clock_secs(run: &Run, label: &str) -> Option<f64> {
    num(run, &format!("b.{label}.guest.clock")).map(|ns| ns / 1e9)
}

/// All KVM exits of the emulated host at the guest's init (`kvm_stats`).
fn kvm_exits_at_init(run: &Run, label: &str) -> Option<f64> {
    num(run, &format!("b.{label}.kvm.init"))
}

/// The page sizes of the pages part: (label, vfvm's flag, what it is).
const PAGE_SIZES: [(&str, &str, &str); 3] = [
    ("4k", "", "4 KiB pages (+ THP)"),
    ("2m", "--hugepages=2M", "2 MiB hugetlb pages"),
    ("1g", "--hugepages=1G", "1 GiB hugetlb pages"),
];
/// Guest RAM of the pages part: one 1 GiB page.
const PAGES_GUEST_MIB: u32 = 1024;

/// Issue 13: the same 1 GiB guest reserved with 4 KiB pages (vfvm's default,
/// THP where the host gives it), 2 MiB and 1 GiB huge pages, in one
/// emulated host whose pools are filled at its start (the 1 GiB page by its
/// kernel command line, the 2 MiB pages by its scenario, before memory
/// fragments). Figures: reserve time and launch -> guest init, each
/// page size against the next smaller one.
fn pages(t: &mut Table) {
    let guest = format!("{GUEST_LIB}\nmarker guest.init 1\n");
    let mut host = format!(
        r#"{HOST_LIB}
h=/sys/kernel/mm/hugepages
echo 512 >$h/hugepages-2048kB/nr_hugepages
marker b.pools "$(cat $h/hugepages-2048kB/nr_hugepages) $(cat $h/hugepages-1048576kB/nr_hugepages)"
marker b.thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
guest_initrd g /guest.sh >/dev/null
"#
    );
    for i in 1..=boots() {
        for (size, flag, _) in PAGE_SIZES {
            let v = format!(
                "vfvm run -c 2 -m {PAGES_GUEST_MIB}M {flag} -l com1,stdio -s 0,hostbridge \
                 --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline \"{GUEST_CMDLINE}\" g"
            );
            let _ = writeln!(host, "vmm vfvm_{size}{i} {v}");
        }
    }
    // Both pools and a 4 KiB-page guest at once: 3 GiB and the host's own.
    // The 1 GiB page is set aside at boot: at run time a 1 GiB block is
    // rarely free any more.
    let run = match testbed("bench-pages", false)
        .memory_mib(4096)
        .kernel_args("hugepagesz=1G hugepages=1")
        .file("guest.sh", guest)
        .scenario(&host)
        .run()
    {
        Ok(run) => run,
        Err(e) => return t.na("pages", "page sizes", e.to_string()),
    };
    let samples = |size: &str, f: &dyn Fn(&str) -> Option<f64>| -> Vec<f64> {
        (1..=boots())
            .filter_map(|i| f(&format!("vfvm_{size}{i}")))
            .collect()
    };
    let reserve = |l: &str| phase(&run, l, "reserve");
    let boot_time = |l: &str| num(&run, &format!("b.{l}.boot"));
    t.note(format!(
        "(pages: the columns are [larger page] and [next smaller page], the ratio \
         larger/smaller; pools 2M 1G: {}; THP: {})",
        run.marker("b.pools").unwrap_or("?"),
        run.marker("b.thp").unwrap_or("?")
    ));
    for (what, f) in [
        ("reserve", &reserve as &dyn Fn(&str) -> Option<f64>),
        ("launch -> guest init", &boot_time),
    ] {
        for pair in PAGE_SIZES.windows(2) {
            let (small, big) = (pair[0], pair[1]);
            let (vb, vs) = (samples(big.0, f), samples(small.0, f));
            if vb.is_empty() {
                t.na(
                    "pages",
                    &format!("{what}, {}", big.2),
                    why(&run, &format!("vfvm_{}1", big.0)),
                );
                continue;
            }
            t.figure(
                "pages",
                &format!("{what} {PAGES_GUEST_MIB} MiB: {} vs {} (s)", big.0, small.0),
                median(vb),
                median(vs),
            );
        }
    }
    let thp = samples("4k", &|l| {
        nums(&run, &format!("b.{l}.mem")).and_then(|v| v.get(7).map(|t| t / 1024.0))
    });
    t.figure(
        "pages",
        "  (4k runs: guest RAM in THP, MiB)",
        median(thp),
        None,
    );
    for (size, _, _) in PAGE_SIZES {
        t.note(format!(
            "(pages: {size} samples: reserve {:?}, launch -> init {:?})",
            samples(size, &reserve),
            samples(size, &boot_time)
        ));
    }
}

/// Where the guest's boot time goes: one boot per VMM and kernel form with
/// `initcall_debug`, the guest printing its kernel log (`dmesg`), CPU
/// flags and clock source once at its init, so that the console does not
/// slow the boot itself. The logs are in
/// `target/testbed/bench-trace/console.log`, each run after its
/// `@@b.run=LABEL` marker, with the emulated host's KVM counters at the
/// guest's init (`@@b.LABEL.kvm`).
fn trace() {
    let vmlinux = match guest_vmlinux() {
        Ok(v) => v,
        Err(e) => return eprintln!("trace: n/a: {e}"),
    };
    let ch = cloud_hypervisor();
    let cmdline = format!("{GUEST_CMDLINE} initcall_debug log_buf_len=4M");
    let guest = format!(
        "{GUEST_LIB}\nmarker guest.init 1\n\
         marker guest.flags \"$(grep -m1 ^flags /proc/cpuinfo)\"\n\
         marker guest.clocksource \"$(cat /sys/devices/system/clocksource/clocksource0/*_clocksource)\"\n\
         dmesg\n"
    );
    let mut host = format!(
        "{HOST_LIB}\nmount -t debugfs none /sys/kernel/debug 2>/dev/null || true\n\
         guest_initrd g /guest.sh >/dev/null\n"
    );
    if peers_reserve() {
        host += "PEERS_RESERVE=1\n";
    }
    boot_runs(&mut host, "", &cmdline, ch.is_ok());
    let mut bed = testbed("bench-trace", false)
        .file("vmlinux", vmlinux)
        .file("guest.sh", guest);
    if let Ok(bin) = &ch {
        bed = bed.file("ch", bin.clone());
    }
    match bed.scenario(&host).run() {
        Ok(run) => eprintln!("trace: see {}", run.log_path().display()),
        Err(e) => eprintln!("trace: n/a: {e}"),
    }
}

/// fio jobs of the blk part: (name, rw, block size, queue depth, jobs).
const FIO_JOBS: &[FioJob] = &[
    ("rr_qd1_j1", "randread", "4k", 1, 1),
    ("rr_qd32_j1", "randread", "4k", 32, 1),
    ("rr_qd1_j2", "randread", "4k", 1, 2),
    ("rr_qd32_j2", "randread", "4k", 32, 2),
    ("rw_qd1_j1", "randwrite", "4k", 1, 1),
    ("rw_qd32_j1", "randwrite", "4k", 32, 1),
    ("rw_qd1_j2", "randwrite", "4k", 1, 2),
    ("rw_qd32_j2", "randwrite", "4k", 32, 2),
    ("sr_j1", "read", "1M", 4, 1),
    ("sr_j2", "read", "1M", 4, 2),
    ("sw_j1", "write", "1M", 4, 1),
    ("sw_j2", "write", "1M", 4, 2),
];
/// Seconds per fio job.
const FIO_SECS: u32 = 3;
/// Guest runs per VMM in the blk part (alternating), for medians.
const BLK_ROUNDS: usize = 3;

/// Issue 14: fio in the guest (4 KiB random IOPS at queue depth 1 and 32,
/// 1 MiB sequential throughput, 1 and 2 jobs) against QEMU with an
/// iothread, io_uring and as many queues, and vfvm's userspace exits per
/// request (against an idle run of the same guest).
fn blk(t: &mut Table) {
    let fio = workspace_root().join("resources/out/fio-layer.cpio.gz");
    let built = std::process::Command::new("bash")
        .arg(workspace_root().join("resources/build-images.sh"))
        .arg("--with-fio")
        .status();
    let layer = match (built, std::fs::read(&fio)) {
        (Ok(s), Ok(bytes)) if s.success() => bytes,
        _ => return t.na("blk", "virtio-blk", "no fio layer (apt-get install fio)"),
    };
    let mut guest = format!(
        r#"{GUEST_LIB}
marker guest.init 1
stat() {{ marker guest.stat "$(cat /sys/block/vda/stat)"; }}
if idle; then stat; exit 0; fi
q=/sys/block/vda/queue
marker guest.queue "$(ls /sys/block/vda/mq | wc -l) $(cat $q/nr_requests $q/max_segments \
  $q/max_segment_size $q/max_sectors_kb $q/max_hw_sectors_kb | tr '\n' ' ')"
# The disk's counters and its queues' interrupts, around each job.
irqs() {{
  awk '/virtio[0-9]*-req/ {{ for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i }}
       END {{ print n + 0 }}' /proc/interrupts
}}
# job NAME RW BS QD JOBS: "IOPS KiB/s" (reads + writes) of one fio run.
job() {{
  marker guest.$1.pre "$(cat /sys/block/vda/stat) $(irqs)"
  r=$(fio --name=$1 --filename=/dev/vda --direct=1 --ioengine=libaio --thread \
        --rw=$2 --bs=$3 --iodepth=$4 --numjobs=$5 --runtime={FIO_SECS} --time_based \
        --group_reporting --minimal 2>/tmp/fio.err | awk -F';' '{{print $8 + $49, $7 + $48}}')
  [ -n "$r" ] || marker guest.fio_error "$(head -n1 /tmp/fio.err)"
  marker guest.$1 "$r"
  marker guest.$1.post "$(cat /sys/block/vda/stat) $(irqs)"
}}
"#
    );
    let jobs = fio_jobs();
    let rounds = blk_rounds();
    if jobs.is_empty() {
        return t.na("blk", "virtio-blk", "BENCH_BLK_JOBS names no job");
    }
    for (name, rw, bs, qd, n) in &jobs {
        let _ = writeln!(guest, "job {name} {rw} {bs} {qd} {n}");
    }
    guest.push_str("stat\n");
    let slot = "-s 4,virtio-blk,/tmp/disk.img,nocache";
    let mut host = format!(
        r#"{HOST_LIB}
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
guest_initrd g /guest.sh >/dev/null
cat /fio.cpio.gz >>/tmp/g.img
dd if=/dev/zero of=/tmp/disk.img bs=1M count={DISK_MIB} 2>/dev/null
vmm vfvmidle {vi}
"#,
        vi = vfvm_cmd(
            "/tmp/g.img",
            slot,
            &format!("{GUEST_CMDLINE} bench=idle"),
            "g"
        ),
    );
    // More vfvm runs per round: (label, options, row), as asked for.
    // BENCH_BLK_ONE_QUEUE: one queue (one I/O thread); BENCH_BLK_IOTHREADS=N:
    // the two queues served by N I/O threads.
    let mut variants: Vec<(String, String, String)> = Vec::new();
    if std::env::var_os("BENCH_BLK_ONE_QUEUE").is_some() {
        variants.push((
            "vfvmq1".into(),
            ",num_queues=1".into(),
            "  vfvm with num_queues=1".into(),
        ));
    }
    if let Ok(n) = std::env::var("BENCH_BLK_IOTHREADS") {
        variants.push((
            format!("vfvmt{n}r"),
            format!(",iothreads={n}"),
            format!("  vfvm with iothreads={n}"),
        ));
    }
    for i in 1..=rounds {
        let v = vfvm_cmd("/tmp/g.img", slot, GUEST_CMDLINE, "g");
        let _ = writeln!(host, "vmm vfvm{i} {v}");
        for (label, options, _) in &variants {
            let v = vfvm_cmd(
                "/tmp/g.img",
                &format!("{slot}{options}"),
                GUEST_CMDLINE,
                "g",
            );
            let _ = writeln!(host, "vmm {label}{i} {v}");
        }
        let _ = writeln!(
            host,
            "vmm qemu{i} qemu_vm /guest/vmlinuz /tmp/g.img \"{GUEST_CMDLINE}\" -object iothread,id=io0 \
             -drive file=/tmp/disk.img,if=none,id=d0,format=raw,cache=none,aio=io_uring \
             -device virtio-blk-pci,drive=d0,num-queues=2,iothread=io0"
        );
    }
    // 2 (or 3) x rounds + 1 guest boots with fio: longer than the other
    // parts.
    let secs = 600 + 600 * rounds as u64;
    let run = match testbed("bench-blk", false)
        .timeout(Duration::from_secs(secs))
        .file("guest.sh", guest)
        .file("fio.cpio.gz", layer)
        .scenario(&host)
        .run()
    {
        Ok(run) => run,
        Err(e) => return t.na("blk", "virtio-blk", e.to_string()),
    };
    let g = |label: &str, k: &str| nums(&run, &format!("b.{label}.guest.{k}"));
    for label in ["vfvm1", "qemu1"] {
        if g(label, jobs[0].0).is_none() {
            let fio = run.marker(&format!("b.{label}.guest.fio_error"));
            return match fio {
                Some(e) => t.na("blk", "virtio-blk", format!("{label}: fio: {e}")),
                None => t.na("blk", "virtio-blk", why(&run, label)),
            };
        }
    }
    // The median over the rounds of field `field` (0 IOPS, 1 KiB/s).
    let med = |vmm: &str, job: &str, field: usize| {
        median(
            (1..=rounds)
                .filter_map(|i| g(&format!("{vmm}{i}"), job)?.get(field).copied())
                .collect(),
        )
    };
    for (name, rw, bs, qd, jobs) in &jobs {
        let (what, field, scale) = if *bs == "4k" {
            (format!("4K {rw} QD{qd} {jobs} job(s) (IOPS)"), 0, 1.0)
        } else {
            (
                format!("1M seq {rw} QD{qd} {jobs} job(s) (MB/s)"),
                1,
                1.024 / 1000.0,
            )
        };
        let scaled = |v: Option<f64>| v.map(|v| v * scale);
        t.figure(
            "blk",
            &what,
            scaled(med("vfvm", name, field)),
            scaled(med("qemu", name, field)),
        );
        for (label, _, row) in &variants {
            t.figure(
                "blk",
                row,
                scaled(med(label, name, field)),
                scaled(med("qemu", name, field)),
            );
        }
        // Every round's value, for the spread.
        let each = |vmm: &str| -> String {
            let v: Vec<String> = (1..=rounds)
                .filter_map(|i| g(&format!("{vmm}{i}"), name)?.get(field).copied())
                .map(|v| format!("{:.0}", v * scale))
                .collect();
            v.join(", ")
        };
        let mut rounds_text = format!("vfvm {}; qemu {}", each("vfvm"), each("qemu"));
        for (label, options, _) in &variants {
            let _ = write!(rounds_text, "; vfvm{options} {}", each(label));
        }
        t.na("blk", "  each round", rounds_text);
    }
    // Requests: reads + writes (+ flushes, field 16 on 5.5+ kernels).
    let reqs = |label: &str| {
        let s = nums(&run, &format!("b.{label}.guest.stat"))?;
        Some(s[0] + s[4] + s.get(15).copied().unwrap_or(0.0))
    };
    let net = |count: &dyn Fn(&str) -> Option<f64>| {
        median(
            (1..=rounds)
                .filter_map(|i| {
                    let l = format!("vfvm{i}");
                    Some((count(&l)? - count("vfvmidle")?) / (reqs(&l)? - reqs("vfvmidle")?))
                })
                .collect(),
        )
    };
    t.figure(
        "blk",
        "vfvm userspace exits/request, net of idle run",
        net(&|l| exits(&run, l)),
        None,
    );
    t.figure(
        "blk",
        "  of which MMIO (virtio) exits/request",
        net(&|l| mmio_exits(&run, l)),
        None,
    );
    let raw = (|| Some(exits(&run, "vfvm1")? / reqs("vfvm1")?))();
    t.figure("blk", "  (raw: all exits of run 1 / requests)", raw, None);
    let labels: Vec<(&str, &str)> = variants
        .iter()
        .map(|(l, o, _)| (l.as_str(), o.as_str()))
        .collect();
    blk_costs(t, &run, &jobs, rounds, &labels);
}

/// What each request costs either VMM, per job (medians over the rounds):
/// the host kernel's KVM exits, HLT exits and injected interrupts, the
/// guest's virtio interrupts, and the average request size the guest sent;
/// vfvm's own queue counters over its whole run.
/// `variants`: the extra vfvm runs (label, options), each a row of its own.
fn blk_costs(t: &mut Table, run: &Run, jobs: &[FioJob], rounds: usize, variants: &[(&str, &str)]) {
    if let Some(q) = run.marker("b.vfvm1.guest.queue") {
        t.na(
            "blk",
            "guest queues nr_req seg seg_size max_kb hw_kb",
            format!("vfvm {q}"),
        );
    }
    if let Some(q) = run.marker("b.qemu1.guest.queue") {
        t.na(
            "blk",
            "guest queues nr_req seg seg_size max_kb hw_kb",
            format!("qemu {q}"),
        );
    }
    // (guest stat + irqs, KVM counters) after minus before the job.
    let delta = |label: &str, job: &str| -> Option<(Vec<f64>, Vec<f64>)> {
        let d = |k: &str| -> Option<Vec<f64>> {
            let a = nums(run, &format!("b.{label}.{k}.pre"))?;
            let b = nums(run, &format!("b.{label}.{k}.post"))?;
            Some(b.iter().zip(&a).map(|(b, a)| b - a).collect())
        };
        Some((d(&format!("guest.{job}"))?, d(&format!("kvm.{job}"))?))
    };
    // What a request costs, from the guest's and KVM's deltas and the
    // number of requests.
    type Cost = fn(&[f64], &[f64], f64) -> f64;
    let costs: [(&str, Cost); 5] = [
        ("KVM exits/request", |_, k, r| k[0] / r),
        ("  HLT exits/request", |_, k, r| k[3] / r),
        ("  interrupts injected/request", |_, k, r| k[4] / r),
        ("guest virtio interrupts/request", |g, _, r| {
            g[g.len() - 1] / r
        }),
        ("KiB/request", |g, _, r| (g[2] + g[6]) / 2.0 / r),
    ];
    for (name, ..) in jobs {
        for (what, cost) in costs {
            let med = |vmm: &str| {
                median(
                    (1..=rounds)
                        .filter_map(|i| {
                            let (g, k) = delta(&format!("{vmm}{i}"), name)?;
                            let reqs = g[0] + g[4] + g.get(15).copied().unwrap_or(0.0);
                            (reqs > 0.0 && k.len() >= 5).then(|| cost(&g, &k, reqs))
                        })
                        .collect(),
                )
            };
            t.figure("blk", &format!("{name}: {what}"), med("vfvm"), med("qemu"));
            for (label, options) in variants {
                t.figure("blk", &format!("  vfvm{options}"), med(label), med("qemu"));
            }
        }
    }
    for i in 1..=rounds {
        if let Some(c) = run.marker(&format!("b.vfvm{i}.blkq")) {
            t.na("blk", &format!("vfvm{i} queue counters"), c.to_owned());
        }
    }
}

/// A fio job of the blk part: (name, rw, block size, queue depth, jobs).
type FioJob = (&'static str, &'static str, &'static str, u32, u32);

/// The jobs to run: all of [`FIO_JOBS`], or those `BENCH_BLK_JOBS` names
/// (comma-separated), for a quicker look at a few.
fn fio_jobs() -> Vec<FioJob> {
    let wanted = std::env::var("BENCH_BLK_JOBS").unwrap_or_default();
    let all = FIO_JOBS.iter().copied();
    if wanted.is_empty() {
        return all.collect();
    }
    all.filter(|j| wanted.split(',').any(|w| w == j.0))
        .collect()
}

/// Guest runs per VMM: [`BLK_ROUNDS`], or `BENCH_BLK_ROUNDS`.
fn blk_rounds() -> usize {
    std::env::var("BENCH_BLK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(BLK_ROUNDS)
}

/// The repository's top directory.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// Issue 4: ping RTT and nc throughput guest -> PF over the VF, and vfvm's
/// userspace exits per packet (against an idle run of the same guest).
fn vf(t: &mut Table) {
    let guest = format!(
        r#"{GUEST_LIB}
marker guest.init 1
ifc=$(vf_up 192.0.2.2)
n=0; until ping -c 1 -W 1 192.0.2.1 >/dev/null 2>&1 || [ $n -ge 30 ]; do n=$((n + 1)); done
marker guest.ping1 "$n"
pk() {{ s=/sys/class/net/$ifc/statistics; marker guest.pkts "$(($(cat $s/tx_packets) + $(cat $s/rx_packets)))"; }}
if idle; then pk; exit 0; fi
port=$(sed -n 's/.*bench_port=\([0-9]*\).*/\1/p' /proc/cmdline)
ping -c 3 -W 2 192.0.2.1 >/dev/null
marker guest.rtt "$(ping -c 50 -A -W 2 192.0.2.1 | sed -n 's/.*min\/avg\/max = [0-9.]*\/\([0-9.]*\)\/.*/\1/p')"
dd if=/dev/zero bs=64k count={count} 2>/dev/null | nc 192.0.2.1 $port
pk
"#,
        count = NC_MIB * 16
    );
    // The PF's receiver: times from the first byte to EOF on the host clock.
    // Its stdin is a FIFO it holds open itself: busybox nc half-closes the
    // connection at EOF on stdin, and the sending nc exits when it sees that.
    let listen = |label: &str, port: u32| {
        format!(
            "mkfifo /tmp/hold.{port}\n\
             (nc -l -p {port} <>/tmp/hold.{port} | {{ head -c 1 >/dev/null; a=$(up); \
             n=$(wc -c); b=$(up); marker b.{label}.nc \"$(el $a $b) $n\"; }}) &"
        )
    };
    let slot = format!("-s 5:0,passthru,1/16/0,mac={VF_MAC}");
    let ch = cloud_hypervisor();
    if let Err(why) = &ch {
        t.note(format!("(vf: no Cloud Hypervisor column: {why})"));
    }
    let n = boots();
    // Rounds of launch -> first ping, each VMM booting the idle guest once
    // a round; vfvm restores the VF's MAC when it ends, so the peers get
    // it set through the PF as vfvm's `mac=` does.
    let ch_dev = "--device path=/sys/bus/pci/devices/$(vf_bdf 0)/";
    let mut rounds = String::new();
    for i in 1..=n {
        let idle = format!("{GUEST_CMDLINE} bench=idle");
        let _ = writeln!(
            rounds,
            "vmm vfvm_r{i} {}",
            vfvm_cmd("/tmp/g.img", &slot, &idle, "g")
        );
        let _ = writeln!(
            rounds,
            "vf_mac 0 {VF_MAC}\nvmm qemu_r{i} qemu_vm /guest/vmlinuz /tmp/g.img \"{idle}\" \
             -device vfio-pci,host=01:10.0"
        );
        if ch.is_ok() {
            let _ = writeln!(
                rounds,
                "vf_mac 0 {VF_MAC}\nvmm ch_r{i} ch_vm /guest/vmlinuz /tmp/g.img \"{idle}\" {ch_dev}"
            );
        }
    }
    let host = format!(
        r#"{HOST_LIB}
pf_up
make_vfs 1
bind_vfio "$(vf_bdf 0)" >/dev/null
guest_initrd g /guest.sh >/dev/null
{rounds}{lv}
vmm vfvm {v}
vmm vfvmidle {vi}
vf_mac 0 {VF_MAC}
{lq}
vmm qemu qemu_vm /guest/vmlinuz /tmp/g.img "{GUEST_CMDLINE} bench_port=5002" -device vfio-pci,host=01:10.0
{ch}sleep 1
"#,
        lv = listen("vfvm", 5001),
        lq = listen("qemu", 5002),
        ch = if ch.is_ok() {
            format!(
                "{}\nvf_mac 0 {VF_MAC}\n\
                 vmm ch ch_vm /guest/vmlinuz /tmp/g.img \"{GUEST_CMDLINE} bench_port=5003\" {ch_dev}\n",
                listen("ch", 5003)
            )
        } else {
            String::new()
        },
        v = vfvm_cmd(
            "/tmp/g.img",
            &slot,
            &format!("{GUEST_CMDLINE} bench_port=5001"),
            "g"
        ),
        vi = vfvm_cmd(
            "/tmp/g.img",
            &slot,
            &format!("{GUEST_CMDLINE} bench=idle"),
            "g"
        ),
    );
    let mut bed = testbed("bench-vf", true).file("guest.sh", guest);
    if let Ok(bin) = &ch {
        bed = bed.file("ch", bin.clone());
    }
    let run = match bed.scenario(&host).run() {
        Ok(run) => run,
        Err(e) => return t.na("vf", "VF passthrough", e.to_string()),
    };
    for label in ["vfvm", "qemu"] {
        if num(&run, &format!("b.{label}.guest.rtt")).is_none() {
            return t.na("vf", "VF passthrough", why(&run, label));
        }
    }
    if ch.is_ok() && num(&run, "b.ch.guest.rtt").is_none() {
        t.note(format!(
            "(vf: no Cloud Hypervisor figures: {})",
            why(&run, "ch")
        ));
    }
    let three = |f: &dyn Fn(&str) -> Option<f64>| VMMS.map(f);
    let ping1 = |label: &str| num(&run, &format!("b.{label}.ping1"));
    let samples = |vmm: &str| round_samples(n, vmm, "r", &ping1);
    t.figure3(
        "vf",
        &format!("launch -> first ping over the VF, median of {n} (s)"),
        three(&|vmm| median(samples(vmm))),
    );
    for vmm in VMMS {
        t.note(format!(
            "(vf: launch -> first ping samples {vmm}: {:?})",
            samples(vmm)
        ));
    }
    note_round_ratios(t, "vf: launch -> first ping", n, "r", &ping1);
    t.figure3(
        "vf",
        "launch -> first ping, the full runs (s)",
        three(&ping1),
    );
    let rtt = |label: &str| num(&run, &format!("b.{label}.guest.rtt"));
    t.figure3("vf", "ping RTT avg, 50 x -A (ms)", three(&rtt));
    let tput = |label: &str| {
        let v = nums(&run, &format!("b.{label}.nc"))?;
        (v[0] > 0.0).then(|| v[1] / 1e6 / v[0])
    };
    t.figure3(
        "vf",
        &format!("nc guest -> PF {NC_MIB} MiB (MB/s)"),
        three(&tput),
    );
    let pkts = |label: &str| num(&run, &format!("b.{label}.guest.pkts"));
    let per_pkt = (|| {
        let e = exits(&run, "vfvm")? - exits(&run, "vfvmidle")?;
        Some(e / (pkts("vfvm")? - pkts("vfvmidle")?))
    })();
    t.figure(
        "vf",
        "vfvm userspace exits/packet, net of idle run",
        per_pkt,
        None,
    );
    let mmio_per_pkt = (|| {
        let e = mmio_exits(&run, "vfvm")? - mmio_exits(&run, "vfvmidle")?;
        Some(e / (pkts("vfvm")? - pkts("vfvmidle")?))
    })();
    t.figure("vf", "  of which MMIO exits/packet", mmio_per_pkt, None);
}
