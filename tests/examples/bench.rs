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
/// Guest boots per VMM in the boot part.
const BOOTS: usize = 3;
/// The virtio-blk image, in the emulated host's tmpfs.
const DISK_MIB: u32 = 128;
/// Sequential transfer size in the guest.
const SEQ_MIB: u32 = 64;
/// Random 4 KiB reads (one busybox dd each).
const RAND_READS: u32 = 200;
/// What the guest streams to the PF over the VF with nc.
const NC_MIB: u32 = 16;
const VF_MAC: &str = "aa:88:44:00:02:01";

/// Host-side helpers shared by the parts (sourced after /lib/testbed.sh).
const HOST_LIB: &str = r#"
# up: the host's monotonic seconds (0.01 s), without a fork.
up() { read -r _up _ </proc/uptime; echo "$_up"; }
el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# mem LABEL PID: the VMM's memory while its guest runs. smaps: the RSS of
# every mapping smaller than 64 MiB (everything but guest RAM), and the size
# and RSS of the big ones (guest RAM).
mem() {
  awk '$1 == "Size:" { sz = $2 }
       $1 == "Rss:" { if (sz >= 65536) { big += sz; bigrss += $2 } else small += $2 }
       END { printf "%d %d %d", small, big, bigrss }' "/proc/$2/smaps" >/tmp/mem.$1
  s=/proc/$2/status
  marker "b.$1.mem" "$(cat /tmp/mem.$1) $(awk '/^VmRSS/ { r = $2 } /^VmLck/ { l = $2 }
       /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } END { printf "%d %d %d %d", r, l, a, f }' $s)"
}

# vmm LABEL CMD...: runs a VMM, its console and stderr through a FIFO read
# here; stamps the guest's @@guest.init, samples memory then, relabels the
# guest's markers @@b.LABEL.guest.*, keeps vfvm's exit counters and the last
# error line. Never fails (the status is a marker).
vmm() {
  label=$1; shift
  rm -f /tmp/vmm.fifo; mkfifo /tmp/vmm.fifo
  marker b.run "$label"
  t0=$(up)
  "$@" </dev/null >/tmp/vmm.fifo 2>&1 &
  pid=$!
  while IFS= read -r l; do
    case $l in
      *@@guest.init=*)
        t1=$(up)
        marker "b.$label.boot" "$(el "$t0" "$t1")"
        mem "$label" "$pid" ;;
    esac
    case $l in
      *@@guest.*) echo "@@b.$label.${l#*@@}" ;;
      *"exits handled in userspace: "*) marker "b.$label.exits" "${l#*userspace: }" ;;
      "["*) echo "$l" ;;
      *[Ee]rror*|*panic*|*failed*) echo "$l"; marker "b.$label.err" "$l" ;;
      *) echo "$l" ;;
    esac
  done </tmp/vmm.fifo
  rc=0; wait "$pid" || rc=$?
  marker "b.$label.rc" "$rc"
}

# qemu_vm IMG CMDLINE [QEMU-ARGS...]: the reference VMM, as vfvm's guest.
# exec: `vmm` runs it in a background subshell whose PID it samples.
qemu_vm() {
  _img=$1 _app=$2; shift 2
  exec qemu-system-x86_64 -machine q35 -accel kvm -cpu host -smp 2 -m 512 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel /guest/vmlinuz -initrd "$_img" -append "$_app" "$@"
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
        "all" => &["boot", "blk", "vf"],
        "boot" => &["boot"],
        "blk" => &["blk"],
        "vf" => &["vf"],
        _ => {
            eprintln!("usage: bench [boot|blk|vf|all]");
            return ExitCode::FAILURE;
        }
    };
    let mut table = Table::default();
    for part in parts {
        eprintln!("bench: {part} (one emulated-host boot) ...");
        match *part {
            "boot" => boot(&mut table),
            "blk" => blk(&mut table),
            _ => vf(&mut table),
        }
    }
    println!("{}", table.render());
    println!(
        "(TCG-emulated host with nested KVM: absolute figures are noise, only the \
         vfvm/QEMU ratios mean something)"
    );
    ExitCode::SUCCESS
}

/// One row: part, figure, vfvm, QEMU, which direction is better.
#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

enum Row {
    Figure {
        part: &'static str,
        what: String,
        vfvm: Option<f64>,
        qemu: Option<f64>,
    },
    NA {
        part: &'static str,
        what: String,
        why: String,
    },
}

impl Table {
    fn figure(&mut self, part: &'static str, what: &str, vfvm: Option<f64>, qemu: Option<f64>) {
        self.rows.push(Row::Figure {
            part,
            what: what.into(),
            vfvm,
            qemu,
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

    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<5} {:<44} {:>10} {:>10} {:>10}",
            "part", "figure", "vfvm", "qemu", "vfvm/qemu"
        );
        for row in &self.rows {
            match row {
                Row::Figure {
                    part,
                    what,
                    vfvm,
                    qemu,
                } => {
                    let f = |v: &Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
                    let ratio = match (vfvm, qemu) {
                        (Some(a), Some(b)) if *b != 0.0 => format!("{:.2}", a / b),
                        _ => "-".into(),
                    };
                    let _ = writeln!(
                        s,
                        "{part:<5} {what:<44} {:>10} {:>10} {ratio:>10}",
                        f(vfvm),
                        f(qemu)
                    );
                }
                Row::NA { part, what, why } => {
                    let _ = writeln!(s, "{part:<5} {what:<44} n/a: {why}");
                }
            }
        }
        s
    }
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

/// Issue 2: time from launching the VMM to the guest's first marker, and
/// the VMM's own memory, BOOTS times each, alternating.
fn boot(t: &mut Table) {
    let guest = format!("{GUEST_LIB}\nmarker guest.init 1\nsleep 1\n");
    let mut host = format!("{HOST_LIB}\nguest_initrd g /guest.sh >/dev/null\n");
    for i in 1..=BOOTS {
        let v = vfvm_cmd("/tmp/g.img", "", GUEST_CMDLINE, "g");
        let _ = writeln!(host, "vmm vfvm{i} {v}");
        let _ = writeln!(host, "vmm qemu{i} qemu_vm /tmp/g.img \"{GUEST_CMDLINE}\"");
    }
    let run = match testbed("bench-boot", false)
        .file("guest.sh", guest)
        .scenario(&host)
        .run()
    {
        Ok(run) => run,
        Err(e) => return t.na("boot", "boot", e.to_string()),
    };
    let times = |vmm: &str| -> Vec<f64> {
        (1..=BOOTS)
            .filter_map(|i| num(&run, &format!("b.{vmm}{i}.boot")))
            .collect()
    };
    let rss = |vmm: &str| -> Vec<f64> {
        (1..=BOOTS)
            .filter_map(|i| rss_mib(&run, &format!("{vmm}{i}")))
            .collect()
    };
    let (vt, qt) = (times("vfvm"), times("qemu"));
    if vt.is_empty() {
        return t.na("boot", "boot", why(&run, "vfvm1"));
    }
    if qt.is_empty() {
        return t.na("boot", "boot", why(&run, "qemu1"));
    }
    t.figure(
        "boot",
        &format!("launch -> guest init, median of {BOOTS} (s)"),
        median(vt),
        median(qt),
    );
    t.figure(
        "boot",
        "RSS outside guest RAM, median (MiB)",
        median(rss("vfvm")),
        median(rss("qemu")),
    );
    let ram = |vmm: &str| nums(&run, &format!("b.{vmm}1.mem")).map(|v| v[2] / 1024.0);
    t.figure(
        "boot",
        "  (for reference: guest-RAM RSS, run 1 (MiB))",
        ram("vfvm"),
        ram("qemu"),
    );
}

/// Issue 3: sequential and 4 KiB random I/O on virtio-blk, and vfvm's
/// userspace exits per request (against an idle run of the same guest).
fn blk(t: &mut Table) {
    let guest = format!(
        r#"{GUEST_LIB}
marker guest.init 1
stat() {{ marker guest.stat "$(cat /sys/block/vda/stat)"; }}
if idle; then stat; exit 0; fi
a=$(up); dd if=/dev/zero of=/dev/vda bs=1M count={SEQ_MIB} oflag=direct 2>/dev/null; sync; b=$(up)
marker guest.seqwrite "$(el $a $b)"
echo 3 >/proc/sys/vm/drop_caches
a=$(up); dd if=/dev/vda of=/dev/null bs=1M count={SEQ_MIB} iflag=direct 2>/dev/null; b=$(up)
marker guest.seqread "$(el $a $b)"
n=0; a=$(up)
while [ $n -lt {RAND_READS} ]; do
  dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$((RANDOM % {blocks})) iflag=direct 2>/dev/null
  n=$((n + 1))
done
b=$(up)
marker guest.rand "$(el $a $b)"
n=0; a=$(up)
while [ $n -lt {RAND_READS} ]; do
  dd if=/dev/zero of=/dev/null bs=4096 count=1 skip=$((RANDOM % {blocks})) 2>/dev/null
  n=$((n + 1))
done
b=$(up)
marker guest.randbase "$(el $a $b)"
stat
"#,
        blocks = DISK_MIB * 256
    );
    let slot = "-s 4,virtio-blk,/tmp/disk.img";
    let host = format!(
        r#"{HOST_LIB}
guest_initrd g /guest.sh >/dev/null
dd if=/dev/zero of=/tmp/disk.img bs=1M count={DISK_MIB} 2>/dev/null
vmm vfvm {v}
vmm vfvmidle {vi}
vmm qemu qemu_vm /tmp/g.img "{GUEST_CMDLINE}" \
  -drive file=/tmp/disk.img,if=none,id=d0,format=raw,cache=none -device virtio-blk-pci,drive=d0
"#,
        v = vfvm_cmd("/tmp/g.img", slot, GUEST_CMDLINE, "g"),
        vi = vfvm_cmd(
            "/tmp/g.img",
            slot,
            &format!("{GUEST_CMDLINE} bench=idle"),
            "g"
        ),
    );
    let run = match testbed("bench-blk", false)
        .file("guest.sh", guest)
        .scenario(&host)
        .run()
    {
        Ok(run) => run,
        Err(e) => return t.na("blk", "virtio-blk", e.to_string()),
    };
    let g = |label: &str, k: &str| num(&run, &format!("b.{label}.guest.{k}"));
    let mbs = |label: &str, k: &str| g(label, k).map(|s| f64::from(SEQ_MIB) * 1.048_576 / s);
    let rand_ms = |label: &str| {
        Some((g(label, "rand")? - g(label, "randbase")?) * 1000.0 / f64::from(RAND_READS))
    };
    for (label, want) in [("vfvm", "seqread"), ("qemu", "seqread")] {
        if g(label, want).is_none() {
            return t.na("blk", "virtio-blk", why(&run, label));
        }
    }
    t.figure(
        "blk",
        &format!("seq write {SEQ_MIB} MiB bs=1M O_DIRECT (MB/s)"),
        mbs("vfvm", "seqwrite"),
        mbs("qemu", "seqwrite"),
    );
    t.figure(
        "blk",
        &format!("seq read {SEQ_MIB} MiB bs=1M O_DIRECT (MB/s)"),
        mbs("vfvm", "seqread"),
        mbs("qemu", "seqread"),
    );
    t.figure(
        "blk",
        "4K random read, ms/read net of dd spawn",
        rand_ms("vfvm"),
        rand_ms("qemu"),
    );
    // Requests: reads + writes (+ flushes, field 15 on 5.5+ kernels).
    let reqs = |label: &str| {
        let s = nums(&run, &format!("b.{label}.guest.stat"))?;
        Some(s[0] + s[4] + s.get(15).copied().unwrap_or(0.0))
    };
    let per_req = (|| {
        let e = exits(&run, "vfvm")? - exits(&run, "vfvmidle")?;
        let r = reqs("vfvm")? - reqs("vfvmidle")?;
        Some(e / r)
    })();
    let mmio_per_req = (|| {
        let e = mmio_exits(&run, "vfvm")? - mmio_exits(&run, "vfvmidle")?;
        Some(e / (reqs("vfvm")? - reqs("vfvmidle")?))
    })();
    let raw = (|| Some(exits(&run, "vfvm")? / reqs("vfvm")?))();
    t.figure(
        "blk",
        "vfvm userspace exits/request, net of idle run",
        per_req,
        None,
    );
    t.figure(
        "blk",
        "  of which MMIO (virtio) exits/request",
        mmio_per_req,
        None,
    );
    t.figure("blk", "  (raw: all exits of the run / requests)", raw, None);
}

/// Issue 4: ping RTT and nc throughput guest -> PF over the VF, and vfvm's
/// userspace exits per packet (against an idle run of the same guest).
fn vf(t: &mut Table) {
    let guest = format!(
        r#"{GUEST_LIB}
marker guest.init 1
ifc=$(vf_up 192.0.2.2)
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
    let host = format!(
        r#"{HOST_LIB}
pf_up
make_vfs 1
bind_vfio "$(vf_bdf 0)" >/dev/null
guest_initrd g /guest.sh >/dev/null
{lv}
vmm vfvm {v}
vmm vfvmidle {vi}
vf_mac 0 {VF_MAC}
{lq}
vmm qemu qemu_vm /tmp/g.img "{GUEST_CMDLINE} bench_port=5002" -device vfio-pci,host=01:10.0
sleep 1
"#,
        lv = listen("vfvm", 5001),
        lq = listen("qemu", 5002),
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
    let run = match testbed("bench-vf", true)
        .file("guest.sh", guest)
        .scenario(&host)
        .run()
    {
        Ok(run) => run,
        Err(e) => return t.na("vf", "VF passthrough", e.to_string()),
    };
    for label in ["vfvm", "qemu"] {
        if num(&run, &format!("b.{label}.guest.rtt")).is_none() {
            return t.na("vf", "VF passthrough", why(&run, label));
        }
    }
    let rtt = |label: &str| num(&run, &format!("b.{label}.guest.rtt"));
    t.figure("vf", "ping RTT avg, 50 x -A (ms)", rtt("vfvm"), rtt("qemu"));
    let tput = |label: &str| {
        let v = nums(&run, &format!("b.{label}.nc"))?;
        (v[0] > 0.0).then(|| v[1] / 1e6 / v[0])
    };
    t.figure(
        "vf",
        &format!("nc guest -> PF {NC_MIB} MiB (MB/s)"),
        tput("vfvm"),
        tput("qemu"),
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
