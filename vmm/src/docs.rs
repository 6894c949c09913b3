//! Man pages and shell completions, generated from the clap definitions
//! (`vfvm generate-docs DIR`, hidden; `resources/package.sh` runs it), so
//! they always say what the binary takes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::cli::Cli;

/// Subcommands that act on the host rather than on one VM go in section 8.
const ADMIN_SUBCOMMANDS: &[&str] = &["iov", "check", "recover"];

const VM_FILE: &str = "\
A VM file is TOML and holds what the flags hold; each key means what its \
flag means and is checked by the same code: name (VMNAME), cpus (-c, a \
number or \"cpus=4,sockets=1,cores=2,threads=2\"), memory (-m, e.g. \"512M\", \
or a number as -m takes it), hugepages (--hugepages, true or false), console \
(-l, e.g. \"com1,stdio\"), kernel, initrd, cmdline, uuid (-U) and api_socket \
(--api-sock). Each [[device]] table is one -s: slot (\"5:0\" or 5) and \
emulation, then its options as keys: path for virtio-blk's disk and host \
for passthru's host device, the other options by their names (mac, vlan, \
spoofchk, trust, managed, ro, nocache, direct, sectorsize, serial), true and \
false for on and off. Flags given as well override the file; a -s at a slot \
the file uses replaces that device. An error names FILE:LINE and the key. \
vfvm ctl --api-sock PATH info --config prints a running VM as such a file.";

const VM_FILE_EXAMPLE: &str = "\
name = \"guest0\"
cpus = 2
memory = \"512M\"
console = \"com1,stdio\"
kernel = \"/var/lib/vfvm/guest0/bzImage\"
cmdline = \"console=ttyS0 root=/dev/vda\"

[[device]]
slot = 0
emulation = \"hostbridge\"

[[device]]
slot = 4
emulation = \"virtio-blk\"
path = \"/var/lib/vfvm/guest0/disk.img\"

[[device]]
slot = \"5:0\"
emulation = \"passthru\"
host = \"0000:01:10.0\"
mac = \"aa:88:44:00:02:01\"
managed = true";

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "the guest rebooted (vfvm@.service starts it again)"),
    (
        "1",
        "the guest powered off, or the API's vm.shutdown stopped it",
    ),
    ("2", "the guest halted"),
    ("3", "the guest triple-faulted"),
    ("4", "vfvm could not start the VM or failed while it ran"),
];

/// Writes `man/*.1`, `man/*.8` and `completions/{vfvm.bash,_vfvm,vfvm.fish}` under `dir`.
pub fn generate(dir: &Path) -> io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_page(&man, Man::new(cmd.clone()), &[])?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let section = if ADMIN_SUBCOMMANDS.contains(&name) {
            "8"
        } else {
            "1"
        };
        let mut extra = Roff::new();
        if name == "run" {
            extra.control("SH", ["VM FILES"]).text([roman(VM_FILE)]);
            extra
                .control("nf", None::<&str>)
                .text([roman(VM_FILE_EXAMPLE)])
                .control("fi", None::<&str>);
            extra.control("SH", ["EXIT STATUS"]);
            for (status, meaning) in EXIT_STATUS {
                extra
                    .control("TP", None::<&str>)
                    .text([bold(*status)])
                    .text([roman(*meaning)]);
            }
            extra.control("SH", ["FILES"]).text([roman(
                "/etc/vfvm/vms/NAME.toml: the VM files vfvm@NAME.service runs; \
                 /etc/vfvm/vms/example.toml: a commented example.",
            )]);
        }
        extra
            .control("SH", ["SEE ALSO"])
            .text([roman("vfvm(1), systemctl(1)")]);
        write_page(&man, Man::new(sub.clone()).section(section), &[extra])?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "vfvm", &completions)?;
    }
    Ok(())
}

fn write_page(dir: &Path, page: Man, extra: &[Roff]) -> io::Result<()> {
    let mut file = File::create(dir.join(page.get_filename()))?;
    page.render(&mut file)?;
    for roff in extra {
        roff.to_writer(&mut file)?;
    }
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pages_and_completions() {
        let dir = std::env::temp_dir().join(format!("vfvm-docs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        generate(&dir).unwrap();
        let run = fs::read_to_string(dir.join("man/vfvm-run.1")).unwrap();
        for needle in [
            "vfvm\\-run",
            "\\-\\-config",
            "VM FILES",
            "EXIT STATUS",
            "passthru",
        ] {
            assert!(run.contains(needle), "vfvm-run.1 lacks {needle:?}");
        }
        for file in [
            "man/vfvm.1",
            "man/vfvm-ctl.1",
            "completions/vfvm.bash",
            "completions/_vfvm",
            "completions/vfvm.fish",
        ] {
            assert!(dir.join(file).is_file(), "{file}");
        }
        let bash = fs::read_to_string(dir.join("completions/vfvm.bash")).unwrap();
        assert!(bash.contains("--api-sock"));
        assert!(
            !dir.join("man/vfvm-generate-docs.1").exists(),
            "the hidden command has no page"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
