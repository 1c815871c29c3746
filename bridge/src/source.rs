//! A pipe as a frame reader reads it: blocking reads, or, while asked, reads that return at
//! once instead of waiting (`busy_poll::read_now`). A thread that must also hear something
//! else (a bell) reads that way: it takes what the pipe holds without a `poll` first (on one
//! CPU the peer has usually answered by then: it preempts the writer), and it never sleeps
//! inside a read, where the bell could not wake it; the frame reader keeps what arrived of a
//! frame. The client's leader reads the daemon's pipe so (`client/wire.rs`), and a parking
//! daemon's serving thread the caller's (`SchemeSocket::read_here`).
//!
//! Once the two sides agree on frame rings (`ring.rs`), the source reads its ring instead, and
//! the pipe only wakes it: a thread about to sleep on the pipe calls [`Source::arm`] first.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::busy_poll::Gaps;
use crate::ring::RingReader;

/// Where the frame reader gets its bytes.
pub(crate) struct Source {
    read: Box<dyn Read + Send>,
    /// The same pipe, to poll and to read without waiting; `None` for a reader that is not
    /// known to be a pipe (`Client::connect`, `SchemeSocket::new`), which only a reader thread may read.
    pipe: Option<OwnedFd>,
    /// Reads must not wait.
    nowait: bool,
    /// The kernel refused to read the pipe without waiting (`busy_poll::read_now`).
    nowait_refused: bool,
    /// The frame ring, once in use: the pipe then only wakes this reader and reports the end.
    ring: Option<Ringed>,
}

/// A source reading a frame ring.
struct Ringed {
    reader: RingReader,
    /// How long a read that may wait watches the ring before it sleeps.
    window: Duration,
    /// The pipe reported its end: once the ring is empty, so is the stream.
    ended: bool,
    /// What it saw of the gaps between messages, if its window follows them.
    gaps: Option<Gaps>,
    /// The pipe held more wake-up bytes than an honest peer leaves: the stream is broken.
    junk: bool,
}

/// Wake-up bytes one look at the pipe may find before the peer counts as broken.
const WAKE_UPS_TOLERATED: usize = 64;

impl Source {
    /// `read`, with `pipe` the same pipe if it is one.
    pub(crate) fn new(read: Box<dyn Read + Send>, pipe: Option<OwnedFd>) -> Source {
        Source { read, pipe, nowait: false, nowait_refused: false, ring: None }
    }

    /// Reads `reader` from now on, watching it for `window` before a read that may wait
    /// sleeps on the pipe, stretched across the gaps of a steady stream if `follow_streams`
    /// (as `BusyPoll::following_streams`). `false`, changing nothing, without a pipe.
    pub(crate) fn use_ring(
        &mut self,
        reader: RingReader,
        window: Duration,
        follow_streams: bool,
    ) -> bool {
        if self.pipe.is_none() {
            return false;
        }
        let gaps = follow_streams.then(Gaps::default);
        self.ring = Some(Ringed { reader, window, ended: false, gaps, junk: false });
        true
    }

    /// Gets ready to sleep in `poll` on [`Source::pipe`]: `false` if there is something to
    /// read now instead (bytes in the ring, or its end). A source without a ring is always
    /// ready. Wake-up bytes left in the pipe are taken here, so they do not wake the sleep.
    /// (Reads that do not wait see the stream's end only after this found it.)
    pub(crate) fn arm(&mut self) -> bool {
        let (Some(ring), Some(pipe)) = (self.ring.as_mut(), self.pipe.as_ref()) else {
            return true;
        };
        if ring.ended || ring.junk {
            return false;
        }
        // An honest writer leaves at most a byte or two between two of these (one per sleep
        // announced); a pipe still full after one read is a peer writing into it for good,
        // which could otherwise keep this thread draining instead of hearing its bell.
        let mut bytes = [0u8; WAKE_UPS_TOLERATED];
        match crate::busy_poll::read_now(pipe.as_fd(), &mut bytes, &mut self.nowait_refused) {
            None => {}
            Some(Ok(0) | Err(_)) => {
                ring.ended = true;
                return false;
            }
            Some(Ok(WAKE_UPS_TOLERATED)) => {
                ring.junk = true;
                return false;
            }
            Some(Ok(_)) => {}
        }
        // An index error is reported by the read that follows.
        ring.reader.arm().unwrap_or(false)
    }

    /// Whether a read could find anything now: a ring that holds bytes (or has ended, or is
    /// broken); always for a pipe, which must be read to know. A load, where a read that
    /// finds nothing goes through every layer of the frame reader and back.
    pub(crate) fn may_have_bytes(&self) -> bool {
        self.ring.as_ref().is_none_or(|ring| ring.ended || ring.junk || ring.reader.has_bytes())
    }

    /// The pipe, if the source is known to be one.
    pub(crate) fn pipe(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }

    /// While `nowait`, reads return what the pipe holds now, or fail with
    /// [`io::ErrorKind::WouldBlock`] rather than wait. Returns whether they do now (never
    /// without a pipe).
    pub(crate) fn set_nowait(&mut self, nowait: bool) -> bool {
        self.nowait = nowait && self.pipe.is_some();
        self.nowait
    }

    /// A read of the ring: what it holds, else (reads that may wait) what comes within the
    /// window, else sleeps on the pipe and looks again.
    fn read_ring(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // When the first look found nothing (a reader following streams counts its waits).
        let mut waiting_since: Option<Instant> = None;
        loop {
            let ring = self.ring.as_mut().expect("read_ring with a ring");
            if ring.junk {
                let why = "the peer writes into its pipe where frames go through the rings";
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            let got = ring.reader.read_now(buf)?;
            if got > 0 || buf.is_empty() || ring.ended {
                if let (Some(gaps), Some(since), 1..) = (&mut ring.gaps, waiting_since, got) {
                    gaps.waited(since.elapsed(), ring.window);
                }
                return Ok(got);
            }
            if self.nowait {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if ring.gaps.is_some() {
                waiting_since.get_or_insert_with(Instant::now);
            }
            let window = ring.gaps.map_or(ring.window, |gaps| gaps.window(ring.window));
            let reader = &mut ring.reader;
            let found = crate::busy_poll::watch(window, || reader.has_bytes().then_some(()));
            if found.is_none() && self.arm() {
                let pipe = self.pipe.as_ref().expect("a ring comes with a pipe");
                let mut fds = [PollFd::new(pipe, PollFlags::IN)];
                let _ = poll(&mut fds, None); // EINTR: look again
            }
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ring.is_some() {
            return self.read_ring(buf);
        }
        let Some(pipe) = self.pipe.as_ref().filter(|_| self.nowait) else {
            return self.read.read(buf);
        };
        crate::busy_poll::read_now(pipe.as_fd(), buf, &mut self.nowait_refused)
            .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn piped() -> (Source, std::io::PipeWriter) {
        let (reader, writer) = std::io::pipe().unwrap();
        let pipe = OwnedFd::from(reader.try_clone().unwrap());
        (Source::new(Box::new(reader), Some(pipe)), writer)
    }

    /// A source reading a ring (window `window`), and the ring's writer; the pipe's write end
    /// is the writer's (wake-ups), as between a daemon and its caller side.
    fn ringed(window: Duration) -> (Source, crate::ring::RingWriter) {
        let (source, writer, _) = ringed_with_pipe(window);
        (source, writer)
    }

    /// [`ringed`], and another copy of the pipe's write end.
    fn ringed_with_pipe(window: Duration) -> (Source, crate::ring::RingWriter, OwnedFd) {
        use crate::ring::{Direction, RingReader, RingWriter, AREA, START};
        let region = std::sync::Arc::new(crate::region::Region::create(START + AREA).unwrap());
        let (reader, writer) = std::io::pipe().unwrap();
        let pipe = OwnedFd::from(reader.try_clone().unwrap());
        let mut source = Source::new(Box::new(reader), Some(pipe));
        let ring_in = RingReader::new(std::sync::Arc::clone(&region), Direction::ToCaller);
        assert!(source.use_ring(ring_in.unwrap(), window, false));
        let writer = OwnedFd::from(writer);
        let extra = writer.try_clone().unwrap();
        let ring_out = RingWriter::new(region, Direction::ToCaller, writer, window);
        (source, ring_out.unwrap(), extra)
    }

    #[test]
    fn a_ringed_source_reads_the_ring_and_sleeps_on_the_pipe_until_woken() {
        let (mut source, mut writer) = ringed(Duration::ZERO);
        assert!(source.set_nowait(true));
        let err = source.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "an empty ring");
        writer.write_all(b"ring").unwrap();
        assert!(!source.arm(), "bytes wait: no sleep");
        let mut buf = [0; 8];
        assert_eq!(source.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ring");
        source.set_nowait(false);
        // A read that waits sleeps on the pipe (no window) until the writer wakes it.
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"late").unwrap();
            writer
        });
        assert_eq!(source.read(&mut buf).unwrap(), 4, "woken by the writer");
        assert_eq!(&buf[..4], b"late");
        let writer = feeder.join().unwrap();
        drop(writer);
        assert_eq!(source.read(&mut buf).unwrap(), 0, "the pipe's end is the stream's");
    }

    #[test]
    fn a_ringed_source_reads_what_the_ring_holds_before_the_end() {
        let (mut source, mut writer) = ringed(Duration::from_micros(50));
        writer.write_all(b"last words").unwrap();
        drop(writer);
        assert!(source.set_nowait(true));
        assert!(!source.arm());
        let mut buf = [0; 32];
        assert_eq!(source.read(&mut buf).unwrap(), 10);
        assert!(!source.arm(), "the end: read it rather than sleep");
        assert_eq!(source.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn only_a_ring_says_when_a_read_would_find_nothing() {
        let (piped, _writer) = piped();
        assert!(piped.may_have_bytes(), "a pipe must be read to know");
        let (mut source, mut writer) = ringed(Duration::ZERO);
        assert!(!source.may_have_bytes(), "an empty ring");
        writer.write_all(b"x").unwrap();
        assert!(source.may_have_bytes());
        assert!(source.set_nowait(true));
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 1);
        assert!(!source.may_have_bytes(), "read empty again");
        drop(writer);
        assert!(!source.arm(), "the end is found by arming");
        assert!(source.may_have_bytes(), "so that a read reports the end");
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 0);
    }

    #[test]
    fn a_peer_filling_its_pipe_while_frames_go_through_the_rings_breaks_the_stream() {
        let (mut source, _writer, pipe) = ringed_with_pipe(Duration::ZERO);
        rustix::io::write(&pipe, &[7; 4096]).unwrap();
        assert!(!source.arm(), "no sleep: the stream is over");
        assert!(source.may_have_bytes(), "a read reports it");
        let err = source.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn reads_that_do_not_wait_take_what_the_pipe_holds_or_return_at_once() {
        let (mut source, mut writer) = piped();
        assert!(source.set_nowait(true));
        let err = source.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        writer.write_all(b"ready").unwrap();
        let mut buf = [0; 8];
        assert_eq!(source.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"ready");
        let err = source.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "still not waiting");
    }

    #[test]
    fn reads_wait_again_once_asked_to() {
        let (mut source, mut writer) = piped();
        assert!(source.set_nowait(true));
        assert!(!source.set_nowait(false));
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"late").unwrap();
        });
        let mut buf = [0; 8];
        assert_eq!(source.read(&mut buf).unwrap(), 4, "a read that waits gets the bytes");
        assert_eq!(&buf[..4], b"late");
        feeder.join().unwrap();
    }

    #[test]
    fn a_read_that_does_not_wait_sees_the_end_of_the_stream() {
        let (mut source, writer) = piped();
        drop(writer);
        assert!(source.set_nowait(true));
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 0);
    }

    #[test]
    fn a_source_without_a_pipe_always_waits() {
        let mut source = Source::new(Box::new(io::empty()), None);
        assert!(!source.set_nowait(true));
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 0);
    }
}
