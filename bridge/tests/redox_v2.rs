//! The v2 translator (`Sqe` -> wire -> `Cqe`) between a simulated kernel, whose Sqes point at
//! this test's own buffers as the Redox kernel maps caller memory, and a scripted daemon:
//! every opcode of reference table 2.2 that can cross a pipe, positioned I/O, path
//! resolution for OpenAt/UnlinkAt, StdFsCall kinds, the opcodes answered EOPNOTSUPP, one-way
//! messages, events as SendFevent, Cancel, and a malicious or dying daemon.

use std::io;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use scheme_bridge::redox::sim::{ScriptedDaemon, SimKernel, V2};
use scheme_bridge::redox::v2::{self, ROOT_ID};
use scheme_bridge::redox::{CallerMemory, UNKNOWN_ID};
use scheme_protocol::{
    Bytes, Call, Caller, Errno, Fd, Frame, Reply, Response, Stat, StatVfs, TimeSpec,
};
use syscall::data::{Stat as RedoxStat, StatVfs as RedoxStatVfs};
use syscall::error::{Error, EINTR, EINVAL, EIO, ENOSYS, EOPNOTSUPP};
use syscall::flag::{F_GETFL, O_CREAT, O_DIRECTORY, O_NONBLOCK, O_RDWR, SEEK_SET};
use syscall::schemev2::{Cqe, CqeOpcode, Opcode, Sqe, SqeFlags};

const QUIET: Duration = Duration::from_millis(100);
const CALLER: Caller = Caller { pid: 42, uid: 1000, gid: 1000 };
/// `args[5]` of a request from [`CALLER`].
const IDS: u64 = 1000 | 1000 << 32;
/// A handle id the scripted daemon pretends to have.
const FD: u64 = 3;
/// Raw opcodes of redox_syscall 0.9.
const UNLINK_AT: u8 = 32;
const STD_FS_CALL: u8 = 33;
const DETACH: u8 = 34;
/// `NewFdFlags::POSITIONED`.
const POSITIONED: u8 = 1;
/// Not positioned: the handle's own offset.
const NO_OFFSET: u64 = u64::MAX;

struct Rig {
    kernel: SimKernel<V2>,
    daemon: ScriptedDaemon,
    translator: JoinHandle<io::Result<()>>,
}

fn rig() -> Rig {
    let _ = env_logger::builder().is_test(true).try_init();
    let (daemon, client) = ScriptedDaemon::connect("test").unwrap();
    let (kernel, socket) = SimKernel::<V2>::new().unwrap();
    // SAFETY: every Sqe these tests send points at buffers that live until it is answered
    // (`SimCall::answer` aborts the process rather than unwind past a request that was never
    // answered), and Sqes that are never answered carry no pointers.
    let memory = unsafe { CallerMemory::assume_mapped() };
    let translator =
        thread::spawn(move || v2::serve(client, memory, socket.requests, socket.answers));
    Rig { kernel, daemon, translator }
}

fn sqe(opcode: u8, [a0, a1, a2, a3, a4]: [u64; 5]) -> Sqe {
    Sqe {
        opcode,
        sqe_flags: SqeFlags::empty(),
        _rsvd: 0,
        tag: 0,
        args: [a0, a1, a2, a3, a4, IDS],
        caller: 42,
    }
}

fn op(opcode: Opcode, args: [u64; 5]) -> Sqe {
    sqe(opcode as u8, args)
}

fn std_fs(kind: u64, [id, ptr, len, arg1, arg2]: [u64; 5]) -> Sqe {
    let mut request = sqe(STD_FS_CALL, [id, ptr, len, kind, arg1]);
    request.args[5] = arg2;
    request
}

fn err(errno: i32) -> u64 {
    Error::mux(Err(Error::new(errno))) as u64
}

fn addr(buf: &[u8]) -> u64 {
    buf.as_ptr() as u64
}

fn addr_mut(buf: &mut [u8]) -> u64 {
    buf.as_mut_ptr() as u64
}

fn path(text: &str) -> (u64, u64) {
    (text.as_ptr() as u64, text.len() as u64)
}

impl Rig {
    /// Sends `request`, checks the daemon gets `expected` from `caller`, answers `response`,
    /// and checks the Cqe is a RespondRegular for the request's tag with `extra`; returns its
    /// result.
    fn round_trip_as(
        &mut self,
        request: Sqe,
        caller: Caller,
        expected: Call,
        response: Response,
        extra: u8,
    ) -> u64 {
        let call = self.kernel.start(request);
        let (tag, got_caller, got) = self.daemon.next_call();
        assert_eq!(got, expected);
        assert_eq!(got_caller, caller);
        self.daemon.reply(tag, response);
        let id = call.id() as u32;
        let cqe = call.answer();
        let expected = Cqe { flags: 0, extra_raw: [extra, 0, 0], tag: id, result: cqe.result };
        assert_eq!(&cqe[..], &expected[..], "Cqe bytes");
        cqe.result
    }

    fn round_trip(&mut self, request: Sqe, expected: Call, response: Response) -> u64 {
        self.round_trip_as(request, CALLER, expected, response, 0)
    }

    /// Like `round_trip`, for calls whose answer is a new handle (answered POSITIONED).
    fn open(&mut self, request: Sqe, expected: Call, id: u64) -> u64 {
        self.round_trip_as(request, CALLER, expected, Ok(Reply::Value(id)), POSITIONED)
    }

    /// Sends `request` and checks it is answered `result` without reaching the daemon.
    fn answered_at_once(&mut self, request: Sqe, result: u64) {
        let cqe = self.kernel.call(request);
        assert_eq!(cqe.result, result, "answer to opcode {}", request.opcode);
        assert!(self.daemon.is_quiet(QUIET), "opcode {} reached the daemon", request.opcode);
    }

    /// Posts a message that must never be answered.
    fn post_unanswered(&mut self, request: Sqe) {
        self.kernel.post(request);
    }

    fn assert_no_strays(&self) {
        thread::sleep(QUIET);
        assert!(self.kernel.strays().try_recv().is_err(), "an answer nobody waited for");
    }
}

#[test]
fn open_copies_the_path_and_answers_a_positioned_handle() {
    let mut rig = rig();
    let (ptr, len) = path("dir/file");
    let flags = (O_CREAT | O_RDWR | 0o644) as u64;
    let expected = Call::Open { path: "dir/file".into(), flags };
    assert_eq!(rig.open(op(Opcode::Open, [ptr, len, flags, 0, 0]), expected, 7), 7);
    // A failed open is not a handle: no flags.
    let expected = Call::Open { path: "dir/file".into(), flags };
    let request = op(Opcode::Open, [ptr, len, flags, 0, 0]);
    assert_eq!(rig.round_trip(request, expected, Err(Errno::ENOENT)), err(2));
}

#[test]
fn openat_the_root_opens_the_path_with_the_fcntl_flags() {
    let mut rig = rig();
    let (ptr, len) = path("hello");
    let (flags, fcntl) = (O_RDWR as u64, O_NONBLOCK as u64);
    let request = op(Opcode::OpenAt, [ROOT_ID, ptr, len, flags, fcntl]);
    let expected = Call::Open { path: "hello".into(), flags: flags | fcntl };
    assert_eq!(rig.open(request, expected, 4), 4);
}

#[test]
fn openat_and_unlinkat_resolve_paths_relative_to_opened_handles() {
    let mut rig = rig();
    let (ptr, len) = path("dir/");
    let flags = (O_DIRECTORY | O_RDWR) as u64;
    let expected = Call::Open { path: "dir/".into(), flags };
    rig.open(op(Opcode::OpenAt, [ROOT_ID, ptr, len, flags, 0]), expected, 7);
    let (ptr, len) = path("file");
    let expected = Call::Open { path: "dir/file".into(), flags: 0 };
    rig.open(op(Opcode::OpenAt, [7, ptr, len, 0, 0]), expected, 8);
    let expected = Call::Open { path: "dir/file/more".into(), flags: 0 };
    let (more, more_len) = path("more");
    rig.open(op(Opcode::OpenAt, [8, more, more_len, 0, 0]), expected, 9);
    let expected = Call::Unlink { path: "dir/file".into() };
    assert_eq!(
        rig.round_trip(sqe(UNLINK_AT, [7, ptr, len, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
    // A dup'd handle has no path; nor has an unknown one, nor one closed since.
    let expected = Call::Dup { fd: Fd(7), buf: Bytes::from("x") };
    let (x, x_len) = path("x");
    rig.open(op(Opcode::Dup, [7, x, x_len, 0, 0]), expected, 10);
    rig.answered_at_once(op(Opcode::OpenAt, [10, ptr, len, 0, 0]), err(EOPNOTSUPP));
    rig.answered_at_once(op(Opcode::OpenAt, [11, ptr, len, 0, 0]), err(EOPNOTSUPP));
    rig.post_unanswered(op(Opcode::CloseMsg, [7, 0, 0, 0, 0]));
    assert_eq!(rig.daemon.next_call().2, Call::Close { fd: Fd(7) });
    rig.answered_at_once(sqe(UNLINK_AT, [7, ptr, len, 0, 0]), err(EOPNOTSUPP));
}

#[test]
fn unlinkat_removes_directories_with_at_removedir() {
    let mut rig = rig();
    let (ptr, len) = path("old");
    let expected = Call::Rmdir { path: "old".into() };
    let request = sqe(UNLINK_AT, [ROOT_ID, ptr, len, 0x200, 0]);
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(0))), 0);
    let expected = Call::Unlink { path: "old".into() };
    let request = sqe(UNLINK_AT, [ROOT_ID, ptr, len, 0, 0]);
    assert_eq!(rig.round_trip(request, expected, Err(Errno::ENOENT)), err(2));
}

#[test]
fn rmdir_unlink_and_close_of_the_0_5_opcodes() {
    let mut rig = rig();
    let (ptr, len) = path("gone");
    let expected = Call::Rmdir { path: "gone".into() };
    assert_eq!(
        rig.round_trip(op(Opcode::Rmdir, [ptr, len, 0, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
    let expected = Call::Unlink { path: "gone".into() };
    assert_eq!(
        rig.round_trip(op(Opcode::Unlink, [ptr, len, 0, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
    let expected = Call::Close { fd: Fd(3) };
    assert_eq!(
        rig.round_trip(op(Opcode::Close, [FD, 0, 0, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
}

#[test]
fn close_msg_is_sent_one_way_and_never_answered() {
    let mut rig = rig();
    let mut message = op(Opcode::CloseMsg, [FD, 0, 0, 0, 0]);
    message.sqe_flags = SqeFlags::ONEWAY;
    rig.post_unanswered(message);
    let (tag, caller, call) = rig.daemon.next_call();
    assert_eq!((caller, call), (CALLER, Call::Close { fd: Fd(3) }));
    rig.daemon.reply(tag, Ok(Reply::Value(0)));
    rig.assert_no_strays();
}

#[test]
fn dup_copies_the_buffer_and_answers_a_positioned_handle() {
    let mut rig = rig();
    let (ptr, len) = path("listen");
    let expected = Call::Dup { fd: Fd(3), buf: Bytes::from("listen") };
    assert_eq!(rig.open(op(Opcode::Dup, [FD, ptr, len, 0, 0]), expected, 12), 12);
}

#[test]
fn unpositioned_read_and_write_go_straight_to_the_daemon() {
    let mut rig = rig();
    let mut buf = vec![0xaa_u8; 16];
    let request = op(Opcode::Read, [FD, addr_mut(&mut buf), 16, NO_OFFSET, 0]);
    let data = Ok(Reply::Data(Bytes::from("hello")));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 16 }, data), 5);
    assert_eq!(&buf[..5], b"hello");
    assert!(buf[5..].iter().all(|&b| b == 0xaa));
    let data = b"Hello World!\n";
    let request = op(Opcode::Write, [FD, addr(data), 13, NO_OFFSET, 0]);
    let expected = Call::Write { fd: Fd(3), data: Bytes::from(&data[..]) };
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(13))), 13);
}

/// Expects `Lseek(offset, SEEK_SET)` on handle 3 and answers it.
fn expect_seek(rig: &mut Rig, offset: i64, response: Response) {
    let (tag, caller, call) = rig.daemon.next_call();
    assert_eq!(caller, CALLER);
    assert_eq!(call, Call::Lseek { fd: Fd(3), offset, whence: SEEK_SET as u64 });
    rig.daemon.reply(tag, response);
}

#[test]
fn positioned_reads_and_writes_seek_first_until_the_handle_says_espipe() {
    let mut rig = rig();
    let mut buf = vec![0u8; 8];
    let read = rig.kernel.start(op(Opcode::Read, [FD, addr_mut(&mut buf), 8, 5, 0]));
    expect_seek(&mut rig, 5, Ok(Reply::Value(5)));
    let (tag, _, call) = rig.daemon.next_call();
    assert_eq!(call, Call::Read { fd: Fd(3), len: 8 });
    rig.daemon.reply(tag, Ok(Reply::Data(Bytes::from("abc"))));
    assert_eq!(read.answer().result, 3);
    let data = b"xyz";
    let write = rig.kernel.start(op(Opcode::Write, [FD, addr(data), 3, 1 << 40, 0]));
    expect_seek(&mut rig, 1 << 40, Err(Errno::ESPIPE));
    let (tag, _, call) = rig.daemon.next_call();
    assert_eq!(call, Call::Write { fd: Fd(3), data: Bytes::from("xyz") });
    rig.daemon.reply(tag, Ok(Reply::Value(3)));
    assert_eq!(write.answer().result, 3);
    // The handle cannot seek: later positioned calls skip the seek.
    let request = op(Opcode::Read, [FD, addr_mut(&mut buf), 8, 8, 0]);
    let data = Ok(Reply::Data(Bytes::from("d")));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 8 }, data), 1);
    // An offset beyond i64 (other than "none") is refused.
    rig.answered_at_once(op(Opcode::Read, [FD, addr_mut(&mut buf), 8, 1 << 63, 0]), err(EINVAL));
}

#[test]
fn fsize_is_the_size_fstat_reports() {
    let mut rig = rig();
    let stat = Ok(Reply::Stat(Stat { st_size: 1234, ..Stat::default() }));
    let request = op(Opcode::Fsize, [FD, 0, 0, 0, 0]);
    assert_eq!(rig.round_trip(request, Call::Fstat { fd: Fd(3) }, stat), 1234);
}

#[test]
fn handle_calls_without_buffers_carry_their_arguments() {
    let mut rig = rig();
    let fd = Fd(3);
    let cases = [
        (op(Opcode::Fchmod, [FD, 0o640, 0, 0, 0]), Call::Fchmod { fd, mode: 0o640 }, 0),
        (op(Opcode::Fchown, [FD, 1001, 1002, 0, 0]), Call::Fchown { fd, uid: 1001, gid: 1002 }, 0),
        (
            op(Opcode::Fcntl, [FD, F_GETFL as u64, 0, 0, 0]),
            Call::Fcntl { fd, cmd: 3, arg: 0 },
            0x30000,
        ),
        (op(Opcode::Fevent, [FD, 3, 0, 0, 0]), Call::Fevent { fd, flags: 3 }, 1),
        (op(Opcode::Fsync, [FD, 0, 0, 0, 0]), Call::Fsync { fd }, 0),
        (op(Opcode::Ftruncate, [FD, 4096, 0, 0, 0]), Call::Ftruncate { fd, len: 4096 }, 0),
    ];
    for (request, expected, value) in cases {
        assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(value))), value);
    }
}

#[test]
fn fpath_frename_and_flink_copy_paths_out_and_in() {
    let mut rig = rig();
    let mut buf = [0u8; 32];
    let request = op(Opcode::Fpath, [FD, addr_mut(&mut buf), 32, 0, 0]);
    let reply = Ok(Reply::Data(Bytes::from("/scheme/test/a")));
    assert_eq!(rig.round_trip(request, Call::Fpath { fd: Fd(3), len: 32 }, reply), 14);
    assert_eq!(&buf[..14], b"/scheme/test/a");
    let (ptr, len) = path("b");
    let expected = Call::Frename { fd: Fd(3), path: "b".into() };
    assert_eq!(
        rig.round_trip(op(Opcode::Frename, [FD, ptr, len, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
    let expected = Call::Flink { fd: Fd(3), path: "b".into() };
    assert_eq!(
        rig.round_trip(op(Opcode::Flink, [FD, ptr, len, 0, 0]), expected, Ok(Reply::Value(0))),
        0
    );
}

#[test]
fn fstat_and_fstatvfs_lay_out_redox_structs() {
    let mut rig = rig();
    let mut buf = vec![0xaa_u8; 104];
    let stat = Stat { st_ino: 9, st_mode: 0o100600, st_size: 77, ..Stat::default() };
    let request = op(Opcode::Fstat, [FD, addr_mut(&mut buf), 104, 0, 0]);
    assert_eq!(rig.round_trip(request, Call::Fstat { fd: Fd(3) }, Ok(Reply::Stat(stat))), 0);
    let mut redox = RedoxStat::default();
    redox.copy_from_slice(&buf);
    assert_eq!(
        redox,
        RedoxStat { st_ino: 9, st_mode: 0o100600, st_size: 77, ..RedoxStat::default() }
    );
    rig.answered_at_once(op(Opcode::Fstat, [FD, addr_mut(&mut buf), 100, 0, 0]), err(14));
    let mut buf = vec![0xaa_u8; 32];
    let stat = StatVfs { f_bsize: 512, f_blocks: 2, f_bfree: 1, f_bavail: 1 };
    let request = op(Opcode::Fstatvfs, [FD, addr_mut(&mut buf), 32, 0, 0]);
    assert_eq!(rig.round_trip(request, Call::Fstatvfs { fd: Fd(3) }, Ok(Reply::StatVfs(stat))), 0);
    let mut redox = RedoxStatVfs::default();
    redox.copy_from_slice(&buf);
    assert_eq!(redox, RedoxStatVfs { f_bsize: 512, f_blocks: 2, f_bfree: 1, f_bavail: 1 });
    rig.answered_at_once(op(Opcode::Fstatvfs, [FD, addr_mut(&mut buf), 31, 0, 0]), err(14));
}

/// Two Redox `TimeSpec`s (16 bytes each: i64 seconds, i32 nanoseconds, padding).
fn two_times() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    bytes[0..8].copy_from_slice(&7_i64.to_ne_bytes());
    bytes[8..12].copy_from_slice(&8_i32.to_ne_bytes());
    bytes[16..24].copy_from_slice(&9_i64.to_ne_bytes());
    bytes[24..28].copy_from_slice(&10_i32.to_ne_bytes());
    bytes
}

#[test]
fn futimens_copies_the_times_in() {
    let mut rig = rig();
    let times = two_times();
    let expected = Call::Futimens {
        fd: Fd(3),
        times: vec![TimeSpec { tv_sec: 7, tv_nsec: 8 }, TimeSpec { tv_sec: 9, tv_nsec: 10 }],
    };
    let request = op(Opcode::Futimens, [FD, addr(&times), 32, 0, 0]);
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(0))), 0);
    rig.answered_at_once(op(Opcode::Futimens, [FD, addr(&times), 8, 0, 0]), err(14));
}

#[test]
fn getdents_passes_the_cursor_and_checks_the_header_size() {
    let mut rig = rig();
    let mut buf = vec![0u8; 64];
    let request = op(Opcode::Getdents, [FD, addr_mut(&mut buf), 64, 19, 77]);
    let expected = Call::Getdents { fd: Fd(3), len: 64, opaque: 77 };
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Data(Bytes::from(vec![4; 30])))), 30);
    assert_eq!(&buf[..30], &[4; 30]);
    rig.answered_at_once(op(Opcode::Getdents, [FD, addr_mut(&mut buf), 64, 24, 0]), err(EINVAL));
}

#[test]
fn std_fs_calls_become_their_wire_calls_with_unknown_ids() {
    let mut rig = rig();
    let unknown = Caller { pid: 42, uid: UNKNOWN_ID, gid: UNKNOWN_ID };
    let fd = Fd(3);
    let plain = [
        (std_fs(1, [FD, 0, 0, 0o600, 0]), Call::Fchmod { fd, mode: 0o600 }),
        (std_fs(2, [FD, 0, 0, 5 | 6 << 32, 0]), Call::Fchown { fd, uid: 5, gid: 6 }),
        (std_fs(6, [FD, 0, 0, 0, 0]), Call::Fsync { fd }),
        (std_fs(7, [FD, 0, 0, 100, 0]), Call::Ftruncate { fd, len: 100 }),
    ];
    for (request, expected) in plain {
        assert_eq!(rig.round_trip_as(request, unknown, expected, Ok(Reply::Value(0)), 0), 0);
    }
    let mut buf = vec![0u8; 104];
    let request = std_fs(3, [FD, addr_mut(&mut buf), 64, 5, 19]);
    let expected = Call::Getdents { fd, len: 64, opaque: 5 };
    let records = Ok(Reply::Data(Bytes::from(vec![1; 20])));
    assert_eq!(rig.round_trip_as(request, unknown, expected, records, 0), 20);
    let request = std_fs(4, [FD, addr_mut(&mut buf), 104, 0, 0]);
    let stat = Ok(Reply::Stat(Stat { st_nlink: 2, ..Stat::default() }));
    assert_eq!(rig.round_trip_as(request, unknown, Call::Fstat { fd }, stat, 0), 0);
    assert_eq!(u32::from_ne_bytes(buf[20..24].try_into().unwrap()), 2, "st_nlink at offset 20");
    let request = std_fs(5, [FD, addr_mut(&mut buf), 32, 0, 0]);
    let stat = Ok(Reply::StatVfs(StatVfs { f_bsize: 1, ..StatVfs::default() }));
    assert_eq!(rig.round_trip_as(request, unknown, Call::Fstatvfs { fd }, stat, 0), 0);
    let times = two_times();
    let request = std_fs(8, [FD, addr(&times), 16, 0, 0]);
    let expected = Call::Futimens { fd, times: vec![TimeSpec { tv_sec: 7, tv_nsec: 8 }] };
    assert_eq!(rig.round_trip_as(request, unknown, expected, Ok(Reply::Value(0)), 0), 0);
    let (ptr, len) = path("sub");
    let request = std_fs(10, [ROOT_ID, ptr, len, 0x200, 0]);
    let expected = Call::Rmdir { path: "sub".into() };
    assert_eq!(rig.round_trip_as(request, unknown, expected, Ok(Reply::Value(0)), 0), 0);
    for kind in [0, 9, 11, 12, 13, 14, 15, 16] {
        rig.answered_at_once(std_fs(kind, [FD, 0, 0, 0, 0]), err(EOPNOTSUPP));
    }
}

#[test]
fn cancel_becomes_a_wire_cancel_and_the_request_is_answered_eintr() {
    let mut rig = rig();
    let mut buf = [0u8; 8];
    let read = rig.kernel.start(op(Opcode::Read, [FD, addr_mut(&mut buf), 8, NO_OFFSET, 0]));
    let (tag, _, _) = rig.daemon.next_call();
    let mut cancel = op(Opcode::Cancel, [0; 5]);
    (cancel.sqe_flags, cancel.tag) = (SqeFlags::ONEWAY, read.id() as u32);
    rig.kernel.post(cancel);
    match rig.daemon.next_frame(Duration::from_secs(5)) {
        Some(Frame::Cancel { tag: cancelled }) => assert_eq!(cancelled, tag),
        other => panic!("expected a cancel, got {other:?}"),
    }
    rig.daemon.reply(tag, Err(Errno::EINTR));
    assert_eq!(read.answer().result, err(EINTR));
    rig.kernel.post(cancel);
    assert!(rig.daemon.is_quiet(QUIET), "a cancel for an answered request is dropped");
    rig.assert_no_strays();
}

#[test]
fn what_cannot_cross_a_pipe_answers_eopnotsupp() {
    let mut rig = rig();
    for opcode in [
        Opcode::Sendfd,
        Opcode::MmapPrep,
        Opcode::RequestMmap,
        Opcode::Mremap,
        Opcode::Munmap,
        Opcode::Msync,
        Opcode::Call,
        Opcode::Recvfd,
    ] {
        rig.answered_at_once(op(opcode, [FD, 4096, 0, 0, 0]), err(EOPNOTSUPP));
    }
    rig.answered_at_once(sqe(99, [FD, 0, 0, 0, 0]), err(ENOSYS));
    // One-way messages are never answered, whatever they are.
    let mut munmap = op(Opcode::Munmap, [FD, 4096, 0, 0, 0]);
    munmap.sqe_flags = SqeFlags::ONEWAY;
    rig.post_unanswered(munmap);
    rig.post_unanswered(sqe(DETACH, [FD, 0, 0, 0, 0]));
    assert!(rig.daemon.is_quiet(QUIET));
    rig.assert_no_strays();
}

#[test]
fn a_one_way_request_is_forwarded_but_not_answered() {
    let mut rig = rig();
    let mut fsync = op(Opcode::Fsync, [FD, 0, 0, 0, 0]);
    fsync.sqe_flags = SqeFlags::ONEWAY;
    rig.post_unanswered(fsync);
    let (tag, _, call) = rig.daemon.next_call();
    assert_eq!(call, Call::Fsync { fd: Fd(3) });
    rig.daemon.reply(tag, Ok(Reply::Value(0)));
    rig.assert_no_strays();
}

#[test]
fn daemon_events_become_send_fevent_cqes() {
    let mut rig = rig();
    rig.daemon.event(3, 2);
    let event = rig.kernel.events().recv_timeout(Duration::from_secs(5)).unwrap();
    let expected = Cqe { flags: CqeOpcode::SendFevent as u8, extra_raw: [0; 3], tag: 2, result: 3 };
    assert_eq!(&event[..], &expected[..]);
    rig.daemon.event(4, 0x40);
    assert!(rig.kernel.events().recv_timeout(QUIET).is_err(), "unknown flags are dropped");
}

#[test]
fn a_malicious_daemon_gets_eio_and_nothing_is_copied() {
    let mut rig = rig();
    let mut buf = vec![0xaa_u8; 4];
    let request = op(Opcode::Read, [FD, addr_mut(&mut buf), 4, NO_OFFSET, 0]);
    let too_much = Ok(Reply::Data(Bytes::from("12345")));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 4 }, too_much), err(EIO));
    assert!(buf.iter().all(|&b| b == 0xaa));
    let request = op(Opcode::Fsize, [FD, 0, 0, 0, 0]);
    let wrong = Ok(Reply::Value(5));
    assert_eq!(rig.round_trip(request, Call::Fstat { fd: Fd(3) }, wrong), err(EIO));
    let request = op(Opcode::Fsync, [FD, 0, 0, 0, 0]);
    assert_eq!(rig.round_trip(request, Call::Fsync { fd: Fd(3) }, Err(Errno(0))), err(EIO));
    rig.assert_no_strays();
}

#[test]
fn a_dying_daemon_fails_everything_with_eio() {
    let mut rig = rig();
    let mut buf = [0u8; 4];
    let parked = rig.kernel.start(op(Opcode::Read, [FD, addr_mut(&mut buf), 4, NO_OFFSET, 0]));
    rig.daemon.next_call();
    rig.daemon.hang_up();
    assert_eq!(parked.answer().result, err(EIO));
    let (ptr, len) = path("x");
    assert_eq!(rig.kernel.call(op(Opcode::OpenAt, [ROOT_ID, ptr, len, 0, 0])).result, err(EIO));
    rig.assert_no_strays();
}

#[test]
fn unmounting_ends_the_translator() {
    let rig = rig();
    rig.kernel.unmount();
    rig.translator.join().unwrap().unwrap();
}
