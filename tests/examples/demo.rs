//! The demo (`resources/demo.sh`): vfvm, inside the emulated SR-IOV host,
//! boots a 2-vCPU guest with a VF at slot 5; the guest pings the PF.

use std::process::ExitCode;
use std::time::Duration;
use vfvm_tests::Testbed;

const GUEST: &str = r#"
marker guest.cpus "$(nproc)"
ifc=$(vf_up 192.0.2.2)
marker guest.vf "$ifc $(cat /sys/class/net/$ifc/address)"
ping -c 3 192.0.2.1
marker guest.loss "$(ping_loss 192.0.2.1 3)"
"#;

const HOST: &str = r#"
pf_up
make_vfs 1
bind_vfio "$(vf_bdf 0)" >/dev/null
guest_initrd demo /demo-guest.sh >/dev/null
set -x
status=0
vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge \
  -s 5:0,passthru,1/16/0,mac=aa:88:44:00:02:01 \
  --kernel /guest/vmlinuz --initrd /tmp/demo.img \
  --cmdline "console=ttyS0 quiet panic=-1" demo || status=$?
set +x
# bhyve's exit status: 1 means the guest powered off.
marker host.vfvm_status $status
"#;

fn main() -> ExitCode {
    let run = Testbed::new()
        .name("demo")
        .echo(true)
        .file("demo-guest.sh", GUEST)
        .scenario(HOST)
        .timeout(Duration::from_secs(300))
        .run();
    match run {
        Ok(run)
            if run.marker("guest.loss") == Some("0")
                && run.marker("host.vfvm_status") == Some("1") =>
        {
            println!(
                "demo: ok, the guest pinged the PF through its VF ({:?})",
                run.elapsed()
            );
            ExitCode::SUCCESS
        }
        Ok(run) => {
            println!(
                "demo: FAILED, no clean ping; log: {}",
                run.log_path().display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
