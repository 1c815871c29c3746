//! The compound calls with a real daemon process: ramfsd is served by the inline loop, which
//! runs a compound's later packets (fstat, close) before it reads the next frame.

use std::process::Command;

use scheme_bridge::{CallError, Client};
use scheme_protocol::{Call, Errno, PathStep, Reply};

const O_CREAT_RDWR: u64 = 0x0203_0000 | 0o644;
const O_RDONLY: u64 = 0x0001_0000;
const O_WRONLY: u64 = 0x0002_0000;
const O_STAT: u64 = 0x2000_0000;

fn ramfs() -> Client {
    Client::spawn(Command::new(env!("CARGO_BIN_EXE_ramfsd")), "ramfs").expect("ramfsd starts")
}

#[test]
fn open_stat_creates_and_stat_path_sees_what_was_written() {
    let client = ramfs();
    assert!(client.compound());
    let opened = client.call(Call::OpenStat { path: "f".into(), flags: O_CREAT_RDWR });
    let Ok(Reply::Opened { fd, stat }) = opened else { panic!("got {opened:?}") };
    assert_eq!((stat.st_mode & 0o170000, stat.st_size), (0o100000, 0));
    assert_eq!(client.write(fd, b"hello").unwrap(), 5);
    let Ok(Reply::Stat(stat)) = client.call(Call::StatPath { path: "f".into() }) else {
        panic!("a stat_path of an existing file is answered with its stat");
    };
    assert_eq!(stat.st_size, 5);
    client.close(fd).unwrap();
    let missing = client.call(Call::StatPath { path: "nope".into() });
    assert_eq!(missing, Err(CallError::Errno(Errno::ENOENT)));
}

/// Free bytes of the ramfs, from an fstatvfs of its root.
fn free_bytes(client: &Client) -> u64 {
    let root = client.open("", O_RDONLY as usize).unwrap();
    let Ok(Reply::StatVfs(vfs)) = client.call(Call::Fstatvfs { fd: root }) else {
        panic!("ramfs answers fstatvfs");
    };
    client.close(root).unwrap();
    vfs.f_bfree * u64::from(vfs.f_bsize)
}

/// Creates `name` holding 1 MiB and closes it.
fn mebibyte_file(client: &Client, name: &str) {
    let fd = client.open(name, O_CREAT_RDWR as usize).unwrap();
    let data = vec![7u8; 1 << 20];
    let mut written = 0;
    while written < data.len() {
        written += client.write(fd, &data[written..]).unwrap();
    }
    client.close(fd).unwrap();
}

#[test]
fn stat_paths_close_their_handles_so_unlinked_space_comes_back() {
    let client = ramfs();
    // An open handle keeps an unlinked file's bytes, as on Linux: the measure works.
    mebibyte_file(&client, "held");
    let held = client.open("held", O_RDONLY as usize).unwrap();
    let before = free_bytes(&client);
    assert_eq!(client.call(Call::Unlink { path: "held".into() }), Ok(Reply::Value(0)));
    assert_eq!(free_bytes(&client), before, "an open handle keeps the bytes");
    client.close(held).unwrap();
    assert!(free_bytes(&client) >= before + (1 << 20));

    mebibyte_file(&client, "f");
    for _ in 0..500 {
        assert!(matches!(client.call(Call::StatPath { path: "f".into() }), Ok(Reply::Stat(_))));
    }
    let before = free_bytes(&client);
    assert_eq!(client.call(Call::Unlink { path: "f".into() }), Ok(Reply::Value(0)));
    assert!(free_bytes(&client) >= before + (1 << 20), "a stat_path left a handle open");
    let gone = client.call(Call::OpenStat { path: "f".into(), flags: O_RDONLY });
    assert_eq!(gone, Err(CallError::Errno(Errno::ENOENT)));
}

#[test]
fn on_path_renames_truncates_and_stats_in_one_call_each() {
    let client = ramfs();
    assert!(client.path_steps());
    mebibyte_file(&client, "a");
    let rename = vec![PathStep::Frename { path: "b".into() }];
    let renamed = client.call(Call::OnPath { path: "a".into(), flags: O_STAT, steps: rename });
    assert_eq!(renamed, Ok(Reply::Value(0)));
    let gone = client.call(Call::StatPath { path: "a".into() });
    assert_eq!(gone, Err(CallError::Errno(Errno::ENOENT)));
    let steps = vec![PathStep::Ftruncate { len: 10 }, PathStep::Fstat];
    let truncated = client.call(Call::OnPath { path: "b".into(), flags: O_WRONLY, steps });
    let Ok(Reply::Stat(stat)) = truncated else { panic!("got {truncated:?}") };
    assert_eq!(stat.st_size, 10);
    // 1,000 of them leave no handle behind: the unlinked file's bytes come back.
    for _ in 0..1000 {
        let steps = vec![PathStep::Fstat];
        let stat = client.call(Call::OnPath { path: "b".into(), flags: O_STAT, steps });
        assert!(matches!(stat, Ok(Reply::Stat(_))), "got {stat:?}");
    }
    mebibyte_file(&client, "c");
    let before = free_bytes(&client);
    assert_eq!(client.call(Call::Unlink { path: "c".into() }), Ok(Reply::Value(0)));
    assert!(free_bytes(&client) >= before + (1 << 20), "an on_path left a handle open");
}
