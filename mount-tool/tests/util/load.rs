//! Helpers for the load and failure tests (fsx, soak, kill): a seeded generator, readings
//! from /proc (children, resident memory, the state of every thread), polling with a
//! deadline, and accepting a chan connection through the dup ioctl.

#![allow(dead_code)] // each test file uses part of this

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use scheme_bridge::fuse::dup::{DUP_DIR, DUP_IOCTL, IOCTL_BUF};

/// splitmix64: small, fast and fully determined by its seed, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// Random bytes, `lo..=hi` of them.
    pub fn bytes_between(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let len = self.between(lo, hi);
        self.bytes(len)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A seed from the environment variable `var`, else from the clock (printed by the caller).
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        now.as_nanos() as u64 % 1_000_000_007
    })
}

/// Polls `done` every 5 ms until it is true (`true`) or `within` passes (`false`).
pub fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The children of `pid` (of all its threads).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>()
        })
        .collect()
}

/// The built-in daemon schememount `pid` started (`schememount --serve NAME`); fusermount3,
/// its other child, is left out.
pub fn daemon_of(pid: u32) -> u32 {
    let daemons: Vec<u32> = children(pid)
        .into_iter()
        .filter(|child| {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|arg| arg == b"--serve")
        })
        .collect();
    assert_eq!(daemons.len(), 1, "schememount {pid} has one daemon child: {daemons:?}");
    daemons[0]
}

/// Resident memory of `pid` in KiB (VmRSS), `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The scheduler state letter of each thread of `pid` (R, S, D, Z, ...), with the thread id.
pub fn thread_states(pid: u32) -> Vec<(u32, char)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // "tid (comm) S ...": the comm may hold spaces and parentheses; the state follows
            // the last ')'.
            let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
            Some((tid, state))
        })
        .collect()
}

/// Whether `pid` has exited: gone, or a zombie nobody reaped yet.
pub fn exited(pid: u32) -> bool {
    let states = thread_states(pid);
    states.is_empty() || states.iter().all(|&(_, state)| state == 'Z' || state == 'X')
}

/// `dup(listener, "listen")` through the mount: the ioctl answers a token, opening
/// `<mount>/.dup/<token>` gives the accepted stream.
pub fn accept(mount_root: &Path, listener: &File) -> std::io::Result<File> {
    let mut buf = [0u8; IOCTL_BUF];
    buf[..6].copy_from_slice(b"listen");
    // SAFETY: DUP_IOCTL is _IOWR('S', 1, [u8; 256]): the kernel reads and writes exactly the
    // 256 bytes of `buf`, which outlives the call.
    let ioctl = unsafe { rustix::ioctl::Updater::<DUP_IOCTL, [u8; IOCTL_BUF]>::new(&mut buf) };
    // SAFETY: as above.
    unsafe { rustix::ioctl::ioctl(listener.as_fd(), ioctl) }?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let token = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
    std::fs::OpenOptions::new().read(true).write(true).open(mount_root.join(DUP_DIR).join(token))
}
