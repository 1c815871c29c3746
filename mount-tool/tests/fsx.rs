//! fsx-style data integrity on a ramfs mount: FSX_OPS (default 10,000) seeded random operations
//! on three files, each file checked against an in-memory model of its bytes. The operations:
//! pwrite at a random offset and length (often past the end, leaving a hole), pread, seek+read,
//! read through an mmap, truncate up and down, fsync, close and reopen, O_APPEND writes, through
//! a buffered and an O_DIRECT descriptor mixed at random. Every write is read back at once
//! (through the other descriptor); every fsync is followed by a check of the whole file, size
//! included; at the end every byte of every file is compared. A mismatch fails with the seed,
//! the first differing offset and the last 20 operations. Replay or lengthen a run with
//! `FSX_SEED=N FSX_OPS=100000 cargo test -p schememount --test fsx -- --nocapture`.

#[path = "util/load.rs"]
mod load;
mod util;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use load::Rng;
use util::Mount;

const FILES: usize = 3;
/// Files stay below this size, so holes, truncates and overlaps are frequent.
const MAX_SIZE: usize = 128 * 1024;
const MAX_LEN: usize = 24 * 1024;

/// One file under test: its model and three open descriptors.
struct Subject {
    path: PathBuf,
    model: Vec<u8>,
    buffered: File,
    direct: File,
    append: File,
}

fn open(path: &Path) -> (File, File, File) {
    let rw = || {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        options
    };
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    (
        rw().open(path).expect("open buffered"),
        rw().custom_flags(direct).open(path).expect("open O_DIRECT"),
        OpenOptions::new().append(true).open(path).expect("open O_APPEND"),
    )
}

struct Fsx {
    seed: u64,
    rng: Rng,
    files: Vec<Subject>,
    log: VecDeque<String>,
    step: usize,
    verified: u64,
}

impl Fsx {
    fn note(&mut self, op: String) {
        if self.log.len() == 20 {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {op}", self.step));
    }

    /// Compares `got`, the answer to a read of `want` bytes at `offset` of file `f`, with the
    /// model (which says how many bytes the read must return); panics at the first difference
    /// with the op log.
    fn check(&mut self, f: usize, offset: usize, want: usize, got: &[u8], how: &str) {
        let model = &self.files[f].model;
        let start = offset.min(model.len());
        let expected = &model[start..(offset + want).min(model.len()).max(start)];
        if got == expected {
            self.verified += got.len() as u64;
            return;
        }
        let differs = got.iter().zip(expected).position(|(a, b)| a != b);
        let short_or_long = (got.len() != expected.len()).then(|| got.len().min(expected.len()));
        let at = differs.or(short_or_long).expect("got differs from expected");
        panic!(
            "fsx: {how} of file {f}: first difference at offset {} (asked {want} bytes at \
             {offset}, got {}, the model has {} there, model size {}): got {:02x?}, \
             expected {:02x?}\nseed {} (replay: FSX_SEED={} FSX_OPS={}); last operations:\n{}",
            offset + at,
            got.len(),
            expected.len(),
            model.len(),
            &got[at..(at + 8).min(got.len())],
            &expected[at..(at + 8).min(expected.len())],
            self.seed,
            self.seed,
            self.step + 1,
            self.log.iter().cloned().collect::<Vec<_>>().join("\n")
        );
    }

    fn handle(&mut self, f: usize, direct: bool) -> &mut File {
        let file = &mut self.files[f];
        if direct {
            &mut file.direct
        } else {
            &mut file.buffered
        }
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the file) with pread.
    fn pread(&mut self, f: usize, direct: bool, offset: usize, len: usize) -> Vec<u8> {
        let file = self.handle(f, direct);
        let mut buf = vec![0; len];
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..], (offset + done) as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(err) => panic!("pread {len} at {offset} of file {f}: {err}"),
            }
        }
        buf.truncate(done);
        buf
    }

    /// The whole file, its size as fstat sees it, and an end-of-file read, against the model.
    fn verify_whole(&mut self, f: usize, direct: bool, how: &str) {
        let size = self.handle(f, direct).metadata().expect("fstat").len() as usize;
        let model_len = self.files[f].model.len();
        let log = self.log.iter().cloned().collect::<Vec<_>>().join("\n");
        assert_eq!(
            size, model_len,
            "{how}: fstat size of file {f}, seed {}; log:\n{log}",
            self.seed
        );
        let got = self.pread(f, direct, 0, model_len + 4096);
        self.check(f, 0, model_len + 4096, &got, how);
    }

    fn write(&mut self, f: usize, direct: bool, offset: usize, data: &[u8]) {
        self.handle(f, direct).write_all_at(data, offset as u64).expect("pwrite");
        let model = &mut self.files[f].model;
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), 0); // the hole reads as zeros
        }
        model[offset..offset + data.len()].copy_from_slice(data);
    }

    fn step(&mut self) {
        let f = self.rng.below(FILES as u64) as usize;
        let direct = self.rng.one_in(3);
        let kind = if direct { "direct" } else { "buffered" };
        let size = self.files[f].model.len();
        match self.rng.below(100) {
            0..=29 => {
                let len = self.rng.between(1, MAX_LEN);
                let offset = self.rng.below((MAX_SIZE - len) as u64) as usize;
                let data = self.rng.bytes(len);
                self.note(format!("pwrite {kind} file {f} [{offset}, +{len}) size {size}"));
                self.write(f, direct, offset, &data);
                // Read back at once, through the other descriptor.
                let back = self.pread(f, !direct, offset, len);
                self.check(f, offset, len, &back, "read-back after pwrite");
                if self.rng.one_in(4) {
                    self.note(format!("fsync {kind} file {f}"));
                    self.handle(f, direct).sync_all().expect("fsync");
                    self.verify_whole(f, !direct, "whole file after pwrite+fsync");
                }
            }
            30..=37 => {
                let len = self.rng.between(1, MAX_LEN / 4).min(MAX_SIZE.saturating_sub(size));
                let data = self.rng.bytes(len);
                self.note(format!("append file {f} +{len} at size {size}"));
                self.files[f].append.write_all(&data).expect("O_APPEND write");
                self.files[f].model.extend_from_slice(&data);
                let back = self.pread(f, direct, size, len + 100);
                self.check(f, size, len + 100, &back, "read-back after append");
            }
            38..=59 => {
                let offset = self.rng.below(MAX_SIZE as u64 + 1) as usize;
                let len = self.rng.between(1, MAX_LEN);
                self.note(format!("pread {kind} file {f} [{offset}, +{len}) size {size}"));
                let got = self.pread(f, direct, offset, len);
                self.check(f, offset, len, &got, "pread");
            }
            60..=67 => {
                let offset = self.rng.below(size as u64 + 1) as usize;
                let len = self.rng.between(1, MAX_LEN);
                self.note(format!("seek+read {kind} file {f} [{offset}, +{len}) size {size}"));
                let file = self.handle(f, direct);
                file.seek(SeekFrom::Start(offset as u64)).expect("lseek");
                let mut got = Vec::new();
                file.take(len as u64).read_to_end(&mut got).expect("read");
                self.check(f, offset, len, &got, "seek+read");
            }
            68..=75 if size > 0 => {
                self.note(format!("mmap read file {f} size {size}"));
                let got = mmap_read(&self.files[f].buffered, size);
                self.check(f, 0, size, &got, "mmap read");
            }
            76..=85 => {
                let len = if self.rng.one_in(2) {
                    self.rng.below(size as u64 + 1) as usize
                } else {
                    self.rng.below(MAX_SIZE as u64) as usize
                };
                self.note(format!("truncate {kind} file {f} {size} -> {len}"));
                self.handle(f, direct).set_len(len as u64).expect("ftruncate");
                self.files[f].model.resize(len, 0);
                self.verify_whole(f, !direct, "whole file after truncate");
            }
            86..=91 => {
                self.note(format!("fsync {kind} file {f}"));
                self.handle(f, direct).sync_all().expect("fsync");
                self.verify_whole(f, direct, "whole file after fsync");
            }
            _ => {
                self.note(format!("close+reopen file {f}"));
                let subject = &mut self.files[f];
                (subject.buffered, subject.direct, subject.append) = open(&subject.path);
                self.verify_whole(f, direct, "whole file after reopen");
            }
        }
    }
}

/// The first `len` bytes of `file` through a shared read-only mapping.
fn mmap_read(file: &File, len: usize) -> Vec<u8> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    // SAFETY: a fresh read-only mapping of `len` bytes (len > 0) at an address the kernel
    // picks; nothing else refers to it.
    let ptr =
        unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED, file, 0) }
            .expect("mmap (regular ramfs files are not direct-io, so the mount supports it)");
    // SAFETY: the mapping is `len` readable bytes, and the file is at least `len` bytes long
    // (nobody else truncates it), so no page of it faults with SIGBUS.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec();
    // SAFETY: the mapping was made above and `bytes` is a copy.
    unsafe { munmap(ptr, len) }.expect("munmap");
    bytes
}

#[test]
fn ten_thousand_random_operations_match_the_model_byte_for_byte() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let seed = load::seed_from_env("FSX_SEED");
    let ops: usize = std::env::var("FSX_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    eprintln!("fsx: seed {seed}, {ops} operations");
    let files = (0..FILES)
        .map(|i| {
            let path = mount.path(&format!("fsx{i}"));
            let (buffered, direct, append) = open(&path);
            Subject { path, model: Vec::new(), buffered, direct, append }
        })
        .collect();
    let mut fsx =
        Fsx { seed, rng: Rng::new(seed), files, log: VecDeque::new(), step: 0, verified: 0 };
    let started = std::time::Instant::now();
    for step in 0..ops {
        fsx.step = step;
        fsx.step();
    }
    // The end: every descriptor closed, then every byte of every file.
    fsx.step = ops;
    for subject in &mut fsx.files {
        subject.buffered = File::open("/dev/null").unwrap();
        subject.direct = File::open("/dev/null").unwrap();
        subject.append = File::open("/dev/null").unwrap();
    }
    let mut total = 0;
    for f in 0..FILES {
        let got = std::fs::read(&fsx.files[f].path).expect("read the whole file");
        fsx.check(f, 0, MAX_SIZE + 1, &got, "final whole-file read");
        total += got.len();
    }
    eprintln!(
        "fsx: seed {seed}: {ops} operations, {} bytes verified ({total} bytes in the final files) \
         in {:.1?}",
        fsx.verified,
        started.elapsed()
    );
}
