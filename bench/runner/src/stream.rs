//! Stream throughput from a writer process to a reader process, BS bytes per write:
//!
//! - `chan-stream MOUNT`: through a chan scheme mounted at MOUNT. The reader (this process)
//!   creates a listener (open with O_CREAT), starts the writer (`schemebench stream-writer
//!   --chan PATH`), which connects by opening the same path, accepts it with the dup ioctl
//!   ("listen") and opens `MOUNT/.dup/<token>`.
//! - `pipe-stream`: the same writer program writing to its stdout, a plain pipe.
//!
//! Either way, the clock starts when the reader tells the writer to go (one byte on the
//! writer's stdin, after the stream is connected) and stops at end of file, once every byte
//! arrived. MB/s (10^6 bytes/s).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use scheme_bridge::fuse::dup::{DUP_DIR, DUP_IOCTL, IOCTL_BUF};
use scheme_bridge::fuse::kernel::is_fuse_mountpoint;

use crate::sample::{mb_per_s, parse_size, size_label, Sample};

/// How long the reader waits for the writer to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub(crate) struct ChanArgs {
    /// Where the chan scheme is mounted (`schememount chan MOUNT`).
    mount: PathBuf,
    /// MiB to move.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    mb: u64,
    /// Bytes per write and per read.
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    bs: usize,
    /// The listener's name in the mount.
    #[arg(long, default_value = "schemebench-stream")]
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct PipeArgs {
    /// MiB to move.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    mb: u64,
    /// Bytes per write and per read.
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    bs: usize,
}

#[derive(Debug, Args)]
pub(crate) struct WriterArgs {
    /// Bytes to write in all.
    #[arg(long)]
    bytes: u64,
    /// Bytes per write.
    #[arg(long, value_parser = parse_size)]
    bs: usize,
    /// Connect to this chan listener and write there instead of to stdout.
    #[arg(long)]
    chan: Option<PathBuf>,
}

fn metric(bs: usize) -> (String, &'static str) {
    (format!("stream_{}", size_label(bs)), "MB/s")
}

impl ChanArgs {
    pub(crate) fn metric(&self) -> (String, &'static str) {
        metric(self.bs)
    }

    pub(crate) fn run(&self) -> Result<Vec<Sample>> {
        ensure!(!self.name.is_empty() && !self.name.contains('/'), "--name must be a plain name");
        ensure!(
            is_fuse_mountpoint(&self.mount),
            "{} is not a FUSE mount point (mount it with `schememount chan DIR`)",
            self.mount.display()
        );
        let path = self.mount.join(&self.name);
        let listener = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot create the chan listener {}", path.display()))?;
        let bytes = self.mb << 20;
        let writer = Writer::spawn(bytes, self.bs, Some(&path), Stdio::null())?;
        let token = accept(&listener)?;
        let stream_path = self.mount.join(DUP_DIR).join(&token);
        let stream = File::open(&stream_path).with_context(|| {
            format!("cannot open the accepted stream {}", stream_path.display())
        })?;
        drop(listener);
        let (metric, unit) = self.metric();
        Ok(vec![Sample::new(metric, unit, writer.drain(stream, bytes, self.bs)?)])
    }
}

impl PipeArgs {
    pub(crate) fn metric(&self) -> (String, &'static str) {
        metric(self.bs)
    }

    pub(crate) fn run(&self) -> Result<Vec<Sample>> {
        let bytes = self.mb << 20;
        let mut writer = Writer::spawn(bytes, self.bs, None, Stdio::piped())?;
        let stdout = writer.child.stdout.take().context("the writer has no stdout")?;
        let (metric, unit) = self.metric();
        Ok(vec![Sample::new(metric, unit, writer.drain(stdout, bytes, self.bs)?)])
    }
}

impl WriterArgs {
    /// Connects (for chan), waits for the go byte on stdin, writes, closes.
    pub(crate) fn run(&self) -> Result<()> {
        let mut out = match &self.chan {
            Some(path) => OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot connect to {}", path.display()))?,
            None => File::from(io::stdout().as_fd().try_clone_to_owned()?),
        };
        let mut go = [0u8; 1];
        io::stdin().read_exact(&mut go).context("no go signal from the reader")?;
        let buf = vec![0xa5u8; self.bs];
        let mut left = self.bytes;
        while left > 0 {
            let n = left.min(self.bs as u64) as usize;
            out.write_all(&buf[..n]).context("write to the stream failed")?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// The writer child, killed and reaped if the measurement fails.
struct Writer {
    child: Child,
    go: Option<ChildStdin>,
}

impl Writer {
    fn spawn(bytes: u64, bs: usize, chan: Option<&Path>, stdout: Stdio) -> Result<Writer> {
        let exe = std::env::current_exe().context("cannot find this program")?;
        let mut command = Command::new(exe);
        command.args(["stream-writer", "--bytes", &bytes.to_string(), "--bs", &bs.to_string()]);
        if let Some(path) = chan {
            command.arg("--chan").arg(path);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(stdout)
            .spawn()
            .context("cannot start the writer process")?;
        let go = child.stdin.take();
        Ok(Writer { child, go })
    }

    /// Tells the writer to go and reads `from` to end of file; returns MB/s.
    fn drain(mut self, mut from: impl Read, bytes: u64, bs: usize) -> Result<f64> {
        let mut buf = vec![0u8; bs];
        let mut go = self.go.take().context("the writer has no stdin")?;
        let start = Instant::now();
        go.write_all(b"g").context("cannot signal the writer")?;
        drop(go);
        let mut total = 0u64;
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context(format!("read after {total} bytes failed")),
            }
        }
        let took = start.elapsed();
        let status = self.child.wait().context("lost the writer")?;
        ensure!(status.success(), "the writer failed ({status})");
        ensure!(total == bytes, "received {total} bytes, expected {bytes}");
        Ok(mb_per_s(bytes, took))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `dup(listener, "listen")` through the mount; returns the token. Waits for a connection, at
/// most [`CONNECT_TIMEOUT`].
fn accept(listener: &File) -> Result<String> {
    let listener = listener.try_clone().context("cannot dup the listener fd")?;
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(dup_ioctl(&listener, b"listen"));
    });
    match result.recv_timeout(CONNECT_TIMEOUT) {
        Ok(token) => token,
        Err(_) => bail!("no connection to accept within {CONNECT_TIMEOUT:?}"),
    }
}

/// The dup ioctl on a file of a schememount: sends `buffer`, answers the token.
fn dup_ioctl(file: &File, buffer: &[u8]) -> Result<String> {
    ensure!(buffer.len() < IOCTL_BUF, "dup buffer too long");
    let mut buf = [0u8; IOCTL_BUF];
    buf[..buffer.len()].copy_from_slice(buffer);
    // SAFETY: DUP_IOCTL is _IOWR('S', 1, [u8; IOCTL_BUF]), so the kernel reads and writes
    // exactly the IOCTL_BUF bytes of `buf`, which outlives the call.
    let ioctl = unsafe { rustix::ioctl::Updater::<DUP_IOCTL, [u8; IOCTL_BUF]>::new(&mut buf) };
    // SAFETY: as above; `ioctl` borrows `buf` mutably for the whole call.
    unsafe { rustix::ioctl::ioctl(file, ioctl) }
        .context("the dup ioctl (accept) failed; is MOUNT a chan schememount?")?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(IOCTL_BUF);
    let token = String::from_utf8_lossy(&buf[..end]).into_owned();
    ensure!(!token.is_empty() && !token.contains('/'), "the dup ioctl answered a bad token");
    Ok(token)
}
