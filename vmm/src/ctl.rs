//! `vfvm ctl`: one API call, its answer as a table (or as JSON with
//! `--json`). Status 0 on success; otherwise one line on stderr and 1.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use api::client::{self, Response};
use api::{ApiRequest, VmCounters, VmInfo, VmmPing};

use crate::cli::{CtlAction, CtlArgs};
use crate::config;
use crate::logger;
use crate::memory::Size;

/// Runs `vfvm ctl`.
pub fn run(args: &CtlArgs) -> ExitCode {
    let request = match ApiRequest::try_from(&args.action) {
        Ok(r) => r,
        Err(e) => {
            logger::stderr_line(&format!("vfvm: error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let sent = match args.action {
        CtlAction::Counters { prometheus: true } => {
            client::send_accepting(&args.api_sock, request, "text/plain")
        }
        _ => client::send(&args.api_sock, request),
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            logger::stderr_line(&format!(
                "vfvm: error: {e} (is `vfvm run --api-sock {}` running?)",
                args.api_sock.display()
            ));
            return ExitCode::FAILURE;
        }
    };
    if !response.is_success() {
        let msg = response
            .error()
            .unwrap_or_else(|| response.body.trim().to_string());
        logger::stderr_line(&format!("vfvm: error: {msg} ({})", response.status));
        return ExitCode::FAILURE;
    }
    match render(args, &response) {
        Ok(text) => {
            // `vfvm ctl info | head -1` closes the pipe early: no panic.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            logger::stderr_line(&format!("vfvm: error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// What `vfvm ctl` prints for a successful answer.
fn render(args: &CtlArgs, r: &Response) -> Result<String, String> {
    if r.body.is_empty() {
        return Ok(String::new());
    }
    if args.json {
        return Ok(format!("{}\n", r.body.trim_end()));
    }
    let bad = |e: serde_json::Error| format!("bad answer from the API: {e}");
    match args.action {
        CtlAction::Ping => Ok(ping(&serde_json::from_str(&r.body).map_err(bad)?)),
        CtlAction::Info { config: true } => vm_file(&r.body),
        CtlAction::Info { config: false } => Ok(info(&serde_json::from_str(&r.body).map_err(bad)?)),
        CtlAction::Counters { prometheus: true } => Ok(r.body.clone()),
        CtlAction::AddDevice { .. } => {
            let added: api::PciDeviceInfo = serde_json::from_str(&r.body).map_err(bad)?;
            Ok(format!("added {} at {}\n", added.id, added.bdf))
        }
        CtlAction::Counters { prometheus: false } => {
            Ok(counters(&serde_json::from_str(&r.body).map_err(bad)?))
        }
        _ => Ok(format!("{}\n", r.body.trim_end())),
    }
}

/// `vfvm ctl info --config`: the VM's configuration (vfvm's own, under
/// `config.vfvm` of `vm.info`) as a VM file.
fn vm_file(info: &str) -> Result<String, String> {
    let info: VmInfo =
        serde_json::from_str(info).map_err(|e| format!("bad vm.info answer: {e}"))?;
    let config: config::VmConfig = serde_json::from_value(info.config["vfvm"].clone())
        .map_err(|e| format!("vm.info has no vfvm configuration: {e}"))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config::file::render(&config))
}

fn ping(p: &VmmPing) -> String {
    format!(
        "vfvm {} ({}), pid {}\nfeatures: {}\n",
        p.version,
        p.build_version,
        p.pid,
        p.features.join(", ")
    )
}

/// Rows as columns padded to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn info(i: &VmInfo) -> String {
    let m = &i.memory;
    let mut out = table(&[
        vec!["name".into(), i.name.clone()],
        vec!["state".into(), format!("{:?}", i.state)],
        vec![
            "vcpus".into(),
            format!(
                "{} ({} socket(s) x {} core(s) x {} thread(s))",
                i.cpus.count, i.cpus.sockets, i.cpus.cores, i.cpus.threads
            ),
        ],
        vec![
            "memory".into(),
            format!(
                "{}, {} pages, {} locked; reserved in {:.3} s, DMA-mapped in {:.3} s",
                Size(m.size),
                Size(m.page_size),
                Size(m.locked_bytes),
                m.reserve_secs,
                m.dma_map_secs
            ),
        ],
        vec!["start".into(), i.start.log_line()],
    ]);
    out.push('\n');
    let mut rows = vec![["SLOT", "EMULATION", "HOST", "MAC", "VLAN", "ID"]
        .map(String::from)
        .to_vec()];
    for d in &i.devices {
        let (host, mac, vlan) = match (&d.passthru, &d.disk) {
            (Some(p), _) => (
                p.host_bdf.clone(),
                dash(p.mac.clone()),
                dash(p.vlan.map(|v| v.to_string())),
            ),
            (None, Some(disk)) => (disk.path.clone(), "-".into(), "-".into()),
            (None, None) => ("-".into(), "-".into(), "-".into()),
        };
        rows.push(vec![
            d.bdf.clone(),
            d.emulation.clone(),
            host,
            mac,
            vlan,
            d.id.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    for d in &i.devices {
        if let Some(e) = d.passthru.as_ref().and_then(|p| p.error.as_ref()) {
            let _ = writeln!(out, "{}: {e}", d.id);
        }
    }
    out
}

/// The VF columns of `vfvm ctl counters`.
const VF_COLUMNS: [&str; 6] = [
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "rx_dropped",
    "tx_dropped",
];

fn counters(c: &VmCounters) -> String {
    let by_device = c.by_device();
    let mut out = String::new();
    let vfs: Vec<_> = by_device
        .iter()
        .filter(|(d, _)| d.starts_with("vf@"))
        .collect();
    if !vfs.is_empty() {
        let mut rows = vec![std::iter::once("VF")
            .chain(VF_COLUMNS)
            .map(|s| s.to_uppercase())
            .collect::<Vec<_>>()];
        for (device, values) in &vfs {
            let mut row = vec![device.to_string()];
            row.extend(
                VF_COLUMNS
                    .iter()
                    .map(|k| dash(values.get(*k).map(u64::to_string))),
            );
            rows.push(row);
        }
        out.push_str(&table(&rows));
        out.push('\n');
    }
    let mut rows = vec![["DEVICE", "COUNTER", "VALUE"].map(String::from).to_vec()];
    for (device, values) in &by_device {
        for (name, value) in values {
            if device.starts_with("vf@") && VF_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            rows.push(vec![device.to_string(), name.clone(), value.to_string()]);
        }
    }
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Counter, DeviceInfo, PassthruInfo, VmState};

    #[test]
    fn ctl_info_config_prints_a_file_that_starts_the_same_vm() {
        let args: Vec<String> = [
            "-c",
            "2",
            "-m",
            "512M",
            "-l",
            "com1,stdio",
            "-s",
            "0,hostbridge",
            "-s",
            "4,virtio-blk,/tmp/d.img,ro",
            "-s",
            "5,passthru,1/16/0,mac=aa:88:44:00:02:01",
            "--kernel",
            "/k",
            "--api-sock",
            "/run/g.sock",
            "g",
        ]
        .map(String::from)
        .to_vec();
        let config = crate::cli::run_config(&args).unwrap();
        let info = VmInfo {
            config: serde_json::json!({ "vfvm": serde_json::to_value(&config).unwrap() }),
            state: VmState::Running,
            memory_actual_size: config.memory.size,
            name: "g".into(),
            memory: Default::default(),
            cpus: Default::default(),
            devices: Vec::new(),
            start: Default::default(),
        };
        let text = vm_file(&serde_json::to_string(&info).unwrap()).unwrap();
        let back = crate::config::file::parse(std::path::Path::new("g.toml"), &text)
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(back, config);
        assert!(vm_file("{}").unwrap_err().starts_with("bad vm.info answer"));
    }

    #[test]
    fn info_table_shows_slot_emulation_host_mac_vlan() {
        let vf = DeviceInfo {
            id: "5:0".into(),
            counters: Some("vf@5:0".into()),
            bdf: "0000:00:05.0".into(),
            emulation: "passthru".into(),
            passthru: Some(PassthruInfo {
                host_bdf: "0000:01:10.0".into(),
                mac: Some("aa:88:44:00:02:01".into()),
                vlan: Some(42),
                ..Default::default()
            }),
            disk: None,
        };
        let i = VmInfo {
            config: serde_json::json!({}),
            state: VmState::Paused,
            memory_actual_size: 256 << 20,
            name: "g".into(),
            memory: api::MemoryInfo {
                size: 256 << 20,
                page_size: 4096,
                ..Default::default()
            },
            cpus: Default::default(),
            devices: vec![vf],
            start: api::StartTimes {
                first_vcpu_entry_secs: 0.5,
                ..Default::default()
            },
        };
        let text = info(&i);
        assert!(text.contains("state   Paused"), "{text}");
        assert!(text.contains("start   started in 0.500 s: "), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("0000:00:05.0"))
            .unwrap();
        let cells: Vec<_> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "0000:00:05.0",
                "passthru",
                "0000:01:10.0",
                "aa:88:44:00:02:01",
                "42",
                "5:0"
            ]
        );
    }

    #[test]
    fn counters_table_has_a_row_per_vf() {
        let c = VmCounters(vec![
            Counter::new("vf@5:0", "tx_packets", 20),
            Counter::new("vf@5:0", "rx_packets", 3),
            Counter::new("vf@5:0", "broadcast", 1),
            Counter::new("vmm", "io_out", 7),
        ]);
        let text = counters(&c);
        let row = text.lines().find(|l| l.starts_with("vf@5:0")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["vf@5:0", "3", "-", "20", "-", "-", "-"]
        );
        assert!(text.contains("vf@5:0  broadcast  1"), "{text}");
        assert!(text.contains("vmm     io_out     7"), "{text}");
    }
}
