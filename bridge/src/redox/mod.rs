//! The Redox kernel side: runs a scheme daemon out of process **on Redox**. The kernel hands
//! scheme calls to the process that registered the scheme; this module is that process. It
//! translates each kernel request (legacy `Packet` or v2 `Sqe`) into a wire call to a daemon
//! behind a [`Client`](crate::Client) (a child process, or a pipe to another machine), and the
//! daemon's reply back into the kernel's answer, copying caller memory in and out.
//!
//! - [`legacy::serve`]: 56-byte `Packet`s in and out (redox_syscall 0.5.18's dispatch table
//!   plus `SYS_GETDENTS`).
//! - [`v2::serve`]: 64-byte `Sqe`s in, 16-byte `Cqe`s out (redox_syscall 0.5.18 `schemev2`,
//!   plus 0.9's `UnlinkAt` and `StdFsCall`).
//! - [`sys`]: the Redox-only lines that register a scheme and return its socket.
//! - [`sim`]: a simulated kernel and a scripted daemon, to test all of this on Linux.
//!
//! Both translators are generic over the kernel socket (`Read` for requests, `Write + Send`
//! for answers: on Redox, the socket file and a `try_clone` of it). The only `unsafe` code is
//! in `memory.rs`, reached through the [`CallerMemory`] promise.
//!
//! # Nothing waits
//!
//! Every request is submitted with [`Client::submit`](crate::Client::submit) and answered from
//! its completion, on the client's reply-reader thread, under one lock on the kernel socket.
//! Answers go back in whatever order the daemon gives them, so a read parked in the daemon
//! holds up nothing else. Requests the translator can answer itself (`EFAULT`, `EOPNOTSUPP`,
//! `ENOSYS`) are answered at once.
//!
//! # Ids, tags and cancellation
//!
//! The kernel's request id (`Packet.id`; `Sqe.tag`) maps to the wire tag of its call, kept
//! until the answer is written; each request is answered exactly once. A cancel from the
//! kernel (legacy: `id = 0, a = KSMSG_CANCEL, b = target id`; v2: a one-way `Cancel` Sqe whose
//! `tag` is the target's) becomes a wire `Cancel` for that tag; the daemon side answers it
//! `EINTR`, which goes back as the request's answer. A cancel for a request already answered
//! is ignored. `EINTR` from a daemon for a request that was not cancelled becomes `EIO` (the
//! kernel's rule).
//!
//! Handle ids are the daemon's own, passed through unchanged in both directions. v2's scheme
//! root is [`v2::ROOT_ID`] (`u64::MAX`): `OpenAt`/`UnlinkAt` relative to it send the path
//! as it is. Relative to another handle, the path is joined to the path that handle was
//! opened with (the translator remembers the path of every open; `fpath` answers are
//! daemon-specific and not used); a handle made by `dup` has no path, so paths relative to it
//! answer `EOPNOTSUPP`.
//!
//! # Events
//!
//! A daemon `Event { fd, flags }` becomes a legacy `Packet { id: 0, a: SYS_FEVENT, b: fd, c:
//! flags }` or a v2 `Cqe { flags: SendFevent, tag: flags, result: fd }`. Flags other than
//! `EVENT_READ | EVENT_WRITE` are dropped (the kernel refuses them).
//!
//! # What crosses the pipe
//!
//! | Legacy `Packet.a` | v2 opcode | wire call | caller memory |
//! |---|---|---|---|
//! | `SYS_OPEN` | `Open`, `OpenAt` | `Open` (`OpenAt` flags = `args[3] \| args[4]`) | path in |
//! | `SYS_RMDIR` | `Rmdir`, `UnlinkAt` + `AT_REMOVEDIR` | `Rmdir` | path in |
//! | `SYS_UNLINK` | `Unlink`, `UnlinkAt` | `Unlink` | path in |
//! | `SYS_DUP` | `Dup` | `Dup` | buffer in |
//! | `SYS_READ` | `Read` | `Read` (v2 positioned: `Lseek` first) | data out |
//! | `SYS_WRITE` | `Write` | `Write` (v2 positioned: `Lseek` first) | data in |
//! | `SYS_LSEEK` | `Fsize` | `Lseek`; `Fsize` = `Fstat`'s `st_size` | – |
//! | `SYS_FCHMOD`, `SYS_FCHOWN`, `SYS_FCNTL`, `SYS_FEVENT` | same, `StdFsCall` 1, 2 | same | – |
//! | `SYS_FLINK`, `SYS_FRENAME` | `Flink`, `Frename` | same | path in |
//! | `SYS_FPATH` | `Fpath` | `Fpath` | path out |
//! | `SYS_FSTAT` | `Fstat`, `StdFsCall` 4 | `Fstat` | 104-byte `Stat` out (`EFAULT` if shorter) |
//! | `SYS_FSTATVFS` | `Fstatvfs`, `StdFsCall` 5 | `Fstatvfs` | 32-byte `StatVfs` out (`EFAULT` if shorter) |
//! | `SYS_FSYNC`, `SYS_FTRUNCATE` | same, `StdFsCall` 6, 7 | same | – |
//! | `SYS_FUTIMENS` | `Futimens`, `StdFsCall` 8 | `Futimens` (≤ 2 times) | times in (`EFAULT` under 16 bytes) |
//! | `SYS_GETDENTS` (cursor in `uid \| gid << 32`) | `Getdents`, `StdFsCall` 3 | `Getdents` | records out |
//! | `SYS_CLOSE` | `Close`; `CloseMsg` (one-way, not answered) | `Close` | – |
//! | `KSMSG_CANCEL` | `Cancel` | wire `Cancel` | – |
//! | – | `StdFsCall` 10 (unlinkat) | `Rmdir`/`Unlink` | path in |
//!
//! Every copy is bounded by the kernel's length. A read, fpath or getdents asks the daemon for
//! at most one frame's worth (a short read); a write sends at most that much (a short write);
//! a longer path is `ENAMETOOLONG`, a longer dup buffer `EINVAL`, a path that is not UTF-8
//! `EINVAL`. A daemon answering more bytes than were asked for, a byte count above what was
//! written, a reply of the wrong kind, an errno outside 1..=131, or a value the kernel would
//! read as an errno gets the caller `EIO`, and nothing is copied. If the daemon dies or sends
//! a bad stream, every outstanding and later request is answered `EIO`.
//!
//! # What cannot cross a pipe: `EOPNOTSUPP`
//!
//! | Legacy `Packet.a` | v2 opcode | why |
//! |---|---|---|
//! | `KSMSG_MMAP`, `KSMSG_MSYNC`, `KSMSG_MUNMAP`, `KSMSG_MMAP_PREP`, `SYS_FMAP*`, `SYS_FUNMAP*` | `MmapPrep`, `RequestMmap`, `Mremap`, `Munmap`, `Msync` | pages of another process cannot be shared over a byte stream |
//! | – (`ESKMSG` answers are refused on the daemon side) | `Sendfd`, `Recvfd` (and so `RespondWithFd`, `ObtainFd`) | file descriptors cannot cross a byte stream |
//! | – | `Call` | its payload is in/out with no declared direction or size |
//! | – | `StdFsCall` kinds other than 1–8 and 10 (realpathat, locks, renameat, linkat) | no wire call |
//!
//! Each is answered at once, never forwarded; one-way ones are dropped. Other numbers are
//! `ENOSYS` (what redox_syscall's `handle` answers); `Detach` (one-way) is ignored, and
//! `id = 0` packets other than `KSMSG_CANCEL` are logged and ignored.
//!
//! # Decisions
//!
//! - v2 opens and dups are answered `POSITIONED`, so the kernel keeps the file offset, and a
//!   positioned `Read`/`Write` (offset other than `u64::MAX`) is sent as `Lseek(offset,
//!   SEEK_SET)` immediately followed by the call on the same handle: the wire has no offset,
//!   and the daemon side handles one handle's calls in order. The seek is not waited for; a
//!   handle whose seek answered `ESPIPE` (a stream) is remembered and gets no more seeks.
//!   A read that parks in the daemon while another positioned call on the same handle id
//!   seeks elsewhere reads at the later offset: seekable handles do not park in practice.
//! - `Fsize` (the kernel's `SEEK_END`) is answered with `Fstat`'s `st_size`, which has no
//!   side effect, rather than `Lseek(0, SEEK_END)`, which would move the daemon's offset.
//! - v2 per-call flags (`args[4]` of `Read`/`Write`) cannot be expressed on the wire; a
//!   daemon learns `O_NONBLOCK` from the open flags (`OpenAt` sends `args[3] | args[4]`) and
//!   `F_SETFL`, as legacy daemons always did.
//! - Callers whose ids the kernel does not send (legacy getdents, v2 `StdFsCall`) are sent
//!   with uid and gid [`UNKNOWN_ID`], never as root.
//! - Getdents records are redox_syscall 0.5's (19-byte header); a kernel asking for another
//!   header size is answered `EINVAL`.

pub mod legacy;
mod memory;
pub mod sim;
pub mod sys;
pub mod v2;

mod calls;
mod kernel;

pub use memory::CallerMemory;

/// The uid and gid sent for a caller the kernel did not identify: never root.
pub const UNKNOWN_ID: u32 = u32::MAX;
