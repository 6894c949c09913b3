//! The REST API on `vfvm run --api-sock`, driven by `vfvm ctl` against a
//! real guest: info, counters, pause (no exits while paused), resume, and
//! shutdown (vfvm exits 1, the socket is gone).

use std::time::Duration;

use vfvm_tests::Testbed;

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Reads its disk, then counts its ticks on the console until the VM is
/// stopped from outside.
const GUEST: &str = r#"
dd if=/dev/vda of=/dev/null bs=4k count=64 2>/dev/null
i=0
while :; do
  i=$((i + 1))
  echo "tick $i"
  sleep 0.2
done
"#;

/// One emulated-host boot, one guest.
#[test]
fn ctl_info_counters_pause_resume_shutdown() {
    let run = Testbed::new()
        .igb(false)
        .file("guest.sh", GUEST)
        .scenario(&format!(
            r#"
            io_out() {{ vfvm ctl --api-sock /tmp/api.sock counters | sed -n 's/.*"io_out": \([0-9]*\).*/\1/p'; }}
            state() {{ vfvm ctl --api-sock /tmp/api.sock info | sed -n 's/^  "state": "\([a-z]*\)".*/\1/p'; }}
            guest_initrd g /guest.sh >/dev/null
            dd if=/dev/zero of=/tmp/d.img bs=1M count=4 2>/dev/null
            vfvm run -c 2 -m 256M -l com1,/tmp/com1.log -s 0,hostbridge -s 4,virtio-blk,/tmp/d.img -s 31,lpc \
              --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "{GUEST_CMDLINE}" \
              --api-sock /tmp/api.sock apivm &
            pid=$!
            wait_for 20 "test -S /tmp/api.sock" || die "no API socket"
            # A second vfvm on the same socket is refused before it starts.
            s=0; vfvm run --kernel /guest/vmlinuz --api-sock /tmp/api.sock other 2>/tmp/err || s=$?
            marker host.second "$s $(cat /tmp/err)"
            wait_for 120 "grep -qs 'tick 3' /tmp/com1.log" || die "guest did not start ticking"

            vfvm ctl --api-sock /tmp/api.sock info >/tmp/info.json
            marker host.name "$(sed -n 's/^  "name": "\(.*\)",$/\1/p' /tmp/info.json)"
            marker host.state0 "$(state)"
            marker host.io_out0 "$(io_out)"
            marker host.disk_reads "$(vfvm ctl --api-sock /tmp/api.sock counters | tr -d ' \n' | sed -n 's/.*"blk@4:0":{{[^}}]*"read_bytes":\([0-9]*\).*/\1/p')"
            s=0; vfvm ctl --api-sock /tmp/api.sock resume 2>/tmp/err || s=$?
            marker host.resume_running "$s $(cat /tmp/err)"

            vfvm ctl --api-sock /tmp/api.sock pause
            marker host.state1 "$(state)"
            a=$(io_out); sleep 1; b=$(io_out)
            marker host.paused_io_out "$a $b"
            t1=$(grep -c tick /tmp/com1.log)
            vfvm ctl --api-sock /tmp/api.sock resume
            marker host.state2 "$(state)"
            sleep 2
            marker host.resumed_io_out "$(io_out)"
            marker host.ticks "$t1 $(grep -c tick /tmp/com1.log)"

            vfvm ctl --api-sock /tmp/api.sock shutdown
            status=0; wait $pid || status=$?
            marker host.status $status
            marker host.sock_left "$(ls /tmp/api.sock 2>/dev/null | wc -l)"
            s=0; vfvm ctl --api-sock /tmp/api.sock info 2>/tmp/err || s=$?
            marker host.after "$s $(wc -l </tmp/err)"
            "#
        ))
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let m = |k: &str| run.marker(k).unwrap_or_else(|| panic!("no marker {k}"));
    let second = m("host.second");
    assert!(
        second.starts_with("4 ") && second.contains("socket in use"),
        "{second}"
    );
    assert_eq!(m("host.name"), "apivm");
    assert_eq!(m("host.state0"), "running");
    let io0: u64 = m("host.io_out0").parse().unwrap();
    let disk_reads: u64 = m("host.disk_reads").parse().unwrap();
    assert!(disk_reads >= 64 * 4096, "blk@4:0 read_bytes {disk_reads}");
    assert!(io0 > 0, "io_out {io0}");
    let resume = m("host.resume_running");
    assert!(
        resume.starts_with("1 ") && resume.contains("not paused") && resume.contains("409"),
        "{resume}"
    );
    assert_eq!(m("host.state1"), "paused");
    let paused: Vec<u64> = m("host.paused_io_out")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(paused[0], paused[1], "exits while paused");
    assert!(paused[0] >= io0);
    assert_eq!(m("host.state2"), "running");
    let resumed: u64 = m("host.resumed_io_out").parse().unwrap();
    assert!(resumed > paused[1], "no exits after resume: {resumed}");
    let ticks: Vec<u64> = m("host.ticks")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(ticks[1] > ticks[0], "guest did not tick after resume");
    // vm.shutdown is a power-off: bhyve's status 1.
    assert_eq!(m("host.status"), "1");
    assert_eq!(m("host.sock_left"), "0");
    assert_eq!(m("host.after"), "1 1");
}
