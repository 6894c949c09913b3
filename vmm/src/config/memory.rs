//! `-m SIZE`: guest memory size, with bhyve's syntax and rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Huge pages backing guest RAM (`--hugepages=2M|1G`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HugePageSize {
    /// 2 MiB pages (`--hugepages`, `--hugepages=2M`).
    #[serde(rename = "2M")]
    Size2M,
    /// 1 GiB pages (`--hugepages=1G`).
    #[serde(rename = "1G")]
    Size1G,
}

impl HugePageSize {
    /// The page size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            HugePageSize::Size2M => 2 << 20,
            HugePageSize::Size1G => 1 << 30,
        }
    }

    /// The flag as the user writes it.
    pub fn flag(self) -> &'static str {
        match self {
            HugePageSize::Size2M => "--hugepages",
            HugePageSize::Size1G => "--hugepages=1G",
        }
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Guest RAM is mapped in pages, so its size must be a multiple of this.
const PAGE_SIZE: u64 = 4 * KIB;

/// Largest accepted size: 4 PiB, the x86-64 architectural limit of physical
/// addresses (52 bits); the builder checks what the host can really give.
const MAX_MEMORY: u64 = 1 << 52;

/// Default guest memory size, as bhyve's (256 MiB).
const DEFAULT_MEMORY: u64 = 256 * MIB;

/// Guest memory: `-m SIZE` and `--hugepages[=2M|1G]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryConfig {
    /// Size in bytes: non-zero, a multiple of 4 KiB (of the huge page size
    /// with `hugepages`).
    pub size: u64,
    /// Back guest memory with huge pages of this size (`MAP_HUGETLB`).
    pub hugepages: Option<HugePageSize>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            size: DEFAULT_MEMORY,
            hugepages: None,
        }
    }
}

/// Parses a `--hugepages` value: `2M` (also what a bare `--hugepages`
/// means) or `1G`.
pub fn parse_hugepages(s: &str) -> Result<HugePageSize, ConfigError> {
    match s {
        "2M" | "2m" => Ok(HugePageSize::Size2M),
        "1G" | "1g" => Ok(HugePageSize::Size1G),
        _ => Err(ConfigError::HugePages(s.to_string())),
    }
}

impl MemoryConfig {
    /// Checks the size rules (also those that depend on `hugepages`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Memory {
            value: format_size(self.size),
            reason,
        };
        check_size(self.size).map_err(err)?;
        if let Some(page) = self.hugepages {
            if !self.size.is_multiple_of(page.bytes()) {
                return Err(err(format!(
                    "not a multiple of {}, which {} needs (use e.g. -m {})",
                    if page == HugePageSize::Size1G {
                        "1 GiB"
                    } else {
                        "2 MiB"
                    },
                    page.flag(),
                    format_size(round_up(self.size, page.bytes()))
                )));
            }
        }
        Ok(())
    }
}

/// Parses a `-m` value; `hugepages` is `None` (it comes from `--hugepages`).
///
/// The rule is bhyve's `vm_parse_memsize()`: a number with a K, M, G or T
/// suffix (either case, binary multiples; B means bytes) is that size; a
/// bare number below 1048576 is MiB, otherwise bytes. Numbers are decimal.
/// The result must be non-zero and a multiple of 4 KiB (it is not rounded).
impl FromStr for MemoryConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let size = parse_size(s).map_err(|reason| ConfigError::Memory {
            value: s.to_string(),
            reason,
        })?;
        Ok(MemoryConfig {
            size,
            hugepages: None,
        })
    }
}

impl fmt::Display for MemoryConfig {
    /// The size in `-m` syntax (e.g. `512M`), which parses back to the same size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.size))
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    const USE: &str = "use a number with an optional K, M, G or T suffix, e.g. -m 512M";
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    if number.is_empty() {
        return Err(format!("not a size ({USE})"));
    }
    let n: u64 = number.parse().map_err(|_| too_large())?;
    let unit = match suffix {
        // bhyve: "if the memory size specified on the command line is less
        // than a megabyte then it is interpreted as being in units of MB".
        "" if n < MIB => MIB,
        "" | "b" | "B" => 1,
        "k" | "K" => KIB,
        "m" | "M" => MIB,
        "g" | "G" => GIB,
        "t" | "T" => TIB,
        _ => return Err(format!("unknown suffix '{suffix}' ({USE})")),
    };
    let size = n.checked_mul(unit).ok_or_else(too_large)?;
    check_size(size)?;
    Ok(size)
}

fn check_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("memory size must be greater than 0 (e.g. -m 512M)".to_string());
    }
    if size > MAX_MEMORY {
        return Err(too_large());
    }
    if !size.is_multiple_of(PAGE_SIZE) {
        return Err(format!(
            "{size} bytes is not a multiple of 4 KiB (use e.g. -m {})",
            format_size(round_up(size, PAGE_SIZE))
        ));
    }
    Ok(())
}

fn too_large() -> String {
    "too large (at most 4096T, the x86-64 physical address limit)".to_string()
}

/// Rounds `size` up to a multiple of `align` (a power of two), saturating.
fn round_up(size: u64, align: u64) -> u64 {
    // Callers have checked size <= MAX_MEMORY, so this cannot overflow.
    (size + align - 1) & !(align - 1)
}

/// Formats a byte count in `-m` syntax with the largest exact unit.
fn format_size(size: u64) -> String {
    for (unit, suffix) in [(TIB, "T"), (GIB, "G"), (MIB, "M"), (KIB, "K")] {
        if size != 0 && size.is_multiple_of(unit) {
            return format!("{}{suffix}", size / unit);
        }
    }
    format!("{size}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        let cases: &[(&str, u64)] = &[
            ("256M", 256 * MIB),
            ("256m", 256 * MIB),
            ("512M", 512 * MIB),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("1T", TIB),
            ("1t", TIB),
            ("4K", 4 * KIB),
            ("4k", 4 * KIB),
            ("8192B", 8 * KIB),
            ("8192b", 8 * KIB),
            // bhyve: a bare number below 1 MiB is MiB ...
            ("1", MIB),
            ("512", 512 * MIB),
            ("1048575", 1_048_575 * MIB),
            // ... and from 1 MiB on, bytes.
            ("1048576", MIB),
            ("536870912", 512 * MIB),
            ("0512", 512 * MIB), // decimal, not octal
            ("4096T", 4096 * TIB),
            ("4503599627370496", MAX_MEMORY),
        ];
        for &(input, want) in cases {
            let got: MemoryConfig = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.size, want, "{input}");
            assert!(got.hugepages.is_none());
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        let cases: &[(&str, &str)] = &[
            ("", "-m : not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("M", "-m M: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("abc", "-m abc: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("-1", "-m -1: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("0x100", "-m 0x100: unknown suffix 'x100' (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("512MB", "-m 512MB: unknown suffix 'MB' (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("1P", "-m 1P: unknown suffix 'P' (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("1.5G", "-m 1.5G: unknown suffix '.5G' (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            (" 512M", "-m  512M: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("512M ", "-m 512M : unknown suffix 'M ' (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"),
            ("0", "-m 0: memory size must be greater than 0 (e.g. -m 512M)"),
            ("0G", "-m 0G: memory size must be greater than 0 (e.g. -m 512M)"),
            ("1000000000", "-m 1000000000: 1000000000 bytes is not a multiple of 4 KiB (use e.g. -m 976564K)"),
            ("1025K", "-m 1025K: 1049600 bytes is not a multiple of 4 KiB (use e.g. -m 1028K)"),
            ("4097T", "-m 4097T: too large (at most 4096T, the x86-64 physical address limit)"),
            ("16777216T", "-m 16777216T: too large (at most 4096T, the x86-64 physical address limit)"),
            ("99999999999999999999", "-m 99999999999999999999: too large (at most 4096T, the x86-64 physical address limit)"),
            ("18446744073709551615B", "-m 18446744073709551615B: too large (at most 4096T, the x86-64 physical address limit)"),
        ];
        for &(input, want) in cases {
            let err = input.parse::<MemoryConfig>().expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn validates_hugepages_alignment() {
        let ok = MemoryConfig {
            size: 4 * MIB,
            hugepages: Some(HugePageSize::Size2M),
        };
        assert_eq!(ok.validate(), Ok(()));
        let small_pages = MemoryConfig {
            size: 1028 * KIB,
            hugepages: None,
        };
        assert_eq!(small_pages.validate(), Ok(()));
        let bad = MemoryConfig {
            size: 1025 * MIB,
            hugepages: Some(HugePageSize::Size2M),
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "-m 1025M: not a multiple of 2 MiB, which --hugepages needs (use e.g. -m 1026M)"
        );
        let gig = MemoryConfig {
            size: 1536 * MIB,
            hugepages: Some(HugePageSize::Size1G),
        };
        assert_eq!(
            gig.validate().unwrap_err().to_string(),
            "-m 1536M: not a multiple of 1 GiB, which --hugepages=1G needs (use e.g. -m 2G)"
        );
        assert_eq!(
            MemoryConfig {
                size: 2 * GIB,
                ..gig
            }
            .validate(),
            Ok(())
        );
        let zero = MemoryConfig {
            size: 0,
            hugepages: None,
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "-m 0B: memory size must be greater than 0 (e.g. -m 512M)"
        );
        let odd = MemoryConfig {
            size: 1000,
            hugepages: None,
        };
        assert_eq!(
            odd.validate().unwrap_err().to_string(),
            "-m 1000B: 1000 bytes is not a multiple of 4 KiB (use e.g. -m 4K)"
        );
    }

    #[test]
    fn parses_hugepage_sizes() {
        assert_eq!(parse_hugepages("2M"), Ok(HugePageSize::Size2M));
        assert_eq!(parse_hugepages("1g"), Ok(HugePageSize::Size1G));
        assert_eq!(
            parse_hugepages("4K").unwrap_err().to_string(),
            "--hugepages=4K: not a huge page size (use --hugepages=2M or --hugepages=1G)"
        );
    }

    #[test]
    fn formats_sizes_that_parse_back() {
        let cases: &[(u64, &str)] = &[
            (DEFAULT_MEMORY, "256M"),
            (4 * KIB, "4K"),
            (1028 * KIB, "1028K"),
            (3 * GIB, "3G"),
            (1536 * MIB, "1536M"),
            (2 * TIB, "2T"),
        ];
        for &(size, want) in cases {
            let m = MemoryConfig {
                size,
                hugepages: None,
            };
            assert_eq!(m.to_string(), want);
            assert_eq!(want.parse::<MemoryConfig>().unwrap().size, size);
        }
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(MemoryConfig::default().size, 256 * MIB);
    }
}
