//! Real mounts for the tests in this directory: `schememount -f` as a child process, ready when
//! it says so on its status pipe, and a guard that always unmounts and reaps, even when a test
//! fails. Without a usable /dev/fuse the tests are skipped with a "FUSE TEST SKIPPED" line,
//! unless SCHEME_BRIDGE_REQUIRE_FUSE=1 (CI), where that is a failure.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const SCHEMEMOUNT: &str = env!("CARGO_BIN_EXE_schememount");

/// Whether FUSE tests can run here; prints the skip line (or panics in CI) if not.
pub fn fuse_usable() -> bool {
    let reason = match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Err(err) => format!("cannot open /dev/fuse: {err}"),
        Ok(_) if which("fusermount3").is_none() && which("fusermount").is_none() && !is_root() => {
            "no fusermount3 and not root".to_owned()
        }
        Ok(_) => return true,
    };
    if std::env::var_os("SCHEME_BRIDGE_REQUIRE_FUSE").is_some_and(|v| v == "1") {
        panic!("FUSE is required here but unusable: {reason}");
    }
    eprintln!("FUSE TEST SKIPPED: {reason}");
    false
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A running `schememount -f` and its mount point.
pub struct Mount {
    pub dir: TempDir,
    child: Option<Child>,
}

impl Mount {
    /// Mounts `args` (scheme names and options) on a fresh directory; `None` if FUSE is unusable.
    pub fn start(args: &[&str]) -> Option<Mount> {
        if !fuse_usable() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(SCHEMEMOUNT)
            .args(args)
            .arg(dir.path())
            .arg("-f")
            .env("SCHEMEMOUNT_STATUS_PIPE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("schememount starts");
        let status = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(status).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mount = Mount { dir, child: Some(child) };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "schememount {args:?} did not get ready");
        Some(mount)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` to schememount and waits for it to exit (at most `within`).
    pub fn signal_and_wait(
        &mut self,
        signal: rustix::process::Signal,
        within: Duration,
    ) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        kill(child.id(), signal);
        wait_for(child, within)
    }

    /// Waits for schememount to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_for(self.child.as_mut()?, within)
    }

    /// Whether the directory is still a FUSE mount point.
    pub fn is_mounted(&self) -> bool {
        is_mounted(self.root())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                kill(child.id(), rustix::process::Signal::TERM);
                if wait_for(child, Duration::from_secs(5)).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if is_mounted(self.dir.path()) {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(self.dir.path()).status();
        }
    }
}

pub fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Polls `child` until it exits or `within` passes.
pub fn wait_for(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `path` is a FUSE mount point right now.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let target = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4) == Some(&target.as_str()) && line.contains(" - fuse")
    })
}

/// Runs a shell command line, returning (status, stdout).
pub fn sh(script: &str) -> (ExitStatus, String) {
    let out = Command::new("sh").arg("-c").arg(script).output().expect("sh runs");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}
