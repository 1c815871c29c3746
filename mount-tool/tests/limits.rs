//! Resource limits through a real mount: open files per uid (`-o max_handles`, EMFILE), daemon
//! calls in flight (`-o max_requests`, EAGAIN), and name length (ENAMETOOLONG). Each limit
//! refuses the one request over it and lets the others, and later ones, through.

mod util;

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use util::Mount;

fn errno(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or_else(|| panic!("not an OS error: {err}"))
}

#[test]
fn open_files_past_max_handles_get_emfile_and_closing_one_makes_room() {
    let Some(mount) = Mount::start(&["-o", "max_handles=3", "ramfs"]) else { return };
    let open: Vec<File> =
        (0..3).map(|i| File::create(mount.path(&format!("f{i}"))).unwrap()).collect();
    let refused = File::create(mount.path("f3")).unwrap_err();
    assert_eq!(errno(&refused), libc_errno::EMFILE, "{refused}");
    let refused = File::open(mount.path("f0")).unwrap_err();
    assert_eq!(errno(&refused), libc_errno::EMFILE, "{refused}");
    drop(open);
    // Releases reach the bridge asynchronously; the quota frees up as soon as they do.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match File::open(mount.path("f0")) {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline && errno(&err) == libc_errno::EMFILE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("open after closing: {err}"),
        }
    }
}

#[test]
fn a_name_over_255_bytes_is_enametoolong_and_255_is_fine() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let longest = "n".repeat(255);
    File::create(mount.path(&longest)).unwrap();
    let too_long = "n".repeat(256);
    let err = File::create(mount.path(&too_long)).unwrap_err();
    assert_eq!(errno(&err), libc_errno::ENAMETOOLONG, "{err}");
}

#[test]
fn a_stat_past_max_requests_gets_eagain_while_the_blocked_reads_stay() {
    let Some(mount) = Mount::start(&["-o", "max_requests=3", "chan"]) else { return };
    let _listener = File::create(mount.path("quiet")).unwrap();
    let streams: Vec<File> = (0..3).map(|_| File::open(mount.path("quiet")).unwrap()).collect();
    let before = threads_waiting_on_fuse();
    let blocked: Vec<_> =
        streams.into_iter().map(|mut s| std::thread::spawn(move || s.read(&mut [0; 16]))).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_waiting_on_fuse() < before + 3 {
        assert!(Instant::now() < deadline, "the three reads never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Every place is taken: a stat, which needs a daemon call, is refused rather than queued.
    let err = std::fs::metadata(mount.path("quiet")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    assert!(blocked.iter().all(|reader| !reader.is_finished()), "a blocked read was refused");
}

/// Threads of this process asleep in a FUSE request (`request_wait_answer`).
fn threads_waiting_on_fuse() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("wchan")).ok())
        .filter(|wchan| wchan.contains("request_wait_answer") || wchan.contains("fuse"))
        .count()
}

/// Linux errno values the tests compare with.
mod libc_errno {
    pub const EMFILE: i32 = 24;
    pub const ENAMETOOLONG: i32 = 36;
}
