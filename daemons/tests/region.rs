//! The payload region with a real daemon process: ramfsd maps the region `Client::spawn` hands
//! it, reads and writes land in it and come from it, ranges outside it are refused, and a
//! daemon spawned with regions turned off carries payloads inline.

use std::process::Command;

use scheme_bridge::{CallError, Client};
use scheme_protocol::{Call, Errno, Fd, Reply};

const O_CREAT_RDWR: u64 = 0x0203_0000 | 0o644;

fn ramfs(env: &[(&str, &str)]) -> Client {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ramfsd"));
    command.envs(env.iter().copied());
    Client::spawn(command, "ramfs").expect("ramfsd starts")
}

fn value(reply: Result<Reply, CallError>) -> u64 {
    match reply {
        Ok(Reply::Value(value)) => value,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn a_spawned_daemon_reads_and_writes_through_the_region() {
    let client = ramfs(&[]);
    let slots = client.payload_slots().expect("ramfsd mapped the region");
    let first = slots.take().unwrap();
    let second = slots.take().unwrap();
    let fd = Fd(value(client.call(Call::Open { path: "f".into(), flags: O_CREAT_RDWR })));

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    assert!(first.region().copy_in(first.at(), &data));
    let len = data.len() as u64;
    let written = client.call(Call::WriteRegion { fd, len, at: first.at() });
    assert_eq!(value(written), len);

    value(client.call(Call::Lseek { fd, offset: 0, whence: 0 }));
    let read = client.call(Call::ReadRegion { fd, len: 1 << 20, at: second.at() });
    assert_eq!(value(read), len, "a short read: the file is 300,000 bytes");
    assert_eq!(second.region().copy_out(second.at(), len).unwrap(), data);
}

#[test]
fn ranges_outside_the_region_are_einval_and_the_daemon_goes_on() {
    let client = ramfs(&[]);
    let size = client.payload_slots().unwrap().region().len() as u64;
    let fd = Fd(value(client.call(Call::Open { path: "f".into(), flags: O_CREAT_RDWR })));
    for (len, at) in [(1, size), (2, size - 1), (16, u64::MAX - 7)] {
        let err = client.call(Call::ReadRegion { fd, len, at }).unwrap_err();
        assert!(matches!(err, CallError::Errno(Errno::EINVAL)), "read {len} at {at}: {err:?}");
        let err = client.call(Call::WriteRegion { fd, len, at }).unwrap_err();
        assert!(matches!(err, CallError::Errno(Errno::EINVAL)), "write {len} at {at}: {err:?}");
    }
    assert_eq!(value(client.call(Call::Write { fd, data: b"still fine".as_slice().into() })), 10);
}

#[test]
fn with_regions_off_no_region_is_agreed_and_region_calls_are_refused() {
    let client = ramfs(&[("SCHEME_BRIDGE_REGION", "0")]);
    assert!(client.payload_slots().is_none());
    let fd = Fd(value(client.call(Call::Open { path: "f".into(), flags: O_CREAT_RDWR })));
    let err = client.call(Call::ReadRegion { fd, len: 10, at: 0 }).unwrap_err();
    assert!(matches!(err, CallError::Errno(Errno::EINVAL)), "{err:?}");
}

/// A daemon whose environment names a descriptor that is no payload region (here a regular
/// file of 8 KiB on fd 5, which mmap would accept) maps nothing and does not claim the feature.
#[test]
fn a_stray_region_variable_naming_another_file_maps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-region");
    std::fs::write(&file, vec![7u8; 8192]).unwrap();
    let script = format!("exec 5<>'{}'; exec '{}'", file.display(), env!("CARGO_BIN_EXE_ramfsd"));
    let mut child = Command::new("/bin/sh")
        .args(["-c", &script])
        .env("SCHEME_BRIDGE_REGION_FD", "5")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut frames = scheme_protocol::FrameReader::new(stdout, scheme_protocol::MAX_FRAME);
    let hello = scheme_protocol::handshake::read_hello(&mut frames).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(hello.features & scheme_protocol::FEATURE_REGION, 0);
    assert_eq!(std::fs::read(&file).unwrap(), vec![7u8; 8192]);
}
