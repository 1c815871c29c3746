//! One measured value and its TSV line, plus the byte-size arguments (`128k`, `1m`) and the
//! labels metric names are built from.

use std::fmt;
use std::time::Duration;

/// What a metric measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// A measurement in the metric's unit.
    Number(f64),
    /// The file system refuses this kind of request (O_DIRECT opens answered EINVAL).
    NotAvailable,
    /// The workload failed; stderr says why.
    Error,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(x) => write!(f, "{x:.3}"),
            Value::NotAvailable => f.write_str("n/a"),
            Value::Error => f.write_str("err"),
        }
    }
}

/// One output line: `metric<TAB>unit<TAB>value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) metric: String,
    pub(crate) unit: &'static str,
    pub(crate) value: Value,
}

impl Sample {
    pub(crate) fn new(metric: impl Into<String>, unit: &'static str, value: f64) -> Sample {
        Sample { metric: metric.into(), unit, value: Value::Number(value) }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\t{}\t{}", self.metric, self.unit, self.value)
    }
}

/// Megabytes (10^6 bytes) per second.
pub(crate) fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// Microseconds per operation.
pub(crate) fn us_per_op(count: usize, took: Duration) -> f64 {
    took.as_secs_f64() * 1e6 / count.max(1) as f64
}

/// Parses a byte count: digits with an optional `k` (KiB) or `m` (MiB) suffix.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, scale) = match lower.strip_suffix('k') {
        Some(digits) => (digits, 1 << 10),
        None => match lower.strip_suffix('m') {
            Some(digits) => (digits, 1 << 20),
            None => (lower.as_str(), 1),
        },
    };
    let count: usize =
        digits.parse().map_err(|_| format!("{text:?} is not a size like 4096, 128k or 1m"))?;
    match count.checked_mul(scale) {
        Some(0) => Err("the size must not be 0".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

/// The short label of a size in metric names: `1b`, `4k`, `128k`, `1m`.
pub(crate) fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}m", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}k", bytes >> 10)
    } else {
        format!("{bytes}b")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_label_back() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("128k"), Ok(128 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x1k").is_err());
        assert!(parse_size("99999999999999999999m").is_err());
        assert_eq!(size_label(1), "1b");
        assert_eq!(size_label(4096), "4k");
        assert_eq!(size_label(128 << 10), "128k");
        assert_eq!(size_label(1 << 20), "1m");
        assert_eq!(size_label(1000), "1000b");
    }

    #[test]
    fn samples_print_as_tsv() {
        assert_eq!(Sample::new("m", "MB/s", 1.5).to_string(), "m\tMB/s\t1.500");
        let na = Sample { metric: "m".into(), unit: "us/op", value: Value::NotAvailable };
        assert_eq!(na.to_string(), "m\tus/op\tn/a");
    }
}
