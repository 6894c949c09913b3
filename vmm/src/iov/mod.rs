//! `vfvm iov`: FreeBSD's iovctl(8) for Linux. One iovctl.conf(5) file per
//! PF says how many VFs it has, each VF's settings, and which VFs are
//! reserved for VMs (bound to vfio-pci).
//!
//! - [`ucl`]: the file's syntax (the part of UCL it uses), with positions;
//! - [`conf`]: the file's meaning, [`conf::IovConfig`], checked on its own;
//! - [`plan`]: the file against the host: checks, then the list of steps;
//! - [`apply`]: the steps through [`crate::host`], and `delete`;
//! - [`show`]: the `show` table or JSON, and `schema`.

pub mod apply;
pub mod conf;
pub mod plan;
pub mod show;
pub mod ucl;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{IovArgs, IovCommand};
use crate::config::PfDevice;
use crate::host::claim::RUN_DIR;
use crate::host::journal;
use crate::host::netlink::Rtnetlink;
use crate::host::pci::Sysfs;
use crate::logger;
use plan::{IovHost, Pf};

/// `vfvm iov`: 0 on success, 1 with one `vfvm: error:` line otherwise.
pub fn main(args: &IovArgs) -> ExitCode {
    match args.command().and_then(|cmd| run(&cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logger::stderr_line(&format!("vfvm: error: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn read_conf(file: &Path) -> Result<conf::IovConfig, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    conf::parse(&text).map_err(|e| format!("{}:{e}", file.display()))
}

fn device(name: &str) -> Result<PfDevice, String> {
    PfDevice::parse(name).ok_or_else(|| {
        format!("-d {name}: not a network interface (eth0) or a PCI address (0000:01:00.0)")
    })
}

fn run(cmd: &IovCommand) -> Result<(), String> {
    // What a killed vfvm left changed is put back first, so the host is
    // read as it should be.
    journal::repair_at_start();
    let netlink = Rtnetlink::new().map_err(|e| e.to_string())?;
    let host = IovHost {
        sysfs: Sysfs::host(),
        vf_control: &netlink,
        run_dir: PathBuf::from(RUN_DIR),
    };
    match cmd {
        IovCommand::Create { file, dry_run } => create(&host, file, *dry_run),
        IovCommand::Delete { file, device: dev } => {
            let target = match (file, dev) {
                (_, Some(d)) => device(d)?,
                (Some(f), None) => read_conf(f)?.device,
                (None, None) => return Err("vfvm iov delete: give -f FILE or -d PF".into()),
            };
            let pf = plan::find_pf(&host.sysfs, &target)?;
            let n = pf.num_vfs;
            apply::delete(&pf, &host)?;
            logger::stdout_line(&format!("{}: deleted {n} VFs", pf.name()));
            Ok(())
        }
        IovCommand::Show { pf, json } => {
            let pfs: Vec<Pf> = match pf {
                Some(name) => vec![plan::find_pf(&host.sysfs, &device(name)?)?],
                None => host
                    .sysfs
                    .sriov_pfs()
                    .iter()
                    .filter_map(|a| {
                        plan::find_pf(&host.sysfs, &PfDevice::Pci(a.parse().ok()?)).ok()
                    })
                    .collect(),
            };
            let reports = pfs
                .iter()
                .map(|pf| show::report(pf, &host))
                .collect::<Result<Vec<_>, _>>()?;
            if *json {
                logger::stdout_line(
                    &serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?,
                );
            } else if reports.is_empty() {
                logger::stdout_line("no SR-IOV capable device");
            } else {
                let tables: Vec<String> = reports.iter().map(show::table).collect();
                logger::stdout_line(tables.join("\n").trim_end());
            }
            Ok(())
        }
        IovCommand::Schema { device: d } => {
            let schema = show::schema(&plan::find_pf(&host.sysfs, &device(d)?)?);
            logger::stdout_line(schema.trim_end());
            Ok(())
        }
    }
}

fn create(host: &IovHost, file: &Path, dry_run: bool) -> Result<(), String> {
    let cfg = read_conf(file)?;
    let p = plan::plan(&cfg, host).map_err(|e| match e {
        plan::Error::Conf(c) => format!("{}:{c}", file.display()),
        plan::Error::Host(h) => h,
    })?;
    let pf = p.pf.name();
    if p.steps.is_empty() {
        logger::stdout_line(&format!(
            "{pf}: nothing to change, the host matches {}",
            file.display()
        ));
        return Ok(());
    }
    if dry_run {
        for step in &p.steps {
            logger::stdout_line(&format!("{pf}: would set {step}"));
        }
        return Ok(());
    }
    apply::apply(&p, host, &mut |step| {
        logger::stdout_line(&format!("{pf}: {step}"))
    })
}
