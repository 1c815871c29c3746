//! Tracing of scheme calls (`schememount -d`): one stderr line per answered call with its tag,
//! arguments, result and latency, and a per-call summary (count, min/median/max latency).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use scheme_protocol::{Call, Reply, Tag};

use crate::client::CallResult;

/// Collects call timings; shared by every client of a mount.
#[derive(Debug, Default)]
pub struct Trace {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    started: HashMap<Tag, (Instant, &'static str, String)>,
    latencies: HashMap<&'static str, Vec<Duration>>,
}

impl Trace {
    /// A new, empty trace.
    pub fn new() -> Trace {
        Trace::default()
    }

    pub(crate) fn started(&self, tag: Tag, call: &Call) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.started.insert(tag, (Instant::now(), call.name(), call.to_string()));
    }

    pub(crate) fn finished(&self, tag: Tag, result: &CallResult<Reply>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((start, name, text)) = inner.started.remove(&tag) else { return };
        let latency = start.elapsed();
        inner.latencies.entry(name).or_default().push(latency);
        drop(inner);
        eprintln!("[{:>6}] {text} -> {} ({latency:?})", tag.0, outcome(result));
    }

    /// The summary table: one line per call name, sorted by name.
    pub fn summary(&self) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<_> = inner.latencies.keys().copied().collect();
        names.sort_unstable();
        let mut out =
            format!("{:<10} {:>8} {:>12} {:>12} {:>12}\n", "call", "count", "min", "median", "max");
        for name in names {
            let times = inner.latencies.get_mut(name).expect("listed");
            times.sort_unstable();
            let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
            let count = times.len();
            let _ = writeln!(out, "{name:<10} {count:>8} {min:>12?} {median:>12?} {max:>12?}");
        }
        out
    }
}

fn outcome(result: &CallResult<Reply>) -> String {
    match result {
        Ok(Reply::Value(value)) => format!("{value}"),
        Ok(Reply::Data(bytes)) => format!("{} bytes", bytes.len()),
        Ok(Reply::Stat(stat)) => format!("stat mode={:#o} size={}", stat.st_mode, stat.st_size),
        Ok(Reply::StatVfs(vfs)) => format!("statvfs blocks={}", vfs.f_blocks),
        Ok(Reply::Opened { fd, stat }) => {
            format!("{} stat mode={:#o} size={}", fd.0, stat.st_mode, stat.st_size)
        }
        Err(err) => format!("error {err}"),
    }
}
