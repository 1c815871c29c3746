//! Busy polling of the wire: before a reader blocks on an empty pipe, it watches the pipe for
//! a short window, yielding the CPU between looks (Linux's `SO_BUSY_POLL`, for pipes).
//!
//! A blocked reader that the peer wakes costs a context switch, and on a virtual machine with
//! an idle vCPU a host round trip too (measured here: a pipe ping-pong between two processes
//! is 47 µs unpinned, 2.5 µs when both sides look for a while before blocking). The window is
//! short, so an idle wire still sleeps; and it is off when this thread may only run on one
//! CPU: there each look only lengthens the round trip, since the peer can run only when this
//! thread yields or blocks (measured: a pinned wire round trip 7.5 -> 8.9 µs). A look is a
//! read that does not wait ([`read_now`]), so the look that finds the bytes also takes them:
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
//! spawned daemon inherits, or from [`set_window`].

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
    if window.is_zero() || contention.backing_off() {
        return None;
    }
    let deadline = Instant::now() + window;
    loop {
        if let Some(found) = look() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        let yielded = Instant::now();
        std::thread::yield_now(); // sched_yield(2)
        if yielded.elapsed() > CONTENDED_YIELD {
            contention.back_off();
            return None;
        }
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

    fn now_ns(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    /// A yield found the CPUs busy: no polling for [`BACKOFF`].
    fn back_off(&self) {
        let until = self.now_ns() + BACKOFF.as_nanos() as u64;
        self.until_ns.fetch_max(until, Ordering::Relaxed);
    }

    fn backing_off(&self) -> bool {
        let until = self.until_ns.load(Ordering::Relaxed);
        until != 0 && self.now_ns() < until
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

/// A reader that busy-polls its descriptor for the window before each read that would block.
#[derive(Debug)]
pub struct BusyPoll<R> {
    inner: R,
    window: Duration,
    /// The kernel refused to read `inner` without waiting (`read_now`).
    nowait_refused: bool,
}

impl<R: Read + AsFd> BusyPoll<R> {
    /// Wraps `inner` with the process's [`window`].
    pub fn new(inner: R) -> BusyPoll<R> {
        BusyPoll { inner, window: window(), nowait_refused: false }
    }
}

impl<R: Read + AsFd> Read for BusyPoll<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.inner.as_fd();
        let refused = &mut self.nowait_refused;
        if let Some(got) = watch(self.window, || read_now(fd, buf, refused)) {
            return got;
        }
        self.inner.read(buf)
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
        let mut polled = BusyPoll { inner: reader, window, nowait_refused: false };
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
    fn a_hung_up_pipe_counts_as_readable_and_reads_still_return_the_data() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"last words").unwrap();
        drop(writer);
        let mut busy =
            BusyPoll { inner: reader, window: Duration::from_millis(50), nowait_refused: false };
        let mut got = String::new();
        busy.read_to_string(&mut got).unwrap();
        assert_eq!(got, "last words");
    }
}
