//! A pipe as a frame reader reads it: blocking reads, or, while asked, reads that return at
//! once instead of waiting (`busy_poll::read_now`). A thread that must also hear something
//! else (a bell) reads that way: it takes what the pipe holds without a `poll` first (on one
//! CPU the peer has usually answered by then: it preempts the writer), and it never sleeps
//! inside a read, where the bell could not wake it; the frame reader keeps what arrived of a
//! frame. The client's leader reads the daemon's pipe so (`client/wire.rs`), and a parking
//! daemon's serving thread the caller's (`SchemeSocket::read_here`).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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
}

impl Source {
    /// `read`, with `pipe` the same pipe if it is one.
    pub(crate) fn new(read: Box<dyn Read + Send>, pipe: Option<OwnedFd>) -> Source {
        Source { read, pipe, nowait: false, nowait_refused: false }
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
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
