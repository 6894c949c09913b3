//! The Debian package: `resources/package.sh` builds it from this checkout,
//! and `resources/test-package.sh` installs it into a fresh Debian 12 chroot
//! (dpkg -i, vfvm --version, man pages, systemd-analyze verify, completions,
//! dpkg -r leaving only the conffiles, dpkg -P leaving nothing). Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(script: &str, args: &[&Path]) -> String {
    let out = Command::new("bash")
        .arg(root().join("resources").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn marker<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("@@pkg.{key}=");
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
}

#[test]
fn deb_installs_runs_verifies_and_removes_cleanly() {
    let built = run("package.sh", &[]);
    let deb = PathBuf::from(
        built
            .lines()
            .last()
            .expect("package.sh names the .deb")
            .trim(),
    );
    assert!(
        deb.starts_with(root().join("target/debian")),
        "{}",
        deb.display()
    );
    let out = run("test-package.sh", &[&deb]);

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = if commit.is_empty() {
        "unknown".to_string()
    } else {
        commit
    };
    let version = marker(&out, "version").unwrap_or_default();
    assert!(
        version.starts_with("vfvm ") && version.ends_with(&format!(" (commit {commit})")),
        "vfvm --version in the chroot: {version:?}\n{out}"
    );
    assert_eq!(marker(&out, "install"), Some("ok"), "{out}");
    for page in ["vfvm", "vfvm-run", "vfvm-ctl", "vfvm-iov"] {
        assert!(
            marker(&out, &format!("man.{page}")).is_some(),
            "{page}: {out}"
        );
    }
    assert_eq!(marker(&out, "verify.vfvm@.service"), Some("ok"), "{out}");
    assert_eq!(marker(&out, "verify.vfvm-iov.service"), Some("ok"), "{out}");
    assert_eq!(marker(&out, "completion.bash"), Some("ok"), "{out}");
    assert_eq!(
        marker(&out, "conffiles"),
        Some("/etc/vfvm/iov/example.conf.sample /etc/vfvm/vms/example.toml"),
        "{out}"
    );
    assert_eq!(
        marker(&out, "removed"),
        Some("/etc/vfvm /etc/vfvm/iov /etc/vfvm/iov/example.conf.sample /etc/vfvm/vms /etc/vfvm/vms/example.toml"),
        "{out}"
    );
    assert_eq!(marker(&out, "purged"), Some("ok"), "{out}");
}
