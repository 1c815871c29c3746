//! End to end on Linux: a simulated Redox kernel -> the translator -> a pipe -> the real
//! `chand` daemon process -> back. Threads make simulated syscalls (packets and Sqes pointing
//! at their own buffers) with the legacy and the v2 protocol: the seed's hello server with
//! 20 clients, a parked read cancelled by the kernel, and an event posted by the daemon.

mod util;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use scheme_bridge::redox::sim::{self, SimKernel};
use scheme_bridge::redox::v2::ROOT_ID;
use scheme_bridge::redox::{legacy, v2, CallerMemory};
use syscall::data::Packet;
use syscall::error::{Error, EINTR};
use syscall::flag::{EVENT_READ, O_CREAT, O_RDWR};
use syscall::number::{
    KSMSG_CANCEL, SYS_CLOSE, SYS_DUP, SYS_FEVENT, SYS_OPEN, SYS_READ, SYS_WRITE,
};
use syscall::schemev2::{Opcode, Sqe, SqeFlags};
use util::{spawn, PROMPTLY};

const HELLO: &[u8] = b"Hello World!\n";
/// The caller of every simulated syscall.
const PID: u64 = 42;
const UID: u32 = 1000;
const GID: u32 = 1000;

/// A syscall's result: a value or a Redox errno.
type SysResult = Result<usize, i32>;

/// What a thread of a Redox program can do with `chan:`, through the simulated kernel.
trait Kernel: Sync {
    fn open(&self, path: &str, flags: usize) -> SysResult;
    fn dup(&self, fd: usize, buf: &[u8]) -> SysResult;
    fn read(&self, fd: usize, buf: &mut [u8]) -> SysResult;
    fn write(&self, fd: usize, buf: &[u8]) -> SysResult;
    fn fevent(&self, fd: usize, flags: usize) -> SysResult;
    fn close(&self, fd: usize) -> SysResult;
    /// Starts a read, waits until it has surely reached the daemon, then cancels it (a signal).
    fn cancelled_read(&self, fd: usize, buf: &mut [u8]) -> SysResult;
    /// The next event the daemon posted: (handle id, flags).
    fn next_event(&self) -> Option<(usize, usize)>;
}

fn demux(value: usize) -> SysResult {
    Error::demux(value).map_err(|err| err.errno)
}

/// The memory promise for both kernels below.
fn caller_memory() -> CallerMemory {
    // SAFETY: every request points at buffers borrowed for the duration of the syscall method,
    // which returns only once the request is answered (`SimCall::answer` aborts instead of
    // unwinding past an unanswered request); one-way messages carry no pointers.
    unsafe { CallerMemory::assume_mapped() }
}

/// The legacy kernel: 56-byte packets.
struct LegacyKernel {
    sim: SimKernel<sim::Legacy>,
}

impl LegacyKernel {
    fn start() -> LegacyKernel {
        let client = spawn("chand", "chan");
        let (sim, socket) = SimKernel::new().unwrap();
        let memory = caller_memory();
        thread::spawn(move || legacy::serve(client, memory, socket.requests, socket.answers));
        LegacyKernel { sim }
    }

    fn packet(a: usize, b: usize, c: usize, d: usize) -> Packet {
        Packet { id: 0, pid: PID as usize, uid: UID, gid: GID, a, b, c, d }
    }

    fn syscall(&self, a: usize, b: usize, c: usize, d: usize) -> SysResult {
        demux(self.sim.call(Self::packet(a, b, c, d)).a)
    }
}

impl Kernel for LegacyKernel {
    fn open(&self, path: &str, flags: usize) -> SysResult {
        self.syscall(SYS_OPEN, path.as_ptr() as usize, path.len(), flags)
    }

    fn dup(&self, fd: usize, buf: &[u8]) -> SysResult {
        self.syscall(SYS_DUP, fd, buf.as_ptr() as usize, buf.len())
    }

    fn read(&self, fd: usize, buf: &mut [u8]) -> SysResult {
        self.syscall(SYS_READ, fd, buf.as_mut_ptr() as usize, buf.len())
    }

    fn write(&self, fd: usize, buf: &[u8]) -> SysResult {
        self.syscall(SYS_WRITE, fd, buf.as_ptr() as usize, buf.len())
    }

    fn fevent(&self, fd: usize, flags: usize) -> SysResult {
        self.syscall(SYS_FEVENT, fd, flags, 0)
    }

    fn close(&self, fd: usize) -> SysResult {
        self.syscall(SYS_CLOSE, fd, 0, 0)
    }

    fn cancelled_read(&self, fd: usize, buf: &mut [u8]) -> SysResult {
        let read = Self::packet(SYS_READ, fd, buf.as_mut_ptr() as usize, buf.len());
        let call = self.sim.start(read);
        thread::sleep(Duration::from_millis(200));
        self.sim.post(Packet { a: KSMSG_CANCEL, b: call.id() as usize, ..Packet::default() });
        demux(call.answer().a)
    }

    fn next_event(&self) -> Option<(usize, usize)> {
        let event = self.sim.events().recv_timeout(PROMPTLY).ok()?;
        assert_eq!((event.id, event.a), (0, SYS_FEVENT));
        Some((event.b, event.c))
    }
}

/// The v2 kernel: Sqes in, Cqes out. Like the real one it keeps the file offset of handles
/// answered `POSITIONED` and passes it with every read and write, and closes with a one-way
/// `CloseMsg` (a scheme registered with `O_EXLOCK`).
struct V2Kernel {
    sim: SimKernel<sim::V2>,
    offsets: Mutex<HashMap<usize, u64>>,
}

impl V2Kernel {
    fn start() -> V2Kernel {
        let client = spawn("chand", "chan");
        let (sim, socket) = SimKernel::new().unwrap();
        let memory = caller_memory();
        thread::spawn(move || v2::serve(client, memory, socket.requests, socket.answers));
        V2Kernel { sim, offsets: Mutex::default() }
    }

    fn sqe(opcode: Opcode, [a0, a1, a2, a3, a4]: [u64; 5]) -> Sqe {
        let ids = u64::from(UID) | u64::from(GID) << 32;
        let args = [a0, a1, a2, a3, a4, ids];
        Sqe {
            opcode: opcode as u8,
            sqe_flags: SqeFlags::empty(),
            _rsvd: 0,
            tag: 0,
            args,
            caller: PID,
        }
    }

    fn offsets(&self) -> std::sync::MutexGuard<'_, HashMap<usize, u64>> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new handle: positioned ones start at offset 0.
    fn new_handle(&self, opcode: Opcode, args: [u64; 5]) -> SysResult {
        let cqe = self.sim.call(Self::sqe(opcode, args));
        let id = demux(cqe.result as usize)?;
        if cqe.extra_raw[0] & 1 != 0 {
            self.offsets().insert(id, 0);
        }
        Ok(id)
    }

    /// A read or write at the handle's offset, which advances by the result.
    fn transfer(&self, opcode: Opcode, fd: usize, ptr: usize, len: usize) -> SysResult {
        let offset = self.offsets().get(&fd).copied().unwrap_or(u64::MAX);
        let args = [fd as u64, ptr as u64, len as u64, offset, 0];
        let count = demux(self.sim.call(Self::sqe(opcode, args)).result as usize)?;
        if let Some(offset) = self.offsets().get_mut(&fd) {
            *offset += count as u64;
        }
        Ok(count)
    }
}

impl Kernel for V2Kernel {
    fn open(&self, path: &str, flags: usize) -> SysResult {
        let args = [ROOT_ID, path.as_ptr() as u64, path.len() as u64, flags as u64, 0];
        self.new_handle(Opcode::OpenAt, args)
    }

    fn dup(&self, fd: usize, buf: &[u8]) -> SysResult {
        self.new_handle(Opcode::Dup, [fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0, 0])
    }

    fn read(&self, fd: usize, buf: &mut [u8]) -> SysResult {
        self.transfer(Opcode::Read, fd, buf.as_mut_ptr() as usize, buf.len())
    }

    fn write(&self, fd: usize, buf: &[u8]) -> SysResult {
        self.transfer(Opcode::Write, fd, buf.as_ptr() as usize, buf.len())
    }

    fn fevent(&self, fd: usize, flags: usize) -> SysResult {
        let cqe = self.sim.call(Self::sqe(Opcode::Fevent, [fd as u64, flags as u64, 0, 0, 0]));
        demux(cqe.result as usize)
    }

    fn close(&self, fd: usize) -> SysResult {
        self.offsets().remove(&fd);
        let mut message = Self::sqe(Opcode::CloseMsg, [fd as u64, 0, 0, 0, 0]);
        message.sqe_flags = SqeFlags::ONEWAY;
        self.sim.post(message);
        Ok(0)
    }

    fn cancelled_read(&self, fd: usize, buf: &mut [u8]) -> SysResult {
        let args = [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, u64::MAX, 0];
        let call = self.sim.start(Self::sqe(Opcode::Read, args));
        thread::sleep(Duration::from_millis(200));
        let mut cancel = Self::sqe(Opcode::Cancel, [0; 5]);
        (cancel.sqe_flags, cancel.tag) = (SqeFlags::ONEWAY, call.id() as u32);
        self.sim.post(cancel);
        demux(call.answer().result as usize)
    }

    fn next_event(&self) -> Option<(usize, usize)> {
        let event = self.sim.events().recv_timeout(PROMPTLY).ok()?;
        assert_eq!(event.flags & 0b111, 2, "a SendFevent Cqe");
        Some((event.result as usize, event.tag as usize))
    }
}

/// Reads 5 bytes at a time until end of file.
fn read_to_end(kernel: &impl Kernel, fd: usize) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 5];
    loop {
        match kernel.read(fd, &mut buf).unwrap() {
            0 => return all,
            count => all.extend_from_slice(&buf[..count]),
        }
    }
}

/// The seed's hello example: a server opens `chan:hello` with O_CREAT and loops on
/// `dup(listener, "listen")`, writing "Hello World!\n" and closing; `clients` threads connect
/// and each reads the greeting, then end of file.
fn hello_world(kernel: &impl Kernel, clients: usize) {
    let listener = kernel.open("hello", O_CREAT | O_RDWR).unwrap();
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..clients {
                let stream = kernel.dup(listener, b"listen").unwrap();
                assert_eq!(kernel.write(stream, HELLO), Ok(HELLO.len()));
                kernel.close(stream).unwrap();
            }
            kernel.close(listener).unwrap();
        });
        let readers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let stream = kernel.open("hello", O_RDWR).unwrap();
                    let greeting = read_to_end(kernel, stream);
                    kernel.close(stream).unwrap();
                    greeting
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap(), HELLO);
        }
    });
}

/// A connected stream pair on `name`: (listener, server end, client end).
fn stream_pair(kernel: &impl Kernel, name: &str) -> (usize, usize, usize) {
    let listener = kernel.open(name, O_CREAT | O_RDWR).unwrap();
    let client = kernel.open(name, O_RDWR).unwrap();
    let server = kernel.dup(listener, b"listen").unwrap();
    (listener, server, client)
}

/// A read parked in the daemon is cancelled by the kernel and answered EINTR; the stream is
/// unharmed and the next read gets what is written next.
fn cancel_a_parked_read(kernel: &impl Kernel) {
    let (_, server, client) = stream_pair(kernel, "parked");
    let mut buf = [0u8; 16];
    assert_eq!(kernel.cancelled_read(client, &mut buf), Err(EINTR));
    assert_eq!(kernel.write(server, b"after"), Ok(5));
    assert_eq!(kernel.read(client, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"after");
}

/// `fevent` answers what is ready now; data arriving later is posted as an event.
fn events_reach_the_kernel(kernel: &impl Kernel) {
    let (_, server, client) = stream_pair(kernel, "evented");
    let ready = kernel.fevent(client, EVENT_READ.bits()).unwrap();
    assert_eq!(ready & EVENT_READ.bits(), 0, "nothing to read yet");
    assert_eq!(kernel.write(server, b"ping"), Ok(4));
    let readable = |&(fd, flags): &(usize, usize)| fd == client && flags & EVENT_READ.bits() != 0;
    let event = std::iter::from_fn(|| kernel.next_event()).find(readable);
    assert!(event.is_some(), "a read event for the client end");
}

#[test]
fn legacy_hello_server_and_twenty_clients() {
    hello_world(&LegacyKernel::start(), 20);
}

#[test]
fn v2_hello_server_and_twenty_clients() {
    hello_world(&V2Kernel::start(), 20);
}

#[test]
fn legacy_ksmsg_cancel_of_a_parked_read() {
    cancel_a_parked_read(&LegacyKernel::start());
}

#[test]
fn v2_cancel_of_a_parked_read() {
    cancel_a_parked_read(&V2Kernel::start());
}

#[test]
fn legacy_events_become_fevent_packets() {
    events_reach_the_kernel(&LegacyKernel::start());
}

#[test]
fn v2_events_become_send_fevent_cqes() {
    events_reach_the_kernel(&V2Kernel::start());
}
