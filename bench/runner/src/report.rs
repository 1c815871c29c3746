//! `report TSV`: the markdown tables of `bench/results/latest.md`, from run.sh's raw TSV
//! (`placement contender metric unit rep value`, one line per measurement, with a header).
//!
//! Per placement, two tables: the file-system metrics with one column per contender (tmpfs,
//! inproc, bridge, sshfs) and the ratios bridge/inproc and bridge/sshfs, and the metrics that
//! compare the bridge's path with a plain pipe (contenders bridge, frames, chain, shared, loop
//! and pipe: frames is the codec alone over the same pipe, chain the pipe's bytes through a
//! third process and back, shared the same with that hop through shared memory (as the
//! bridge's frame rings), loop through a third process that replies straight to the first, all
//! measured for round trips only), then the floors of the one-round-trip ratio: what a pread's
//! bridge/inproc ratio would be if the bridge's hop cost only what a third process in a
//! ping-pong costs (chain minus pipe; shared minus pipe with frame rings), and the same for a
//! daemon that answered the kernel itself (loop minus pipe), a design the bridge does not use.
//! A cell is the
//! median (min-max) over the repetitions; ratios divide medians. Rows, columns and placements
//! keep the order in which they first appear in the TSV, so the output is deterministic.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

/// The contenders of the file-system table, in column order.
const FS_CONTENDERS: [&str; 4] = ["tmpfs", "inproc", "bridge", "sshfs"];
/// The contenders of the bridge-path-vs-pipe table.
const PIPE_CONTENDERS: [&str; 6] = ["bridge", "frames", "chain", "shared", "loop", "pipe"];

/// The preads whose one round trip the floor is about, with the round trips of their size.
const ONE_ROUND_TRIP: [(&str, &str); 2] =
    [("pread_1b_direct", "rtt_1b"), ("pread_4k_direct", "rtt_4k")];

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The raw TSV that bench/run.sh wrote.
    tsv: PathBuf,
}

impl ReportArgs {
    pub(crate) fn run(&self) -> Result<()> {
        let text = std::fs::read_to_string(&self.tsv)
            .with_context(|| format!("cannot read {}", self.tsv.display()))?;
        crate::emit(&render(&Results::parse(&text)?))
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Number(f64),
    NotAvailable,
    Error,
}

/// All measurements, grouped, with first-appearance order kept.
#[derive(Debug, Default)]
struct Results {
    placements: Vec<String>,
    /// (metric, unit) in order.
    metrics: Vec<(String, String)>,
    values: HashMap<(String, String, String), Vec<Value>>,
}

impl Results {
    fn parse(text: &str) -> Result<Results> {
        let mut results = Results::default();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with("placement\t") {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let [placement, contender, metric, unit, _rep, value] = fields[..] else {
                bail!("line {}: expected 6 tab-separated fields: {line:?}", number + 1);
            };
            let value = match value {
                "n/a" => Value::NotAvailable,
                "err" => Value::Error,
                number_text => match number_text.parse::<f64>() {
                    Ok(x) if x.is_finite() => Value::Number(x),
                    _ => bail!("line {}: bad value {value:?}", number + 1),
                },
            };
            if !results.placements.iter().any(|p| p == placement) {
                results.placements.push(placement.to_owned());
            }
            if !results.metrics.iter().any(|(m, _)| m == metric) {
                results.metrics.push((metric.to_owned(), unit.to_owned()));
            }
            let key = (placement.to_owned(), contender.to_owned(), metric.to_owned());
            results.values.entry(key).or_default().push(value);
        }
        Ok(results)
    }

    fn get(&self, placement: &str, contender: &str, metric: &str) -> &[Value] {
        let key = (placement.to_owned(), contender.to_owned(), metric.to_owned());
        self.values.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Whether `metric` compares the bridge with a pipe (has a `pipe` contender anywhere).
    fn is_pipe_metric(&self, metric: &str) -> bool {
        self.placements.iter().any(|p| !self.get(p, "pipe", metric).is_empty())
    }
}

fn render(results: &Results) -> String {
    let mut out = String::new();
    for placement in &results.placements {
        let _ = writeln!(out, "### {}\n", placement_title(placement));
        let fs: Vec<_> =
            results.metrics.iter().filter(|(m, _)| !results.is_pipe_metric(m)).collect();
        let pipe: Vec<_> =
            results.metrics.iter().filter(|(m, _)| results.is_pipe_metric(m)).collect();
        if !fs.is_empty() {
            out.push_str("File systems:\n\n");
            table(
                &mut out,
                results,
                placement,
                &fs,
                &FS_CONTENDERS,
                &[("bridge", "inproc"), ("bridge", "sshfs")],
            );
        }
        if !pipe.is_empty() {
            out.push_str("The bridge's path (chan mount, `Client` wire) next to a plain pipe:\n\n");
            let ratios = [
                ("bridge", "pipe"),
                ("frames", "pipe"),
                ("chain", "pipe"),
                ("shared", "pipe"),
                ("loop", "pipe"),
            ];
            table(&mut out, results, placement, &pipe, &PIPE_CONTENDERS, &ratios);
        }
        floors(&mut out, results, placement);
    }
    out
}

/// The floors of each pread's bridge/inproc ratio, (inproc + hop - pipe) / inproc of medians,
/// where the hop is chain (the bridge's layout over pipes), shared (over frame rings) or loop (a
/// daemon answering the kernel itself);
/// pinned only, where every hand-off between processes is a context switch (unpinned, the
/// bridge's busy polling makes its hop cheaper than a sleeping pipe's).
fn floors(out: &mut String, results: &Results, placement: &str) {
    if placement != "cpu0" {
        return;
    }
    let layouts = [
        ("Floor of bridge/inproc for one round trip over pipes", "chain"),
        ("Floor of bridge/inproc for one round trip over frame rings", "shared"),
        ("Floor if the daemon answered the kernel itself (a design not used)", "loop"),
    ];
    for (title, hop) in layouts {
        let mut lines = Vec::new();
        for (pread, rtt) in ONE_ROUND_TRIP {
            let medians = [("inproc", pread), (hop, rtt), ("pipe", rtt)]
                .map(|(contender, metric)| median(results.get(placement, contender, metric)));
            let [Some(inproc), Some(hop_us), Some(pipe)] = medians else { continue };
            if inproc > 0.0 {
                let floor = (inproc + hop_us - pipe) / inproc;
                lines.push(format!("{pread} {}", format_ratio(floor)));
            }
        }
        if !lines.is_empty() {
            let formula = format!("(inproc + {hop} - pipe) / inproc");
            let _ = writeln!(out, "{title}, {formula}: {}\n", lines.join(", "));
        }
    }
}

fn placement_title(placement: &str) -> String {
    match placement {
        "unpinned" => "Unpinned (the scheduler places every process)".to_owned(),
        "cpu0" => "Pinned: every process on CPU 0 (`taskset -c 0`)".to_owned(),
        other => other.to_owned(),
    }
}

fn table(
    out: &mut String,
    results: &Results,
    placement: &str,
    metrics: &[&(String, String)],
    contenders: &[&str],
    ratios: &[(&str, &str)],
) {
    out.push_str("| metric | unit | better |");
    for contender in contenders {
        let _ = write!(out, " {contender} |");
    }
    for (a, b) in ratios {
        let _ = write!(out, " {a}/{b} |");
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---:|".repeat(contenders.len() + ratios.len()));
    out.push('\n');
    for (metric, unit) in metrics {
        let _ = write!(out, "| {metric} | {} | {} |", display_unit(unit), better(unit));
        for contender in contenders {
            let _ = write!(out, " {} |", cell(results.get(placement, contender, metric)));
        }
        for (a, b) in ratios {
            let ratio = median(results.get(placement, a, metric))
                .zip(median(results.get(placement, b, metric)))
                .filter(|&(_, denominator)| denominator > 0.0)
                .map_or("–".to_owned(), |(x, y)| format_ratio(x / y));
            let _ = write!(out, " {ratio} |");
        }
        out.push('\n');
    }
    out.push('\n');
}

/// Throughputs (units per second) are better higher; times are better lower.
fn better(unit: &str) -> &'static str {
    if unit.ends_with("/s") {
        "higher"
    } else {
        "lower"
    }
}

fn display_unit(unit: &str) -> String {
    match unit.strip_prefix("us") {
        Some(rest) => format!("µs{rest}"),
        None => unit.to_owned(),
    }
}

fn numbers(values: &[Value]) -> Vec<f64> {
    let mut numbers: Vec<f64> = values
        .iter()
        .filter_map(|v| match v {
            Value::Number(x) => Some(*x),
            _ => None,
        })
        .collect();
    numbers.sort_by(f64::total_cmp);
    numbers
}

fn median(values: &[Value]) -> Option<f64> {
    let sorted = numbers(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `median (min-max)`, with a note of failed or refused repetitions.
fn cell(values: &[Value]) -> String {
    let sorted = numbers(values);
    let refused = values.iter().filter(|v| **v == Value::NotAvailable).count();
    let failed = values.iter().filter(|v| **v == Value::Error).count();
    let mut text = match (median(values), sorted.first(), sorted.last()) {
        (Some(med), Some(&min), Some(&max)) if sorted.len() > 1 => {
            format!("{} ({}-{})", format_number(med), format_number(min), format_number(max))
        }
        (Some(med), _, _) => format_number(med),
        _ if failed > 0 => "**err**".to_owned(),
        _ if refused > 0 => "n/a".to_owned(),
        _ => "–".to_owned(),
    };
    if !sorted.is_empty() && failed > 0 {
        let _ = write!(text, " **[{failed} err]**");
    }
    if !sorted.is_empty() && refused > 0 {
        let _ = write!(text, " [{refused} n/a]");
    }
    if sorted.is_empty() && failed > 0 && refused > 0 {
        let _ = write!(text, " [{refused} n/a]");
    }
    text
}

/// About three significant digits.
fn format_number(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 100.0 {
        format!("{x:.0}")
    } else if magnitude >= 10.0 {
        format!("{x:.1}")
    } else if magnitude >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn format_ratio(x: f64) -> String {
    if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "placement\tcontender\tmetric\tunit\trep\tvalue
unpinned\ttmpfs\twrite_1m_buffered\tMB/s\t1\t2000
unpinned\tinproc\twrite_1m_buffered\tMB/s\t1\t800
unpinned\tbridge\twrite_1m_buffered\tMB/s\t1\t400
unpinned\tbridge\twrite_1m_buffered\tMB/s\t2\t500
unpinned\tbridge\twrite_1m_buffered\tMB/s\t3\terr
unpinned\tsshfs\twrite_1m_buffered\tMB/s\t1\tn/a
unpinned\tbridge\trtt_1b\tus/op\t1\t20
unpinned\tframes\trtt_1b\tus/op\t1\t12
unpinned\tpipe\trtt_1b\tus/op\t1\t10
unpinned\tchain\trtt_1b\tus/op\t1\t25
unpinned\tshared\trtt_1b\tus/op\t1\t18
unpinned\tloop\trtt_1b\tus/op\t1\t16
unpinned\tinproc\tpread_1b_direct\tus/op\t1\t30
cpu0\tpipe\trtt_1b\tus/op\t1\t10
cpu0\tchain\trtt_1b\tus/op\t1\t25
cpu0\tshared\trtt_1b\tus/op\t1\t19
cpu0\tloop\trtt_1b\tus/op\t1\t16
cpu0\tinproc\tpread_1b_direct\tus/op\t1\t30
unpinned\tbridge\tstream_64k\tMB/s\t1\t900
unpinned\tpipe\tstream_64k\tMB/s\t1\t1000
";

    #[test]
    fn tables_show_medians_ranges_ratios_and_failures() {
        let text = render(&Results::parse(TSV).unwrap());
        assert!(text.contains(
            "| write_1m_buffered | MB/s | higher | 2000 | 800 | 450 (400-500) **[1 err]** | n/a | 0.56 | – |"
        ), "{text}");
        assert!(
            text.contains(
                "| rtt_1b | µs/op | lower | 20.0 | 12.0 | 25.0 | 18.0 | 16.0 | 10.0 | 2.00 | 1.20 | 2.50 | 1.80 | 1.60 |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| stream_64k | MB/s | higher | 900 | – | – | – | – | 1000 | 0.90 | – | – | – | – |"
            ),
            "{text}"
        );
        // (30 + 25 - 10) / 30, (30 + 19 - 10) / 30 and (30 + 16 - 10) / 30, pinned only; the
        // 4 KiB pread has no measurements, so no floor.
        assert_eq!(text.matches("Floor ").count(), 3, "{text}");
        assert!(
            text.contains("over pipes, (inproc + chain - pipe) / inproc: pread_1b_direct 1.50\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "over frame rings, (inproc + shared - pipe) / inproc: pread_1b_direct 1.30\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "(a design not used), (inproc + loop - pipe) / inproc: pread_1b_direct 1.20\n"
            ),
            "{text}"
        );
        assert!(!text.contains("pread_4k_direct 1"), "{text}");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let err = Results::parse("a\tb\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(Results::parse("p\tc\tm\tu\t1\tfast\n").is_err());
    }

    #[test]
    fn medians_of_even_counts_average_the_middle_two() {
        let values = [Value::Number(4.0), Value::Number(1.0), Value::Number(2.0), Value::Error];
        assert_eq!(median(&[values[0], values[1], values[2], Value::Number(3.0)]), Some(2.5));
        assert_eq!(median(&values), Some(2.0));
        assert_eq!(cell(&[Value::Error, Value::NotAvailable]), "**err** [1 n/a]");
    }
}
