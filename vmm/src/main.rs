//! vfvm: a lightweight VMM for Linux/KVM built for SR-IOV passthrough.
//!
//! See ARCHITECTURE.md for the code map.

mod api_server;
mod bars;
mod check;
mod cli;
mod console;
mod console_output;
mod counters;
mod ctl;
mod docs;
mod exit;
mod halt;
mod host;
mod hotplug;
mod iommu;
mod iov;
mod irq;
mod logger;
mod memory;
mod passthru;
mod pci;
mod run;
mod sandbox;
mod setup_threads;
mod slot_devices;
mod slots;
mod smbios;
mod vcpu;
mod vm;

use std::process::ExitCode;

use clap::Parser;
// `crate::config` for every module, as if it were one of them.
use vmm::config;

use crate::exit::VmExit;

/// Prints `err` and its sources on one line.
fn report(err: &dyn std::error::Error) {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    logger::stderr_line(&format!("vfvm: error: {line}"));
}

/// Help and version go out as clap prints them (exit 0); a usage error
/// is, like every other error, one `vfvm: error:` line with status 4.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            logger::stderr_line(&format!(
                "vfvm: error: {} (see vfvm run --help)",
                clap_one_line(&e.render().to_string())
            ));
            ExitCode::from(VmExit::Error.status())
        }
    }
}

/// Clap's message up to its first blank line (the tips and usage follow),
/// joined into one line: "error: the following required arguments were
/// not provided:\n  --kernel <PATH>" becomes "the following required
/// arguments were not provided: --kernel <PATH>".
fn clap_one_line(rendered: &str) -> String {
    let text = rendered
        .trim_start()
        .trim_start_matches("error:")
        .trim_start();
    text.lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `vfvm recover`: restores what vfvm runs that are gone left changed;
/// status 1 if anything could not be restored.
fn recover() -> ExitCode {
    let done = host::journal::recover_host();
    if done.is_empty() {
        logger::stdout_line("nothing to recover");
    }
    let mut ok = true;
    for r in &done {
        match &r.result {
            Ok(()) => logger::stdout_line(&format!(
                "{}: restored what VM {} (pid {}) changed",
                r.device, r.vm, r.pid
            )),
            Err(e) => {
                ok = false;
                logger::stderr_line(&format!("vfvm: error: {e}"));
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    logger::init();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    let status = match cli.command {
        cli::Command::Run(args) => match config::VmConfig::try_from(*args) {
            Ok(cfg) => match run::run(&cfg) {
                Ok(reason) => reason,
                Err(e) => {
                    report(&e);
                    VmExit::Error
                }
            },
            Err(e) => {
                report(&e);
                VmExit::Error
            }
        },
        cli::Command::Ctl(args) => return ctl::run(&args),
        cli::Command::GenerateDocs { dir } => {
            return match docs::generate(&dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vfvm: error: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Check(args) => {
            return match check::main(&args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    report(&e);
                    ExitCode::from(VmExit::Error.status())
                }
            }
        }
        cli::Command::Iov(args) => return iov::main(&args),
        cli::Command::Recover => return recover(),
    };
    // What the rate limit held back is reported before vfvm exits.
    log::logger().flush();
    ExitCode::from(status.status())
}

#[cfg(test)]
mod tests {
    use super::clap_one_line;

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(
            clap_one_line(
                "error: the following required arguments were not provided:\n  --kernel <PATH>\n  <VMNAME>\n\n\
                 Usage: vfvm run --kernel <PATH> <VMNAME>\n\nFor more information, try '--help'.\n"
            ),
            "the following required arguments were not provided: --kernel <PATH> <VMNAME>"
        );
        assert_eq!(
            clap_one_line(
                "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, \
                 use '-- --bogus'\n\nUsage: vfvm run [OPTIONS] --kernel <PATH> <VMNAME>\n"
            ),
            "unexpected argument '--bogus' found"
        );
    }
}
