//! `nulld`, `zerod` and `randd` as real child processes, through the client library.

mod util;

use scheme_bridge::CallError;
use scheme_protocol::Errno;
use syscall::flag::{MODE_CHR, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY};
use util::spawn;

#[test]
fn null_reads_eof_and_swallows_writes() {
    let client = spawn("nulld", "null");
    let fd = client.open("", O_RDWR).unwrap();
    assert_eq!(client.read(fd, 4096).unwrap(), b"");
    assert_eq!(client.write(fd, &[1; 1000]).unwrap(), 1000);
    assert_eq!(client.fstat(fd).unwrap().st_mode, MODE_CHR | 0o666);
    assert_eq!(client.fpath(fd).unwrap(), b"null:");
    client.close(fd).unwrap();
}

#[test]
fn zero_fills_whole_reads_of_a_megabyte() {
    let client = spawn("zerod", "zero");
    let fd = client.open("", O_RDONLY).unwrap();
    let bytes = client.read(fd, 1 << 20).unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    assert!(bytes.iter().all(|&b| b == 0));
}

#[test]
fn rand_reads_differ_and_permissions_are_checked() {
    let client = spawn("randd", "rand");
    let fd = client.open("", O_RDONLY).unwrap();
    let a = client.read(fd, 64).unwrap();
    let b = client.read(fd, 64).unwrap();
    assert_eq!((a.len(), b.len()), (64, 64));
    assert_ne!(a, b);
    assert_eq!(client.write(fd, b"entropy").unwrap_or(7), 7);
    assert_eq!(client.fpath(fd).unwrap(), b"rand");
    assert_eq!(client.open("elsewhere", O_RDONLY), Err(CallError::Errno(Errno::ENOENT)));
    assert_eq!(client.open("", O_CREAT | O_EXCL | O_RDWR), Err(CallError::Errno(Errno::EEXIST)));
    let user = client.with_caller(scheme_protocol::Caller { pid: 9, uid: 1000, gid: 1000 });
    assert_eq!(user.open("urandom", O_WRONLY), Err(CallError::Errno(Errno::EPERM)));
    assert!(user.open("urandom", O_RDONLY).is_ok());
}

/// Blocking calls from many threads on a client with no reader thread: one caller at a time
/// reads the wire and hands the others' answers on (leader/follower), and must always hand
/// the lead on, or a caller waits forever. A watchdog fails the test instead of hanging.
#[test]
fn sixteen_threads_of_blocking_calls_all_get_their_own_answers() {
    let client = spawn("zerod", "zero");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for thread in 0..16usize {
        let (client, done_tx) = (client.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let fd = client.open("", O_RDONLY).unwrap();
            for call in 0..500 {
                let len = 1 + (thread * 500 + call) % 3000;
                assert_eq!(client.read(fd, len).unwrap().len(), len, "thread {thread}");
            }
            client.close(fd).unwrap();
            done_tx.send(thread).unwrap();
        });
    }
    for _ in 0..16 {
        let finished = done_rx.recv_timeout(std::time::Duration::from_secs(30));
        assert!(finished.is_ok(), "a caller never got its answer (or panicked)");
    }
}
