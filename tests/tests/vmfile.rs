//! Issue 15: VM files. In one emulated SR-IOV host boot, the same VM (two
//! vCPUs, a disk, a VF with a MAC) is started three times: from the command
//! line, from a TOML file, and from the file `vfvm ctl info --config`
//! printed of the second while it ran, with only the capabilities
//! vfvm@.service leaves it (CAP_NET_ADMIN, CAP_IPC_LOCK; no new privileges).
//! The guest reports what it sees each time, and the three reports must be
//! the same. Then files with an unknown key or a bad value must fail with
//! FILE:LINE and the key.

use std::time::Duration;

use vfvm_tests::Testbed;

/// Reports the PCI functions, vCPUs, memory, the VF's MAC and the disk's
/// first bytes, then waits to be stopped through the API.
const GUEST: &str = r#"
devs=
for d in /sys/bus/pci/devices/*; do
  devs="$devs $(basename "$d")=$(cut -c3- "$d/vendor"):$(cut -c3- "$d/device")"
done
marker g.devices "$devs"
marker g.cpus "$(nproc)"
marker g.ram "$(grep 'System RAM' /proc/iomem | tr -d ' ' | tr '\n' ' ')"
ifc=$(ls /sys/bus/pci/devices/0000:00:05.0/net)
marker g.mac "$(cat /sys/class/net/$ifc/address)"
marker g.disk "$(dd if=/dev/vda bs=12 count=1 2>/dev/null)"
marker g.done yes
while :; do sleep 1; done
"#;

const SCENARIO: &str = r#"
pf_up
make_vfs 1
bind_igbvf "$(vf_bdf 0)"
guest_initrd g /guest.sh >/dev/null
printf 'vmfile-disk!' >/tmp/d.img
dd if=/dev/zero bs=1M count=4 >>/tmp/d.img 2>/dev/null
CMD="console=ttyS0 quiet panic=-1"
cat >/tmp/vm.toml <<EOF
# The same VM as the command line below.
name = "vm"
cpus = 2
memory = "256M"
console = "com1,stdio"
kernel = "/guest/vmlinuz"
initrd = "/tmp/g.img"
cmdline = "$CMD"
api_socket = "/tmp/api.sock"

[[device]]
slot = 0
emulation = "hostbridge"

[[device]]
slot = 4
emulation = "virtio-blk"
path = "/tmp/d.img"

[[device]]
slot = "5:0"
emulation = "passthru"
host = "1/16/0"
mac = "02:00:00:00:05:01"
managed = true
EOF

# boot TAG CMD...: CMD (a vfvm run) in the background until the guest has
# reported (its markers come back as TAG.*), then stops it through the API.
boot() {
  tag=$1; shift
  "$@" </dev/null >/tmp/vm-$tag.log 2>&1 &
  pid=$!
  wait_for 150 "grep -q '@@g.done' /tmp/vm-$tag.log || ! kill -0 $pid 2>/dev/null"
  grep -q '@@g.done' /tmp/vm-$tag.log || { cat /tmp/vm-$tag.log; die "$tag: the guest did not report"; }
  if [ "$tag" = file ]; then
    ctl info --config >/tmp/rt.toml
    sed 's/^/rt.toml: /' /tmp/rt.toml
  fi
  ctl shutdown --timeout 0
  st=0; wait $pid || st=$?
  tr -d '\r' </tmp/vm-$tag.log | sed -n "s/^.*@@g\./@@$tag./p"
  grep 'vfvm:' /tmp/vm-$tag.log || true
  marker "host.$tag.status" "$st"
  marker "host.$tag.driver" "$(basename "$(readlink /sys/bus/pci/devices/$(vf_bdf 0)/driver)")"
}

boot cli vfvm run -c 2 -m 256M -l com1,stdio -s 0,hostbridge -s 4,virtio-blk,/tmp/d.img \
  -s 5:0,passthru,1/16/0,mac=02:00:00:00:05:01,managed --kernel /guest/vmlinuz --initrd /tmp/g.img \
  --cmdline "$CMD" --api-sock /tmp/api.sock vm
boot file vfvm run --config /tmp/vm.toml
# With only the capabilities vfvm@.service leaves it, and no new privileges
# (util-linux setpriv: busybox sh would run its own applet for a bare name).
chmod 755 /usr/bin/setpriv
boot rt /usr/bin/setpriv --bounding-set=-all,+net_admin,+ipc_lock --inh-caps=-all --no-new-privs \
  vfvm run --config /tmp/rt.toml

# bad NAME TOML-LINES...: a file with a mistake in its last lines.
bad() {
  name=$1; shift
  { echo 'name = "e"'; echo 'kernel = "/guest/vmlinuz"'; for l in "$@"; do echo "$l"; done; } >/tmp/$name.toml
  st=0; vfvm run --config /tmp/$name.toml </dev/null >/dev/null 2>/tmp/$name.err || st=$?
  marker "host.$name" "$st $(wc -l </tmp/$name.err) $(cat /tmp/$name.err)"
}
bad unknown 'memroy = "1G"'
bad value '[[device]]' 'slot = 5' 'emulation = "passthru"' 'host = "1/16/0"' 'vlan = 5000'
bad type 'cpus = 2' 'hugepages = "yes"'
"#;

#[test]
fn a_vm_file_boots_the_same_vm_as_its_command_line_and_round_trips() {
    let mut testbed = Testbed::new().memory_mib(2048).file("guest.sh", GUEST);
    // util-linux's setpriv, to run vfvm with the unit's capability set.
    for path in ["/usr/bin/setpriv", "/lib/x86_64-linux-gnu/libcap-ng.so.0"] {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (install util-linux, libcap-ng0)"));
        testbed = testbed.file(&path[1..], bytes);
    }
    let run = testbed
        .scenario(SCENARIO)
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    let report = |tag: &str| -> Vec<(String, String)> {
        run.markers(&format!("{tag}."))
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches(tag).to_string(), v.to_string()))
            .collect()
    };
    let cli = report("cli");
    assert_eq!(run.marker("cli.mac"), Some("02:00:00:00:05:01"), "{cli:?}");
    assert_eq!(run.marker("cli.cpus"), Some("2"));
    assert_eq!(run.marker("cli.disk"), Some("vmfile-disk!"));
    let devices = run.marker("cli.devices").unwrap_or_default();
    for d in [
        "0000:00:00.0=",
        "0000:00:04.0=1af4:1042",
        "0000:00:05.0=8086:10ca",
    ] {
        assert!(devices.contains(d), "guest devices {devices:?} lack {d}");
    }
    assert_eq!(
        report("file"),
        cli,
        "the file's VM differs from the command line's"
    );
    assert_eq!(
        report("rt"),
        cli,
        "the file from ctl info --config starts another VM"
    );
    for tag in ["cli", "file", "rt"] {
        // Stopped through the API: status 1, as for a power-off.
        assert_eq!(
            run.marker(&format!("host.{tag}.status")),
            Some("1"),
            "{tag}"
        );
    }
    let unknown = run.marker("host.unknown").unwrap_or_default();
    assert!(
        unknown.starts_with("4 1 vfvm: error: /tmp/unknown.toml:3: unknown field 'memroy', expected one of 'name', "),
        "{unknown}"
    );
    assert_eq!(
        run.marker("host.value"),
        Some("4 1 vfvm: error: /tmp/value.toml:7: device[0]: vlan must be a number 0..4095 (0 = untagged)")
    );
    assert_eq!(
        run.marker("host.type"),
        Some("4 1 vfvm: error: /tmp/type.toml:4: hugepages: --hugepages=yes: not a huge page size (use --hugepages=2M or --hugepages=1G)")
    );
}
