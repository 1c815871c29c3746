//! The `timed` daemon as a real child process: clocks read through the wire, and absolute
//! deadlines that post `EVENT_READ` once when they pass.

mod util;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scheme_bridge::CallError;
use scheme_protocol::{Errno, Fd};
use syscall::flag::{EVENT_READ, O_RDWR};
use util::{spawn, PROMPTLY};

fn now(client: &scheme_bridge::Client, fd: Fd) -> (i64, i32) {
    let bytes = client.read(fd, 16).unwrap();
    assert_eq!(bytes.len(), 16);
    let sec = i64::from_le_bytes(bytes[..8].try_into().unwrap());
    let nsec = i32::from_le_bytes(bytes[8..12].try_into().unwrap());
    (sec, nsec)
}

fn timespec(sec: i64, nsec: i32) -> Vec<u8> {
    let mut bytes = sec.to_le_bytes().to_vec();
    bytes.extend(nsec.to_le_bytes());
    bytes.extend([0; 4]);
    bytes
}

#[test]
fn a_deadline_200ms_ahead_posts_its_event_between_200_and_400ms() {
    let client = spawn("timed", "time");
    let fd = client.open("4", O_RDWR).unwrap();
    let (sec, nsec) = now(&client, fd);
    let deadline_ns = sec as i128 * 1_000_000_000 + nsec as i128 + 200_000_000;
    let deadline =
        timespec((deadline_ns / 1_000_000_000) as i64, (deadline_ns % 1_000_000_000) as i32);
    let written = Instant::now();
    assert_eq!(client.write(fd, &deadline).unwrap(), 16);
    let event = client.events().recv_timeout(PROMPTLY).unwrap();
    let elapsed = written.elapsed();
    assert_eq!((event.fd, event.flags), (fd, EVENT_READ.bits() as u64));
    assert!(elapsed >= Duration::from_millis(195), "early: {elapsed:?}");
    assert!(elapsed <= Duration::from_millis(400), "late: {elapsed:?}");
    assert!(client.events().recv_timeout(Duration::from_millis(300)).is_err(), "posted once");
}

#[test]
fn realtime_reads_the_wall_clock_and_unknown_clocks_are_enoent() {
    let client = spawn("timed", "time");
    let fd = client.open("1", O_RDWR).unwrap();
    let (sec, _) = now(&client, fd);
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((sec - wall).abs() <= 2, "{sec} vs {wall}");
    assert_eq!(client.open("2", O_RDWR), Err(CallError::Errno(Errno::ENOENT)));
    assert_eq!(client.read(fd, 15).unwrap(), b"");
    assert_eq!(client.read(fd, 40).unwrap().len(), 32);
}
