//! Differential test: a seeded random sequence of file operations (create, write at an
//! offset, truncate, rename, link, unlink, mkdir, rmdir, chmod) applied both to a tmpfs
//! directory and to a mounted ramfs, comparing every result (errno included) and the whole
//! tree after each step. DIFF_STEPS (default 1000) and DIFF_SEED (default: two fixed seeds)
//! make longer runs: `DIFF_STEPS=100000 cargo test -p schememount --test differential`.

mod util;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use util::Mount;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const DIRS: [&str; 5] = ["", "a", "b", "a/c", "a/c/d"];
const NAMES: [&str; 5] = ["f", "g", "h", "a", "c"];

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Link(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Chmod(String, u32),
    Read(String),
}

fn path(rng: &mut Rng) -> String {
    let dir = rng.pick(&DIRS);
    let name = rng.pick(&NAMES);
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn random_op(rng: &mut Rng) -> Op {
    match rng.below(13) {
        0 | 10 | 11 => Op::Create(path(rng)),
        1 | 12 => {
            let len = rng.below(300) as usize;
            let byte = rng.below(256) as u8;
            Op::Write(path(rng), rng.below(5000), vec![byte; len])
        }
        2 => Op::Truncate(path(rng), rng.below(9000)),
        3 => Op::Rename(path(rng), path(rng)),
        4 => Op::Link(path(rng), path(rng)),
        5 => Op::Unlink(path(rng)),
        6 => Op::Mkdir(path(rng)),
        7 => Op::Rmdir(path(rng)),
        8 => Op::Chmod(path(rng), [0o600, 0o644, 0o755, 0o400][rng.below(4) as usize]),
        _ => Op::Read(path(rng)),
    }
}

/// Applies `op` under `root`; the outcome is the data read or the errno.
fn apply(root: &Path, op: &Op) -> Result<Vec<u8>, i32> {
    let at = |p: &str| root.join(p);
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let done = |r: std::io::Result<()>| r.map(|()| Vec::new()).map_err(errno);
    match op {
        Op::Create(p) => {
            done(OpenOptions::new().write(true).create_new(true).open(at(p)).map(drop))
        }
        Op::Write(p, offset, data) => done((|| {
            let mut file = OpenOptions::new().write(true).open(at(p))?;
            file.seek(SeekFrom::Start(*offset))?;
            file.write_all(data)
        })()),
        Op::Truncate(p, len) => {
            done(OpenOptions::new().write(true).open(at(p)).and_then(|f| f.set_len(*len)))
        }
        Op::Rename(from, to) => done(fs::rename(at(from), at(to))),
        Op::Link(from, to) => done(fs::hard_link(at(from), at(to))),
        Op::Unlink(p) => done(fs::remove_file(at(p))),
        Op::Mkdir(p) => done(fs::create_dir(at(p))),
        Op::Rmdir(p) => done(fs::remove_dir(at(p))),
        Op::Chmod(p, mode) => done(fs::set_permissions(at(p), Permissions::from_mode(*mode))),
        Op::Read(p) => {
            let mut out = Vec::new();
            fs::File::open(at(p))
                .and_then(|mut f| f.read_to_end(&mut out))
                .map(|_| out)
                .map_err(errno)
        }
    }
}

/// Everything comparable about a tree: path -> (kind, mode bits, nlink for files, content).
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(entry.path());
                out.insert(rel, ('d', meta.mode() & 0o7777, 0, Vec::new()));
            } else {
                let content = fs::read(entry.path()).unwrap_or_default();
                out.insert(rel, ('f', meta.mode() & 0o7777, meta.nlink(), content));
            }
        }
    }
    out
}

fn run(seed: u64, steps: usize) {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let reference = tempfile::tempdir_in("/dev/shm").expect("tmpfs at /dev/shm");
    let mut rng = Rng(seed | 1);
    for dir in &DIRS[1..] {
        let op = Op::Mkdir(dir.to_string());
        assert_eq!(apply(mount.root(), &op), apply(reference.path(), &op));
    }
    let (mut succeeded, mut errnos) = (0, std::collections::BTreeSet::new());
    for step in 0..steps {
        let op = random_op(&mut rng);
        let expected = apply(reference.path(), &op);
        let got = apply(mount.root(), &op);
        assert_eq!(got, expected, "seed {seed} step {step}: {op:?}");
        assert_eq!(
            snapshot(mount.root()),
            snapshot(reference.path()),
            "seed {seed} after step {step}: {op:?}"
        );
        match got {
            Ok(_) => succeeded += 1,
            Err(errno) => {
                errnos.insert(errno);
            }
        }
    }
    // The sequence must exercise both success and a variety of errors to mean anything.
    assert!(succeeded * 10 > steps, "only {succeeded} of {steps} operations succeeded");
    assert!(errnos.len() >= 5 || steps < 200, "too few distinct errnos: {errnos:?}");
    eprintln!("seed {seed}: {steps} steps, {succeeded} succeeded, errnos {errnos:?}");
}

fn steps() -> usize {
    std::env::var("DIFF_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[test]
fn ramfs_matches_tmpfs_operation_by_operation() {
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(seed) => vec![seed],
        None => vec![1, 2026],
    };
    for seed in seeds {
        run(seed, steps());
    }
}
