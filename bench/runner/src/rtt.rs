//! Round trips without FUSE: the wire alone, next to a raw pipe moving the same bytes.
//!
//! - `wire-rtt`: `scheme_bridge::Client::spawn` of the zero daemon (`zerod`), then COUNT
//!   `read(fd, SIZE)` calls, one at a time, after 100 untimed ones. Each is a call frame to the
//!   daemon and a reply frame carrying SIZE bytes back, through the client's reply thread.
//! - `pipe-rtt`: a child process (`schemebench pipe-echo`) on a pair of pipes; each round trip
//!   writes a request as long as the wire's read call frame and reads a reply as long as its
//!   reply frame (both computed with the real encoder), the child doing the opposite.
//!
//! µs per round trip.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Args;
use scheme_bridge::Client;
use scheme_protocol::codec::encode_frame;
use scheme_protocol::{Bytes, Call, Caller, Fd, Frame, Reply, Tag, MAX_FRAME};

use crate::sample::{parse_size, size_label, us_per_op, Sample};

/// Untimed round trips first.
const WARM_UP: usize = 100;
/// Redox `O_RDONLY` (the zero scheme ignores open flags).
const REDOX_O_RDONLY: usize = 0x0001_0000;

#[derive(Debug, Args)]
pub(crate) struct WireArgs {
    /// The zero daemon to spawn (target/release/zerod); by default found next to this program.
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Bytes per read (the reply's payload).
    #[arg(long, value_parser = parse_size)]
    size: usize,
    /// Timed round trips.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    count: u64,
}

#[derive(Debug, Args)]
pub(crate) struct PipeArgs {
    /// Bytes per read of the wire call to imitate (the reply's payload).
    #[arg(long, value_parser = parse_size)]
    size: usize,
    /// Timed round trips.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    count: u64,
}

#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Bytes per request to read.
    #[arg(long)]
    request: usize,
    /// Bytes per reply to write.
    #[arg(long)]
    reply: usize,
}

fn metric(size: usize) -> (String, &'static str) {
    (format!("rtt_{}", size_label(size)), "us/op")
}

impl WireArgs {
    pub(crate) fn metric(&self) -> (String, &'static str) {
        metric(self.size)
    }

    pub(crate) fn run(&self) -> Result<Vec<Sample>> {
        ensure!(self.size <= MAX_FRAME / 2, "--size is larger than a frame");
        let daemon = match &self.daemon {
            Some(path) => path.clone(),
            None => scheme_bridge::find_daemon("zerod")
                .context("cannot find zerod; build it or pass --daemon")?,
        };
        let client = Client::spawn(Command::new(&daemon), "zero")
            .with_context(|| format!("cannot start {}", daemon.display()))?;
        let fd = client.open("schemebench", REDOX_O_RDONLY).context("open on zero: failed")?;
        let read = || -> Result<()> {
            let data = client.read(fd, self.size).context("read on zero: failed")?;
            ensure!(data.len() == self.size, "read {} bytes, expected {}", data.len(), self.size);
            Ok(())
        };
        for _ in 0..WARM_UP {
            read()?;
        }
        let count = self.count as usize;
        let start = Instant::now();
        for _ in 0..count {
            read()?;
        }
        let took = start.elapsed();
        client.close(fd).context("close on zero: failed")?;
        let (metric, unit) = self.metric();
        Ok(vec![Sample::new(metric, unit, us_per_op(count, took))])
    }
}

/// Bytes on the pipe of the wire's `read(fd, size)` call frame and of its reply frame.
pub(crate) fn wire_sizes(size: usize) -> Result<(usize, usize)> {
    let call = Frame::Call {
        tag: Tag(1),
        caller: Caller::default(),
        call: Call::Read { fd: Fd(0), len: size as u64 },
    };
    let reply = Frame::Reply { tag: Tag(1), response: Ok(Reply::Data(Bytes(vec![0; size]))) };
    let (mut request, mut answer) = (Vec::new(), Vec::new());
    encode_frame(&call, MAX_FRAME, &mut request).context("cannot encode a read call")?;
    encode_frame(&reply, MAX_FRAME, &mut answer).context("cannot encode a read reply")?;
    Ok((request.len(), answer.len()))
}

impl PipeArgs {
    pub(crate) fn metric(&self) -> (String, &'static str) {
        metric(self.size)
    }

    pub(crate) fn run(&self) -> Result<Vec<Sample>> {
        let (request_len, reply_len) = wire_sizes(self.size)?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        let child = Command::new(exe)
            .args(["pipe-echo", "--request", &request_len.to_string()])
            .args(["--reply", &reply_len.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the echo process")?;
        let mut echo = Echo(child);
        let mut to = echo.0.stdin.take().context("the echo process has no stdin")?;
        let mut from = echo.0.stdout.take().context("the echo process has no stdout")?;
        let request = vec![0x5au8; request_len];
        let mut reply = vec![0u8; reply_len];
        let mut round_trip = || -> Result<()> {
            to.write_all(&request).context("write to the echo process failed")?;
            from.read_exact(&mut reply).context("read from the echo process failed")
        };
        for _ in 0..WARM_UP {
            round_trip()?;
        }
        let count = self.count as usize;
        let start = Instant::now();
        for _ in 0..count {
            round_trip()?;
        }
        let took = start.elapsed();
        drop(to);
        let status = echo.0.wait().context("lost the echo process")?;
        ensure!(status.success(), "the echo process failed ({status})");
        let (metric, unit) = self.metric();
        Ok(vec![Sample::new(metric, unit, us_per_op(count, took))])
    }
}

/// The echo child, killed and reaped if the measurement fails.
struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl EchoArgs {
    /// Reads requests and answers each with a reply until end of file.
    pub(crate) fn run(&self) -> Result<()> {
        let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let mut request = vec![0u8; self.request];
        let reply = vec![0xa5u8; self.reply];
        loop {
            match input.read_exact(&mut request) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(err) => return Err(err).context("read of a request failed"),
            }
            output.write_all(&reply).context("write of a reply failed")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_frames_grow_with_the_payload_and_calls_do_not() {
        let (call_1, reply_1) = wire_sizes(1).unwrap();
        let (call_4k, reply_4k) = wire_sizes(4096).unwrap();
        assert_eq!(call_1, call_4k);
        assert_eq!(reply_4k - reply_1, 4095);
        assert!(call_1 > 4 && reply_1 > 5);
    }
}
