//! The v2 protocol (redox_syscall 0.5.18 `schemev2`, plus the 0.9 opcodes UnlinkAt and
//! StdFsCall): every 64-byte `Sqe` the kernel delivers becomes a wire call, answered with a
//! `RespondRegular` `Cqe` carrying the same tag; daemon events become `SendFevent` Cqes
//! (`tag` = flags, `result` = id); `Cancel` becomes a wire cancel. Positioned reads and writes
//! are sent as `Lseek(SEEK_SET)` then the call, on the same handle, back to back.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use log::{debug, warn};
use scheme_protocol::{Call, Caller, Errno, Fd, Reply};
use syscall::error::Error;
use syscall::flag::{EVENT_READ, EVENT_WRITE, SEEK_SET};
use syscall::schemev2::{Cqe, CqeOpcode, NewFdFlags, Opcode, Sqe, SqeFlags};

use super::calls::{Args, Finish, Forward, KernelResult};
use super::kernel::{self, Core, Respond};
use super::{CallerMemory, UNKNOWN_ID};
use crate::{CallError, CallResult, Client, Event};

/// The scheme root id this translator hands the kernel: `OpenAt`/`UnlinkAt` relative to it
/// are plain opens/unlinks of the path. (Daemon handle ids are passed through unchanged, so a
/// daemon must not use this id itself.)
pub const ROOT_ID: u64 = u64::MAX;

/// Opcodes of redox_syscall 0.9 that 0.5.18's `Opcode` does not know.
const UNLINK_AT: u8 = 32;
const STD_FS_CALL: u8 = 33;
const DETACH: u8 = 34;

/// `UnlinkAt` flag: remove a directory.
const AT_REMOVEDIR: u64 = 0x200;

/// `StdFsCallKind` values (redox_syscall 0.9) that map to wire calls.
mod std_fs {
    pub(super) const FCHMOD: u8 = 1;
    pub(super) const FCHOWN: u8 = 2;
    pub(super) const GETDENTS: u8 = 3;
    pub(super) const FSTAT: u8 = 4;
    pub(super) const FSTATVFS: u8 = 5;
    pub(super) const FSYNC: u8 = 6;
    pub(super) const FTRUNCATE: u8 = 7;
    pub(super) const FUTIMENS: u8 = 8;
    pub(super) const UNLINKAT: u8 = 10;
}

/// Serves the kernel's scheme socket with the v2 protocol: reads Sqes from `kernel_in`,
/// forwards each to the daemon behind `client` without waiting for it, and writes every Cqe
/// (answers and events) to `kernel_out`. Returns when the kernel closes the socket; answers
/// still owed are written as they arrive. If the daemon dies, every outstanding and later
/// request is answered `EIO`.
pub fn serve(
    client: Client,
    memory: CallerMemory,
    kernel_in: impl Read,
    kernel_out: impl Write + Send + 'static,
) -> io::Result<()> {
    let core = Core::new(client, kernel_out);
    let _events = core.pump_events(event_cqe)?;
    let translator = Translator {
        args: Args { memory, max_payload: core.max_payload() },
        core,
        handles: Arc::default(),
    };
    kernel::for_each_request(kernel_in, |sqe: Sqe| translator.handle(sqe))
}

/// For fuzzing (`fuzz/`): the translation [`serve`] makes, Sqe by Sqe, with the daemon's
/// answer to each wire call coming from a closure instead of the wire. Handle state (paths
/// for `OpenAt`, closes) carries over between Sqes. `client` is only used for what needs no
/// answer (cancels, `CloseMsg`, the seek before a positioned call): a closed one will do.
#[doc(hidden)]
pub struct Offline(Translator);

impl fmt::Debug for Offline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Offline")
    }
}

impl Offline {
    /// A translator with no kernel socket; `client`'s `max_payload` bounds each call.
    pub fn new(client: Client, memory: CallerMemory) -> Offline {
        let core = Core::new(client, io::sink());
        let args = Args { memory, max_payload: core.max_payload() };
        Offline(Translator { args, core, handles: Arc::default() })
    }

    /// Translates `sqe`, answers its wire call with `daemon`, and returns the Cqe the kernel
    /// gets (`None` for messages and one-way requests).
    pub fn request(
        &self,
        sqe: Sqe,
        daemon: impl FnOnce(&Call) -> CallResult<Reply>,
    ) -> Option<Vec<u8>> {
        let op = sqe.opcode;
        if op == Opcode::Cancel as u8 || op == Opcode::CloseMsg as u8 || op == DETACH {
            self.0.handle(sqe);
            return None;
        }
        let one_way = sqe.sqe_flags.contains(SqeFlags::ONEWAY);
        let plan = match self.0.translate(&sqe) {
            Ok(plan) => plan,
            Err(_) if one_way => return None,
            Err(errno) => return Some(answer(sqe.tag, Err(errno), 0)),
        };
        if let Some(offset) = plan.seek {
            self.0.seek(caller(&sqe), sqe.args[0], offset);
        }
        let Forward { call, finish } = plan.forward;
        let result = finish.complete(call.name(), daemon(&call));
        (!one_way).then(|| self.0.respond(sqe.tag, plan.new_handle)(result))
    }
}

/// What the translator knows about the daemon's handles.
#[derive(Debug, Default)]
struct Handles {
    /// The path each handle was opened with (for `OpenAt`/`UnlinkAt` relative to it), and how
    /// many opens returned that id (daemons may reuse ids).
    paths: HashMap<u64, (String, usize)>,
    /// Handles whose daemon answered `ESPIPE` to a seek: positioned I/O skips the seek.
    unseekable: HashSet<u64>,
}

impl Handles {
    fn opened(&mut self, id: u64, path: String) {
        let entry = self.paths.entry(id).or_insert_with(|| (String::new(), 0));
        *entry = (path, entry.1 + 1);
    }

    fn closed(&mut self, id: u64) {
        if let Some((_, opens)) = self.paths.get_mut(&id) {
            *opens -= 1;
            if *opens > 0 {
                return;
            }
            self.paths.remove(&id);
        }
        self.unseekable.remove(&id);
    }
}

/// A handle an answer creates.
#[derive(Debug)]
enum NewHandle {
    /// Opened by path: remembered, so paths relative to it can be resolved.
    Opened(String),
    /// Made by dup: no path.
    Duped,
}

/// What to do for one Sqe.
#[derive(Debug)]
struct Plan {
    forward: Forward,
    /// Open and dup answers are new handles, answered `POSITIONED`.
    new_handle: Option<NewHandle>,
    /// Positioned read or write: seek the daemon's handle to this offset first.
    seek: Option<i64>,
}

impl From<Forward> for Plan {
    fn from(forward: Forward) -> Plan {
        Plan { forward, new_handle: None, seek: None }
    }
}

struct Translator {
    core: Core,
    args: Args,
    handles: Arc<Mutex<Handles>>,
}

impl Translator {
    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, sqe: Sqe) {
        match sqe.opcode {
            op if op == Opcode::Cancel as u8 => self.core.cancel(u64::from(sqe.tag)),
            op if op == Opcode::CloseMsg as u8 => self.close_msg(&sqe),
            DETACH => debug!("detach of handle {} (no locks here); ignored", sqe.args[0]),
            _ => self.request(sqe),
        }
    }

    /// A request: forwarded and answered, or answered at once with an errno. A request the
    /// kernel marked one-way is forwarded but never answered.
    fn request(&self, sqe: Sqe) {
        let one_way = sqe.sqe_flags.contains(SqeFlags::ONEWAY);
        let caller = caller(&sqe);
        let plan = match self.translate(&sqe) {
            Ok(plan) => plan,
            Err(errno) if one_way => return debug!("one-way opcode {}: {errno}", sqe.opcode),
            Err(errno) => return self.core.answer_now(&answer(sqe.tag, Err(errno), 0)),
        };
        if let Some(offset) = plan.seek {
            self.seek(caller, sqe.args[0], offset);
        }
        if one_way {
            self.core.send_only(caller, plan.forward.call, drop);
        } else {
            let respond = self.respond(sqe.tag, plan.new_handle);
            self.core.forward(u64::from(sqe.tag), caller, plan.forward, respond);
        }
    }

    /// The answer for request `tag`: new handles are remembered and answered `POSITIONED`.
    fn respond(&self, tag: u32, new_handle: Option<NewHandle>) -> Respond {
        let handles = Arc::clone(&self.handles);
        Box::new(move |result| {
            let extra = match (result, new_handle) {
                (Ok(id), Some(new_handle)) => {
                    if let NewHandle::Opened(path) = new_handle {
                        handles
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .opened(id as u64, path);
                    }
                    NewFdFlags::POSITIONED.bits()
                }
                _ => 0,
            };
            answer(tag, result, extra)
        })
    }

    /// Sends `Lseek(offset, SEEK_SET)` ahead of a positioned read or write, unless the daemon
    /// already said the handle cannot seek. Its answer is not waited for: the daemon handles
    /// a handle's calls in order, and streams answer `ESPIPE`, which only marks the handle.
    fn seek(&self, caller: Caller, fd: u64, offset: i64) {
        if self.handles().unseekable.contains(&fd) {
            return;
        }
        let handles = Arc::clone(&self.handles);
        let call = Call::Lseek { fd: Fd(fd), offset, whence: SEEK_SET as u64 };
        self.core.send_only(caller, call, move |answer| {
            if answer == Err(CallError::Errno(Errno::ESPIPE)) {
                handles.lock().unwrap_or_else(PoisonError::into_inner).unseekable.insert(fd);
            }
        });
    }

    /// `CloseMsg`: the last reference went away; the daemon is told, nobody waits.
    fn close_msg(&self, sqe: &Sqe) {
        let fd = sqe.args[0];
        self.handles().closed(fd);
        self.core.send_only(caller(sqe), Call::Close { fd: Fd(fd) }, drop);
    }

    fn translate(&self, sqe: &Sqe) -> Result<Plan, Errno> {
        let [a0, a1, a2, a3, a4, _] = sqe.args;
        let (fd, args) = (Fd(a0), self.args);
        let (ptr, len) = (a1 as usize, a2 as usize);
        let value = |call| Ok(Plan::from(Forward::value(call)));
        let Some(opcode) = Opcode::try_from_raw(sqe.opcode) else {
            return match sqe.opcode {
                UNLINK_AT => self.unlinkat(a0, args.path(ptr, len)?, a3),
                STD_FS_CALL => self.std_fs_call(sqe),
                _ => Err(Errno::ENOSYS),
            };
        };
        match opcode {
            Opcode::Open => Ok(opened(args.open(a0 as usize, a1 as usize, a2)?)),
            Opcode::Rmdir => {
                Ok(args.on_path(a0 as usize, a1 as usize, |path| Call::Rmdir { path })?.into())
            }
            Opcode::Unlink => {
                Ok(args.on_path(a0 as usize, a1 as usize, |path| Call::Unlink { path })?.into())
            }
            Opcode::Close => {
                self.handles().closed(a0);
                value(Call::Close { fd })
            }
            Opcode::Dup => {
                let forward = args.dup(a0, ptr, len)?;
                Ok(Plan { new_handle: Some(NewHandle::Duped), ..forward.into() })
            }
            Opcode::Read => positioned(args.read(a0, ptr, len)?, a3),
            Opcode::Write => positioned(args.write(a0, ptr, len)?, a3),
            Opcode::Fsize => Ok(Forward { call: Call::Fstat { fd }, finish: Finish::Size }.into()),
            Opcode::Fchmod => value(Call::Fchmod { fd, mode: a1 as u16 }),
            Opcode::Fchown => value(Call::Fchown { fd, uid: a1 as u32, gid: a2 as u32 }),
            Opcode::Fcntl => value(Call::Fcntl { fd, cmd: a1, arg: a2 }),
            Opcode::Fevent => value(Call::Fevent { fd, flags: a1 }),
            Opcode::Fpath => Ok(args.fpath(a0, ptr, len)?.into()),
            Opcode::Frename => {
                Ok(args.on_path(ptr, len, |path| Call::Frename { fd, path })?.into())
            }
            Opcode::Fstat => Ok(args.fstat(a0, ptr, len)?.into()),
            Opcode::Fstatvfs => Ok(args.fstatvfs(a0, ptr, len)?.into()),
            Opcode::Fsync => value(Call::Fsync { fd }),
            Opcode::Ftruncate => value(Call::Ftruncate { fd, len: a1 }),
            Opcode::Futimens => Ok(args.futimens(a0, ptr, len)?.into()),
            Opcode::Getdents => Ok(args.getdents(a0, (ptr, len), a4, a3)?.into()),
            Opcode::OpenAt => {
                let path = self.resolve(a0, args.path(ptr, len)?)?;
                Ok(opened(Forward::value(Call::Open { path, flags: a3 | u64::from(a4 as u32) })))
            }
            Opcode::Flink => Ok(args.on_path(ptr, len, |path| Call::Flink { fd, path })?.into()),
            // Fd passing, the mmap family and Call cannot cross a pipe (see the module table).
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `UnlinkAt(dirfd, path, flags)`: `Rmdir` with `AT_REMOVEDIR`, else `Unlink`.
    fn unlinkat(&self, dirfd: u64, path: String, flags: u64) -> Result<Plan, Errno> {
        let path = self.resolve(dirfd, path)?;
        let call =
            if flags & AT_REMOVEDIR != 0 { Call::Rmdir { path } } else { Call::Unlink { path } };
        Ok(Forward::value(call).into())
    }

    /// `StdFsCall(fd, payload, kind, arg1, arg2)`: the kinds with a wire call.
    fn std_fs_call(&self, sqe: &Sqe) -> Result<Plan, Errno> {
        let [id, ptr, len, kind, arg1, arg2] = sqe.args;
        let (fd, args, ptr, len) = (Fd(id), self.args, ptr as usize, len as usize);
        let value = |call| Ok(Plan::from(Forward::value(call)));
        match kind as u8 {
            std_fs::FCHMOD => value(Call::Fchmod { fd, mode: arg1 as u16 }),
            std_fs::FCHOWN => {
                value(Call::Fchown { fd, uid: arg1 as u32, gid: (arg1 >> 32) as u32 })
            }
            std_fs::GETDENTS => Ok(args.getdents(id, (ptr, len), arg1, arg2)?.into()),
            std_fs::FSTAT => Ok(args.fstat(id, ptr, len)?.into()),
            std_fs::FSTATVFS => Ok(args.fstatvfs(id, ptr, len)?.into()),
            std_fs::FSYNC => value(Call::Fsync { fd }),
            std_fs::FTRUNCATE => value(Call::Ftruncate { fd, len: arg1 }),
            std_fs::FUTIMENS => Ok(args.futimens(id, ptr, len)?.into()),
            std_fs::UNLINKAT => self.unlinkat(id, args.path(ptr, len)?, arg1),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// The scheme-relative path of `path` relative to handle `dirfd`: as given for
    /// [`ROOT_ID`], joined to the path the handle was opened with otherwise. A handle opened
    /// some other way (dup) has no known path: `EOPNOTSUPP`.
    fn resolve(&self, dirfd: u64, path: String) -> Result<String, Errno> {
        if dirfd == ROOT_ID {
            return Ok(path);
        }
        let handles = self.handles();
        let Some((dir, _)) = handles.paths.get(&dirfd) else {
            warn!("path {path:?} relative to handle {dirfd}, whose path is unknown; EOPNOTSUPP");
            return Err(Errno::EOPNOTSUPP);
        };
        Ok(join(dir, &path))
    }
}

fn join(dir: &str, path: &str) -> String {
    let (dir, path) = (dir.trim_end_matches('/'), path.trim_start_matches('/'));
    match (dir.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => dir.to_owned(),
        (false, false) => format!("{dir}/{path}"),
    }
}

/// An open: its answer is a new handle, remembered under the path it was opened with.
fn opened(forward: Forward) -> Plan {
    let path = match &forward.call {
        Call::Open { path, .. } => path.clone(),
        _ => String::new(),
    };
    Plan { new_handle: Some(NewHandle::Opened(path)), ..forward.into() }
}

/// A read or write at `offset` (`u64::MAX`: the handle's own position).
fn positioned(forward: Forward, offset: u64) -> Result<Plan, Errno> {
    let seek = match offset {
        u64::MAX => None,
        offset => Some(i64::try_from(offset).map_err(|_| Errno::EINVAL)?),
    };
    Ok(Plan { seek, ..forward.into() })
}

/// Who made the call: `caller` is the pid, `args[5]` is `uid | gid << 32`, except for
/// StdFsCall, where it is an argument and the ids are unknown ([`UNKNOWN_ID`], never root).
fn caller(sqe: &Sqe) -> Caller {
    let ids = sqe.args[5];
    let (uid, gid) = match sqe.opcode {
        STD_FS_CALL => (UNKNOWN_ID, UNKNOWN_ID),
        _ => (ids as u32, (ids >> 32) as u32),
    };
    Caller { pid: sqe.caller, uid, gid }
}

/// A `RespondRegular` Cqe for request `tag`.
fn answer(tag: u32, result: KernelResult, extra: u8) -> Vec<u8> {
    let result = Error::mux(result.map_err(|errno| Error::new(errno.0))) as u64;
    let cqe = Cqe { flags: CqeOpcode::RespondRegular as u8, extra_raw: [extra, 0, 0], tag, result };
    cqe.to_vec()
}

/// A `SendFevent` Cqe: `tag` = the flags, `result` = the handle id. Flags other than
/// read/write are dropped (the kernel refuses them), and an event left with none is not sent.
fn event_cqe(event: Event) -> Option<Vec<u8>> {
    let flags = event.flags & (EVENT_READ | EVENT_WRITE).bits() as u64;
    if flags == 0 {
        warn!("daemon posted event flags {:#x} for handle {}; dropped", event.flags, event.fd.0);
        return None;
    }
    let cqe = Cqe {
        flags: CqeOpcode::SendFevent as u8,
        extra_raw: [0; 3],
        tag: flags as u32,
        result: event.fd.0,
    };
    Some(cqe.to_vec())
}
