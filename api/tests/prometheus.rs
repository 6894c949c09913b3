//! `GET vm.counters` with `Accept: text/plain`: Prometheus' text format,
//! read back by a real parser (Python's prometheus_client, Debian's
//! python3-prometheus-client, which setup-host.sh installs), whose numbers
//! and labels must be the JSON's.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;

use api::client;
use api::{
    Access, ApiMessage, ApiRequest, ApiResponse, ApiServer, Counter, Limits, VmCounters, VmInfo,
    VmState,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

fn counters() -> VmCounters {
    let with = |device: &str, extra: &[(&str, &str)], name: &str, value| Counter {
        labels: std::iter::once(("device", device))
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        name: name.into(),
        value,
    };
    VmCounters(vec![
        Counter::new("vmm", "io_out", 1085),
        Counter::new("vmm", "mmio_read", 102),
        Counter::new("blk@4:0", "read_bytes", 4 << 20),
        with("blk@4:0", &[("queue", "1")], "requests", 17),
        with("vf@5:0", &[("vf", "0000:01:10.0")], "rx_packets", 12),
        with(
            "vf@5:0",
            &[("vf", "0000:01:10.0")],
            "tx_bytes",
            u64::MAX >> 12,
        ),
        with("msix@4:0", &[("vector", "3")], "msix_fired", 9),
    ])
}

/// Parses `prom` with prometheus_client and checks it against `json`
/// (device -> key -> value, a key being the name then `.VALUE` per extra
/// label); prints the number of samples.
const CHECK: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
prom, data, vm = open(sys.argv[1]).read(), json.load(open(sys.argv[2])), sys.argv[3]
got = {}
for family in text_string_to_metric_families(prom):
    assert family.type == "counter", (family.name, family.type)
    for s in family.samples:
        assert s.name.startswith("vfvm_") and s.name.endswith("_total"), s.name
        labels = dict(s.labels)
        assert labels.pop("vm") == vm, s
        device = labels.pop("device")
        key = s.name[len("vfvm_"):-len("_total")] + "".join("." + v for v in labels.values())
        got[(device, key)] = s.value
want = {(d, k): float(v) for d, m in data.items() for k, v in m.items()}
assert got == want, (got, want)
print(len(got))
"#;

#[test]
fn text_plain_counters_parse_and_match_the_json() {
    let dir = std::env::temp_dir().join(format!("vfvm-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let (tx, rx) = mpsc::channel::<ApiMessage>();
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let server = ApiServer::start(&path, Access::default(), Limits::default(), tx, &wake).unwrap();
    let vmm = std::thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            let answer = match m.request {
                ApiRequest::Counters => ApiResponse::Counters(counters()),
                ApiRequest::Info => ApiResponse::Info(Box::new(VmInfo {
                    config: serde_json::json!({}),
                    state: VmState::Running,
                    memory_actual_size: 1 << 28,
                    name: "g\"0".into(),
                    memory: Default::default(),
                    cpus: Default::default(),
                    devices: Vec::new(),
                    start: Default::default(),
                })),
                _ => ApiResponse::Done,
            };
            m.reply.send(Ok(answer));
        }
    });

    let json = client::send(&path, ApiRequest::Counters).unwrap();
    assert_eq!(json.status, 200, "{}", json.body);
    let text = client::send_accepting(&path, ApiRequest::Counters, "text/plain").unwrap();
    assert_eq!(text.status, 200, "{}", text.body);
    assert!(
        text.body.contains("# TYPE vfvm_rx_packets_total counter\n"),
        "{}",
        text.body
    );
    // Prometheus' own Accept header gets the text too; JSON stays the default.
    let scrape = client::send_accepting(
        &path,
        ApiRequest::Counters,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .unwrap();
    assert_eq!(scrape.body, text.body);
    let any = client::send_accepting(&path, ApiRequest::Counters, "*/*").unwrap();
    assert_eq!(any.body, json.body);

    let files: [PathBuf; 2] = [dir.join("counters.prom"), dir.join("counters.json")];
    std::fs::write(&files[0], &text.body).unwrap();
    std::fs::write(&files[1], &json.body).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(CHECK)
        .args(&files)
        .arg("g\"0")
        .output()
        .expect("/usr/bin/python3 (with python3-prometheus-client: bash resources/setup-host.sh)");
    assert!(
        out.status.success(),
        "prometheus_client rejects or disagrees:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text.body
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    drop(server);
    let _ = vmm.join();
    let _ = std::fs::remove_dir_all(&dir);
}
