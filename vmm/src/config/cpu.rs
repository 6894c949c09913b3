//! `-c [[cpus=]N][,sockets=S][,cores=C][,threads=T]`: vCPU count and topology.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

const USE: &str = "use -c N or -c cpus=N,sockets=S,cores=C,threads=T";

/// Number of vCPUs and how they are presented to the guest.
///
/// Invariant (checked by [`CpuTopology::validate`]): every field is at least
/// 1 and `cpus == sockets * cores * threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    /// Total number of vCPUs.
    pub cpus: u16,
    /// Sockets (packages).
    pub sockets: u16,
    /// Cores per socket.
    pub cores: u16,
    /// Threads per core.
    pub threads: u16,
}

impl Default for CpuTopology {
    /// One vCPU, as bhyve's default.
    fn default() -> Self {
        CpuTopology {
            cpus: 1,
            sockets: 1,
            cores: 1,
            threads: 1,
        }
    }
}

impl CpuTopology {
    /// Completes a partial topology.
    ///
    /// bhyve's rules, made friendlier: cores and threads default to 1; with
    /// cpus missing, cpus = sockets * cores * threads (sockets default 1);
    /// with cpus given, the first missing of sockets, cores, threads is
    /// derived from it (bhyve derives only sockets and would reject
    /// `-c 4,cores=2`, which here means 2 sockets of 2 cores). With all four
    /// given they must agree. On error, returns the reason.
    pub fn from_parts(
        cpus: Option<u16>,
        sockets: Option<u16>,
        cores: Option<u16>,
        threads: Option<u16>,
    ) -> Result<Self, String> {
        for (name, value) in [
            ("cpus", cpus),
            ("sockets", sockets),
            ("cores", cores),
            ("threads", threads),
        ] {
            if value == Some(0) {
                return Err(format!("{name} must be at least 1 ({USE})"));
            }
        }
        let mut parts = [sockets, cores, threads];
        let Some(cpus) = cpus else {
            let [s, c, t] = parts.map(|p| u64::from(p.unwrap_or(1)));
            let total = s * c * t;
            let cpus = u16::try_from(total).map_err(|_| {
                format!("sockets*cores*threads = {total} vCPUs, too many (at most 65535)")
            })?;
            return Ok(CpuTopology {
                cpus,
                sockets: s as u16,
                cores: c as u16,
                threads: t as u16,
            });
        };
        if let Some(derived) = parts.iter().position(Option::is_none) {
            // The first missing one is derived, the others default to 1.
            for (i, p) in parts.iter_mut().enumerate() {
                if i != derived && p.is_none() {
                    *p = Some(1);
                }
            }
            let fixed: u64 = parts.iter().flatten().map(|&v| u64::from(v)).product();
            let names = ["sockets", "cores", "threads"];
            if !u64::from(cpus).is_multiple_of(fixed) {
                let given: Vec<String> = (0..3)
                    .filter(|&i| i != derived)
                    .map(|i| format!("{}={}", names[i], parts[i].unwrap_or(1)))
                    .collect();
                return Err(format!(
                    "cpus={cpus} cannot be split by {} (make cpus a multiple of {fixed}, or give {} too)",
                    given.join(","),
                    names[derived]
                ));
            }
            // A quotient of a u16 by a non-zero integer fits in a u16.
            parts[derived] = Some((u64::from(cpus) / fixed) as u16);
        }
        let [s, c, t] = parts.map(|p| p.unwrap_or(1));
        let topology = CpuTopology {
            cpus,
            sockets: s,
            cores: c,
            threads: t,
        };
        topology.check()?;
        Ok(topology)
    }

    /// Checks the invariant (for configurations not built by parsing).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|reason| ConfigError::Cpus {
            value: self.to_string(),
            reason,
        })
    }

    fn check(&self) -> Result<(), String> {
        let CpuTopology {
            cpus,
            sockets,
            cores,
            threads,
        } = *self;
        for (name, value) in [
            ("cpus", cpus),
            ("sockets", sockets),
            ("cores", cores),
            ("threads", threads),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1 ({USE})"));
            }
        }
        let product = u64::from(sockets) * u64::from(cores) * u64::from(threads);
        if product != u64::from(cpus) {
            return Err(format!(
                "sockets={sockets} x cores={cores} x threads={threads} is {product} vCPUs, not cpus={cpus} (make them agree, or leave one out to derive it)"
            ));
        }
        Ok(())
    }
}

/// Parses a `-c` value: `N`, `cpus=N`, and any of `sockets=`, `cores=`,
/// `threads=`, comma-separated, in any order (see [`CpuTopology::from_parts`]).
impl FromStr for CpuTopology {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        parse(s).map_err(|reason| ConfigError::Cpus {
            value: s.to_string(),
            reason,
        })
    }
}

fn parse(s: &str) -> Result<CpuTopology, String> {
    let mut values: [Option<u16>; 4] = [None; 4];
    const NAMES: [&str; 4] = ["cpus", "sockets", "cores", "threads"];
    for item in s.split(',') {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key, value),
            None if item.is_empty() => return Err(format!("empty item ({USE})")),
            None => ("cpus", item),
        };
        let Some(index) = NAMES.iter().position(|&n| n == key) else {
            return Err(format!(
                "unknown key '{key}' (known: cpus, sockets, cores, threads)"
            ));
        };
        if values[index].is_some() {
            return Err(format!("{key} given twice ({USE})"));
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{key}: '{value}' is not a number ({USE})"));
        }
        let n: u16 = value
            .parse()
            .map_err(|_| format!("{key}={value} is too large (at most 65535)"))?;
        values[index] = Some(n);
    }
    let [cpus, sockets, cores, threads] = values;
    CpuTopology::from_parts(cpus, sockets, cores, threads)
}

impl fmt::Display for CpuTopology {
    /// `-c` syntax with all four values, e.g. `cpus=4,sockets=1,cores=2,threads=2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpus={},sockets={},cores={},threads={}",
            self.cpus, self.sockets, self.cores, self.threads
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(cpus: u16, sockets: u16, cores: u16, threads: u16) -> CpuTopology {
        CpuTopology {
            cpus,
            sockets,
            cores,
            threads,
        }
    }

    #[test]
    fn parses_topologies() {
        let cases: &[(&str, CpuTopology)] = &[
            ("1", topo(1, 1, 1, 1)),
            ("4", topo(4, 4, 1, 1)), // bhyve: sockets = cpus
            ("cpus=4", topo(4, 4, 1, 1)),
            ("65535", topo(65535, 65535, 1, 1)),
            ("sockets=2", topo(2, 2, 1, 1)),
            ("cores=4", topo(4, 1, 4, 1)),
            ("threads=2", topo(2, 1, 1, 2)),
            ("sockets=2,cores=4,threads=2", topo(16, 2, 4, 2)),
            ("threads=2,cores=4,sockets=2", topo(16, 2, 4, 2)),
            ("16,sockets=2,cores=4,threads=2", topo(16, 2, 4, 2)),
            ("cpus=16,sockets=2,cores=4,threads=2", topo(16, 2, 4, 2)),
            ("sockets=2,cores=4,threads=2,cpus=16", topo(16, 2, 4, 2)),
            // Derivation: the first missing of sockets, cores, threads.
            ("4,cores=2", topo(4, 2, 2, 1)),
            ("8,cores=2,threads=2", topo(8, 2, 2, 2)),
            ("8,sockets=2", topo(8, 2, 4, 1)),
            ("8,sockets=2,threads=2", topo(8, 2, 2, 2)),
            ("8,sockets=2,cores=2", topo(8, 2, 2, 2)),
            ("8,threads=2", topo(8, 4, 1, 2)),
            ("6,sockets=1,cores=3", topo(6, 1, 3, 2)),
        ];
        for (input, want) in cases {
            let got: CpuTopology = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, *want, "{input}");
            assert_eq!(got.validate(), Ok(()), "{input}");
            // Display is -c syntax and parses back.
            assert_eq!(got.to_string().parse::<CpuTopology>().unwrap(), got);
        }
    }

    #[test]
    fn rejects_bad_topologies() {
        let cases: &[(&str, &str)] = &[
            ("", "-c : empty item (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("2,", "-c 2,: empty item (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("0", "-c 0: cpus must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("cpus=0", "-c cpus=0: cpus must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("sockets=0", "-c sockets=0: sockets must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("2,cores=0", "-c 2,cores=0: cores must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("2,threads=0", "-c 2,threads=0: threads must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("two", "-c two: cpus: 'two' is not a number (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("-1", "-c -1: cpus: '-1' is not a number (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("+2", "-c +2: cpus: '+2' is not a number (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("cpus=", "-c cpus=: cpus: '' is not a number (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("cores=x", "-c cores=x: cores: 'x' is not a number (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("65536", "-c 65536: cpus=65536 is too large (at most 65535)"),
            ("99999999999", "-c 99999999999: cpus=99999999999 is too large (at most 65535)"),
            ("sockets=99999", "-c sockets=99999: sockets=99999 is too large (at most 65535)"),
            ("dies=2", "-c dies=2: unknown key 'dies' (known: cpus, sockets, cores, threads)"),
            ("2,cpus=2", "-c 2,cpus=2: cpus given twice (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("cores=2,cores=2", "-c cores=2,cores=2: cores given twice (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"),
            ("4,sockets=2,cores=4,threads=1", "-c 4,sockets=2,cores=4,threads=1: sockets=2 x cores=4 x threads=1 is 8 vCPUs, not cpus=4 (make them agree, or leave one out to derive it)"),
            ("5,cores=2", "-c 5,cores=2: cpus=5 cannot be split by cores=2,threads=1 (make cpus a multiple of 2, or give sockets too)"),
            ("6,sockets=4", "-c 6,sockets=4: cpus=6 cannot be split by sockets=4,threads=1 (make cpus a multiple of 4, or give cores too)"),
            ("6,sockets=2,cores=2", "-c 6,sockets=2,cores=2: cpus=6 cannot be split by sockets=2,cores=2 (make cpus a multiple of 4, or give threads too)"),
            ("sockets=256,cores=256", "-c sockets=256,cores=256: sockets*cores*threads = 65536 vCPUs, too many (at most 65535)"),
        ];
        for &(input, want) in cases {
            let err = input.parse::<CpuTopology>().expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn validates_built_topologies() {
        assert_eq!(CpuTopology::default(), topo(1, 1, 1, 1));
        assert_eq!(topo(8, 2, 2, 2).validate(), Ok(()));
        assert_eq!(
            topo(3, 1, 1, 1).validate().unwrap_err().to_string(),
            "-c cpus=3,sockets=1,cores=1,threads=1: sockets=1 x cores=1 x threads=1 is 1 vCPUs, not cpus=3 (make them agree, or leave one out to derive it)"
        );
        assert_eq!(
            topo(0, 0, 1, 1).validate().unwrap_err().to_string(),
            "-c cpus=0,sockets=0,cores=1,threads=1: cpus must be at least 1 (use -c N or -c cpus=N,sockets=S,cores=C,threads=T)"
        );
        assert_eq!(
            topo(65535, 65535, 65535, 65535).validate().unwrap_err().to_string(),
            "-c cpus=65535,sockets=65535,cores=65535,threads=65535: sockets=65535 x cores=65535 x threads=65535 is 281462092005375 vCPUs, not cpus=65535 (make them agree, or leave one out to derive it)"
        );
    }
}
