//! Busy polling of the wire: before a reader blocks on an empty pipe, it watches the pipe for
//! a short window, yielding the CPU between looks (Linux's `SO_BUSY_POLL`, for pipes).
//!
//! A blocked reader that the peer wakes costs a context switch, and on a virtual machine with
//! an idle vCPU a host round trip too (measured here: a pipe ping-pong between two processes
//! is 47 µs unpinned, 2.5 µs when both sides look for a while before blocking). The window is
//! short, so an idle wire still sleeps; and it is off when this thread may only run on one
//! CPU: there each look only lengthens the round trip, since the peer can run only when this
//! thread yields or blocks (measured: a pinned wire round trip 7.5 -> 8.9 µs). A look is a
//! read that does not wait (`read_now`), so the look that finds the bytes also takes them:
//! one system call where a `poll` and then a `read` were two (unpinned wire round trip 3.9 ->
//! 3.0 µs, medians of 5 alternating runs).
//!
//! A parking daemon's thread watches the queue its wire reader thread fills the same way
//! (`SchemeSocket::next_packets`): handing a call to a sleeping thread costs that wake-up too.
//!
//! Polling only pays while a CPU is free. When the CPUs are busy (more runnable threads than
//! CPUs), a look that yields hands the CPU to another thread for a time slice, and the polling
//! threads lengthen every run queue. Measured with 64 clients on 2 vCPUs (the soak, 120 s):
//! with polling, 194-373 calls over 100 ms per run and a slowest of 136-237 ms, in convoys
//! behind the kernel's rename lock; without, none over 100 ms, at the same throughput. So a
//! yield that kept the thread off the CPU for longer than [`CONTENDED_YIELD`] ends the window,
//! and every thread of the process blocks at once instead of polling for the next [`BACKOFF`].
//! With that rule the 120 s soak had 0-10 calls over 100 ms (the 10-minute one 24, slowest
//! 116 ms), and an unpinned 4 KiB pread kept its speed (1.03x the time of the build before,
//! medians of 9 alternating); no benchmark workload on a quiet machine makes a yield that long.
//! A threshold of 20 µs caught the hand-offs of a single pread (2.7x its time); 1 ms and 2 ms
//! left 19 and 41-49 calls over 100 ms in the soak.
//!
//! The window comes from `SCHEME_BRIDGE_BUSY_POLL_US` (microseconds; 0 turns it off), which a
//! spawned daemon inherits, or from [`set_window`]. A [`BusyPoll::following_streams`] reader
//! (the mount's reply reader) stretches it across the gaps between its messages while they come
//! in a steady stream a little further apart than that, up to [`STREAM_GAP`] (`Gaps`).

use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::{preadv2, Errno, ReadWriteFlags};

/// The environment variable with the window in microseconds.
pub const ENV: &str = "SCHEME_BRIDGE_BUSY_POLL_US";

/// The window when the environment does not say.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(50);

/// The longest window accepted (a larger one only burns CPU).
pub const MAX_WINDOW: Duration = Duration::from_millis(10);

/// A yield that kept the thread off the CPU longer than this found the CPUs busy.
pub const CONTENDED_YIELD: Duration = Duration::from_micros(500);

/// How long the process does not poll after a contended yield.
pub const BACKOFF: Duration = Duration::from_millis(2);

/// The longest gap between messages a [`BusyPoll`] reader watches across (`Gaps`).
pub const STREAM_GAP: Duration = Duration::from_micros(300);

/// The process's polling threads' shared view of whether the CPUs are busy.
static CONTENTION: Contention = Contention::new();

/// Microseconds set by [`set_window`]; `u64::MAX`: not set.
static WINDOW_SET: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets this process's window (before the wires are made), overriding the environment.
pub fn set_window(window: Duration) {
    let micros = window.min(MAX_WINDOW).as_micros() as u64;
    WINDOW_SET.store(micros, Ordering::Relaxed);
}

/// The window for a new wire: [`configured`], or zero if this thread may only run on one CPU.
pub fn window() -> Duration {
    static ONE_CPU: OnceLock<bool> = OnceLock::new();
    if *ONE_CPU.get_or_init(|| std::thread::available_parallelism().map_or(true, |n| n.get() < 2)) {
        return Duration::ZERO;
    }
    configured()
}

/// The window asked for: the one set, else the environment's, else the default. A spawned
/// daemon should be given this in [`ENV`].
pub fn configured() -> Duration {
    match WINDOW_SET.load(Ordering::Relaxed) {
        u64::MAX => window_from_env(std::env::var(ENV).ok().as_deref()),
        micros => Duration::from_micros(micros),
    }
}

/// Parses the environment's value; a bad one is reported and the default used.
fn window_from_env(value: Option<&str>) -> Duration {
    let Some(value) = value else { return DEFAULT_WINDOW };
    match value.trim().parse::<u64>() {
        Ok(micros) => Duration::from_micros(micros).min(MAX_WINDOW),
        Err(_) => {
            log::warn!("{ENV}={value:?} is not a number of microseconds; using the default");
            DEFAULT_WINDOW
        }
    }
}

/// Looks with `look` for up to `window`, yielding the CPU between looks: what the first
/// successful look found, or `None` once the window is over (at once for a zero window, or
/// while the process backs off from busy CPUs).
pub(crate) fn watch<T>(window: Duration, look: impl FnMut() -> Option<T>) -> Option<T> {
    watch_with(&CONTENTION, window, look)
}

fn watch_with<T>(
    contention: &Contention,
    window: Duration,
    mut look: impl FnMut() -> Option<T>,
) -> Option<T> {
    if window.is_zero() {
        return None;
    }
    // One clock read per look, the first one shared with the back-off check: on one CPU every
    // yield is a switch to the peer and back, and the reads showed up in the pinned pread's
    // profile.
    let mut now = Instant::now();
    if contention.backing_off_at(now) {
        return None;
    }
    let deadline = now + window;
    loop {
        if let Some(found) = look() {
            return Some(found);
        }
        if now >= deadline {
            return None;
        }
        std::thread::yield_now(); // sched_yield(2)
        let after = Instant::now();
        if after > now + CONTENDED_YIELD {
            contention.back_off(after);
            return None;
        }
        now = after;
    }
}

/// Until when polling threads block at once: nanoseconds after `epoch` (0: never).
#[derive(Debug)]
struct Contention {
    epoch: OnceLock<Instant>,
    until_ns: AtomicU64,
}

impl Contention {
    const fn new() -> Contention {
        Contention { epoch: OnceLock::new(), until_ns: AtomicU64::new(0) }
    }

    /// `at` in nanoseconds after the epoch (the first time asked about).
    fn ns_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(*self.epoch.get_or_init(|| at)).as_nanos() as u64
    }

    /// A yield that ended `at` found the CPUs busy: no polling for [`BACKOFF`] from then.
    fn back_off(&self, at: Instant) {
        let until = self.ns_at(at) + BACKOFF.as_nanos() as u64;
        self.until_ns.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether polling threads block at once at `at`.
    fn backing_off_at(&self, at: Instant) -> bool {
        let until = self.until_ns.load(Ordering::Relaxed);
        until != 0 && self.ns_at(at) < until
    }

    #[cfg(test)]
    fn backing_off(&self) -> bool {
        self.backing_off_at(Instant::now())
    }
}

/// Whether a read of `fd` would return at once.
fn ready_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
}

/// Reads what `fd` holds now into `buf`, without waiting: `None` if it holds nothing (and is
/// still open). One `preadv2` with `RWF_NOWAIT`, where a look with `poll` and then the `read`
/// would be two system calls. If the kernel refuses such a read of `fd` (an old kernel, or an
/// input that is not a pipe, such as a tty), `refused` is set and from then on the caller's
/// reads look with `poll` first.
pub(crate) fn read_now(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    refused: &mut bool,
) -> Option<io::Result<usize>> {
    if !*refused {
        // u64::MAX: the descriptor's own position, as `read` uses (a pipe has none to set).
        match preadv2(fd, &mut [IoSliceMut::new(buf)], u64::MAX, ReadWriteFlags::NOWAIT) {
            Ok(got) => return Some(Ok(got)),
            Err(Errno::AGAIN) => return None,
            // Refused for this kind of file (a tty, a socket) or by this kernel.
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS | Errno::SPIPE) => {
                log::debug!("the kernel cannot read this input without waiting; polling first");
                *refused = true;
            }
            Err(Errno::INTR) => return None,
            Err(err) => return Some(Err(err.into())),
        }
    }
    ready_now(fd).then(|| rustix::io::read(fd, buf).map_err(io::Error::from))
}

/// How long a reader has been waiting for its messages lately, to size its window.
///
/// A steady stream of requests (a sequential writer's 128 KiB writes, a reader's 1 MiB
/// O_DIRECT reads) leaves gaps of 100-300 µs between the daemon's answers, longer than the
/// window: each one ends with the mount's reply reader asleep, and its vCPU halted until the
/// host wakes it. A longer window for every wait costs where calls are sparse or irregular
/// (a fixed 200 µs: create+stat+unlink -25% files/s and 4 KiB preads +16% the time, in one
/// alternating run), so a reader watches across a gap only while its last [`STREAK`] waits
/// were each longer than the window and its typical wait is at most [`STREAM_GAP`]: a stream.
/// A wait that found the message at once is not counted; a short wait or a long one (sparse
/// calls) brings the base window back.
///
/// Only the mount's reply reader follows streams (`Client::spawn`). Measured against the
/// fixed window (mounts of both builds alternating, unpinned, medians of 9): 128 KiB writes
/// 1.37-1.40x the throughput (buffered, O_DIRECT), 1 MiB O_DIRECT reads 1.12x, 1 MiB O_DIRECT
/// writes 1.02x, cold buffered reads 0.96x (15 pairs). A create+stat+unlink loop does not
/// stretch it (3 of about 4,000 waits, counted). With the daemon's reader following streams as
/// well, cold buffered reads lost 6-18% (the kernel's readahead keeps the reading program busy
/// on one CPU while both pollers spin).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Gaps {
    /// A moving average of the waits that had to wait (each weighs a quarter), nanoseconds.
    typical_ns: u64,
    /// How many waits in a row were longer than the base window and shorter than a stream's
    /// gaps can be (waits of a create+stat+unlink loop mix short and long ones).
    streak: u32,
}

/// Waits in a row, each longer than the base window, that make a stream.
const STREAK: u32 = 4;

impl Gaps {
    /// The window for the next wait: a quarter longer than the typical wait of a stream, else
    /// `base` (never longer than [`STREAM_GAP`]; zero stays zero).
    pub(crate) fn window(&self, base: Duration) -> Duration {
        let typical = Duration::from_nanos(self.typical_ns);
        if base.is_zero() || self.streak < STREAK || typical <= base || typical > STREAM_GAP {
            return base;
        }
        (typical + typical / 4).min(STREAM_GAP)
    }

    /// Counts a wait that ended with a message, `waited` after the first look found none,
    /// with `base` the window the reader was given.
    pub(crate) fn waited(&mut self, waited: Duration, base: Duration) {
        // A wait that ended asleep also counts the wake-up: a stream's may be that much longer.
        let in_stream = waited > base && waited <= 2 * STREAM_GAP;
        self.streak = if in_stream { self.streak.saturating_add(1) } else { 0 };
        let waited = waited.as_nanos().min(u128::from(u64::MAX / 4)) as u64;
        self.typical_ns = (3 * self.typical_ns + waited) / 4;
    }
}

/// A reader that busy-polls its descriptor for the window before each read that would block;
/// made with [`BusyPoll::following_streams`], it stretches the window across the gaps of a
/// steady stream (`Gaps`).
#[derive(Debug)]
pub struct BusyPoll<R> {
    inner: R,
    window: Duration,
    /// What it saw of the gaps between messages, if its window follows them.
    gaps: Option<Gaps>,
    /// The kernel refused to read `inner` without waiting (`read_now`).
    nowait_refused: bool,
}

impl<R: Read + AsFd> BusyPoll<R> {
    /// Wraps `inner` with the process's [`window`].
    pub fn new(inner: R) -> BusyPoll<R> {
        BusyPoll::with_window(inner, window(), None)
    }

    /// Like [`BusyPoll::new`], but the window stretches across the gaps of a steady stream of
    /// messages (`Gaps`).
    pub fn following_streams(inner: R) -> BusyPoll<R> {
        BusyPoll::with_window(inner, window(), Some(Gaps::default()))
    }

    fn with_window(inner: R, window: Duration, gaps: Option<Gaps>) -> BusyPoll<R> {
        BusyPoll { inner, window, gaps, nowait_refused: false }
    }
}

impl<R: Read + AsFd> Read for BusyPoll<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.window.is_zero() {
            return self.inner.read(buf);
        }
        let window = self.gaps.map_or(self.window, |gaps| gaps.window(self.window));
        let (fd, refused) = (self.inner.as_fd(), &mut self.nowait_refused);
        // Only a reader following streams measures its waits.
        let (started, mut looks) = (self.gaps.map(|_| Instant::now()), 0);
        let got = match watch(window, || {
            looks += 1;
            read_now(fd, buf, refused)
        }) {
            Some(got) if looks == 1 => return got, // no wait: nothing to count
            Some(got) => got,
            // Backing off from busy CPUs: no look, so no wait of the stream's to measure.
            None if looks == 0 => return self.inner.read(buf),
            None => self.inner.read(buf),
        };
        if let (Some(gaps), Some(started), Ok(1..)) = (&mut self.gaps, started, &got) {
            gaps.waited(started.elapsed(), self.window);
        }
        got
    }
}

impl<R: AsFd> AsFd for BusyPoll<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_environment_sets_the_window_and_a_bad_value_keeps_the_default() {
        assert_eq!(window_from_env(None), DEFAULT_WINDOW);
        assert_eq!(window_from_env(Some("0")), Duration::ZERO);
        assert_eq!(window_from_env(Some(" 120 ")), Duration::from_micros(120));
        assert_eq!(window_from_env(Some("a lot")), DEFAULT_WINDOW);
        assert_eq!(window_from_env(Some("99999999")), MAX_WINDOW);
    }

    #[test]
    fn sees_data_written_during_the_window_and_gives_up_after_it() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let started = Instant::now();
        let contention = Contention::new();
        let readable = || ready_now(reader.as_fd()).then_some(());
        assert!(watch_with(&contention, Duration::from_millis(20), readable).is_none());
        // (Other tests running at once can make a yield find the CPU busy: that ends it early.)
        assert!(started.elapsed() >= Duration::from_millis(20) || contention.backing_off());
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            writer.write_all(b"x").unwrap();
            writer
        });
        let contention = Contention::new();
        let readable = || ready_now(reader.as_fd()).then_some(());
        let seen = watch_with(&contention, Duration::from_secs(5), readable).is_some();
        assert!(seen || contention.backing_off());
        drop(late.join().unwrap());
        let (tiny, zero) = (Duration::from_micros(1), Duration::ZERO);
        assert!(watch_with(&Contention::new(), tiny, readable).is_some(), "still readable");
        assert!(watch_with(&contention, zero, readable).is_none(), "a zero window never looks");
    }

    #[test]
    fn a_read_now_takes_what_the_pipe_holds_and_never_waits() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (mut buf, mut refused) = ([0; 8], false);
        let mut read = |buf: &mut [u8]| read_now(reader.as_fd(), buf, &mut refused);
        assert!(read(&mut buf).is_none(), "an empty pipe: nothing");
        writer.write_all(b"abc").unwrap();
        assert_eq!(read(&mut buf).unwrap().unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        assert!(read(&mut buf).is_none(), "and nothing again");
        drop(writer);
        assert_eq!(read(&mut buf).unwrap().unwrap(), 0, "end of stream");
        assert!(!refused);
    }

    #[test]
    fn where_the_kernel_refuses_reads_that_do_not_wait_a_look_comes_first() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (mut buf, mut refused) = ([0; 8], true);
        let mut read = |buf: &mut [u8]| read_now(reader.as_fd(), buf, &mut refused);
        assert!(read(&mut buf).is_none());
        writer.write_all(b"xy").unwrap();
        assert_eq!(read(&mut buf).unwrap().unwrap(), 2);
        drop(writer);
        assert_eq!(read(&mut buf).unwrap().unwrap(), 0);
    }

    #[test]
    fn a_socket_is_read_without_waiting_too_one_way_or_the_other() {
        let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut buf, mut refused) = ([0; 8], false);
        assert!(read_now(reader.as_fd(), &mut buf, &mut refused).is_none());
        writer.write_all(b"hey").unwrap();
        assert_eq!(read_now(reader.as_fd(), &mut buf, &mut refused).unwrap().unwrap(), 3);
        assert_eq!(&buf[..3], b"hey");
    }

    #[test]
    fn a_busy_polling_reader_gets_bytes_written_during_its_window_and_then_waits() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let window = Duration::from_millis(200);
        let mut polled = BusyPoll::with_window(reader, window, None);
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            writer.write_all(b"in window").unwrap();
            std::thread::sleep(Duration::from_millis(400));
            writer.write_all(b"late").unwrap();
        });
        let mut buf = [0; 16];
        let got = polled.read(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"in window");
        let got = polled.read(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"late", "blocks after the window");
        feeder.join().unwrap();
    }

    #[test]
    fn a_yield_that_finds_the_cpu_busy_ends_the_window_and_the_next_ones() {
        // This thread and a spinning one on the same CPU: the first yield gives the spinner a
        // whole time slice (milliseconds).
        let cpu = rustix::thread::sched_getcpu();
        let mut one = rustix::thread::CpuSet::new();
        one.set(cpu);
        rustix::thread::sched_setaffinity(None, &one).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = std::thread::spawn({
            let stop = std::sync::Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            }
        });
        let contention = Contention::new();
        let started = Instant::now();
        let window = Duration::from_secs(2);
        assert_eq!(watch_with(&contention, window, || None::<()>), None);
        let gave_up = started.elapsed();
        assert!(contention.backing_off(), "a busy CPU starts the back-off");
        let again = Instant::now();
        assert_eq!(watch_with(&contention, window, || None::<()>), None);
        assert!(again.elapsed() < Duration::from_millis(1), "no polling while backing off");
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(gave_up < window / 2, "gave up after {gave_up:?}, window {window:?}");
        // An idle CPU polls the whole window.
        let idle = Contention::new();
        assert!(!idle.backing_off());
        let found = watch_with(&idle, Duration::from_millis(5), || Some(7));
        assert_eq!(found, Some(7));
    }

    #[test]
    fn the_window_follows_a_steady_stream_of_gaps_but_not_sparse_calls() {
        let base = Duration::from_micros(50);
        let mut gaps = Gaps::default();
        let us = Duration::from_micros;
        assert_eq!(gaps.window(base), base, "nothing seen yet");
        for _ in 0..60 {
            gaps.waited(us(160), base);
        }
        let window = gaps.window(base).as_micros();
        assert!((199..=200).contains(&window), "a quarter over the gap: {window} µs");
        assert_eq!(gaps.window(Duration::ZERO), Duration::ZERO, "off stays off");
        gaps.waited(Duration::from_millis(5), base);
        assert_eq!(gaps.window(base), base, "one long wait: calls are sparse");
        for _ in 0..60 {
            gaps.waited(us(280), base);
        }
        assert_eq!(gaps.window(base), STREAM_GAP, "never over the longest stream gap");
        gaps.waited(us(10), base);
        assert_eq!(gaps.window(base), base, "a short wait breaks the streak");
        for _ in 0..STREAK - 1 {
            gaps.waited(us(280), base);
        }
        assert_eq!(gaps.window(base), base, "not yet a stream again");
        gaps.waited(us(280), base);
        assert_eq!(gaps.window(base), STREAM_GAP, "a stream again");
        for _ in 0..60 {
            gaps.waited(us(10), base);
            gaps.waited(us(200), base);
        }
        assert_eq!(gaps.window(base), base, "short and long waits mixed: no stream");
    }

    #[test]
    fn a_reader_following_streams_counts_the_waits_that_waited() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let base = Duration::from_millis(50);
        let mut polled = BusyPoll::with_window(reader, base, Some(Gaps::default()));
        writer.write_all(b"at once").unwrap();
        let mut buf = [0; 16];
        assert_eq!(polled.read(&mut buf).unwrap(), 7);
        assert_eq!(polled.gaps.unwrap().typical_ns, 0, "found at once: no wait counted");
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(40));
            writer.write_all(b"later").unwrap();
        });
        assert_eq!(polled.read(&mut buf).unwrap(), 5);
        feeder.join().unwrap();
        // A quarter of a wait of at least 10 ms (the feeder may start sleeping a little early).
        assert!(polled.gaps.unwrap().typical_ns >= 10_000_000 / 4, "{:?}", polled.gaps);
    }

    #[test]
    fn a_hung_up_pipe_counts_as_readable_and_reads_still_return_the_data() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"last words").unwrap();
        drop(writer);
        let mut busy = BusyPoll::with_window(reader, Duration::from_millis(50), None);
        let mut got = String::new();
        busy.read_to_string(&mut got).unwrap();
        assert_eq!(got, "last words");
    }
}
