//! The daemon's pipe as the client's frame reader reads it: blocking reads, and on request one
//! read that returns at once instead of waiting (`busy_poll::read_now`). A leader takes
//! what the pipe holds that way before it sleeps: on one CPU the daemon has usually answered
//! by then (it preempts the writer), and the read replaces a `poll` and then a `read`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Where the frame reader gets its bytes.
pub(super) struct Source {
    read: Box<dyn Read + Send>,
    /// The same pipe, to poll and to read without waiting; `None` for a reader that is not
    /// known to be a pipe (`Client::connect`), which only a reader thread may read.
    pipe: Option<OwnedFd>,
    /// The next read must not wait.
    once: bool,
    /// The kernel refused to read the pipe without waiting (`busy_poll::read_now`).
    nowait_refused: bool,
}

impl Source {
    /// `read`, with `pipe` the same pipe if it is one.
    pub(super) fn new(read: Box<dyn Read + Send>, pipe: Option<OwnedFd>) -> Source {
        Source { read, pipe, once: false, nowait_refused: false }
    }

    /// The pipe, if the source is known to be one.
    pub(super) fn pipe(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }

    /// Makes the next read return what the pipe holds now, or fail with
    /// [`io::ErrorKind::WouldBlock`] rather than wait; false if it cannot read that way.
    pub(super) fn arm(&mut self) -> bool {
        self.once = self.pipe.is_some();
        self.once
    }

    /// Undoes [`Source::arm`] if no read came since.
    pub(super) fn disarm(&mut self) {
        self.once = false;
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(pipe) = self.pipe.as_ref().filter(|_| std::mem::take(&mut self.once)) else {
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

    #[test]
    fn an_armed_read_of_an_empty_pipe_returns_at_once_and_the_next_one_waits() {
        let (mut source, mut writer) = piped();
        assert!(source.arm());
        let err = source.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"late").unwrap();
        });
        let mut buf = [0; 8];
        assert_eq!(source.read(&mut buf).unwrap(), 4, "an unarmed read waits for the bytes");
        assert_eq!(&buf[..4], b"late");
        feeder.join().unwrap();
    }

    #[test]
    fn an_armed_read_takes_what_the_pipe_holds() {
        let (mut source, mut writer) = piped();
        writer.write_all(b"ready").unwrap();
        assert!(source.arm());
        let mut buf = [0; 8];
        assert_eq!(source.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"ready");
    }

    #[test]
    fn an_armed_read_sees_the_end_of_the_stream() {
        let (mut source, writer) = piped();
        drop(writer);
        assert!(source.arm());
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 0);
    }

    #[test]
    fn disarming_makes_the_next_read_wait_again() {
        let (mut source, mut writer) = piped();
        assert!(source.arm());
        source.disarm();
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"x").unwrap();
        });
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 1);
        feeder.join().unwrap();
    }

    #[test]
    fn a_source_without_a_pipe_cannot_be_armed() {
        let mut source = Source::new(Box::new(io::empty()), None);
        assert!(!source.arm());
        assert_eq!(source.read(&mut [0; 8]).unwrap(), 0);
    }
}
