//! The cases: one mount of the hostile daemon each, named after its [`Mode`]. Each checks the
//! callers' errnos, that calls not affected keep working while the stream is sound, whether
//! schememount lives or exits non-zero, that it logged a reason and did not panic, and that
//! no caller hangs (every file operation is a probe process with a deadline).
//!
//! [`Mode`]: crate::daemon::Mode

use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use scheme_bridge::{CallError, Client};

use crate::daemon::{flood_events, BAD, DUPLICATE, GOOD};
use crate::mount::{Mount, Outcome, Probe};

const EIO: i32 = 5;
/// How long a call that should just work may take.
const QUICK: Duration = Duration::from_secs(5);
/// How long a caller of a call the daemon never answers is left before it is signalled.
const BLOCKED_FOR: Duration = Duration::from_secs(1);
/// How long a signalled or failing caller, or an exiting schememount, may take.
const PROMPTLY: Duration = Duration::from_secs(3);
/// schememount's peak resident memory may grow at most this much during the event flood.
const FLOOD_MEMORY_KIB: u64 = 32 * 1024;
/// How long the flood may take to get through (it costs schememount about 8 s of CPU in a
/// debug build on a 2-vCPU VM), and twice the longest a call may wait behind it.
const FLOOD_WITHIN: Duration = Duration::from_secs(30);
/// The most stderr lines the event flood may cause (one per dropped event would be 10^6).
const FLOOD_LOG_LINES: usize = 1000;

/// What a case observed: notes for the report, and failures.
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }
}

/// A case: mounts the daemon in the mode of its name and reports what it saw.
pub type Case = fn() -> Report;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("honest", honest),
    ("wrong-tag", wrong_tag),
    ("duplicate", duplicate),
    ("oversize", oversize),
    ("oversize-client", oversize_client),
    ("huge-frame", huge_frame),
    ("garbage", garbage),
    ("ghost-events", ghost_events),
    ("stall", stall),
    ("flood", flood),
    ("compound", compound),
    ("ring-head", ring_head),
    ("ring-tail", ring_tail),
];

fn show(outcome: &Option<Outcome>) -> String {
    match outcome {
        None => "no answer (hung)".into(),
        Some(Outcome::Ok(bytes)) => format!("ok {:?}", String::from_utf8_lossy(bytes)),
        Some(Outcome::Err(errno)) => format!("errno {errno}"),
        Some(Outcome::Signal(signal)) => format!("killed by signal {signal}"),
        Some(Outcome::Other(what)) => what.clone(),
    }
}

fn read(mount: &Mount, name: &str, chunk: usize) -> Option<Outcome> {
    Probe::run("read", &mount.path(name), &chunk.to_string(), QUICK)
}

/// `good` reads right and the root lists the four names.
fn others_work(report: &mut Report, mount: &Mount, when: &str) {
    let got = read(mount, "good", 4096);
    report.check(
        got == Some(Outcome::Ok(GOOD.to_vec())),
        format!("{when}: read good: {}", show(&got)),
    );
    let got = Probe::run("ls", mount.dir.path(), "", QUICK);
    let want = Some(Outcome::Ok(b"bad good hold tick".to_vec()));
    report.check(got == want, format!("{when}: ls: {}", show(&got)));
}

/// A read of `hold` (which the daemon parks until cancelled) ends promptly on SIGINT.
fn hold_is_interruptible(report: &mut Report, mount: &Mount) {
    let mut hold = Probe::start("read", &mount.path("hold"), "16");
    let early = hold.wait(Duration::from_millis(300));
    report.check(early.is_none(), format!("read of hold should block: {}", show(&early)));
    hold.signal(Signal::INT);
    let got = hold.wait(PROMPTLY);
    report.check(got.is_some(), "SIGINT did not end a read of hold (the daemon answers cancels)");
}

/// schememount is still running, logged no panic, and ends cleanly on SIGTERM.
fn survives(report: &mut Report, mount: &mut Mount) {
    report.check(mount.alive(), "schememount exited");
    report.check(!mount.panicked(), "a panic was logged");
    let status = mount.stop();
    report.check(
        status.is_some_and(|s| s.success()),
        format!("schememount after SIGTERM: {status:?} (want exit 0)"),
    );
}

/// Runs `op`, which must fail with EIO (`what` describes the answer that caused it), and
/// checks that the mount logged why (`reason`); returns the lines it logged.
fn eio_logged(
    report: &mut Report,
    mount: &Mount,
    what: &str,
    reason: &str,
    op: impl FnOnce() -> Option<Outcome>,
) -> Vec<String> {
    let mark = mount.mark();
    let got = op();
    report.check(got == Some(Outcome::Err(EIO)), format!("{what}: {}", show(&got)));
    reason_since(report, mount, mark, reason)
}

/// The bridge (not the daemon) logged something since `mark`: the reason. Waits a little, as
/// the line may come just after the caller got its error.
fn reason_since(report: &mut Report, mount: &Mount, mark: usize, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut lines = mount.bridge_lines_since(mark);
    while lines.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lines = mount.bridge_lines_since(mark);
    }
    match lines.first() {
        Some(line) => report.note(format!("logged: {line}")),
        None => report.failures.push(format!("nothing logged about {what}")),
    }
    lines
}

fn honest() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("honest");
    others_work(&mut report, &mount, "honest");
    let got = read(&mount, "bad", 16);
    report.check(got == Some(Outcome::Ok(BAD.to_vec())), format!("read bad: {}", show(&got)));
    let got = Probe::run("write", &mount.path("bad"), "hello", QUICK);
    report.check(got == Some(Outcome::Ok(b"5".to_vec())), format!("write bad: {}", show(&got)));
    hold_is_interruptible(&mut report, &mount);
    report.check(mount.bridge_lines_since(0).is_empty(), "an honest daemon caused log lines");
    survives(&mut report, &mut mount);
    report
}

/// A read the daemon never answers: the caller gets EIO, or a signal ends it promptly.
fn affected_caller_ends(report: &mut Report, mut probe: Probe) {
    let started = Instant::now();
    if let Some(got) = probe.wait(BLOCKED_FOR) {
        let took = started.elapsed();
        report.note(format!("{}: {} after {took:?}", probe.describe(), show(&Some(got.clone()))));
        report.check(got == Outcome::Err(EIO), format!("{}: want EIO", probe.describe()));
        return;
    }
    probe.signal(Signal::INT);
    let sent = Instant::now();
    if let Some(got) = probe.wait(PROMPTLY) {
        report
            .note(format!("blocked caller: SIGINT ended it after {:?} ({got:?})", sent.elapsed()));
        return;
    }
    if probe.kill_and_wait(PROMPTLY) {
        report.note("blocked caller: SIGINT did not end it, SIGKILL did");
        return;
    }
    report.failures.push(format!(
        "{}: blocked, and neither SIGINT nor SIGKILL ended it within {PROMPTLY:?} each \
         (the caller sits in the kernel until the mount goes away)",
        probe.describe()
    ));
}

/// wrong-tag and stall: a read of `bad` never gets its answer.
fn never_answered(mode: &str) -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start(mode);
    let mark = mount.mark();
    let probe = Probe::start("read", &mount.path("bad"), "16");
    std::thread::sleep(Duration::from_millis(300));
    others_work(&mut report, &mount, "while a read of bad is unanswered");
    hold_is_interruptible(&mut report, &mount);
    affected_caller_ends(&mut report, probe);
    others_work(&mut report, &mount, "after the read of bad ended");
    reason_since(&mut report, &mount, mark, "a call the daemon never answered");
    survives(&mut report, &mut mount);
    report
}

fn wrong_tag() -> Report {
    never_answered("wrong-tag")
}

fn stall() -> Report {
    never_answered("stall")
}

fn duplicate() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("duplicate");
    let mark = mount.mark();
    for _ in 0..2 {
        let got = read(&mount, "bad", 16);
        let fine = got == Some(Outcome::Ok(BAD.to_vec())) || got == Some(Outcome::Err(EIO));
        report.check(fine, format!("read bad: {} (want {:?} or EIO)", show(&got), BAD));
        if let Some(Outcome::Ok(data)) = &got {
            report.check(!data.starts_with(DUPLICATE), "a duplicate reply reached the reader");
        }
        if got == Some(Outcome::Err(EIO)) {
            report.note("read bad failed with EIO");
        }
    }
    others_work(&mut report, &mount, "after duplicate replies");
    reason_since(&mut report, &mount, mark, "duplicate replies");
    survives(&mut report, &mut mount);
    report
}

fn oversize() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("oversize");
    let what = "16-byte read answered with 32";
    let lines = eio_logged(&mut report, &mount, what, "a read answer larger than asked", || {
        read(&mount, "bad", 16)
    });
    let refused = lines.iter().find(|line| line.contains("Invalid argument"));
    report.check(
        refused.is_none(),
        format!("the oversized answer was passed on to /dev/fuse, which refused it: {refused:?}"),
    );
    let what = "5-byte write counted 4101";
    eio_logged(&mut report, &mount, what, "a write count larger than the data", || {
        Probe::run("write", &mount.path("bad"), "hello", QUICK)
    });
    others_work(&mut report, &mount, "after oversized answers");
    survives(&mut report, &mut mount);
    report
}

/// Redox `O_RDONLY`.
const O_RDONLY: usize = 0x0001_0000;

/// oversize through the client library alone, no mount: a caller blocked in `Client::read`,
/// reading the wire itself, whose answer is larger than asked gets a protocol error (not a
/// hang, a panic or the bytes), and the same thread's next calls get their own answers (its
/// wake-up mailbox is reused from call to call).
fn oversize_client() -> Report {
    let mut report = Report::default();
    let mut daemon = Command::new(std::env::current_exe().expect("the test binary's path"));
    daemon.env("HOSTILE_ROLE", "daemon").env("HOSTILE_MODE", "oversize");
    let client = match Client::spawn(daemon, "") {
        Ok(client) => client,
        Err(err) => {
            report.failures.push(format!("cannot start the daemon: {err}"));
            return report;
        }
    };
    let bad = client.open("bad", O_RDONLY);
    let Ok(bad) = bad else {
        report.failures.push(format!("open of bad: {bad:?}"));
        return report;
    };
    let oversized = client.read(bad, 16);
    report.note(format!("16-byte read answered with 32: {oversized:?}"));
    let protocol_error =
        matches!(&oversized, Err(CallError::Protocol(what)) if what.contains("32"));
    report
        .check(protocol_error, format!("expected a protocol error naming 32 bytes: {oversized:?}"));
    for round in 0..3 {
        let good = client.open("good", O_RDONLY).and_then(|fd| {
            let data = client.read(fd, 64);
            client.close(fd)?;
            data
        });
        let matched = good.as_deref() == Ok(GOOD);
        report.check(matched, format!("read of good #{round} after it: {good:?}"));
    }
    report.check(client.close(bad).is_ok(), "close of bad failed");
    client.shutdown();
    report
}

/// huge-frame and garbage: the stream is unsound once the daemon answers a read of `bad`.
fn unsound(mode: &str, bad_read_ok: &[Outcome]) -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start(mode);
    let mut hold = Probe::start("read", &mount.path("hold"), "16");
    std::thread::sleep(Duration::from_millis(300));
    let mark = mount.mark();
    // One read: a second one would be a later call, on a file opened before the break.
    let got = Probe::run("read1", &mount.path("bad"), "16", QUICK);
    report.check(
        got.as_ref().is_some_and(|got| bad_read_ok.contains(got)),
        format!("read bad: {} (want one of {bad_read_ok:?})", show(&got)),
    );
    let got = hold.wait(PROMPTLY);
    report.check(got == Some(Outcome::Err(EIO)), format!("pending read of hold: {}", show(&got)));
    let status = mount.wait_exit(PROMPTLY);
    report.check(
        status.is_some_and(|s| !s.success()),
        format!("schememount should exit non-zero: {status:?}"),
    );
    let got = read(&mount, "good", 4096);
    report.check(
        got.is_some() && got != Some(Outcome::Ok(GOOD.to_vec())),
        format!("read good after the stream broke: {} (want an error)", show(&got)),
    );
    report.note(format!("read good afterwards: {}", show(&got)));
    report.check(!mount.is_mounted(), "the mount is still there");
    reason_since(&mut report, &mount, mark, "the broken stream");
    report.check(!mount.panicked(), "a panic was logged");
    report
}

/// ring-head and ring-tail: the daemon agreed to the frame rings and then wrote an index no
/// ring can have into one of them. The stream is broken as soon as the mount reads the ring
/// (at once: it reads the replies' ring from the start) or writes its first call: the reason
/// is logged, a call fails (EIO, or the mount is already gone), and the mount ends, as for any
/// broken stream; nothing reads or writes outside the region (no crash).
fn broken_ring(mode: &str) -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start(mode);
    let got = read(&mount, "good", 4096);
    report.check(
        matches!(got, Some(Outcome::Err(_))),
        format!("read good: {} (want an error)", show(&got)),
    );
    let status = mount.wait_exit(PROMPTLY);
    report.check(
        status.is_some_and(|s| !s.success()),
        format!("schememount should exit non-zero: {status:?}"),
    );
    report.check(!mount.is_mounted(), "the mount is still there");
    let lines = reason_since(&mut report, &mount, 0, "the broken ring");
    report.check(
        lines.iter().any(|line| line.contains("ring")),
        format!("the reason should name the ring: {lines:?}"),
    );
    report.check(!mount.panicked(), "a panic was logged");
    report
}

fn ring_head() -> Report {
    broken_ring("ring-head")
}

fn ring_tail() -> Report {
    broken_ring("ring-tail")
}

fn huge_frame() -> Report {
    unsound("huge-frame", &[Outcome::Err(EIO)])
}

fn garbage() -> Report {
    unsound("garbage", &[Outcome::Ok(BAD.to_vec()), Outcome::Err(EIO)])
}

fn ghost_events() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("ghost-events");
    let mark = mount.mark();
    others_work(&mut report, &mount, "with events for unknown handles");
    let got = read(&mount, "bad", 16);
    report.check(got == Some(Outcome::Ok(BAD.to_vec())), format!("read bad: {}", show(&got)));
    hold_is_interruptible(&mut report, &mount);
    // Events for a handle nobody has open are also a normal race (a close crossing an event),
    // so a log line is reported, not required.
    let lines = mount.bridge_lines_since(mark);
    report.note(format!("{} log lines; first: {:?}", lines.len(), lines.first()));
    survives(&mut report, &mut mount);
    report
}

fn flood() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("flood");
    others_work(&mut report, &mount, "before the flood");
    let (baseline, _) = mount.memory_kib();
    let mark = mount.mark();
    // A poller of `tick`, which becomes readable halfway through the flood: its wake-up must
    // not be lost among the flood's events.
    let within = (FLOOD_WITHIN + QUICK).as_millis().to_string();
    let mut poller = Probe::start("poll", &mount.path("tick"), &within);
    let early = poller.wait(Duration::from_millis(300));
    report.check(early.is_none(), format!("poll of tick before the flood: {}", show(&early)));
    let started = Instant::now();
    let got = read(&mount, "bad", 16);
    report.check(got == Some(Outcome::Ok(BAD.to_vec())), format!("read bad: {}", show(&got)));
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while !mount.daemon_said("flood of") && started.elapsed() < FLOOD_WITHIN {
        let asked = Instant::now();
        let got = read(&mount, "good", 4096);
        slowest = slowest.max(asked.elapsed());
        rounds += 1;
        report.check(
            got == Some(Outcome::Ok(GOOD.to_vec())),
            format!("read good during the flood: {}", show(&got)),
        );
        if got.is_none() {
            break;
        }
    }
    report.check(
        mount.daemon_said("flood of"),
        format!("the flood did not finish within {FLOOD_WITHIN:?}"),
    );
    let woke = poller.wait(QUICK);
    report.check(
        woke == Some(Outcome::Ok(b"readable".to_vec())),
        format!("poller of tick (readable halfway through the flood): {}", show(&woke)),
    );
    others_work(&mut report, &mount, "after the flood");
    let (rss, peak) = mount.memory_kib();
    let (lines, bytes) = mount.log_size();
    report.note(format!(
        "{} events in {:?}; {rounds} reads of good meanwhile, slowest {slowest:?}; \
         RSS {baseline} KiB before, {rss} KiB after, peak {peak} KiB; {lines} log lines ({bytes} bytes)",
        flood_events(),
        started.elapsed()
    ));
    report.check(
        peak.saturating_sub(baseline) <= FLOOD_MEMORY_KIB,
        format!(
            "peak memory grew by {} KiB (limit {FLOOD_MEMORY_KIB})",
            peak.saturating_sub(baseline)
        ),
    );
    report.check(
        mount.mark() - mark <= FLOOD_LOG_LINES,
        format!("the flood caused {} log lines (limit {FLOOD_LOG_LINES})", mount.mark() - mark),
    );
    if let Some(line) = mount.bridge_lines_since(mark).first() {
        report.note(format!("logged: {line}"));
    }
    survives(&mut report, &mut mount);
    report
}

/// The daemon announced the compound calls, so lookups, creates and a chmod use them; an answer
/// of the wrong kind fails that one call with EIO and a logged reason.
fn compound() -> Report {
    let mut report = Report::default();
    let mut mount = Mount::start("compound");
    others_work(&mut report, &mount, "lookups by stat_path");
    let what = "lookup of bad answered with a value";
    eio_logged(&mut report, &mount, what, "a stat_path answered with a value", || {
        read(&mount, "bad", 16)
    });
    let what = "create answered with a bare stat";
    eio_logged(&mut report, &mount, what, "an open_stat answered with a stat", || {
        Probe::run("create", &mount.path("new"), "", QUICK)
    });
    let got = Probe::run("chmod", &mount.path("good"), "", QUICK);
    let chmodded = got == Some(Outcome::Ok(b"chmod".to_vec()));
    report.check(chmodded, format!("chmod of good, one on_path: {}", show(&got)));
    let what = "chmod of hold answered with data";
    let logged = eio_logged(&mut report, &mount, what, "an on_path answered with data", || {
        Probe::run("chmod", &mount.path("hold"), "", QUICK)
    });
    let named = logged.iter().any(|line| line.contains("answered data where a stat was due"));
    report.check(named, format!("the log names the wrong kind: {logged:?}"));
    hold_is_interruptible(&mut report, &mount);
    others_work(&mut report, &mount, "after answers of the wrong kind");
    survives(&mut report, &mut mount);
    report
}
