//! A mount of the hostile daemon (`schememount --daemon <this test binary> DIR -f`, with
//! stderr captured line by line) and probes: this binary re-run as a caller that does one file
//! operation through the mount and prints its result, so that a caller that hangs or sits in
//! the kernel unkillable is a child process to time out, never this test process.
//! Every schememount and probe started is registered, so a runner that gives up on a hung case
//! can kill them all before exiting.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::process::Signal;

use crate::util::{is_mounted, kill, wait_for, SCHEMEMOUNT};

/// Processes (and their mount points) to kill if the runner gives up.
static LIVE: Mutex<Vec<(u32, Option<PathBuf>)>> = Mutex::new(Vec::new());

fn register(pid: u32, dir: Option<&Path>) {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner).push((pid, dir.map(Path::to_owned)));
}

fn unregister(pid: u32) {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner).retain(|(p, _)| *p != pid);
}

/// Kills every registered process and detaches their mounts (the runner's last resort).
pub fn kill_everything() {
    for (pid, dir) in LIVE.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
        kill(pid, Signal::KILL);
        if let Some(dir) = dir {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(dir).status();
        }
    }
}

/// What schememount wrote to stderr (its log and the daemon's): the first lines and the last.
#[derive(Default)]
pub struct Log {
    head: Vec<String>,
    tail: VecDeque<String>,
    pub lines: usize,
    pub bytes: usize,
}

const HEAD_LINES: usize = 2000;
/// The daemon's own stderr lines start with this.
const DAEMON_PREFIX: &str = "hostile-daemon:";
const TAIL_LINES: usize = 200;

impl Log {
    fn push(&mut self, line: String) {
        self.lines += 1;
        self.bytes += line.len() + 1;
        if self.head.len() < HEAD_LINES {
            return self.head.push(line);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.head.iter().chain(self.tail.iter())
    }
}

/// A running `schememount -f` serving the hostile daemon in one mode.
pub struct Mount {
    pub dir: tempfile::TempDir,
    child: Child,
    log: Arc<Mutex<Log>>,
}

impl Mount {
    /// Mounts the daemon in `mode`; panics if it does not get ready within 10 s.
    pub fn start(mode: &str) -> Mount {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = std::env::current_exe().expect("this test binary");
        let mut child = Command::new(SCHEMEMOUNT)
            .arg("--daemon")
            .arg(format!("'{}'", exe.display()))
            .arg(dir.path())
            .arg("-f")
            .env("SCHEMEMOUNT_STATUS_PIPE", "1")
            .env("HOSTILE_ROLE", "daemon")
            .env("HOSTILE_MODE", mode)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("schememount starts");
        register(child.id(), Some(dir.path()));
        let log = Arc::new(Mutex::new(Log::default()));
        let stderr = child.stderr.take().expect("piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(line);
            }
        });
        let status = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(status).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mount = Mount { dir, child, log };
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "mode {mode}: not ready; stderr:\n{}", mount.stderr());
        mount
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether schememount is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for schememount to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_for(&mut self.child, within)
    }

    /// Ends the mount with SIGTERM, as a user would; its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.alive() {
            kill(self.child.id(), Signal::TERM);
        }
        wait_for(&mut self.child, Duration::from_secs(5))
    }

    pub fn is_mounted(&self) -> bool {
        is_mounted(self.dir.path())
    }

    /// The captured stderr (first and last lines), for messages.
    pub fn stderr(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text: Vec<&str> = log.head.iter().map(String::as_str).collect();
        if log.lines > HEAD_LINES + TAIL_LINES {
            text.push("[...]");
        }
        text.extend(log.tail.iter().map(String::as_str));
        text.join("\n")
    }

    /// Lines and bytes logged so far.
    pub fn log_size(&self) -> (usize, usize) {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        (log.lines, log.bytes)
    }

    /// Whether a kept stderr line contains any of `needles` (case-insensitive); lines of the
    /// daemon itself count only with `daemon_too`.
    fn find(&self, needles: &[&str], daemon_too: bool) -> bool {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let found =
            log.all().filter(|line| daemon_too || !line.starts_with(DAEMON_PREFIX)).any(|line| {
                let line = line.to_lowercase();
                needles.iter().any(|n| line.contains(&n.to_lowercase()))
            });
        found
    }

    /// Whether the daemon said something containing `needle`.
    pub fn daemon_said(&self, needle: &str) -> bool {
        self.find(&[needle], true)
    }

    /// A mark for [`Mount::bridge_lines_since`].
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).lines
    }

    /// The kept lines logged since `mark` by schememount itself (not by the daemon).
    pub fn bridge_lines_since(&self, mark: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let tail_start = log.lines - log.tail.len();
        let head = log.head.iter().enumerate().skip(mark).map(|(_, line)| line);
        let tail = log.tail.iter().enumerate().filter(|(i, _)| tail_start + i >= mark);
        head.chain(tail.map(|(_, line)| line))
            .filter(|line| !line.starts_with(DAEMON_PREFIX))
            .cloned()
            .collect()
    }

    /// Whether anything logged a panic.
    pub fn panicked(&self) -> bool {
        self.find(&["panicked"], true)
    }

    /// (VmRSS, VmHWM) of schememount in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        let field = |name: &str| {
            status.as_deref().unwrap_or("").lines().find_map(|line| {
                let rest = line.strip_prefix(name)?;
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
        };
        (field("VmRSS:").unwrap_or(0), field("VmHWM:").unwrap_or(0))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.alive() {
            kill(self.child.id(), Signal::TERM);
            if wait_for(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        unregister(self.child.id());
        if is_mounted(self.dir.path()) {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(self.dir.path()).status();
        }
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The operation succeeded with these bytes (read data, a listing, or a write count).
    Ok(Vec<u8>),
    /// It failed with this Linux errno.
    Err(i32),
    /// The probe process died of this signal.
    Signal(i32),
    /// Anything else (a panic in the probe, a strange exit).
    Other(String),
}

/// This binary, run as a caller doing one operation; see [`probe_main`].
pub struct Probe {
    child: Child,
    what: String,
}

impl Probe {
    /// Starts `op` (`read` to the end, `read1` just once, `write`, `ls`, `poll`) on `path`;
    /// `arg` is the read size, the data, or the poll timeout in milliseconds.
    pub fn start(op: &str, path: &Path, arg: &str) -> Probe {
        let exe = std::env::current_exe().expect("this test binary");
        let child = Command::new(exe)
            .env("HOSTILE_ROLE", "probe")
            .env("HOSTILE_OP", op)
            .env("HOSTILE_PATH", path)
            .env("HOSTILE_ARG", arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("probe starts");
        register(child.id(), None);
        Probe { child, what: format!("{op} {}", path.display()) }
    }

    /// Starts a probe and waits for it: `None` if it took longer than `within` (it is killed).
    pub fn run(op: &str, path: &Path, arg: &str, within: Duration) -> Option<Outcome> {
        let mut probe = Probe::start(op, path, arg);
        let outcome = probe.wait(within);
        if outcome.is_none() {
            probe.kill_and_wait(Duration::from_secs(2));
        }
        outcome
    }

    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Waits up to `within` for the probe to finish.
    pub fn wait(&mut self, within: Duration) -> Option<Outcome> {
        let status = wait_for(&mut self.child, within)?;
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        Some(parse(status, &out))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.child.id(), signal);
    }

    /// SIGKILL, then waits; whether it died within `within`.
    pub fn kill_and_wait(&mut self, within: Duration) -> bool {
        self.signal(Signal::KILL);
        wait_for(&mut self.child, within).is_some()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // A probe stuck in the kernel dies only once its mount goes: not waited for here, and
        // left registered for the runner's last resort.
        if wait_for(&mut self.child, Duration::from_millis(200)).is_some() {
            unregister(self.child.id());
        }
    }
}

fn parse(status: ExitStatus, out: &str) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return Outcome::Signal(signal);
    }
    let line = out.lines().next().unwrap_or("");
    if let Some(hex) = line.strip_prefix("ok ") {
        let bytes = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        return Outcome::Ok(bytes);
    }
    if line == "ok" {
        return Outcome::Ok(Vec::new());
    }
    match line.strip_prefix("err ").and_then(|e| e.parse().ok()) {
        Some(errno) => Outcome::Err(errno),
        None => Outcome::Other(format!("{status}: {out:?}")),
    }
}

/// The probe role: one operation from the environment, its result on stdout as `ok <hex>` or
/// `err <errno>`. Reads are of `HOSTILE_ARG` bytes.
pub fn probe_main() -> i32 {
    use std::io::Write;
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let path = PathBuf::from(var("HOSTILE_PATH"));
    let result = match var("HOSTILE_OP").as_str() {
        "read" => read_all(&path, var("HOSTILE_ARG").parse().unwrap_or(4096), false),
        "read1" => read_all(&path, var("HOSTILE_ARG").parse().unwrap_or(4096), true),
        "write" => std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write(var("HOSTILE_ARG").as_bytes()))
            .map(|n| n.to_string().into_bytes()),
        "poll" => poll(&path, var("HOSTILE_ARG").parse().unwrap_or(1000)),
        "create" => std::fs::File::create(&path).map(|_| b"created".to_vec()),
        "chmod" => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&path, mode).map(|()| b"chmod".to_vec())
        }
        "ls" => std::fs::read_dir(&path).and_then(|dir| {
            let mut names = dir
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(names.join(" ").into_bytes())
        }),
        op => Err(std::io::Error::other(format!("unknown op {op}"))),
    };
    let line = match result {
        Ok(bytes) => format!("ok {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Err(err) => format!("err {}", err.raw_os_error().unwrap_or(-1)),
    };
    println!("{}", line.trim_end());
    0
}

/// Waits up to `ms` milliseconds for `path` to become readable: `readable` or `timeout`.
fn poll(path: &Path, ms: u64) -> std::io::Result<Vec<u8>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let file = std::fs::File::open(path)?;
    let mut fds = [PollFd::new(&file, PollFlags::IN)];
    let timeout = Timespec { tv_sec: (ms / 1000) as i64, tv_nsec: (ms % 1000 * 1_000_000) as i64 };
    let ready = rustix::event::poll(&mut fds, Some(&timeout))?;
    Ok(if ready > 0 { b"readable".to_vec() } else { b"timeout".to_vec() })
}

/// Reads `path` to its end (or just once) in reads of `chunk` bytes.
fn read_all(path: &Path, chunk: usize, once: bool) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut data = Vec::new();
    let mut buf = vec![0; chunk.max(1)];
    loop {
        let n = file.read(&mut buf)?;
        data.extend_from_slice(&buf[..n]);
        if once || n == 0 || data.len() > 1 << 20 {
            return Ok(data);
        }
    }
}
