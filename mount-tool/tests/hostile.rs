//! A hostile daemon through a real mount (issue 7), and once through the client library alone
//! (`oversize-client`): wrong tags, duplicate replies, answers
//! larger than asked, an enormous frame length, garbage after a valid frame, events for handles
//! that do not exist, a call stalled forever, a flood of events. Each case must end in a clear
//! error for the affected calls only (EIO), a logged reason, no panic, bounded memory, and the
//! other calls keep working while the stream is sound.
//!
//! This test binary has its own main (`harness = false`) because it plays three parts:
//! with `HOSTILE_ROLE=daemon` it is the daemon (`hostile/daemon.rs`, started by schememount
//! `--daemon`), with `HOSTILE_ROLE=probe` a caller doing one file operation
//! (`hostile/mount.rs`), and otherwise the runner of the cases (`hostile/cases.rs`), each on its
//! own mount, each under a deadline.
//!
//! `cargo test -p schememount --test hostile [NAME...]` runs the cases whose names contain a
//! NAME. Cases listed in `HOSTILE_SKIP` (comma or space separated; by default
//! [`KNOWN_FAILING`]) are skipped; `HOSTILE_SKIP=` runs them all.

mod util;

#[path = "hostile/cases.rs"]
mod cases;
#[path = "hostile/daemon.rs"]
mod daemon;
#[path = "hostile/mount.rs"]
mod mount;

use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Cases the bridge does not pass yet, skipped unless `HOSTILE_SKIP` says otherwise (run them
/// with `HOSTILE_SKIP=` to see what each observes). None: the four it once listed (oversize,
/// huge-frame, garbage, flood) were fixed in the bridge.
const KNOWN_FAILING: &[&str] = &[];

/// The longest any case may take before the runner gives up on it (and kills everything).
const CASE_DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match std::env::var("HOSTILE_ROLE").as_deref() {
        Ok("daemon") => {
            let mode = std::env::var("HOSTILE_MODE").unwrap_or_default();
            let Some(mode) = daemon::Mode::parse(&mode) else {
                eprintln!("hostile-daemon: unknown HOSTILE_MODE {mode:?}");
                return ExitCode::FAILURE;
            };
            ExitCode::from(daemon::run(mode) as u8)
        }
        Ok("probe") => ExitCode::from(mount::probe_main() as u8),
        _ => run_cases(),
    }
}

fn run_cases() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in cases::CASES {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = cases::CASES
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() || !util::fuse_usable() {
        return ExitCode::SUCCESS;
    }
    let skip = match std::env::var("HOSTILE_SKIP") {
        Ok(list) => list.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Err(_) => KNOWN_FAILING.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    };
    println!("\nrunning {} hostile-daemon cases", selected.len());
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, case) in selected {
        if skip.iter().any(|s| s == name) {
            println!("case {name} ... skipped (HOSTILE_SKIP)");
            skipped += 1;
            continue;
        }
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let case = *case;
        std::thread::spawn(move || {
            let _ = tx.send(case());
        });
        let report = match rx.recv_timeout(CASE_DEADLINE) {
            Ok(report) => report,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                println!(
                    "case {name} ... FAILED: still running after {CASE_DEADLINE:?}; giving up"
                );
                mount::kill_everything();
                return ExitCode::FAILURE;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => cases::Report {
                failures: vec!["the case panicked (message above)".into()],
                ..cases::Report::default()
            },
        };
        let verdict = if report.failures.is_empty() { "ok" } else { "FAILED" };
        println!("case {name} ... {verdict} ({:.1} s)", started.elapsed().as_secs_f64());
        for note in &report.notes {
            println!("    note: {note}");
        }
        for failure in &report.failures {
            println!("    FAIL: {failure}");
        }
        if report.failures.is_empty() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let result = if failed == 0 { "ok" } else { "FAILED" };
    println!("\nhostile result: {result}. {passed} passed; {failed} failed; {skipped} skipped\n");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
