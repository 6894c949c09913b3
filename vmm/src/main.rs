//! vfvm: a lightweight VMM for Linux/KVM built for SR-IOV passthrough.
//!
//! See ARCHITECTURE.md for the code map.

mod bars;
mod cli;
mod config;
mod console;
mod counters;
mod exit;
mod irq;
mod logger;
mod memory;
mod passthru;
mod pci;
mod run;
mod slot_devices;
mod slots;
mod vcpu;
mod vm;

use std::process::ExitCode;

use clap::Parser;

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
    eprintln!("vfvm: error: {line}");
}

fn main() -> ExitCode {
    logger::init();
    let cli = cli::Cli::parse();
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
    };
    ExitCode::from(status.status())
}
