//! Issue 12: any PCI function, not only VFs. In the emulated SR-IOV host
//! QEMU's e1000 (0000:00:06.0, 8086:100e) is a whole function with INTx
//! only, an I/O BAR and an option ROM; it sits on the igb PF's emulated
//! hub, so its traffic reaches the PF (192.0.2.1) and nothing else. One
//! emulated-host boot: the e1000 alone at slot 6 (INTx, ROM, exits), a VF
//! and the e1000 as functions 0 and 1 of slot 5, and `mac=` refused for
//! a function that is no VF.

use std::time::Duration;

use vfvm_tests::Testbed;

/// The guest: for each `SLOT.FN` of `nics=` on the command line, report
/// the function's identity and driver, its interrupt as /proc/interrupts
/// shows it, its MSI vectors and its ROM's checksum; then bring its
/// interface up alone and ping the PF, counting its interrupts. Around
/// the first one's pings it prints `TAG.pinging` and `TAG.pinged`, each
/// time waiting for the emulated host to say on the console that it has
/// read vfvm's exit counters.
const GUEST: &str = r#"
tag=$(sed -n 's/.* run=\([^ ]*\).*/\1/p' /proc/cmdline)
nics=$(sed -n 's/.* nics=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
first=${nics%% *}
# step WHAT: marker TAG.WHAT=SLOT.FN; at the first NIC, wait (60 s at most)
# for the host's (empty) line on the console.
step() { marker "$tag.$1" "$s"; [ "$s" != "$first" ] || read -r -t 60 reply || true; }
insmod /lib/modules/e1000.ko
addr=2
for s in $nics; do
  d=/sys/bus/pci/devices/0000:00:$s
  # Not `k`: marker() uses it.
  key=$tag.$s
  [ -e "$d" ] || { marker "$key.dev" missing; continue; }
  wait_n=50
  while [ ! -e "$d/driver" ] && [ $wait_n -gt 0 ]; do wait_n=$((wait_n - 1)); sleep 0.1; done
  marker "$key.dev" "$(cut -c3- $d/vendor):$(cut -c3- $d/device) $(basename "$(readlink $d/driver)")"
  marker "$key.msi" "$(ls $d/msi_irqs 2>/dev/null | wc -l)"
  if [ -e "$d/rom" ]; then
    echo 1 >"$d/rom"
    marker "$key.rom" "$(md5sum <"$d/rom" | cut -d' ' -f1)"
    echo 0 >"$d/rom"
  else
    marker "$key.rom" none
  fi
  irq=$(cat $d/irq)
  ifc=$(ls "$d/net" 2>/dev/null) || { marker "$key.error" "no interface"; continue; }
  if_up "$ifc" "192.0.2.$addr"
  count() { grep "^ *$irq:" /proc/interrupts | awk '{print $2}' || true; }
  before=$(count)
  step pinging
  loss=$(ping_loss 192.0.2.1 10)
  after=$(count)
  step pinged
  marker "$key.irq" "$(grep "^ *$irq:" /proc/interrupts | tr -s ' ')"
  marker "$key.intr" "$((after - before))"
  marker "$key.loss" "$loss"
  # One interface at a time: two in one subnet would answer each other's ARP.
  ip link set "$ifc" down
  addr=$((addr + 1))
done
"#;

/// `vm TAG NICS ARGS...` boots the guest with `-s ARGS`, reads vfvm's exit
/// counters (the API: markers `host.TAG.counters1`, `.counters2`) when the
/// guest starts and ends its pings at the first of NICS, answering it
/// with an empty line on the console (few port exits) each time, and
/// records vfvm's exit status.
const HOST: &str = r#"
guest_initrd g /guest.sh >/dev/null
vm() {
  tag=$1 nics=$2; shift 2
  first=${nics%%,*}
  sock=/tmp/$tag.sock
  rm -f /tmp/$tag.in && mkfifo /tmp/$tag.in
  vfvm run -c 1 -m 256M -l com1,stdio -s 0,hostbridge "$@" --api-sock "$sock" \
    --kernel /guest/vmlinuz --initrd /tmp/g.img \
    --cmdline "console=ttyS0 quiet panic=-1 run=$tag nics=$nics" "vm$tag" \
    </tmp/$tag.in >/tmp/vm-$tag.log 2>&1 &
  pid=$!
  exec 3>/tmp/$tag.in
  if wait_for 150 "grep -qs '@@$tag.pinging=$first' /tmp/vm-$tag.log"; then
    json_marker "host.$tag.counters1" vfvm ctl --api-sock "$sock" counters --json
    echo >&3
    wait_for 60 "grep -qs '@@$tag.pinged=$first' /tmp/vm-$tag.log" || true
    json_marker "host.$tag.counters2" vfvm ctl --api-sock "$sock" counters --json
    echo >&3
  fi
  exec 3>&-
  st=0
  wait $pid || st=$?
  grep -e @@ -e vfvm: -e e1000 -e igbvf -e BUG -e WARN /tmp/vm-$tag.log || true
  marker "host.$tag.status" "$st"
}
nic=0000:00:06.0
marker host.nic "$(pci_id $nic)"
pf_up
make_vfs 1
vf=$(vf_bdf 0)
bind_vfio "$vf" >/dev/null
bind_vfio $nic >/dev/null
rom=/sys/bus/pci/devices/$nic/rom
echo 1 >$rom
marker host.rom "$(md5sum <$rom | cut -d' ' -f1)"
echo 0 >$rom
vm a 06.0 -s 6:0,passthru,$nic
vm b 05.0,05.1 -s 5:0,passthru,$vf -s 5:1,passthru,$nic,rom=off
st=0
vfvm run -c 1 -m 128M -s 6,passthru,$nic,mac=aa:88:44:00:02:09 --kernel /guest/vmlinuz e \
  </dev/null >/dev/null 2>/tmp/err.txt || st=$?
marker host.err.mac "$st $(tail -n 1 /tmp/err.txt)"
marker host.nic_driver "$(basename "$(readlink /sys/bus/pci/devices/$nic/driver)")"
"#;

#[test]
fn e1000_intx_io_bar_rom_and_multifunction_with_a_vf() {
    let run = Testbed::new()
        .e1000(true)
        .file("guest.sh", GUEST)
        .scenario(HOST)
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    assert_eq!(run.expect_marker("host.nic"), "8086:100e");
    let host_rom = run.expect_marker("host.rom");
    assert_ne!(
        host_rom, "d41d8cd98f00b204e9800998ecf8427e",
        "the host's ROM is empty"
    );

    // The e1000 alone at slot 6: its driver, INTx through the IOAPIC (no
    // MSI), no loss, and the ROM the host has.
    assert_eq!(run.expect_marker("a.06.0.dev"), "8086:100e e1000");
    let irq = run.expect_marker("a.06.0.irq");
    assert!(
        irq.contains("IO-APIC") && irq.contains("fasteoi"),
        "a level IOAPIC interrupt: {irq}"
    );
    assert_eq!(run.expect_marker("a.06.0.msi"), "0");
    assert_eq!(run.expect_marker("a.06.0.loss"), "0");
    assert_eq!(
        run.expect_marker("a.06.0.rom"),
        host_rom,
        "guest's ROM vs host's"
    );
    // Interrupts cost no exits to userspace: the device's registers are
    // mapped, INTx is a resampling irqfd and the IOAPIC is in the kernel.
    let interrupts: u64 = run.expect_marker("a.06.0.intr").parse().unwrap();
    assert!(
        interrupts >= 10,
        "{interrupts} e1000 interrupts for 10 pings"
    );
    let counters = |key| -> api::VmCounters {
        serde_json::from_value(run.json(key).unwrap_or_else(|| panic!("no marker {key}"))).unwrap()
    };
    let (before, after) = (counters("host.a.counters1"), counters("host.a.counters2"));
    let exits =
        |kind: &str| -> u64 { after.get("vmm", kind).unwrap() - before.get("vmm", kind).unwrap() };
    let (mmio, io) = (
        exits("mmio_read") + exits("mmio_write"),
        exits("io_in") + exits("io_out"),
    );
    eprintln!(
        "e1000 pings: {interrupts} interrupts, {mmio} MMIO and {io} port I/O exits \
         (the console's marker line), {} other",
        exits("other")
    );
    assert!(
        mmio < 5,
        "{mmio} MMIO exits while {interrupts} interrupts came"
    );
    assert!(
        io < interrupts.max(100),
        "{io} port exits: more than a console line"
    );
    assert_eq!(run.expect_marker("host.a.status"), "1", "powered off");

    // A VF and the e1000 as functions 0 and 1 of slot 5; rom=off hides
    // the e1000's ROM.
    assert_eq!(run.expect_marker("b.05.0.dev"), "8086:10ca igbvf");
    let vf_vectors: u32 = run.expect_marker("b.05.0.msi").parse().unwrap();
    assert!(vf_vectors > 0, "the VF uses MSI-X");
    assert_eq!(run.expect_marker("b.05.0.loss"), "0");
    assert_eq!(run.expect_marker("b.05.1.dev"), "8086:100e e1000");
    assert_eq!(run.expect_marker("b.05.1.loss"), "0");
    assert_eq!(run.expect_marker("b.05.1.rom"), "none");
    assert_eq!(run.expect_marker("host.b.status"), "1", "powered off");

    // VF settings on a function that is no VF: one line that says so.
    let err = run.expect_marker("host.err.mac");
    assert!(
        err.starts_with(
            "4 vfvm: error: -s 6,passthru,0000:00:06.0,mac=aa:88:44:00:02:09: not an SR-IOV VF (no physfn link), so mac= cannot be applied: remove it"
        ),
        "{err}"
    );
    assert_eq!(run.expect_marker("host.nic_driver"), "vfio-pci");
}
