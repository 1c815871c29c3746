//! File-system workloads, run inside DIR/schemebench (created if missing):
//!
//! - `write-seq`: open(O_CREAT|O_TRUNC[|O_DIRECT]) + SIZE in BS writes + fsync + close, timed
//!   from open to close, on a fresh file (`seq`). MB/s (10^6 bytes/s).
//! - `read-seq`: drop caches, then open + read BS at a time to end of file + close (`seq`, made
//!   untimed if it is missing or of the wrong size). Without `--direct` that is a cold buffered
//!   read. MB/s.
//! - `pread`: IO_SIZE preads with O_DIRECT on an open 1 MiB file, after 100 untimed ones: at
//!   offset 0 for sizes under 4 KiB, else sequential (wrapping). One FUSE round trip each. µs/op.
//! - `meta`: COUNT x create+close (O_EXCL), then COUNT x stat, then COUNT x unlink. files/s for
//!   the whole cycle, and µs per file for each phase.
//! - `ls-l`: a directory of COUNT empty files; drop caches, re-read `ls` itself with `ls -l /`,
//!   then time `LC_ALL=C ls -l DIR >/dev/null` around the command (so fork/exec is included). ms.
//! - `openread`: COUNT x open + read(4 KiB) + close of a 4 KiB file. ops/s.
//! - `path-ops`: COUNT x rename of a file between two directories (back and forth), then
//!   COUNT x chmod, then COUNT x utimensat, all by path. µs per operation for each.
//!
//! With O_DIRECT, an EINVAL from open (or the first request) means the file system refuses
//! direct I/O: the metric is reported `n/a`. Every other failure is an error.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::aligned::{AlignedBuf, ALIGN};
use crate::sample::{mb_per_s, parse_size, size_label, us_per_op, Sample, Value};

/// Size of the file the `pread` workload reads.
const PREAD_FILE: u64 = 1 << 20;
/// Untimed preads before the timed ones.
const WARM_UP: usize = 100;
/// Size of the file the `openread` workload reads.
const SMALL_FILE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    WriteSeq,
    ReadSeq,
    Pread,
    Meta,
    LsL,
    Openread,
    /// stat of one name held open (on chan a listener, which exists only while open).
    Stat,
    PathOps,
}

#[derive(Debug, Args)]
pub(crate) struct FsArgs {
    /// The directory to work in (normally a mount point); files go to DIR/schemebench.
    dir: PathBuf,
    /// What to measure.
    #[arg(long, value_enum)]
    workload: Workload,
    /// write-seq, read-seq: bytes per request (4096, 128k, 1m, ...).
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    bs: usize,
    /// write-seq, read-seq: open with O_DIRECT (read-seq without it reads cold, buffered).
    #[arg(long)]
    direct: bool,
    /// write-seq, read-seq: the file's size in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    size_mb: u64,
    /// pread: bytes per pread (always O_DIRECT), at most 1m.
    #[arg(long, default_value = "1", value_parser = parse_size)]
    io_size: usize,
    /// How many: preads (default 20000), files (meta 2000, ls-l 1000), opens (openread 5000),
    /// stats (stat 20000), each of the path ops (path-ops 5000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: Option<u64>,
}

impl FsArgs {
    /// The metrics this workload prints, in order.
    pub(crate) fn metrics(&self) -> Vec<(String, &'static str)> {
        let bs = size_label(self.bs);
        match self.workload {
            Workload::WriteSeq => {
                let mode = if self.direct { "direct" } else { "buffered" };
                vec![(format!("write_{bs}_{mode}"), "MB/s")]
            }
            Workload::ReadSeq => {
                let mode = if self.direct { "direct" } else { "cold" };
                vec![(format!("read_{bs}_{mode}"), "MB/s")]
            }
            Workload::Pread => {
                vec![(format!("pread_{}_direct", size_label(self.io_size)), "us/op")]
            }
            Workload::Meta => vec![
                ("meta_files_per_s".into(), "files/s"),
                ("meta_create_us".into(), "us/file"),
                ("meta_stat_us".into(), "us/file"),
                ("meta_unlink_us".into(), "us/file"),
            ],
            Workload::LsL => vec![("ls_l_cold_ms".into(), "ms")],
            Workload::Openread => vec![("openread_ops_per_s".into(), "ops/s")],
            Workload::Stat => vec![("stat_us".into(), "us/op")],
            Workload::PathOps => vec![
                ("rename_us".into(), "us/op"),
                ("chmod_us".into(), "us/op"),
                ("utimens_us".into(), "us/op"),
            ],
        }
    }

    /// Runs the workload; returns one sample per entry of [`FsArgs::metrics`].
    pub(crate) fn run(&self) -> Result<Vec<Sample>> {
        ensure!(self.dir.is_dir(), "{} is not a directory", self.dir.display());
        let work = self.dir.join("schemebench");
        if self.workload != Workload::Stat {
            // (stat needs no work directory, and a scheme like chan has no directories)
            fs::create_dir_all(&work)
                .with_context(|| format!("cannot create {}", work.display()))?;
        }
        let values = match self.workload {
            Workload::WriteSeq => vec![self.write_seq(&work)?],
            Workload::ReadSeq => vec![self.read_seq(&work)?],
            Workload::Pread => vec![self.pread(&work)?],
            Workload::Meta => self.meta(&work)?,
            Workload::LsL => vec![self.ls_l(&work)?],
            Workload::Openread => vec![self.openread(&work)?],
            Workload::Stat => vec![self.stat()?],
            Workload::PathOps => self.path_ops(&work)?,
        };
        Ok(self
            .metrics()
            .into_iter()
            .zip(values)
            .map(|((metric, unit), value)| Sample { metric, unit, value })
            .collect())
    }

    fn count(&self, default: u64) -> usize {
        self.count.unwrap_or(default) as usize
    }

    /// The sequential file's size in bytes, a whole number of requests.
    fn seq_size(&self) -> Result<u64> {
        let size = self.size_mb << 20;
        ensure!(size.is_multiple_of(self.bs as u64), "--size-mb must be a multiple of --bs");
        Ok(size)
    }

    fn write_seq(&self, work: &Path) -> Result<Value> {
        let size = self.seq_size()?;
        let path = work.join("seq");
        remove_file_if_present(&path)?;
        let buf = AlignedBuf::new(self.bs)?;
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        let start = Instant::now();
        let Some(mut file) = open(&options, &path, self.direct)? else {
            return Ok(Value::NotAvailable);
        };
        for i in 0..size / self.bs as u64 {
            if let Err(err) = file.write_all(buf.as_slice()) {
                if self.direct && i == 0 && is_einval(&err) {
                    return Ok(Value::NotAvailable);
                }
                return Err(err).context(format!(
                    "write #{i} of {} bytes to {} failed",
                    self.bs,
                    path.display()
                ));
            }
        }
        file.sync_all().with_context(|| format!("fsync of {} failed", path.display()))?;
        drop(file);
        Ok(Value::Number(mb_per_s(size, start.elapsed())))
    }

    fn read_seq(&self, work: &Path) -> Result<Value> {
        let size = self.seq_size()?;
        let path = work.join("seq");
        make_file(&path, size)?;
        let mut buf = AlignedBuf::new(self.bs)?;
        drop_caches()?;
        let start = Instant::now();
        let Some(mut file) = open(OpenOptions::new().read(true), &path, self.direct)? else {
            return Ok(Value::NotAvailable);
        };
        let mut total = 0u64;
        loop {
            match file.read(buf.as_mut_slice()) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if self.direct && total == 0 && is_einval(&err) => {
                    return Ok(Value::NotAvailable)
                }
                Err(err) => {
                    return Err(err)
                        .context(format!("read of {} at offset {total} failed", path.display()))
                }
            }
        }
        drop(file);
        let took = start.elapsed();
        ensure!(total == size, "read {total} bytes of {}, expected {size}", path.display());
        Ok(Value::Number(mb_per_s(size, took)))
    }

    fn pread(&self, work: &Path) -> Result<Value> {
        ensure!(self.io_size as u64 <= PREAD_FILE, "--io-size must be at most {PREAD_FILE}");
        let count = self.count(20_000);
        let path = work.join("pread.dat");
        make_file(&path, PREAD_FILE)?;
        let Some(file) = open(OpenOptions::new().read(true), &path, true)? else {
            return Ok(Value::NotAvailable);
        };
        let mut buf = AlignedBuf::new(self.io_size)?;
        let slots =
            if self.io_size.is_multiple_of(ALIGN) { PREAD_FILE / self.io_size as u64 } else { 1 };
        let offset = |i: usize| (i as u64 % slots) * self.io_size as u64;
        for i in 0..WARM_UP {
            match file.read_at(buf.as_mut_slice(), offset(i)) {
                Err(err) if i == 0 && is_einval(&err) => return Ok(Value::NotAvailable),
                other => check_pread(other, self.io_size, &path)?,
            }
        }
        let start = Instant::now();
        for i in 0..count {
            check_pread(file.read_at(buf.as_mut_slice(), offset(i)), self.io_size, &path)?;
        }
        Ok(Value::Number(us_per_op(count, start.elapsed())))
    }

    fn meta(&self, work: &Path) -> Result<Vec<Value>> {
        let count = self.count(2_000);
        let dir = work.join("meta");
        fresh_dir(&dir)?;
        let paths: Vec<PathBuf> = (0..count).map(|i| dir.join(format!("f{i}"))).collect();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o644);
        let started = Instant::now();
        for path in &paths {
            options.open(path).with_context(|| format!("create {} failed", path.display()))?;
        }
        let created = Instant::now();
        for path in &paths {
            fs::metadata(path).with_context(|| format!("stat {} failed", path.display()))?;
        }
        let statted = Instant::now();
        for path in &paths {
            fs::remove_file(path).with_context(|| format!("unlink {} failed", path.display()))?;
        }
        let unlinked = Instant::now();
        fs::remove_dir(&dir).with_context(|| format!("rmdir {} failed", dir.display()))?;
        let total = unlinked - started;
        Ok(vec![
            Value::Number(count as f64 / total.as_secs_f64().max(1e-9)),
            Value::Number(us_per_op(count, created - started)),
            Value::Number(us_per_op(count, statted - created)),
            Value::Number(us_per_op(count, unlinked - statted)),
        ])
    }

    fn path_ops(&self, work: &Path) -> Result<Vec<Value>> {
        let count = self.count(5_000);
        let dir = work.join("paths");
        fresh_dir(&dir)?;
        let (here, there) = (dir.join("a"), dir.join("b"));
        fs::create_dir(&here)?;
        fs::create_dir(&there)?;
        let names = [here.join("f"), there.join("f")];
        File::create(&names[0]).with_context(|| format!("create {} failed", names[0].display()))?;
        let timed = |op: &mut dyn FnMut(usize) -> io::Result<()>, what: &str| -> Result<Value> {
            let start = Instant::now();
            for i in 0..count {
                op(i).with_context(|| format!("{what} #{i} in {} failed", dir.display()))?;
            }
            Ok(Value::Number(us_per_op(count, start.elapsed())))
        };
        let rename = timed(&mut |i| fs::rename(&names[i % 2], &names[(i + 1) % 2]), "rename")?;
        let at = &names[count % 2];
        let chmod = timed(
            &mut |i| fs::set_permissions(at, fs::Permissions::from_mode(0o600 | (i as u32 & 0o44))),
            "chmod",
        )?;
        let utimens = timed(
            &mut |i| {
                let time = rustix::fs::Timespec { tv_sec: i as i64, tv_nsec: 0 };
                let times = rustix::fs::Timestamps { last_access: time, last_modification: time };
                let flags = rustix::fs::AtFlags::empty();
                Ok(rustix::fs::utimensat(rustix::fs::CWD, at, &times, flags)?)
            },
            "utimensat",
        )?;
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        Ok(vec![rename, chmod, utimens])
    }

    fn stat(&self) -> Result<Value> {
        let count = self.count(20_000);
        let path = self.dir.join("schemebench-stat");
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).mode(0o600);
        let held =
            options.open(&path).with_context(|| format!("create {} failed", path.display()))?;
        let stat =
            || fs::metadata(&path).with_context(|| format!("stat {} failed", path.display()));
        for _ in 0..WARM_UP {
            stat()?;
        }
        let started = Instant::now();
        for _ in 0..count {
            stat()?;
        }
        let took = started.elapsed();
        drop(held);
        let _ = fs::remove_file(&path); // a chan listener is gone already
        Ok(Value::Number(us_per_op(count, took)))
    }

    fn ls_l(&self, work: &Path) -> Result<Value> {
        let count = self.count(1_000);
        let dir = work.join("ls");
        fresh_dir(&dir)?;
        for i in 0..count {
            let path = dir.join(format!("entry{i:06}"));
            File::create(&path).with_context(|| format!("create {} failed", path.display()))?;
        }
        drop_caches()?;
        // Bring `ls`, libc and the path up to the mount point back from the system disk, so
        // the timed run pays only for the mount.
        run_ls(Path::new("/"))?;
        if let Some(parent) = self.dir.canonicalize()?.parent() {
            fs::metadata(parent)?;
        }
        let took = {
            let start = Instant::now();
            run_ls(&dir)?;
            start.elapsed()
        };
        let listed = fs::read_dir(&dir)?.count();
        ensure!(listed == count, "{} lists {listed} entries, expected {count}", dir.display());
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        Ok(Value::Number(ms(took)))
    }

    fn openread(&self, work: &Path) -> Result<Value> {
        let count = self.count(5_000);
        let path = work.join("small");
        fs::write(&path, AlignedBuf::new(SMALL_FILE)?.as_slice())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut buf = [0u8; SMALL_FILE];
        let open_read = |buf: &mut [u8]| -> Result<()> {
            let mut file =
                File::open(&path).with_context(|| format!("open {} failed", path.display()))?;
            let got = file.read(buf).with_context(|| format!("read {} failed", path.display()))?;
            ensure!(
                got == SMALL_FILE,
                "read {got} bytes of {}, expected {SMALL_FILE}",
                path.display()
            );
            Ok(())
        };
        open_read(&mut buf)?;
        let start = Instant::now();
        for _ in 0..count {
            open_read(&mut buf)?;
        }
        let took = start.elapsed();
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        Ok(Value::Number(count as f64 / took.as_secs_f64().max(1e-9)))
    }
}

fn ms(took: Duration) -> f64 {
    took.as_secs_f64() * 1e3
}

fn is_einval(err: &io::Error) -> bool {
    err.raw_os_error() == Some(Errno::INVAL.raw_os_error())
}

/// Opens `path`, with O_DIRECT if `direct`; `None` if the file system refuses O_DIRECT.
fn open(options: &OpenOptions, path: &Path, direct: bool) -> Result<Option<File>> {
    let mut options = options.clone();
    if direct {
        options.custom_flags(OFlags::DIRECT.bits() as i32);
    }
    match options.open(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if direct && is_einval(&err) => Ok(None),
        Err(err) => Err(err).context(format!(
            "open {}{} failed",
            path.display(),
            if direct { " with O_DIRECT" } else { "" }
        )),
    }
}

fn check_pread(result: io::Result<usize>, want: usize, path: &Path) -> Result<()> {
    match result {
        Ok(got) if got == want => Ok(()),
        Ok(got) => bail!("pread of {want} bytes from {} returned {got}", path.display()),
        Err(err) => Err(err).context(format!("pread of {} failed", path.display())),
    }
}

/// Makes `path` a file of `size` bytes unless it already is one (untimed preparation).
fn make_file(path: &Path, size: u64) -> Result<()> {
    if fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == size) {
        return Ok(());
    }
    let chunk = AlignedBuf::new(1 << 20)?;
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.as_slice().len() as u64) as usize;
        file.write_all(&chunk.as_slice()[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    file.sync_all().with_context(|| format!("fsync of {} failed", path.display()))
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).context(format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// An empty directory at `path` (a leftover from an interrupted run is removed first).
fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    fs::create_dir(path).with_context(|| format!("mkdir {} failed", path.display()))
}

/// Writes back dirty data and drops the page, dentry and inode caches (needs root).
pub(crate) fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", "3")
        .context("cannot drop caches: writing /proc/sys/vm/drop_caches needs root")
}

/// `LC_ALL=C ls -l DIR > /dev/null`; fails unless ls succeeds.
fn run_ls(dir: &Path) -> Result<()> {
    let out = Command::new("ls")
        .arg("-l")
        .arg(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run ls")?;
    if !out.status.success() {
        bail!(
            "ls -l {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
