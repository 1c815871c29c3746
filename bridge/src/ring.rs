//! Frame rings: the wire's bytes in shared memory instead of the pipes (PROTOCOL.md, "Frame
//! rings"). A spawned daemon's payload region ends with two rings, one each way; once both
//! hellos offer `FEATURE_RING`, every later frame goes through them, and the pipes carry only
//! wake-ups and hang-ups. A reader that finds its ring empty watches it for the busy-poll window
//! (a look is a load, not a system call, so this pays even on one CPU, where a yield hands the
//! CPU straight to the peer), then says it will sleep and sleeps in `poll` on its pipe; a writer
//! that sees the sleeper writes one byte into that pipe. A writer that finds the ring full
//! waits on a futex word that the reader bumps once it has made room.
//!
//! Each side treats the ring as the other side's memory: every index read from it is checked
//! before use, so a peer that scribbles on it can garble the stream (which the frame reader
//! then rejects) but not make this side read or write outside the region.

use std::io::{self, BufReader, IoSlice, Write};
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::thread::futex;

use scheme_protocol::{FrameReader, FrameWriter};

use crate::region::{Region, SLOTS, SLOT_SIZE};
use crate::source::Source;

/// Bytes of a ring's header: its indices and flags, each on a cache line of its own.
pub const HEADER: usize = 4096;
/// Bytes of a ring's data, as much as a pipe to a daemon holds: a frame of up to 1 MiB crosses
/// in one step (larger ones, such as a 1 MiB stream write with its header, in two).
pub const BYTES: usize = 1 << 20;
/// Where the rings start in a region: after its payload slots.
pub const START: usize = SLOTS * SLOT_SIZE;
/// Bytes a region needs past its slots for both rings.
pub const AREA: usize = 2 * (HEADER + BYTES);

/// Header offset of `head`: bytes ever written (the writer's).
pub const HEAD: u64 = 0;
/// Header offset of `tail`: bytes ever read (the reader's).
pub const TAIL: u64 = 64;
/// Header offsets. `SLEEPING`: 1 while the reader may sleep on its pipe; `WAITING`: 1 while the
/// writer may sleep for room; `ROOM`: bumped by the reader when it made room for a waiter.
const SLEEPING: u64 = 128;
const WAITING: u64 = 192;
const ROOM: u64 = 256;

/// How long a writer waiting for room sleeps before it looks whether the reader is gone.
const ROOM_TICK: Duration = Duration::from_millis(20);

/// Which of the two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Calls: caller side -> daemon.
    ToDaemon,
    /// Replies and events: daemon -> caller side.
    ToCaller,
}

/// One ring in a mapped region.
#[derive(Debug)]
struct Ring {
    region: Arc<Region>,
    /// The header's offset in the region; the data follows it.
    at: u64,
}

impl Direction {
    /// The offset of this ring's header in a region.
    pub fn header_at(self) -> u64 {
        let index = match self {
            Direction::ToDaemon => 0,
            Direction::ToCaller => 1,
        };
        (START + index * (HEADER + BYTES)) as u64
    }
}

impl Ring {
    /// The ring `direction` of `region`; `None` if the region is too small to hold both.
    fn new(region: Arc<Region>, direction: Direction) -> Option<Ring> {
        if !fits(region.len()) {
            return None;
        }
        Some(Ring { region, at: direction.header_at() })
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        self.region.atomic_u64(self.at + offset).expect("ring header inside the region")
    }

    fn flag(&self, offset: u64) -> &AtomicU32 {
        self.region.atomic_u32(self.at + offset).expect("ring header inside the region")
    }

    /// Where `len` bytes of the stream from `position` lie in the region: up to the end of the
    /// data, then from its start (the second piece empty unless they wrap), each as the region
    /// offset and the range of the bytes it takes.
    fn pieces(&self, position: u64, len: usize) -> [(u64, Range<usize>); 2] {
        let data = self.at + HEADER as u64;
        let index = (position % BYTES as u64) as usize;
        let first = len.min(BYTES - index);
        [(data + index as u64, 0..first), (data, first..len)]
    }
}

/// The environment variable that turns frame rings off (`0`) for a caller side or daemon.
pub const ENV_ENABLE: &str = "SCHEME_BRIDGE_RING";

/// Whether a side offers the rings in its hello: its region of `region_len` bytes has room
/// for them, [`ENV_ENABLE`] is not `0`, it holds the peer's pipe to wake it (`can_wake`), and
/// it reads its wire from a pipe it can sleep on (`can_sleep`).
pub(crate) fn offered(region_len: usize, can_wake: bool, can_sleep: bool) -> bool {
    can_wake
        && can_sleep
        && fits(region_len)
        && std::env::var(ENV_ENABLE).map_or(true, |v| v.trim() != "0")
}

/// Whether a region of this many bytes has room for both rings after its slots.
fn fits(region_len: usize) -> bool {
    region_len >= START + AREA
}

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct RingWriter {
    ring: Ring,
    /// Bytes written so far (the `HEAD` this side publishes).
    head: u64,
    /// The reader's pipe, for its wake-ups; also how a reader that died is noticed.
    pipe: OwnedFd,
    /// How long a writer watches for room before it sleeps.
    window: Duration,
}

impl RingWriter {
    /// Writes into ring `direction` of `region` (a fresh one: the stream starts at byte 0),
    /// waking its reader through `pipe`.
    pub(crate) fn new(
        region: Arc<Region>,
        direction: Direction,
        pipe: OwnedFd,
        window: Duration,
    ) -> Option<RingWriter> {
        let ring = Ring::new(region, direction)?;
        Some(RingWriter { ring, head: 0, pipe, window })
    }

    /// Bytes free now; an error if the reader's index makes no sense.
    fn room(&self) -> io::Result<usize> {
        let tail = self.ring.word(TAIL).load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame ring: the peer's read index is out of range",
            ));
        }
        Ok(BYTES - used as usize)
    }

    /// Copies `bytes` at the head (they fit: the caller checked the room).
    fn copy_in(&self, position: u64, bytes: &[u8]) {
        for (at, range) in self.ring.pieces(position, bytes.len()) {
            let copied = self.ring.region.copy_in(at, &bytes[range]);
            debug_assert!(copied, "ring data inside the region");
        }
    }

    /// Makes `written` more bytes visible, waking the reader if it said it would sleep.
    fn publish(&mut self, written: usize) -> io::Result<()> {
        self.head = self.head.wrapping_add(written as u64);
        self.ring.word(HEAD).store(self.head, Ordering::Release);
        // Pairs with the fence in `RingReader::arm`: either it sees the new head, or this sees
        // its flag.
        fence(Ordering::SeqCst);
        let sleeping = self.ring.flag(SLEEPING);
        if sleeping.load(Ordering::Relaxed) != 0 && sleeping.swap(0, Ordering::AcqRel) != 0 {
            // The bytes are out: a signal must not make the caller write them again.
            loop {
                match rustix::io::write(&self.pipe, &[0]) {
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(err) => return Err(err.into()),
                    Ok(_) => break,
                }
            }
        }
        Ok(())
    }

    /// Waits until the ring has room, or fails if the reader has gone.
    fn wait_for_room(&self) -> io::Result<()> {
        let roomy = || self.room().map_or(true, |room| room > 0);
        if crate::busy_poll::watch(self.window, || roomy().then_some(())).is_some() {
            return Ok(());
        }
        let (waiting, room) = (self.ring.flag(WAITING), self.ring.flag(ROOM));
        loop {
            let seen = room.load(Ordering::Acquire);
            waiting.store(1, Ordering::SeqCst);
            // Pairs with the fence in `RingReader::read_now`.
            fence(Ordering::SeqCst);
            if self.room()? > 0 {
                return Ok(());
            }
            let tick = Timespec::try_from(ROOM_TICK).ok();
            // Not private: the word is shared with another process. Any outcome (woken, timed
            // out, the word already changed, interrupted) means: look again.
            let woken = futex::wait(room, futex::Flags::empty(), seen, tick.as_ref());
            if self.room()? > 0 {
                return Ok(());
            }
            if woken.is_ok() || woken == Err(rustix::io::Errno::AGAIN) {
                // Woken, or the word had moved, with still no room: an honest reader bumps it
                // only once it made room, so this is a peer bumping it for nothing. Pause
                // rather than spin while holding the writer.
                std::thread::sleep(ROOM_TICK / 20);
            }
            if reader_gone(&self.pipe) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
    }
}

/// Whether the read end of the pipe `write_end` has closed.
fn reader_gone(write_end: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(write_end, PollFlags::empty())];
    let gone = PollFlags::ERR | PollFlags::HUP;
    matches!(poll(&mut fds, Some(&Timespec::default())), Ok(1..))
        && fds[0].revents().intersects(gone)
}

impl Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Copies as much of `bufs` as the ring has room for, waiting for some room if it has
    /// none, and publishes it at once.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|buf| buf.is_empty()) {
            return Ok(0);
        }
        let room = loop {
            match self.room()? {
                0 => self.wait_for_room()?,
                room => break room,
            }
        };
        let mut written = 0;
        for buf in bufs {
            let take = buf.len().min(room - written);
            self.copy_in(self.head.wrapping_add(written as u64), &buf[..take]);
            written += take;
            if written == room {
                break;
            }
        }
        self.publish(written)?;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end of a ring: what faces the peer's writes (public for the fuzz target).
#[derive(Debug)]
pub struct RingReader {
    ring: Ring,
    /// Bytes read so far (the `TAIL` this side publishes).
    tail: u64,
    /// The sleeping flag is set.
    armed: bool,
}

impl RingReader {
    /// Reads ring `direction` of `region` (a fresh one: the stream starts at byte 0).
    pub fn new(region: Arc<Region>, direction: Direction) -> Option<RingReader> {
        let ring = Ring::new(region, direction)?;
        Some(RingReader { ring, tail: 0, armed: false })
    }

    /// Bytes waiting; an error if the writer's index makes no sense.
    fn waiting(&self) -> io::Result<usize> {
        let head = self.ring.word(HEAD).load(Ordering::Acquire);
        let waiting = head.wrapping_sub(self.tail);
        if waiting > BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame ring: the peer's write index is out of range",
            ));
        }
        Ok(waiting as usize)
    }

    /// Whether the ring holds bytes now (a bad index counts: the read reports it).
    pub fn has_bytes(&self) -> bool {
        self.waiting().map_or(true, |waiting| waiting > 0)
    }

    /// Reads what the ring holds now into `buf`, never waiting: 0 if it holds nothing.
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.waiting()?.min(buf.len());
        if got == 0 {
            return Ok(0);
        }
        for (at, range) in self.ring.pieces(self.tail, got) {
            let copied = self.ring.region.copy_to(at, &mut buf[range]);
            debug_assert!(copied, "ring data inside the region");
        }
        self.tail = self.tail.wrapping_add(got as u64);
        self.ring.word(TAIL).store(self.tail, Ordering::Release);
        if self.armed {
            self.armed = false;
            self.ring.flag(SLEEPING).store(0, Ordering::Relaxed);
        }
        // Pairs with the fence in `RingWriter::wait_for_room`.
        fence(Ordering::SeqCst);
        let waiting = self.ring.flag(WAITING);
        if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::AcqRel) != 0 {
            let room = self.ring.flag(ROOM);
            room.fetch_add(1, Ordering::Release);
            let _ = futex::wake(room, futex::Flags::empty(), 1);
        }
        Ok(got)
    }

    /// Says this reader will sleep on its pipe until the writer writes a byte into it;
    /// `false` if the ring holds bytes already (read them instead).
    pub fn arm(&mut self) -> io::Result<bool> {
        self.ring.flag(SLEEPING).store(1, Ordering::SeqCst);
        self.armed = true;
        // Pairs with the fence in `RingWriter::publish`.
        fence(Ordering::SeqCst);
        Ok(self.waiting()? == 0)
    }
}

/// After the hellos, where both sides offered the rings (`agreed`, the features both set),
/// moves the wire onto the rings of `region`: from now on frames are written into ring `out`
/// (its reader woken through `pipe_out`) and read from the other one, with a window that
/// follows streams if `follow_streams` (`Source::use_ring`). Returns the wire's busy-poll
/// window: rings are watched on one CPU too ([`crate::busy_poll::configured`]), pipes are not
/// ([`crate::busy_poll::window`]). An error if the peer sent anything on the pipe after its
/// hello, or the region has no rings.
pub(crate) fn agree(
    agreed: u64,
    frames_in: &mut FrameReader<BufReader<Source>>,
    frames_out: &mut FrameWriter<Box<dyn Write + Send>>,
    region: &Arc<Region>,
    out: Direction,
    pipe_out: OwnedFd,
    follow_streams: bool,
) -> scheme_protocol::Result<Duration> {
    if agreed & scheme_protocol::FEATURE_RING == 0 {
        return Ok(crate::busy_poll::window());
    }
    let protocol =
        |why: &str| scheme_protocol::Error::Io(io::Error::new(io::ErrorKind::InvalidData, why));
    if !frames_in.get_ref().buffer().is_empty() {
        return Err(protocol("frames on the pipe after the hello, where the rings were agreed"));
    }
    let back = match out {
        Direction::ToDaemon => Direction::ToCaller,
        Direction::ToCaller => Direction::ToDaemon,
    };
    let window = crate::busy_poll::configured();
    let reader = RingReader::new(Arc::clone(region), back);
    let writer = RingWriter::new(Arc::clone(region), out, pipe_out, window);
    let (Some(reader), Some(writer)) = (reader, writer) else {
        return Err(protocol("the region has no room for the rings"));
    };
    if !frames_in.get_mut().get_mut().use_ring(reader, window, follow_streams) {
        return Err(protocol("the rings need the pipe to wait on"));
    }
    *frames_out.get_mut() = Box::new(writer);
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn region() -> Arc<Region> {
        Arc::new(Region::create(START + AREA).unwrap())
    }

    fn pipe_pair() -> (std::io::PipeReader, OwnedFd) {
        let (reader, writer) = std::io::pipe().unwrap();
        (reader, OwnedFd::from(writer))
    }

    /// Both ends of ring `direction` in a fresh region, and the reader's pipe.
    fn ends(direction: Direction) -> (std::io::PipeReader, RingWriter, RingReader) {
        let region = region();
        let (pipe, write_end) = pipe_pair();
        let writer =
            RingWriter::new(Arc::clone(&region), direction, write_end, Duration::ZERO).unwrap();
        (pipe, writer, RingReader::new(region, direction).unwrap())
    }

    #[test]
    fn bytes_written_are_read_in_order_across_the_wrap() {
        let (_pipe, mut writer, mut reader) = ends(Direction::ToDaemon);
        let chunk: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0; 300_000];
        for _ in 0..10 {
            writer.write_all(&chunk).unwrap();
            let mut got = 0;
            while got < buf.len() {
                got += reader.read_now(&mut buf[got..]).unwrap();
            }
            assert_eq!(buf, chunk);
        }
        assert_eq!(reader.read_now(&mut buf).unwrap(), 0, "nothing more");
    }

    #[test]
    fn a_sleeping_reader_gets_one_wake_up_byte_and_a_busy_one_none() {
        let (mut pipe, mut writer, mut reader) = ends(Direction::ToCaller);
        writer.write_all(b"not asleep").unwrap();
        assert!(!reader.arm().unwrap(), "bytes wait: no sleep");
        assert_eq!(reader.read_now(&mut [0; 32]).unwrap(), 10);
        assert!(reader.arm().unwrap());
        writer.write_all(b"one").unwrap();
        writer.write_all(b"two").unwrap();
        let mut byte = [0; 8];
        assert_eq!(pipe.read(&mut byte).unwrap(), 1, "one wake-up for two writes");
        assert_eq!(reader.read_now(&mut [0; 32]).unwrap(), 6);
    }

    #[test]
    fn a_full_ring_makes_the_writer_wait_until_the_reader_makes_room() {
        let (_pipe, mut writer, mut reader) = ends(Direction::ToDaemon);
        let big: Vec<u8> = (0..3 * BYTES).map(|i| (i % 253) as u8).collect();
        let expected = big.clone();
        let feeder = std::thread::spawn(move || writer.write_all(&big).unwrap());
        let mut got = Vec::new();
        let mut buf = vec![0; 70_000];
        while got.len() < expected.len() {
            std::thread::sleep(Duration::from_millis(1));
            let n = reader.read_now(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        feeder.join().unwrap();
        assert!(got == expected);
    }

    #[test]
    fn a_writer_waiting_for_room_fails_once_the_reader_is_gone() {
        let region = region();
        let (pipe, write_end) = pipe_pair();
        let mut writer =
            RingWriter::new(region, Direction::ToDaemon, write_end, Duration::ZERO).unwrap();
        writer.write_all(&vec![1; BYTES]).unwrap();
        drop(pipe);
        let err = writer.write_all(b"more").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn indices_out_of_range_are_an_error_not_a_wild_copy() {
        let region = region();
        let (_pipe, write_end) = pipe_pair();
        let mut reader = RingReader::new(Arc::clone(&region), Direction::ToDaemon).unwrap();
        let ring = Ring::new(Arc::clone(&region), Direction::ToDaemon).unwrap();
        ring.word(HEAD).store(BYTES as u64 + 1, Ordering::SeqCst);
        let err = reader.read_now(&mut [0; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        ring.word(HEAD).store(0, Ordering::SeqCst);
        let mut writer =
            RingWriter::new(Arc::clone(&region), Direction::ToDaemon, write_end, Duration::ZERO)
                .unwrap();
        ring.word(TAIL).store(7, Ordering::SeqCst); // a tail past the head
        assert_eq!(writer.write(b"x").unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_region_without_room_for_rings_has_none() {
        let small = Arc::new(Region::create(START).unwrap());
        assert!(RingReader::new(small, Direction::ToDaemon).is_none());
        assert!(!offered(START + AREA - 1, true, true));
    }

    #[test]
    fn rings_are_offered_only_with_a_pipe_to_wake_the_peer_and_one_to_sleep_on() {
        assert!(!offered(START + AREA, false, true));
        assert!(!offered(START + AREA, true, false));
        let enabled = std::env::var(ENV_ENABLE).map_or(true, |v| v.trim() != "0");
        assert_eq!(offered(START + AREA, true, true), enabled);
    }
}
