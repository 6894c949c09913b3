//! `vm.counters` in the Prometheus text exposition format (version 0.0.4),
//! what `GET /api/v1/vm.counters` answers to `Accept: text/plain` and
//! `vfvm ctl counters --prometheus` prints.
//!
//! Each counter becomes a sample of the family `vfvm_NAME_total`, with the
//! label `vm` and the counter's own labels (`device`, then e.g. `queue`,
//! `vf`, `vector`): the JSON's `{"vf@5:0": {"rx_packets": 12}}` is
//! `vfvm_rx_packets_total{vm="g",device="vf@5:0"} 12`. The numbers are the
//! JSON's: both are renderings of the same counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for this format rather than JSON: it
/// names `text/plain` (or `application/openmetrics-text`, which Prometheus
/// sends with text/plain as its fallback) and not `application/json` first.
pub fn wanted(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    for range in accept.split(',') {
        let media = range.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json" => return false,
            "text/plain" | "application/openmetrics-text" => return true,
            _ => {}
        }
    }
    false
}

/// A metric or label name: what is not `[a-zA-Z0-9_]` becomes `_`, and a
/// leading digit gets a `_` before it.
fn name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the counters of VM `vm`. Each item is (labels, counter name,
/// value); samples are grouped into families by name, one `# TYPE` line each.
pub fn render<'a>(
    vm: &str,
    counters: impl IntoIterator<Item = (&'a [(String, String)], &'a str, u64)>,
) -> String {
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (labels, counter, v) in counters {
        let mut sample = format!("vm=\"{}\"", value(vm));
        for (k, l) in labels {
            let _ = write!(sample, ",{}=\"{}\"", name(k), value(l));
        }
        let family = format!("vfvm_{}_total", name(counter).trim_end_matches("_total"));
        families
            .entry(family)
            .or_default()
            .push(format!("{{{sample}}} {v}"));
    }
    let mut out = String::new();
    for (family, samples) in families {
        let _ = writeln!(out, "# TYPE {family} counter");
        for s in samples {
            let _ = writeln!(out, "{family}{s}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn groups_samples_into_families_with_labels() {
        let blk = labels(&[("device", "blk@4:0")]);
        let blk_q1 = labels(&[("device", "blk@4:0"), ("queue", "1")]);
        let vf = labels(&[("device", "vf@5:0"), ("vf", "0000:01:10.0")]);
        let odd = labels(&[("device", "a\"b\\c\nd"), ("9x-y", "v")]);
        let text = render(
            "g0",
            [
                (blk.as_slice(), "read_bytes", 4096),
                (vf.as_slice(), "rx_packets", 12),
                (blk_q1.as_slice(), "read_bytes", 512),
                (odd.as_slice(), "errors_total", 1),
            ],
        );
        assert_eq!(
            text,
            "# TYPE vfvm_errors_total counter\n\
             vfvm_errors_total{vm=\"g0\",device=\"a\\\"b\\\\c\\nd\",_9x_y=\"v\"} 1\n\
             # TYPE vfvm_read_bytes_total counter\n\
             vfvm_read_bytes_total{vm=\"g0\",device=\"blk@4:0\"} 4096\n\
             vfvm_read_bytes_total{vm=\"g0\",device=\"blk@4:0\",queue=\"1\"} 512\n\
             # TYPE vfvm_rx_packets_total counter\n\
             vfvm_rx_packets_total{vm=\"g0\",device=\"vf@5:0\",vf=\"0000:01:10.0\"} 12\n"
        );
        assert_eq!(render("g0", []), "");
    }

    #[test]
    fn accept_header_picks_the_format() {
        for (accept, want) in [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), false),
            (Some("text/plain"), true),
            (Some("Text/Plain; version=0.0.4"), true),
            (
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                true,
            ),
            (Some("application/json, text/plain"), false),
            (Some("text/html"), false),
        ] {
            assert_eq!(wanted(accept), want, "{accept:?}");
        }
    }
}
