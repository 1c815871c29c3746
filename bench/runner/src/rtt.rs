//! Round trips without FUSE: the wire alone, next to a raw pipe moving the same bytes.
//!
//! - `wire-rtt`: `scheme_bridge::Client::spawn` of the zero daemon (`zerod`), then COUNT
//!   `read(fd, SIZE)` calls, one at a time, after 100 untimed ones. Each is a call frame to the
//!   daemon and a reply frame carrying SIZE bytes back, through the client's reply thread.
//! - `pipe-rtt`: a child process (`schemebench pipe-echo`) on a pair of pipes; each round trip
//!   writes a request as long as the wire's read call frame and reads a reply as long as its
//!   reply frame (both computed with the real encoder), the child doing the opposite.
//! - `frame-rtt`: the same two processes and pipes, but each side encodes and decodes the real
//!   frames with the protocol's codec (`FrameWriter`, `FrameReader` over a `BufReader`, as the
//!   client and the daemon do): what the serialized wire costs by itself, without the client
//!   library's tag tables and wake-ups or the daemon's packets.
//! - `chain-rtt`: the bytes of `pipe-rtt` through a chain of three processes, this one, a relay
//!   child (`schemebench pipe-relay`) and its echo child, each hop a pair of pipes: the least a
//!   request costs when a third process joins a ping-pong, as the daemon joins the program and
//!   the FUSE server. Pinned to one CPU, chain minus pipe is the floor of the bridge's hop.
//! - `shared-chain-rtt`: `chain-rtt` with the relay's hop to its echo child through shared
//!   memory instead of pipes, as the bridge's frame rings are: the relay copies the request in,
//!   bumps a counter and yields the CPU until the echo child, which watches the counter
//!   (yielding between looks, for the whole run), has copied the reply in and bumped it again.
//!   Pinned to one CPU, shared-chain minus pipe is the floor of the bridge's hop with frame rings.
//! - `loop-rtt`: the same bytes round a loop of three processes: this one writes the request to
//!   a forwarding child, which passes it to the echo child, whose reply comes straight back
//!   here. It is the floor of a design the bridge does not use, where the daemon would answer
//!   the kernel itself (it would hold the FUSE device) instead of answering the mount.
//!
//! µs per round trip.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use scheme_bridge::region::Region;
use scheme_bridge::Client;
use scheme_protocol::codec::encode_frame;
use scheme_protocol::{
    Bytes, Call, Caller, Fd, Frame, FrameReader, FrameWriter, Reply, Tag, MAX_FRAME,
};

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
pub(crate) struct RelayArgs {
    /// Bytes per request.
    #[arg(long)]
    request: usize,
    /// Bytes per reply.
    #[arg(long)]
    reply: usize,
    /// Reach the echo child through shared memory instead of pipes (shared-chain-rtt).
    #[arg(long)]
    shared: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SharedEchoArgs {
    /// Bytes per request to take.
    #[arg(long)]
    request: usize,
    /// Bytes per reply to give.
    #[arg(long)]
    reply: usize,
    /// The relay's shared memory file, as PID:FD (opened through /proc).
    #[arg(long)]
    region: String,
}

#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Bytes per request to read.
    #[arg(long)]
    request: usize,
    /// Bytes per reply to write.
    #[arg(long)]
    reply: usize,
    /// Read call frames and answer each read with a data frame instead (frame-rtt).
    #[arg(long)]
    frames: bool,
}

/// What crosses the pipes of a ping-pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// Bytes as long as the wire's frames.
    Bytes,
    /// The wire's frames, encoded and decoded by the codec.
    Frames,
    /// Bytes as long as the wire's frames, through a relay process to the echo process.
    Relayed,
    /// Bytes as long as the wire's frames, through a relay process to the echo process over
    /// shared memory.
    SharedRelayed,
    /// Bytes as long as the wire's frames, through a forwarding process to the echo process,
    /// whose reply comes straight back.
    Loop,
}

/// Bytes read from a pipe at once by the frame readers, as the client's and the daemon's.
const FRAME_BUFFER: usize = 64 << 10;

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
    let reply = Frame::Reply { tag: Tag(1), response: Ok(Reply::Data(Bytes::from(vec![0; size]))) };
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
        self.ping_pong(Payload::Bytes)
    }

    /// chain-rtt: the same bytes through a relay process and its echo child.
    pub(crate) fn run_chain(&self) -> Result<Vec<Sample>> {
        self.ping_pong(Payload::Relayed)
    }

    /// shared-chain-rtt: chain-rtt with the relay's hop through shared memory.
    pub(crate) fn run_shared_chain(&self) -> Result<Vec<Sample>> {
        self.ping_pong(Payload::SharedRelayed)
    }

    /// loop-rtt: the same bytes to a forwarding process, on to the echo process and back.
    pub(crate) fn run_loop(&self) -> Result<Vec<Sample>> {
        self.ping_pong(Payload::Loop)
    }

    /// frame-rtt: the same ping-pong with real frames.
    pub(crate) fn run_frames(&self) -> Result<Vec<Sample>> {
        self.ping_pong(Payload::Frames)
    }

    fn ping_pong(&self, payload: Payload) -> Result<Vec<Sample>> {
        let (request_len, reply_len) = wire_sizes(self.size)?;
        let (children, to, from) = start_children(payload, request_len, reply_len)?;
        let mut round_trip = match payload {
            Payload::Frames => frames_round_trip(to, from, self.size),
            _ => bytes_round_trip(to, from, request_len, reply_len),
        };
        for tag in 0..WARM_UP as u64 {
            round_trip(tag)?;
        }
        let count = self.count as usize;
        let start = Instant::now();
        for tag in 0..self.count {
            round_trip(tag)?;
        }
        let took = start.elapsed();
        drop(round_trip); // closes the pipe to the first child: each sees end of file and exits
        for mut child in children {
            let status = child.0.wait().context("lost a child process")?;
            ensure!(status.success(), "a child process failed ({status})");
        }
        let (metric, unit) = self.metric();
        Ok(vec![Sample::new(metric, unit, us_per_op(count, took))])
    }
}

/// The children of a ping-pong, in the order they see end of file, with the pipe that takes
/// requests to the first and the one that brings replies back.
fn start_children(
    payload: Payload,
    request_len: usize,
    reply_len: usize,
) -> Result<(Vec<Echo>, ChildStdin, ChildStdout)> {
    let (first, flag) = match payload {
        Payload::Relayed => ("pipe-relay", None),
        Payload::SharedRelayed => ("pipe-relay", Some("--shared")),
        Payload::Frames => ("pipe-echo", Some("--frames")),
        _ => ("pipe-echo", None),
    };
    let mut echo = spawn_echo(first, request_len, reply_len, flag, Stdio::piped())?;
    let from = echo.0.stdout.take().context("the echo process has no stdout")?;
    let to_echo = echo.0.stdin.take().context("the echo process has no stdin")?;
    if payload != Payload::Loop {
        return Ok((vec![echo], to_echo, from));
    }
    // A forwarder is an echo whose reply is as long as the request, written into the echo's
    // stdin.
    let mut forward =
        spawn_echo("pipe-echo", request_len, request_len, None, Stdio::from(to_echo))?;
    let to = forward.0.stdin.take().context("the forwarding process has no stdin")?;
    Ok((vec![forward, echo], to, from))
}

/// Starts this program as `subcommand` (`pipe-echo` or `pipe-relay`, with `flag` if given),
/// requests on a new pipe, replies to `stdout`.
fn spawn_echo(
    subcommand: &str,
    request_len: usize,
    reply_len: usize,
    flag: Option<&str>,
    stdout: Stdio,
) -> Result<Echo> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut command = Command::new(exe);
    command
        .args([subcommand, "--request", &request_len.to_string()])
        .args(["--reply", &reply_len.to_string()]);
    command.args(flag);
    let child = command
        .stdin(Stdio::piped())
        .stdout(stdout)
        .spawn()
        .with_context(|| format!("cannot start the {subcommand} process"))?;
    Ok(Echo(child))
}

/// One round trip per call: a request of `request_len` bytes out, a reply of `reply_len` in.
fn bytes_round_trip(
    mut to: impl Write + 'static,
    mut from: impl Read + 'static,
    request_len: usize,
    reply_len: usize,
) -> Box<dyn FnMut(u64) -> Result<()>> {
    let request = vec![0x5au8; request_len];
    let mut reply = vec![0u8; reply_len];
    Box::new(move |_| {
        to.write_all(&request).context("write to the echo process failed")?;
        from.read_exact(&mut reply).context("read from the echo process failed")
    })
}

/// One round trip per call: a read call frame of `size` bytes out, its data reply in.
fn frames_round_trip(
    to: impl Write + 'static,
    from: impl Read + 'static,
    size: usize,
) -> Box<dyn FnMut(u64) -> Result<()>> {
    let mut calls = FrameWriter::new(to, MAX_FRAME);
    let mut replies = FrameReader::new(BufReader::with_capacity(FRAME_BUFFER, from), MAX_FRAME);
    Box::new(move |tag| {
        let call = Call::Read { fd: Fd(0), len: size as u64 };
        calls
            .write_frame(&Frame::Call { tag: Tag(tag), caller: Caller::default(), call })
            .context("write to the echo process failed")?;
        match replies.read_frame().context("read from the echo process failed")? {
            Frame::Reply { tag: answered, response: Ok(Reply::Data(data)) }
                if answered == Tag(tag) && data.len() == size =>
            {
                Ok(())
            }
            other => bail!("the echo process answered {} to a read", other.kind()),
        }
    })
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
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        if self.frames {
            return echo_frames(input, output);
        }
        self.echo_bytes(input, output)
    }

    fn echo_bytes(&self, mut input: File, mut output: File) -> Result<()> {
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

impl RelayArgs {
    /// Passes each request on to an echo child and its reply back, until end of file.
    pub(crate) fn run(&self) -> Result<()> {
        if self.shared {
            return self.run_shared();
        }
        let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let mut echo = spawn_echo("pipe-echo", self.request, self.reply, None, Stdio::piped())?;
        let mut to = echo.0.stdin.take().context("the echo process has no stdin")?;
        let mut from = echo.0.stdout.take().context("the echo process has no stdout")?;
        let mut request = vec![0u8; self.request];
        let mut reply = vec![0u8; self.reply];
        loop {
            match input.read_exact(&mut request) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(err) => return Err(err).context("read of a request failed"),
            }
            to.write_all(&request).context("write to the echo process failed")?;
            from.read_exact(&mut reply).context("read from the echo process failed")?;
            output.write_all(&reply).context("write of a reply failed")?;
        }
        drop(to); // the echo child sees end of file and exits
        let status = echo.0.wait().context("lost the echo process")?;
        ensure!(status.success(), "the echo process failed ({status})");
        Ok(())
    }
}

/// The shared memory of shared-chain-rtt: a counter (odd: a request waits; even: its reply;
/// `u64::MAX`: the end) on its own page, then the request's bytes and the reply's.
struct Shared {
    region: Region,
    request: usize,
}

impl Shared {
    const DATA: u64 = 4096;

    fn counter(&self) -> &AtomicU64 {
        self.region.atomic_u64(0).expect("the counter is inside the region")
    }

    /// Yields the CPU until the counter is `want` (or the end); whether it is `want`.
    fn wait_for(&self, want: u64, mut peer_alive: impl FnMut() -> bool) -> bool {
        let mut looks = 0u32;
        loop {
            match self.counter().load(Ordering::Acquire) {
                seen if seen == want => return true,
                u64::MAX => return false,
                _ => {}
            }
            std::thread::yield_now();
            looks = looks.wrapping_add(1);
            if looks.is_multiple_of(4096) && !peer_alive() {
                return false;
            }
        }
    }
}

impl RelayArgs {
    /// The relay of shared-chain-rtt: requests from stdin into the shared memory, replies out
    /// of it to stdout.
    fn run_shared(&self) -> Result<()> {
        let len = Shared::DATA as usize + self.request + self.reply;
        let region = Region::create(len).context("cannot make the shared memory")?;
        let shared = Shared { region, request: self.request };
        let exe = std::env::current_exe().context("cannot find this program")?;
        let place = format!("{}:{}", std::process::id(), shared.region.file().as_raw_fd());
        let child = Command::new(exe)
            .args(["shared-echo", "--request", &self.request.to_string()])
            .args(["--reply", &self.reply.to_string(), "--region", &place])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the shared-echo process")?;
        let mut echo = Echo(child);
        let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let (mut request, mut reply) = (vec![0u8; self.request], vec![0u8; self.reply]);
        let reply_at = Shared::DATA + self.request as u64;
        for round in 0u64.. {
            match input.read_exact(&mut request) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(err) => return Err(err).context("read of a request failed"),
            }
            ensure!(shared.region.copy_in(Shared::DATA, &request), "request outside the region");
            shared.counter().store(2 * round + 1, Ordering::Release);
            let alive = || matches!(echo.0.try_wait(), Ok(None));
            ensure!(shared.wait_for(2 * round + 2, alive), "the shared-echo process stopped");
            ensure!(shared.region.copy_to(reply_at, &mut reply), "reply outside the region");
            output.write_all(&reply).context("write of a reply failed")?;
        }
        shared.counter().store(u64::MAX, Ordering::Release);
        let status = echo.0.wait().context("lost the shared-echo process")?;
        ensure!(status.success(), "the shared-echo process failed ({status})");
        Ok(())
    }
}

impl SharedEchoArgs {
    /// Answers each request in the relay's shared memory with a reply, until the end.
    pub(crate) fn run(&self) -> Result<()> {
        let (pid, fd) = self.region.split_once(':').context("--region is PID:FD")?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/fd/{fd}"))
            .context("cannot open the relay's shared memory")?;
        let region = Region::map(file.into()).context("cannot map the relay's shared memory")?;
        let shared = Shared { region, request: self.request };
        let reply = vec![0xa5u8; self.reply];
        let mut request = vec![0u8; shared.request];
        let reply_at = Shared::DATA + self.request as u64;
        let parent = rustix::process::getppid();
        let parent_alive = || rustix::process::getppid() == parent;
        for round in 0u64.. {
            if !shared.wait_for(2 * round + 1, parent_alive) {
                return Ok(());
            }
            ensure!(shared.region.copy_to(Shared::DATA, &mut request), "request outside");
            ensure!(shared.region.copy_in(reply_at, &reply), "reply outside the region");
            shared.counter().store(2 * round + 2, Ordering::Release);
        }
        Ok(())
    }
}

/// Answers each read call frame with a data frame of the length asked, until end of file.
fn echo_frames(input: File, output: File) -> Result<()> {
    let mut calls = FrameReader::new(BufReader::with_capacity(FRAME_BUFFER, input), MAX_FRAME);
    let mut replies = FrameWriter::new(output, MAX_FRAME);
    loop {
        let (tag, len) = match calls.read_frame() {
            Ok(Frame::Call { tag, call: Call::Read { len, .. }, .. }) => (tag, len),
            Ok(other) => bail!("expected a read call, got a {} frame", other.kind()),
            Err(scheme_protocol::Error::Closed) => return Ok(()),
            Err(err) => return Err(err).context("read of a call failed"),
        };
        let data = Bytes::from(vec![0; len as usize]);
        let reply = Frame::Reply { tag, response: Ok(Reply::Data(data)) };
        replies.write_frame(&reply).context("write of a reply failed")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    #[test]
    fn frames_cross_a_real_pipe_and_a_reply_to_another_tag_is_an_error() {
        let (calls_in, calls_out) = io::pipe().unwrap();
        let (replies_in, replies_out) = io::pipe().unwrap();
        let (input, output) = (File::from(OwnedFd::from(calls_in)), OwnedFd::from(replies_out));
        let echo = std::thread::spawn(move || echo_frames(input, File::from(output)));
        let mut round_trip = frames_round_trip(calls_out, replies_in, 4096);
        for tag in 0..3 {
            round_trip(tag).unwrap();
        }
        drop(round_trip);
        echo.join().unwrap().unwrap();

        let (replies_in, mut replies_out) = io::pipe().unwrap();
        let stray =
            Frame::Reply { tag: Tag(9), response: Ok(Reply::Data(Bytes::from(vec![0; 1]))) };
        FrameWriter::new(&mut replies_out, MAX_FRAME).write_frame(&stray).unwrap();
        let mut round_trip = frames_round_trip(io::sink(), replies_in, 1);
        assert!(round_trip(1).is_err());
    }

    #[test]
    fn reply_frames_grow_with_the_payload_and_calls_do_not() {
        let (call_1, reply_1) = wire_sizes(1).unwrap();
        let (call_4k, reply_4k) = wire_sizes(4096).unwrap();
        assert_eq!(call_1, call_4k);
        assert_eq!(reply_4k - reply_1, 4095);
        assert!(call_1 > 4 && reply_1 > 5);
    }
}
