//! The legacy translator (`Packet` -> wire -> `Packet`) between a simulated kernel, whose
//! packets point at this test's own buffers as the Redox kernel maps caller memory, and a
//! scripted daemon: every call of redox_syscall 0.5.18's dispatch table plus getdents, every
//! answer byte, copy-out bounds, errnos, events, cancels, and a malicious or dying daemon.

use std::io;
use std::mem::{offset_of, size_of};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use scheme_bridge::redox::sim::{Legacy, ScriptedDaemon, SimKernel};
use scheme_bridge::redox::{legacy, CallerMemory, UNKNOWN_ID};
use scheme_protocol::{Bytes, Call, Caller, Errno, Fd, Reply, Response, Stat, StatVfs, TimeSpec};
use syscall::data::{Packet, Stat as RedoxStat, StatVfs as RedoxStatVfs, TimeSpec as RedoxTime};
use syscall::error::{Error, EFAULT, EINTR, EINVAL, EIO, ENAMETOOLONG, ENOENT, ENOSYS, EOPNOTSUPP};
use syscall::flag::{EVENT_READ, F_SETFL, O_CREAT, O_NONBLOCK, O_RDWR, SEEK_END};
use syscall::number::*;

/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(100);
/// The caller every packet comes from.
const CALLER: Caller = Caller { pid: 42, uid: 1000, gid: 1000 };
/// A handle id the scripted daemon pretends to have.
const FD: usize = 3;

struct Rig {
    kernel: SimKernel<Legacy>,
    daemon: ScriptedDaemon,
    translator: JoinHandle<io::Result<()>>,
}

fn rig() -> Rig {
    rig_with_max_frame(scheme_protocol::MAX_FRAME)
}

/// A kernel, a translator and a scripted daemon announcing `max_frame`.
fn rig_with_max_frame(max_frame: usize) -> Rig {
    let _ = env_logger::builder().is_test(true).try_init();
    let (daemon, client) = ScriptedDaemon::connect_with_max_frame("test", max_frame).unwrap();
    let (kernel, socket) = SimKernel::<Legacy>::new().unwrap();
    // SAFETY: every packet these tests send points at buffers that live until the packet is
    // answered (`SimCall::answer` aborts the process rather than unwind past a request that was
    // never answered), and packets that are never answered carry no pointers.
    let memory = unsafe { CallerMemory::assume_mapped() };
    let translator =
        thread::spawn(move || legacy::serve(client, memory, socket.requests, socket.answers));
    Rig { kernel, daemon, translator }
}

fn packet(a: usize, b: usize, c: usize, d: usize) -> Packet {
    Packet { id: 0, pid: 42, uid: 1000, gid: 1000, a, b, c, d }
}

fn err(errno: i32) -> usize {
    Error::mux(Err(Error::new(errno)))
}

fn addr(buf: &[u8]) -> usize {
    buf.as_ptr() as usize
}

fn addr_mut(buf: &mut [u8]) -> usize {
    buf.as_mut_ptr() as usize
}

impl Rig {
    /// Sends `request`, checks the daemon gets `expected` from `caller`, answers `response`,
    /// and checks the kernel's answer is the request (id included) with only `a` changed.
    fn round_trip_as(
        &mut self,
        request: Packet,
        caller: Caller,
        expected: Call,
        response: Response,
    ) -> usize {
        let call = self.kernel.start(request);
        let (tag, got_caller, got) = self.daemon.next_call();
        assert_eq!(got, expected);
        assert_eq!(got_caller, caller);
        self.daemon.reply(tag, response);
        let id = call.id();
        let answer = call.answer();
        assert_eq!(&answer[..], &Packet { id, a: answer.a, ..request }[..], "echoed fields");
        answer.a
    }

    fn round_trip(&mut self, request: Packet, expected: Call, response: Response) -> usize {
        self.round_trip_as(request, CALLER, expected, response)
    }

    /// Sends `request` and checks it is answered `a` without reaching the daemon.
    fn answered_at_once(&mut self, request: Packet, a: usize) {
        let answer = self.kernel.call(request);
        assert_eq!(answer.a, a, "answer to a={:#x}", request.a);
        assert!(self.daemon.is_quiet(QUIET), "a={:#x} reached the daemon", request.a);
    }

    fn assert_no_strays(&self) {
        assert!(self.kernel.strays().try_recv().is_err(), "a request was answered twice");
    }
}

#[test]
fn open_copies_the_path_and_flags_and_answers_the_new_id() {
    let mut rig = rig();
    let path = b"dir/file";
    let flags = O_CREAT | O_RDWR | 0o644;
    let request = packet(SYS_OPEN, addr(path), path.len(), flags);
    let expected = Call::Open { path: "dir/file".into(), flags: flags as u64 };
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(7))), 7);
}

#[test]
fn open_refuses_bad_paths_without_asking_the_daemon() {
    let mut rig = rig_with_max_frame(4096);
    let not_utf8 = [b'a', 0xff, b'b'];
    rig.answered_at_once(packet(SYS_OPEN, addr(&not_utf8), 3, 0), err(EINVAL));
    rig.answered_at_once(packet(SYS_OPEN, 0, 3, 0), err(EFAULT));
    rig.answered_at_once(packet(SYS_OPEN, usize::MAX - 1, 3, 0), err(EFAULT));
    let long = vec![b'x'; 5000];
    rig.answered_at_once(packet(SYS_OPEN, addr(&long), long.len(), 0), err(ENAMETOOLONG));
    // An empty path needs no memory at all.
    let expected = Call::Open { path: String::new(), flags: 0 };
    assert_eq!(rig.round_trip(packet(SYS_OPEN, 0, 0, 0), expected, Ok(Reply::Value(1))), 1);
}

#[test]
fn rmdir_and_unlink_copy_the_path_and_pass_errnos_through() {
    let mut rig = rig();
    let path = b"gone";
    let expected = Call::Rmdir { path: "gone".into() };
    let a = rig.round_trip(packet(SYS_RMDIR, addr(path), 4, 0), expected, Err(Errno::ENOENT));
    assert_eq!(a, err(ENOENT));
    let expected = Call::Unlink { path: "gone".into() };
    assert_eq!(
        rig.round_trip(packet(SYS_UNLINK, addr(path), 4, 0), expected, Ok(Reply::Value(0))),
        0
    );
    let expected = Call::Unlink { path: "gone".into() };
    let a = rig.round_trip(packet(SYS_UNLINK, addr(path), 4, 0), expected, Err(Errno::EWOULDBLOCK));
    assert_eq!(a, err(41), "Redox's EWOULDBLOCK is passed on as it is");
}

#[test]
fn dup_copies_the_buffer() {
    let mut rig = rig_with_max_frame(4096);
    let buf = b"listen";
    let expected = Call::Dup { fd: Fd(3), buf: Bytes::from(&buf[..]) };
    assert_eq!(rig.round_trip(packet(SYS_DUP, FD, addr(buf), 6), expected, Ok(Reply::Value(9))), 9);
    let huge = vec![b'x'; 5000];
    rig.answered_at_once(packet(SYS_DUP, FD, addr(&huge), huge.len()), err(EINVAL));
}

#[test]
fn read_copies_the_data_into_the_callers_buffer_and_nothing_more() {
    let mut rig = rig();
    let mut buf = vec![0xaa_u8; 16];
    let request = packet(SYS_READ, FD, addr_mut(&mut buf), buf.len());
    let data = Ok(Reply::Data(Bytes::from("hello")));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 16 }, data), 5);
    assert_eq!(&buf[..5], b"hello");
    assert!(buf[5..].iter().all(|&b| b == 0xaa), "bytes past the answer untouched");
    // End of file: nothing copied, 0.
    let request = packet(SYS_READ, FD, addr_mut(&mut buf), buf.len());
    let empty = Ok(Reply::Data(Bytes::default()));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 16 }, empty), 0);
}

#[test]
fn write_copies_the_data_and_answers_the_count() {
    let mut rig = rig();
    let data = b"Hello World!\n";
    let request = packet(SYS_WRITE, FD, addr(data), data.len());
    let expected = Call::Write { fd: Fd(3), data: Bytes::from(&data[..]) };
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(13))), 13);
}

#[test]
fn reads_and_writes_larger_than_a_frame_are_short() {
    let mut rig = rig_with_max_frame(4096);
    let max = 4096 - scheme_protocol::MAX_OVERHEAD;
    let mut buf = vec![0u8; 10_000];
    let request = packet(SYS_READ, FD, addr_mut(&mut buf), buf.len());
    let data = Ok(Reply::Data(Bytes::from(vec![7; max])));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: max as u64 }, data), max);
    assert!(buf[..max].iter().all(|&b| b == 7) && buf[max..].iter().all(|&b| b == 0));
    let big = vec![5u8; 10_000];
    let request = packet(SYS_WRITE, FD, addr(&big), big.len());
    let expected = Call::Write { fd: Fd(3), data: Bytes::from(vec![5; max]) };
    assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(max as u64))), max);
}

#[test]
fn calls_without_buffers_carry_their_arguments() {
    let mut rig = rig();
    let fd = Fd(3);
    let cases = [
        (
            packet(SYS_LSEEK, FD, -5_isize as usize, SEEK_END),
            Call::Lseek { fd, offset: -5, whence: 2 },
            95,
        ),
        (packet(SYS_FCHMOD, FD, 0o640, 0), Call::Fchmod { fd, mode: 0o640 }, 0),
        (packet(SYS_FCHOWN, FD, 1001, 1002), Call::Fchown { fd, uid: 1001, gid: 1002 }, 0),
        (
            packet(SYS_FCNTL, FD, F_SETFL, O_NONBLOCK),
            Call::Fcntl { fd, cmd: F_SETFL as u64, arg: O_NONBLOCK as u64 },
            0,
        ),
        (packet(SYS_FEVENT, FD, EVENT_READ.bits(), 0), Call::Fevent { fd, flags: 1 }, 1),
        (packet(SYS_FSYNC, FD, 0, 0), Call::Fsync { fd }, 0),
        (packet(SYS_FTRUNCATE, FD, 4096, 0), Call::Ftruncate { fd, len: 4096 }, 0),
        (packet(SYS_CLOSE, FD, 0, 0), Call::Close { fd }, 0),
    ];
    for (request, expected, value) in cases {
        assert_eq!(rig.round_trip(request, expected, Ok(Reply::Value(value as u64))), value);
    }
}

#[test]
fn flink_and_frename_copy_the_new_path() {
    let mut rig = rig();
    let path = b"other/name";
    let expected = Call::Flink { fd: Fd(3), path: "other/name".into() };
    assert_eq!(
        rig.round_trip(packet(SYS_FLINK, FD, addr(path), 10), expected, Ok(Reply::Value(0))),
        0
    );
    let expected = Call::Frename { fd: Fd(3), path: "other/name".into() };
    let a = rig.round_trip(packet(SYS_FRENAME, FD, addr(path), 10), expected, Err(Errno::EEXIST));
    assert_eq!(a, err(17));
}

#[test]
fn fpath_copies_the_path_out() {
    let mut rig = rig();
    let mut buf = [0u8; 64];
    let request = packet(SYS_FPATH, FD, addr_mut(&mut buf), buf.len());
    let path = Ok(Reply::Data(Bytes::from("test:dir/file")));
    assert_eq!(rig.round_trip(request, Call::Fpath { fd: Fd(3), len: 64 }, path), 13);
    assert_eq!(&buf[..13], b"test:dir/file");
    assert!(buf[13..].iter().all(|&b| b == 0));
}

/// Whether every byte of `bytes` outside the fields at (offset, size) is zero.
fn padding_is_zero(bytes: &[u8], fields: &[(usize, usize)]) -> bool {
    let mut field = vec![false; bytes.len()];
    for &(offset, size) in fields {
        field[offset..offset + size].iter_mut().for_each(|f| *f = true);
    }
    bytes.iter().zip(field).all(|(&byte, field)| field || byte == 0)
}

macro_rules! fields {
    ($ty:ty: $($field:ident),*) => {
        [$((offset_of!($ty, $field), size_of_field(|s: &$ty| &s.$field))),*]
    };
}

fn size_of_field<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

#[test]
fn fstat_lays_out_redox_stat_in_the_callers_buffer() {
    let mut rig = rig();
    let stat = Stat {
        st_dev: 1,
        st_ino: 2,
        st_mode: 0o100644,
        st_nlink: 3,
        st_uid: 4,
        st_gid: 5,
        st_size: 6,
        st_blksize: 7,
        st_blocks: 8,
        st_mtime: 9,
        st_mtime_nsec: 10,
        st_atime: 11,
        st_atime_nsec: 12,
        st_ctime: 13,
        st_ctime_nsec: 14,
    };
    let mut buf = vec![0xaa_u8; 120];
    let request = packet(SYS_FSTAT, FD, addr_mut(&mut buf), buf.len());
    assert_eq!(rig.round_trip(request, Call::Fstat { fd: Fd(3) }, Ok(Reply::Stat(stat))), 0);
    let mut redox = RedoxStat::default();
    redox.copy_from_slice(&buf[..104]);
    let expected = RedoxStat {
        st_dev: 1,
        st_ino: 2,
        st_mode: 0o100644,
        st_nlink: 3,
        st_uid: 4,
        st_gid: 5,
        st_size: 6,
        st_blksize: 7,
        st_blocks: 8,
        st_mtime: 9,
        st_mtime_nsec: 10,
        st_atime: 11,
        st_atime_nsec: 12,
        st_ctime: 13,
        st_ctime_nsec: 14,
    };
    assert_eq!(redox, expected);
    let layout = fields!(RedoxStat: st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid, st_size,
        st_blksize, st_blocks, st_mtime, st_mtime_nsec, st_atime, st_atime_nsec, st_ctime,
        st_ctime_nsec);
    assert!(padding_is_zero(&buf[..104], &layout), "padding zeroed");
    assert!(buf[104..].iter().all(|&b| b == 0xaa), "only 104 bytes written");
    // A buffer too small for a Stat never reaches the daemon.
    rig.answered_at_once(packet(SYS_FSTAT, FD, addr_mut(&mut buf), 103), err(EFAULT));
}

#[test]
fn fstatvfs_lays_out_redox_statvfs_in_the_callers_buffer() {
    let mut rig = rig();
    let stat = StatVfs { f_bsize: 4096, f_blocks: 1_000_000, f_bfree: 250_000, f_bavail: 200_000 };
    let mut buf = vec![0xaa_u8; 40];
    let request = packet(SYS_FSTATVFS, FD, addr_mut(&mut buf), buf.len());
    let a = rig.round_trip(request, Call::Fstatvfs { fd: Fd(3) }, Ok(Reply::StatVfs(stat)));
    assert_eq!(a, 0);
    let mut redox = RedoxStatVfs::default();
    redox.copy_from_slice(&buf[..32]);
    let expected =
        RedoxStatVfs { f_bsize: 4096, f_blocks: 1_000_000, f_bfree: 250_000, f_bavail: 200_000 };
    assert_eq!(redox, expected);
    let layout = fields!(RedoxStatVfs: f_bsize, f_blocks, f_bfree, f_bavail);
    assert!(padding_is_zero(&buf[..32], &layout));
    assert!(buf[32..].iter().all(|&b| b == 0xaa));
    rig.answered_at_once(packet(SYS_FSTATVFS, FD, addr_mut(&mut buf), 31), err(EFAULT));
}

/// Redox `TimeSpec`s as the caller's memory holds them.
fn times(values: &[(i64, i32)]) -> Vec<u8> {
    let mut bytes = vec![0u8; values.len() * size_of::<RedoxTime>()];
    for (chunk, (sec, nsec)) in bytes.chunks_exact_mut(size_of::<RedoxTime>()).zip(values) {
        let sec_at = offset_of!(RedoxTime, tv_sec);
        let nsec_at = offset_of!(RedoxTime, tv_nsec);
        chunk[sec_at..sec_at + 8].copy_from_slice(&sec.to_ne_bytes());
        chunk[nsec_at..nsec_at + 4].copy_from_slice(&nsec.to_ne_bytes());
    }
    bytes
}

#[test]
fn futimens_copies_at_most_two_times_in() {
    let mut rig = rig();
    let both = times(&[(1_700_000_000, 0), (1_700_000_000, 500_000_000), (1, 1)]);
    let atime = TimeSpec { tv_sec: 1_700_000_000, tv_nsec: 0 };
    let mtime = TimeSpec { tv_sec: 1_700_000_000, tv_nsec: 500_000_000 };
    for (len, expected) in [(32, vec![atime, mtime]), (16, vec![atime]), (48, vec![atime, mtime])] {
        let call = Call::Futimens { fd: Fd(3), times: expected };
        let request = packet(SYS_FUTIMENS, FD, addr(&both), len);
        assert_eq!(rig.round_trip(request, call, Ok(Reply::Value(0))), 0);
    }
    rig.answered_at_once(packet(SYS_FUTIMENS, FD, addr(&both), 15), err(EFAULT));
}

#[test]
fn getdents_takes_the_cursor_from_uid_and_gid_and_copies_records_out() {
    let mut rig = rig();
    let mut buf = vec![0u8; 256];
    let mut request = packet(SYS_GETDENTS, FD, addr_mut(&mut buf), buf.len());
    (request.uid, request.gid) = (5, 1);
    let records = vec![9u8; 40];
    let expected = Call::Getdents { fd: Fd(3), len: 256, opaque: 5 | 1 << 32 };
    let unknown = Caller { pid: 42, uid: UNKNOWN_ID, gid: UNKNOWN_ID };
    let reply = Ok(Reply::Data(Bytes::from(records.clone())));
    assert_eq!(rig.round_trip_as(request, unknown, expected, reply), 40);
    assert_eq!(&buf[..40], &records[..]);
}

#[test]
fn mmap_messages_answer_eopnotsupp_and_unknown_calls_enosys() {
    let mut rig = rig();
    for a in [
        KSMSG_MMAP,
        KSMSG_MSYNC,
        KSMSG_MUNMAP,
        KSMSG_MMAP_PREP,
        SYS_FMAP_OLD,
        SYS_FMAP,
        SYS_FUNMAP_OLD,
        SYS_FUNMAP,
    ] {
        rig.answered_at_once(packet(a, FD, 4096, 0), err(EOPNOTSUPP));
    }
    let chmod_of_0_1 = 0x1000_000f;
    rig.answered_at_once(packet(chmod_of_0_1, 0, 0, 0), err(ENOSYS));
    rig.answered_at_once(packet(SYS_CALL, FD, 0, 0), err(ENOSYS));
    rig.assert_no_strays();
}

#[test]
fn ksmsg_cancel_becomes_a_wire_cancel_and_the_request_is_answered_eintr() {
    let mut rig = rig();
    let mut buf = [0u8; 8];
    let call = rig.kernel.start(packet(SYS_READ, FD, addr_mut(&mut buf), 8));
    let (tag, _, _) = rig.daemon.next_call();
    rig.kernel.post(Packet { a: KSMSG_CANCEL, b: call.id() as usize, ..Packet::default() });
    match rig.daemon.next_frame(Duration::from_secs(5)) {
        Some(scheme_protocol::Frame::Cancel { tag: cancelled }) => assert_eq!(cancelled, tag),
        other => panic!("expected a cancel, got {other:?}"),
    }
    rig.daemon.reply(tag, Err(Errno::EINTR));
    assert_eq!(call.answer().a, err(EINTR));
    // Cancelling what is no longer outstanding sends nothing.
    rig.kernel.post(Packet { a: KSMSG_CANCEL, b: 999, ..Packet::default() });
    assert!(rig.daemon.is_quiet(QUIET));
    rig.assert_no_strays();
}

#[test]
fn eintr_without_a_cancel_becomes_eio() {
    let mut rig = rig();
    let a =
        rig.round_trip(packet(SYS_FSYNC, FD, 0, 0), Call::Fsync { fd: Fd(3) }, Err(Errno::EINTR));
    assert_eq!(a, err(EIO));
}

#[test]
fn daemon_events_become_fevent_packets() {
    let mut rig = rig();
    rig.daemon.event(3, 1);
    let event = rig.kernel.events().recv_timeout(Duration::from_secs(5)).unwrap();
    let expected = Packet { a: SYS_FEVENT, b: 3, c: 1, ..Packet::default() };
    assert_eq!(&event[..], &expected[..]);
    // Flags the kernel does not know are dropped; an event left with none is not sent.
    rig.daemon.event(4, 0x10);
    rig.daemon.event(5, 0x13);
    let event = rig.kernel.events().recv_timeout(Duration::from_secs(5)).unwrap();
    let expected = Packet { a: SYS_FEVENT, b: 5, c: 3, ..Packet::default() };
    assert_eq!(&event[..], &expected[..]);
    assert!(rig.kernel.events().recv_timeout(QUIET).is_err());
}

#[test]
fn answers_go_back_in_the_order_the_daemon_gives_them() {
    let mut rig = rig();
    let (mut first_buf, mut second_buf) = ([0u8; 4], [0u8; 4]);
    let first = rig.kernel.start(packet(SYS_READ, 1, addr_mut(&mut first_buf), 4));
    let second = rig.kernel.start(packet(SYS_READ, 2, addr_mut(&mut second_buf), 4));
    let (first_tag, _, _) = rig.daemon.next_call();
    let (second_tag, _, _) = rig.daemon.next_call();
    rig.daemon.reply(second_tag, Ok(Reply::Data(Bytes::from("two"))));
    let second = second.answer();
    assert_eq!(second.a, 3);
    assert!(first.try_answer().is_none(), "the parked read is still parked");
    rig.daemon.reply(first_tag, Ok(Reply::Data(Bytes::from("one!"))));
    assert_eq!(first.answer().a, 4);
    assert_eq!((&first_buf, &second_buf[..3]), (b"one!", &b"two"[..]));
}

#[test]
fn a_daemon_claiming_more_than_the_buffer_gets_eio_and_nothing_is_copied() {
    let mut rig = rig_with_max_frame(4096);
    let mut buf = vec![0xaa_u8; 8];
    let request = packet(SYS_READ, FD, addr_mut(&mut buf), 8);
    let too_much = Ok(Reply::Data(Bytes::from(vec![1; 9])));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 8 }, too_much), err(EIO));
    assert!(buf.iter().all(|&b| b == 0xaa));
    // More than was asked for, even if the kernel's buffer could hold it.
    let max = 4096 - scheme_protocol::MAX_OVERHEAD;
    let mut big = vec![0xaa_u8; 10_000];
    let request = packet(SYS_FPATH, FD, addr_mut(&mut big), big.len());
    let too_much = Ok(Reply::Data(Bytes::from(vec![1; max + 1])));
    let a = rig.round_trip(request, Call::Fpath { fd: Fd(3), len: max as u64 }, too_much);
    assert_eq!(a, err(EIO));
    assert!(big.iter().all(|&b| b == 0xaa));
    // A write "of" more than was sent.
    let data = b"abc";
    let expected = Call::Write { fd: Fd(3), data: Bytes::from(&data[..]) };
    let a = rig.round_trip(packet(SYS_WRITE, FD, addr(data), 3), expected, Ok(Reply::Value(4)));
    assert_eq!(a, err(EIO));
    rig.assert_no_strays();
}

#[test]
fn nonsense_answers_get_eio() {
    let mut rig = rig();
    let mut buf = vec![0xaa_u8; 128];
    let request = packet(SYS_FSTAT, FD, addr_mut(&mut buf), buf.len());
    assert_eq!(rig.round_trip(request, Call::Fstat { fd: Fd(3) }, Ok(Reply::Value(0))), err(EIO));
    assert!(buf.iter().all(|&b| b == 0xaa));
    let request = packet(SYS_READ, FD, addr_mut(&mut buf), 4);
    let stat = Ok(Reply::Stat(Stat::default()));
    assert_eq!(rig.round_trip(request, Call::Read { fd: Fd(3), len: 4 }, stat), err(EIO));
    let fsync = || (packet(SYS_FSYNC, FD, 0, 0), Call::Fsync { fd: Fd(3) });
    for bad in [0, -2, 132, 4096] {
        let (request, expected) = fsync();
        assert_eq!(rig.round_trip(request, expected, Err(Errno(bad))), err(EIO), "errno {bad}");
    }
    let (request, expected) = fsync();
    let looks_like_eagain = Ok(Reply::Value(err(11) as u64));
    assert_eq!(rig.round_trip(request, expected, looks_like_eagain), err(EIO));
    rig.assert_no_strays();
}

#[test]
fn replies_for_unknown_tags_and_second_replies_are_never_passed_on() {
    let mut rig = rig();
    let call = rig.kernel.start(packet(SYS_FSYNC, FD, 0, 0));
    let (tag, _, _) = rig.daemon.next_call();
    rig.daemon.reply(scheme_protocol::Tag(tag.0 + 100), Ok(Reply::Value(1)));
    rig.daemon.reply(tag, Ok(Reply::Value(0)));
    rig.daemon.reply(tag, Ok(Reply::Value(2)));
    assert_eq!(call.answer().a, 0);
    // The client is still in sync: the next call works.
    let a =
        rig.round_trip(packet(SYS_FSYNC, FD, 0, 0), Call::Fsync { fd: Fd(3) }, Ok(Reply::Value(0)));
    assert_eq!(a, 0);
    thread::sleep(QUIET);
    rig.assert_no_strays();
}

#[test]
fn a_garbage_frame_fails_everything_outstanding_and_later_with_eio() {
    let mut rig = rig();
    let mut buf = [0u8; 8];
    let parked = rig.kernel.start(packet(SYS_READ, FD, addr_mut(&mut buf), 8));
    rig.daemon.next_call();
    rig.daemon.send_raw(&[8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(parked.answer().a, err(EIO));
    assert_eq!(rig.kernel.call(packet(SYS_FSYNC, FD, 0, 0)).a, err(EIO));
    rig.assert_no_strays();
}

#[test]
fn a_dying_daemon_fails_everything_outstanding_and_later_with_eio() {
    let mut rig = rig();
    let mut buf = [0u8; 8];
    let parked = rig.kernel.start(packet(SYS_READ, FD, addr_mut(&mut buf), 8));
    rig.daemon.next_call();
    rig.daemon.hang_up();
    assert_eq!(parked.answer().a, err(EIO));
    let path = b"x";
    assert_eq!(rig.kernel.call(packet(SYS_OPEN, addr(path), 1, 0)).a, err(EIO));
    rig.assert_no_strays();
}

#[test]
fn unmounting_ends_the_translator() {
    let rig = rig();
    rig.kernel.unmount();
    rig.translator.join().unwrap().unwrap();
}
