//! The `time:` scheme, following the Redox kernel's time scheme (kernel `src/scheme/time.rs`).
//! Paths `1` (CLOCK_REALTIME) and `4` (CLOCK_MONOTONIC), optionally `/gettime` or `/getres`.
//! Reads give the time (or resolution) as 16-byte `TimeSpec`s; written `TimeSpec`s are absolute
//! one-shot deadlines posting `EVENT_READ`. Unlike the kernel, monotonic time counts from the
//! scheme's creation (not boot), and closing a handle cancels its unfired deadlines.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use syscall::{
    Error, EventFlags, Result, SchemeMut, Stat, TimeSpec, CLOCK_MONOTONIC, CLOCK_REALTIME, EBADF,
    EINVAL, ENOENT, EVENT_READ, MODE_CHR,
};

use crate::PostEvent;

/// Size of one `TimeSpec` on the wire: `tv_sec` i64, `tv_nsec` i32, 4 padding bytes.
pub const TIMESPEC_SIZE: usize = 16;
const NANOS_PER_SEC: i128 = 1_000_000_000;
/// The clocks' resolution: one nanosecond.
const RESOLUTION: TimeSpec = TimeSpec { tv_sec: 0, tv_nsec: 1 };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    Realtime,
    Monotonic,
}

impl Clock {
    fn from_number(number: usize) -> Option<Self> {
        match number {
            CLOCK_REALTIME => Some(Clock::Realtime),
            CLOCK_MONOTONIC => Some(Clock::Monotonic),
            _ => None,
        }
    }

    fn number(self) -> usize {
        match self {
            Clock::Realtime => CLOCK_REALTIME,
            Clock::Monotonic => CLOCK_MONOTONIC,
        }
    }
}

/// What reading a handle reports: the clock's time (plain or `gettime`) or its resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Time,
    Resolution,
}

#[derive(Clone, Copy, Debug)]
struct TimeHandle {
    clock: Clock,
    view: View,
}

/// Parses `N`, `N/`, `N/gettime` or `N/getres` (leading '/' ignored) into a handle.
fn parse_path(path: &str) -> Option<TimeHandle> {
    let path = path.trim_start_matches('/');
    let (clock, sub_path) = path.split_once('/').unwrap_or((path, ""));
    let clock = Clock::from_number(clock.parse().ok()?)?;
    let view = match sub_path {
        "" | "gettime" => View::Time,
        "getres" => View::Resolution,
        _ => return None,
    };
    Some(TimeHandle { clock, view })
}

fn timespec_to_nanos(time: TimeSpec) -> i128 {
    i128::from(time.tv_sec) * NANOS_PER_SEC + i128::from(time.tv_nsec)
}

/// Splits signed nanoseconds into whole seconds (rounded down) and a 0..1e9 remainder.
fn timespec_from_nanos(nanos: i128) -> TimeSpec {
    TimeSpec {
        tv_sec: nanos.div_euclid(NANOS_PER_SEC) as i64,
        tv_nsec: nanos.rem_euclid(NANOS_PER_SEC) as i32,
    }
}

/// The in-memory `syscall::TimeSpec` layout, little endian, padding zeroed.
fn encode_timespec(time: TimeSpec) -> [u8; TIMESPEC_SIZE] {
    let mut bytes = [0u8; TIMESPEC_SIZE];
    bytes[..8].copy_from_slice(&time.tv_sec.to_le_bytes());
    bytes[8..12].copy_from_slice(&time.tv_nsec.to_le_bytes());
    bytes
}

/// Decodes one 16-byte slot; `tv_nsec` must lie in 0..1e9 (EINVAL otherwise).
fn decode_timespec(slot: &[u8]) -> Result<TimeSpec> {
    let mut sec = [0u8; 8];
    let mut nsec = [0u8; 4];
    sec.copy_from_slice(&slot[..8]);
    nsec.copy_from_slice(&slot[8..12]);
    let time = TimeSpec { tv_sec: i64::from_le_bytes(sec), tv_nsec: i32::from_le_bytes(nsec) };
    if (0..NANOS_PER_SEC as i32).contains(&time.tv_nsec) {
        Ok(time)
    } else {
        Err(Error::new(EINVAL))
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
fn realtime_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// `base` plus `nanos`; a point in the past means "now" (`base`). `None` = too far to represent,
/// i.e. never.
fn instant_after(base: Instant, nanos: i128) -> Option<Instant> {
    if nanos <= 0 {
        return Some(base);
    }
    let nanos = u64::try_from(nanos).ok()?;
    base.checked_add(Duration::from_nanos(nanos))
}

fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let len = dst.len().min(src.len());
    dst[..len].copy_from_slice(&src[..len]);
    len
}

/// One pending one-shot deadline. Ordered by time, then by arming order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    sequence: u64,
    id: usize,
}

#[derive(Default)]
struct TimerState {
    pending: BinaryHeap<Reverse<Deadline>>,
    next_sequence: u64,
    stopping: bool,
}

impl TimerState {
    /// Removes and returns, in order, the ids of all deadlines due at `now`.
    fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(Reverse(next)) = self.pending.peek() {
            if next.at > now {
                break;
            }
            due.push(next.id);
            self.pending.pop();
        }
        due
    }

    fn earliest(&self) -> Option<Instant> {
        self.pending.peek().map(|Reverse(deadline)| deadline.at)
    }
}

#[derive(Default)]
struct TimerShared {
    state: Mutex<TimerState>,
    wake: Condvar,
}

impl TimerShared {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A thread that sleeps until the earliest deadline and posts `EVENT_READ` for it.
/// Dropping the timer stops and joins the thread.
struct Timer {
    shared: Arc<TimerShared>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    fn spawn(post: PostEvent) -> io::Result<Self> {
        let shared = Arc::new(TimerShared::default());
        let for_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("time-scheme-timer".into())
            .spawn(move || run_timer(&for_thread, &post))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    fn arm(&self, id: usize, at: Instant) {
        let mut state = self.shared.lock();
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state.pending.push(Reverse(Deadline { at, sequence, id }));
        self.shared.wake.notify_one();
    }

    fn cancel(&self, id: usize) {
        self.shared.lock().pending.retain(|Reverse(deadline)| deadline.id != id);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("time scheme: timer thread panicked");
            }
        }
    }
}

/// The timer thread's loop: post what is due (outside the lock), then sleep until the next
/// deadline or until woken by a new deadline or by shutdown.
fn run_timer(shared: &TimerShared, post: &PostEvent) {
    let mut state = shared.lock();
    while !state.stopping {
        let now = Instant::now();
        let due = state.take_due(now);
        if !due.is_empty() {
            drop(state);
            for id in due {
                post(id, EVENT_READ);
            }
            state = shared.lock();
            continue;
        }
        state = match state.earliest() {
            None => shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner),
            Some(at) => {
                let timeout = at.saturating_duration_since(now);
                let waited = shared.wake.wait_timeout(state, timeout);
                waited.unwrap_or_else(PoisonError::into_inner).0
            }
        };
    }
}

/// The `time:` scheme. Never blocks; deadlines are served by a thread it owns.
pub struct TimeScheme {
    handles: HashMap<usize, TimeHandle>,
    next_id: usize,
    monotonic_zero: Instant,
    timer: Timer,
}

impl TimeScheme {
    /// Starts the timer thread, which calls `post(id, EVENT_READ)` when a deadline is due.
    pub fn new(post: PostEvent) -> io::Result<Self> {
        Ok(Self {
            handles: HashMap::new(),
            next_id: 1,
            monotonic_zero: Instant::now(),
            timer: Timer::spawn(post)?,
        })
    }

    fn lookup(&self, id: usize) -> Result<TimeHandle> {
        self.handles.get(&id).copied().ok_or(Error::new(EBADF))
    }

    fn now_nanos(&self, clock: Clock) -> i128 {
        match clock {
            Clock::Realtime => realtime_nanos(),
            Clock::Monotonic => self.monotonic_zero.elapsed().as_nanos() as i128,
        }
    }

    fn reading(&self, handle: TimeHandle) -> TimeSpec {
        match handle.view {
            View::Time => timespec_from_nanos(self.now_nanos(handle.clock)),
            View::Resolution => RESOLUTION,
        }
    }

    /// When an absolute `deadline` on `clock` falls, as an `Instant` (realtime deadlines are
    /// converted now, so later changes of the wall clock do not move them).
    fn deadline_instant(&self, clock: Clock, deadline: TimeSpec) -> Option<Instant> {
        let target = timespec_to_nanos(deadline);
        match clock {
            Clock::Monotonic => instant_after(self.monotonic_zero, target),
            Clock::Realtime => instant_after(Instant::now(), target - realtime_nanos()),
        }
    }
}

impl SchemeMut for TimeScheme {
    fn open(&mut self, path: &str, _flags: usize, _uid: u32, _gid: u32) -> Result<usize> {
        let handle = parse_path(path).ok_or(Error::new(ENOENT))?;
        let id = self.next_id;
        self.next_id += 1;
        self.handles.insert(id, handle);
        Ok(id)
    }

    /// Fills each whole 16-byte slot with the same reading; a buffer under 16 bytes gets 0.
    fn read(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let bytes = encode_timespec(self.reading(self.lookup(id)?));
        let mut filled = 0;
        for slot in buf.chunks_exact_mut(TIMESPEC_SIZE) {
            slot.copy_from_slice(&bytes);
            filled += TIMESPEC_SIZE;
        }
        Ok(filled)
    }

    /// Arms one deadline per whole 16-byte `TimeSpec`. All are validated before any is armed.
    /// A deadline too far ahead to represent is accepted and never fires.
    fn write(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
        let handle = self.lookup(id)?;
        if handle.view == View::Resolution {
            return Err(Error::new(EINVAL));
        }
        let deadlines =
            buf.chunks_exact(TIMESPEC_SIZE).map(decode_timespec).collect::<Result<Vec<_>>>()?;
        for deadline in &deadlines {
            if let Some(at) = self.deadline_instant(handle.clock, *deadline) {
                self.timer.arm(id, at);
            }
        }
        Ok(deadlines.len() * TIMESPEC_SIZE)
    }

    fn fcntl(&mut self, id: usize, _cmd: usize, _arg: usize) -> Result<usize> {
        self.lookup(id)?;
        Ok(0)
    }

    /// Nothing is ever ready "now": readiness only comes as a posted event on expiry.
    fn fevent(&mut self, id: usize, _flags: EventFlags) -> Result<EventFlags> {
        self.lookup(id)?;
        Ok(EventFlags::empty())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let handle = self.lookup(id)?;
        let suffix = match handle.view {
            View::Time => "",
            View::Resolution => "/getres",
        };
        let path = format!("time:{}{}", handle.clock.number(), suffix);
        Ok(copy_truncated(buf, path.as_bytes()))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat) -> Result<usize> {
        self.lookup(id)?;
        *stat = Stat { st_mode: MODE_CHR | 0o666, st_size: 0, st_nlink: 1, ..Stat::default() };
        Ok(0)
    }

    fn fsync(&mut self, id: usize) -> Result<usize> {
        self.lookup(id)?;
        Ok(0)
    }

    /// Also cancels the handle's deadlines that have not fired yet (one already being posted
    /// at this moment may still arrive).
    fn close(&mut self, id: usize) -> Result<usize> {
        self.handles.remove(&id).ok_or(Error::new(EBADF))?;
        self.timer.cancel(id);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::O_RDWR;

    type Arrivals = Arc<Mutex<Vec<(usize, EventFlags, Instant)>>>;

    /// A scheme whose events are recorded with their arrival time.
    fn scheme() -> (TimeScheme, Arrivals) {
        let arrivals: Arrivals = Arc::default();
        let sink = Arc::clone(&arrivals);
        let post: PostEvent = Box::new(move |id, flags| {
            sink.lock().unwrap().push((id, flags, Instant::now()));
        });
        (TimeScheme::new(post).unwrap(), arrivals)
    }

    fn wait_for_arrivals(arrivals: &Arrivals, count: usize, limit: Duration) -> usize {
        let start = Instant::now();
        while arrivals.lock().unwrap().len() < count && start.elapsed() < limit {
            thread::sleep(Duration::from_millis(1));
        }
        arrivals.lock().unwrap().len()
    }

    fn read_one(scheme: &mut TimeScheme, id: usize) -> TimeSpec {
        let mut buf = [0u8; TIMESPEC_SIZE];
        assert_eq!(scheme.read(id, &mut buf), Ok(TIMESPEC_SIZE));
        decode_timespec(&buf).unwrap()
    }

    fn plus_millis(time: TimeSpec, millis: i128) -> TimeSpec {
        timespec_from_nanos(timespec_to_nanos(time) + millis * 1_000_000)
    }

    fn deadlines(times: &[TimeSpec]) -> Vec<u8> {
        times.iter().flat_map(|time| encode_timespec(*time)).collect()
    }

    #[test]
    fn accepts_both_clocks_and_sub_paths() {
        let (mut s, _) = scheme();
        for path in ["1", "4", "/4", "4/", "1/gettime", "/4/gettime", "4/getres", "1/getres"] {
            assert!(s.open(path, O_RDWR, 0, 0).is_ok(), "{path:?}");
        }
    }

    #[test]
    fn other_clocks_and_paths_are_enoent() {
        let (mut s, _) = scheme();
        for path in ["", "/", "0", "2", "3", "5", "x", "4/timer", "4/getres/", "4//", "1/x"] {
            assert_eq!(s.open(path, O_RDWR, 0, 0), Err(Error::new(ENOENT)), "{path:?}");
        }
    }

    #[test]
    fn ids_count_up_from_one() {
        let (mut s, _) = scheme();
        assert_eq!(s.open("4", 0, 0, 0), Ok(1));
        assert_eq!(s.open("1", 0, 0, 0), Ok(2));
        s.close(2).unwrap();
        assert_eq!(s.open("1", 0, 0, 0), Ok(3));
    }

    #[test]
    fn realtime_reads_close_to_system_time() {
        let (mut s, _) = scheme();
        let id = s.open("1", O_RDWR, 0, 0).unwrap();
        let read = timespec_to_nanos(read_one(&mut s, id));
        let expected = realtime_nanos();
        assert!((expected - read).abs() < NANOS_PER_SEC, "{read} vs {expected}");
    }

    #[test]
    fn monotonic_counts_from_creation_and_never_goes_back() {
        let (mut s, _) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let first = read_one(&mut s, id);
        thread::sleep(Duration::from_millis(5));
        let second = read_one(&mut s, id);
        assert!(first.tv_sec < 5, "counts from the scheme's creation");
        assert!(timespec_to_nanos(second) - timespec_to_nanos(first) >= 5_000_000);
    }

    #[test]
    fn read_fills_each_whole_slot() {
        let (mut s, _) = scheme();
        let id = s.open("1", O_RDWR, 0, 0).unwrap();
        let mut buf = [0xAAu8; 40];
        assert_eq!(s.read(id, &mut buf), Ok(32));
        assert_eq!(&buf[12..16], &[0; 4], "padding is zero");
        assert!(decode_timespec(&buf[16..32]).is_ok());
        assert_eq!(&buf[32..], &[0xAA; 8], "the partial slot is untouched");
    }

    #[test]
    fn short_buffer_reads_zero() {
        let (mut s, _) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.read(id, &mut [0u8; 15]), Ok(0));
        assert_eq!(s.read(id, &mut []), Ok(0));
    }

    #[test]
    fn getres_reads_one_nanosecond() {
        let (mut s, _) = scheme();
        let id = s.open("4/getres", O_RDWR, 0, 0).unwrap();
        assert_eq!(read_one(&mut s, id), TimeSpec { tv_sec: 0, tv_nsec: 1 });
    }

    #[test]
    fn timespec_bytes_are_the_in_memory_layout() {
        let time = TimeSpec { tv_sec: 0x0102_0304_0506_0708, tv_nsec: 0x0A0B_0C0D };
        let bytes = encode_timespec(time);
        assert_eq!(bytes, [8, 7, 6, 5, 4, 3, 2, 1, 0xD, 0xC, 0xB, 0xA, 0, 0, 0, 0]);
        assert_eq!(decode_timespec(&bytes), Ok(time));
    }

    #[test]
    fn deadline_posts_one_read_event_when_due() {
        let (mut s, arrivals) = scheme();
        let _other = s.open("4", O_RDWR, 0, 0).unwrap();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let start = Instant::now();
        let deadline = plus_millis(read_one(&mut s, id), 50);
        assert_eq!(s.write(id, &deadlines(&[deadline])), Ok(16));

        assert_eq!(wait_for_arrivals(&arrivals, 1, Duration::from_secs(2)), 1);
        let (posted_id, flags, at) = arrivals.lock().unwrap()[0];
        assert_eq!((posted_id, flags), (id, EVENT_READ));
        let waited = at - start;
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited <= Duration::from_millis(250), "{waited:?}");
        thread::sleep(Duration::from_millis(100));
        assert_eq!(arrivals.lock().unwrap().len(), 1, "one-shot");
    }

    #[test]
    fn realtime_deadline_fires() {
        let (mut s, arrivals) = scheme();
        let id = s.open("1", O_RDWR, 0, 0).unwrap();
        let start = Instant::now();
        let deadline = plus_millis(read_one(&mut s, id), 30);
        s.write(id, &deadlines(&[deadline])).unwrap();
        assert_eq!(wait_for_arrivals(&arrivals, 1, Duration::from_secs(2)), 1);
        let (_, _, at) = arrivals.lock().unwrap()[0];
        assert!(at - start >= Duration::from_millis(25));
    }

    #[test]
    fn three_deadlines_on_one_handle_post_three_events_in_order() {
        let (mut s, arrivals) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let start = Instant::now();
        let now = read_one(&mut s, id);
        let times = [plus_millis(now, 60), plus_millis(now, 20), plus_millis(now, 40)];
        assert_eq!(s.write(id, &deadlines(&times)), Ok(48));

        assert_eq!(wait_for_arrivals(&arrivals, 3, Duration::from_secs(2)), 3);
        let arrivals = arrivals.lock().unwrap().clone();
        for (expected_millis, (posted_id, flags, at)) in [20, 40, 60].into_iter().zip(arrivals) {
            assert_eq!((posted_id, flags), (id, EVENT_READ));
            assert!(at - start >= Duration::from_millis(expected_millis));
        }
    }

    #[test]
    fn deadlines_of_different_handles_fire_in_time_order() {
        let (mut s, arrivals) = scheme();
        let late = s.open("4", O_RDWR, 0, 0).unwrap();
        let early = s.open("4", O_RDWR, 0, 0).unwrap();
        let now = read_one(&mut s, late);
        s.write(late, &deadlines(&[plus_millis(now, 60)])).unwrap();
        s.write(early, &deadlines(&[plus_millis(now, 20)])).unwrap();
        assert_eq!(wait_for_arrivals(&arrivals, 2, Duration::from_secs(2)), 2);
        let ids: Vec<usize> = arrivals.lock().unwrap().iter().map(|a| a.0).collect();
        assert_eq!(ids, [early, late]);
    }

    #[test]
    fn past_deadline_posts_at_once() {
        let (mut s, arrivals) = scheme();
        let id = s.open("1", O_RDWR, 0, 0).unwrap();
        let start = Instant::now();
        let past = plus_millis(read_one(&mut s, id), -1000);
        let long_ago = TimeSpec { tv_sec: -5, tv_nsec: 0 };
        assert_eq!(s.write(id, &deadlines(&[past, long_ago])), Ok(32));
        assert_eq!(wait_for_arrivals(&arrivals, 2, Duration::from_secs(2)), 2);
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn invalid_nanoseconds_are_einval_and_arm_nothing() {
        let (mut s, arrivals) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let good = TimeSpec { tv_sec: 0, tv_nsec: 0 };
        for tv_nsec in [-1, 1_000_000_000] {
            let bad = TimeSpec { tv_sec: 0, tv_nsec };
            assert_eq!(s.write(id, &deadlines(&[good, bad])), Err(Error::new(EINVAL)));
        }
        thread::sleep(Duration::from_millis(50));
        assert!(arrivals.lock().unwrap().is_empty());
    }

    #[test]
    fn write_counts_whole_timespecs_only() {
        let (mut s, _) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.write(id, &[0u8; 15]), Ok(0));
        let far = TimeSpec { tv_sec: i64::MAX, tv_nsec: 0 };
        let mut bytes = deadlines(&[far]);
        bytes.extend_from_slice(&[0u8; 5]);
        assert_eq!(s.write(id, &bytes), Ok(16));
    }

    #[test]
    fn writing_to_getres_is_einval() {
        let (mut s, _) = scheme();
        let id = s.open("1/getres", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.write(id, &[0u8; 16]), Err(Error::new(EINVAL)));
        let gettime = s.open("1/gettime", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.write(gettime, &[0u8; 16]), Ok(16));
    }

    #[test]
    fn close_cancels_pending_deadlines() {
        let (mut s, arrivals) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let deadline = plus_millis(read_one(&mut s, id), 30);
        s.write(id, &deadlines(&[deadline])).unwrap();
        assert_eq!(s.close(id), Ok(0));
        thread::sleep(Duration::from_millis(100));
        assert!(arrivals.lock().unwrap().is_empty());
    }

    #[test]
    fn control_calls() {
        let (mut s, _) = scheme();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.fevent(id, EVENT_READ), Ok(EventFlags::empty()));
        assert_eq!(s.fcntl(id, 4, 0), Ok(0));
        assert_eq!(s.fsync(id), Ok(0));
        let mut stat = Stat::default();
        assert_eq!(s.fstat(id, &mut stat), Ok(0));
        assert_eq!(stat.st_mode, MODE_CHR | 0o666);
        assert_eq!(stat.st_size, 0);
    }

    #[test]
    fn fpath_names_clock_and_view() {
        let (mut s, _) = scheme();
        let mut buf = [0u8; 32];
        for (path, expected) in
            [("/4/", "time:4"), ("1/gettime", "time:1"), ("4/getres", "time:4/getres")]
        {
            let id = s.open(path, O_RDWR, 0, 0).unwrap();
            let len = s.fpath(id, &mut buf).unwrap();
            assert_eq!(&buf[..len], expected.as_bytes());
        }
    }

    #[test]
    fn unknown_ids_are_ebadf() {
        let (mut s, _) = scheme();
        let ebadf = Err(Error::new(EBADF));
        assert_eq!(s.read(9, &mut [0u8; 16]), ebadf);
        assert_eq!(s.write(9, &[0u8; 16]), ebadf);
        assert_eq!(s.fcntl(9, 0, 0), ebadf);
        assert_eq!(s.fevent(9, EVENT_READ).map(|f| f.bits()), ebadf);
        assert_eq!(s.fpath(9, &mut [0u8; 8]), ebadf);
        assert_eq!(s.fstat(9, &mut Stat::default()), ebadf);
        assert_eq!(s.fsync(9), ebadf);
        assert_eq!(s.close(9), ebadf);
    }

    #[test]
    fn drop_stops_and_joins_the_timer_thread() {
        let alive = Arc::new(());
        let held_by_thread = Arc::clone(&alive);
        let post: PostEvent = Box::new(move |_, _| {
            let _keep = Arc::strong_count(&held_by_thread);
        });
        let mut s = TimeScheme::new(post).unwrap();
        let id = s.open("4", O_RDWR, 0, 0).unwrap();
        let in_an_hour = plus_millis(read_one(&mut s, id), 3_600_000);
        s.write(id, &deadlines(&[in_an_hour])).unwrap();
        assert_eq!(Arc::strong_count(&alive), 2);

        let start = Instant::now();
        drop(s);
        assert!(start.elapsed() < Duration::from_secs(1), "does not wait for deadlines");
        assert_eq!(Arc::strong_count(&alive), 1, "thread exited and dropped its poster");
    }
}
