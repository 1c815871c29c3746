//! An interrupt-filtering relay between the kernel's `/dev/fuse` and fuser.
//!
//! fuser 0.18 answers FUSE_INTERRUPT with `ENOSYS`, and the kernel then stops sending
//! interrupts for the whole mount: a reader blocked in a FUSE read can no longer be killed
//! until the read is answered. So we own `/dev/fuse` and give fuser one end of a
//! `SOCK_SEQPACKET` socket pair instead, through `fuser::Session::from_fd`:
//!
//! ```text
//!  kernel ──/dev/fuse──> fuse-in ──seqpacket──> fuser      (FUSE_INTERRUPT taken out here)
//!  kernel <─/dev/fuse─── fuse-out <─seqpacket── fuser      (replies, notifications)
//! ```
//!
//! - **fuse-in** reads one request per `read(2)` from the device and forwards it with one
//!   `send`, except FUSE_INTERRUPT: that one goes to the `on_interrupt(unique)` callback (the
//!   unique of the request to interrupt) and is neither forwarded nor answered. The callback
//!   runs on the relay thread, so it must be quick; it should make the original request finish
//!   with `EINTR`. The interrupt can overtake its request: when it arrives, fuser may not have
//!   dispatched the request yet, so the callback must remember uniques it does not know yet.
//! - **fuse-out** reads one message per `recv` from the socket and writes it to the device with
//!   one `write(2)`. `ENOENT` (the request was already finished, e.g. interrupted) and `ENODEV`
//!   (unmounted) are expected and ignored.
//! - **fuse-notify**: notifications from fuser's `Notifier` (unique 0) are written to the device
//!   by a third thread, because the kernel may block such a write (`inval_entry` takes the
//!   directory lock, `inval_inode` waits for locked pages) until some request finishes, and that
//!   request's reply must not be stuck behind it. Their errors (e.g. `ENOENT` for an entry not
//!   in the cache) are logged, not returned: with the proxy fuser's notifier calls report
//!   success once the message is queued.
//!
//! fuse-in and fuse-out watch their input for the busy-poll window (`crate::busy_poll`) before
//! they sleep, as the wire's readers do: each relay hop would otherwise cost a wake-up.
//!
//! `SOCK_SEQPACKET` keeps message boundaries, which fuser needs: it reads a whole request per
//! `read(2)` and writes each reply with a single `writev(2)`.
//!
//! # Message size
//!
//! A seqpacket message must fit in the sending socket's buffer, and the kernel builds each one
//! as a single socket buffer whose linear part needs a physically contiguous allocation. The
//! buffers of both ends are set to 2 × `max_message` (`SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` as root,
//! otherwise `SO_SNDBUF`/`SO_RCVBUF`, capped by `net.core.wmem_max`); then [`spawn`] measures the
//! largest message the pair really carries by sending test messages through it.
//! [`Proxy::max_message`] is that size: cap fuser's `max_write` so that `max_write` + 4096 (room
//! for the request headers) ≤ [`Proxy::max_message`], and `max_read` likewise; a request the
//! socket cannot carry is answered `EIO` by the proxy, a reply fuser cannot send is lost (fuser
//! logs it) and its caller hangs until the connection is aborted. On x86_64 Linux the kernel's
//! allocation limit makes that about 4 MiB + 64 KiB whatever the buffer size, and allocations
//! that large can fail when memory is fragmented: the kernel's default FUSE limit (1 MiB
//! requests, `fs.fuse.max_pages_limit` 256) stays far below it.
//!
//! # Ending
//!
//! - When the filesystem is unmounted or its connection aborted, the device read fails with
//!   `ENODEV`: fuse-in sends fuser a synthetic FUSE_DESTROY (so that fuser's loop ends cleanly
//!   and `Session::run` returns `Ok`; with `n_threads > 1` the other loops see end-of-file and
//!   return an error) and shuts down its sending side, then ends.
//! - [`Proxy::join`] waits for that, then stops fuse-out and fuse-notify (nothing can reach the
//!   kernel any more): call it after unmounting and after joining fuser's session. Left alone,
//!   fuse-out ends when fuser's end of the socket is closed (the session ended and every object
//!   holding it, the `BackgroundSession`, unsent replies and notifiers, is dropped).
//! - Dropping the [`Proxy`] stops all threads at once without waiting for the kernel, and closes
//!   the device, which aborts the connection if the filesystem is still mounted.
//!
//! fuser writes replies with `writev`, which raises `SIGPIPE` if the proxy is gone; Rust
//! programs ignore `SIGPIPE` by default, keep it that way.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    recv, send, shutdown, socketpair, sockopt, AddressFamily, RecvFlags, SendFlags, Shutdown,
    SocketFlags, SocketType,
};

/// fuser's own request buffer size: its largest `max_write` (16 MiB) plus a page for headers.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024 + 4096;

/// The kernel refuses to read requests into smaller buffers (`FUSE_MIN_READ_BUFFER`).
const MIN_MESSAGE: usize = 8192;
/// Room left in the socket buffer beyond the message (the kernel keeps 32 bytes).
const SNDBUF_SLACK: usize = 4096;
const PAGE: usize = 4096;

const IN_HEADER_LEN: usize = 40;
const OUT_HEADER_LEN: usize = 16;
const FUSE_FORGET: u32 = 2;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_DESTROY: u32 = 38;
const FUSE_NOTIFY_REPLY: u32 = 41;
const FUSE_BATCH_FORGET: u32 = 42;
/// Unique of the FUSE_DESTROY we make up at unmount; fuser's reply to it is dropped. Kernel
/// uniques count up from 0 in steps of 2 and never get here.
const DESTROY_UNIQUE: u64 = u64::MAX - 1;

/// Counters of a [`Proxy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests forwarded from the kernel to fuser.
    pub requests: u64,
    /// Replies and notifications written to the kernel (fuser's, and the proxy's own `EIO`
    /// answers).
    pub replies: u64,
    /// FUSE_INTERRUPTs passed to the callback.
    pub interrupts: u64,
    /// Requests the proxy answered itself with `EIO` because they could not be forwarded
    /// (fuser's end closed, or the request too large for the socket).
    pub rejected: u64,
}

/// A running relay; see the module docs.
pub struct Proxy {
    shared: Arc<Shared>,
    fuser_end: Option<OwnedFd>,
    inward: Option<JoinHandle<()>>,
    outward: Option<JoinHandle<()>>,
    notify: Option<JoinHandle<()>>,
    max_message: usize,
}

struct Shared {
    /// `/dev/fuse`, non-blocking.
    device: OwnedFd,
    /// Our end of the socket pair.
    socket: OwnedFd,
    /// eventfd that wakes fuse-in for [`Proxy`]'s drop.
    stop: OwnedFd,
    stopping: AtomicBool,
    requests: AtomicU64,
    replies: AtomicU64,
    interrupts: AtomicU64,
    rejected: AtomicU64,
    /// How long each relay thread watches its input before it sleeps (`busy_poll`).
    busy_poll: std::time::Duration,
}

/// Starts relaying `device` (a mounted `/dev/fuse`, e.g. from
/// [`super::kernel::KernelMount::take_device`]). `max_message` is the size of the request
/// buffer, at least 8192 (replies get a buffer as large as the socket allows); pass
/// [`DEFAULT_MAX_MESSAGE`] unless fuser's `max_write` is capped lower. `on_interrupt` gets the unique of each request the kernel wants interrupted.
///
/// Hand [`Proxy::take_fuser_end`] to `fuser::Session::from_fd` afterwards (that call reads
/// FUSE_INIT through the proxy, so the proxy must run first).
pub fn spawn(
    device: OwnedFd,
    max_message: usize,
    on_interrupt: Arc<dyn Fn(u64) + Send + Sync>,
) -> io::Result<Proxy> {
    if max_message < MIN_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("max_message {max_message} is below the FUSE minimum of {MIN_MESSAGE}"),
        ));
    }
    let (ours, theirs) =
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    let want = max_message.saturating_mul(2);
    grow_buffers(&ours, want);
    grow_buffers(&theirs, want);
    let fuser_sndbuf = sockopt::socket_send_buffer_size(&theirs)?;
    let sndbuf = sockopt::socket_send_buffer_size(&ours)?.min(fuser_sndbuf);

    let mut in_buf = vec![0u8; max_message];
    // fuser may send anything its send buffer takes, whatever max_write: a READ reply is sized
    // by max_readahead too. A truncated reply would be lost and its caller would hang. (Zeroed
    // allocations are mapped lazily: only the pages messages touch cost memory.)
    let mut out_buf = vec![0u8; max_message.max(fuser_sndbuf)];
    let limit = max_message.min(sndbuf.saturating_sub(SNDBUF_SLACK));
    let carried = probe_capacity(&theirs, &ours, limit, &in_buf, &mut out_buf)?;
    debug!("proxy: socket buffer {sndbuf} bytes, largest message {carried} bytes");

    rustix::io::ioctl_fionbio(&device, true)?;
    let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let shared = Arc::new(Shared {
        device,
        socket: ours,
        stop,
        stopping: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        replies: AtomicU64::new(0),
        interrupts: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        busy_poll: crate::busy_poll::window(),
    });
    let mut proxy = Proxy {
        shared: shared.clone(),
        fuser_end: Some(theirs),
        inward: None,
        outward: None,
        notify: None,
        max_message: carried,
    };

    // On a failed spawn, dropping `proxy` stops the threads already running.
    let (notify_tx, notify_rx) = mpsc::channel();
    let s = shared.clone();
    proxy.notify = Some(spawn_thread("fuse-notify", move || notify_loop(&s, notify_rx))?);
    let s = shared.clone();
    proxy.outward =
        Some(spawn_thread("fuse-out", move || outward_loop(&s, &mut out_buf, notify_tx))?);
    proxy.inward =
        Some(spawn_thread("fuse-in", move || inward_loop(&shared, &mut in_buf, &*on_interrupt))?);
    Ok(proxy)
}

impl Proxy {
    /// fuser's end of the socket pair (close-on-exec), for `fuser::Session::from_fd`.
    pub fn take_fuser_end(&mut self) -> Option<OwnedFd> {
        self.fuser_end.take()
    }

    /// The largest message the socket carries, measured at [`spawn`] (at most the
    /// `max_message` given there). Keep `max_write + 4096` and `max_read + 4096` within it.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            requests: s.requests.load(Ordering::Relaxed),
            replies: s.replies.load(Ordering::Relaxed),
            interrupts: s.interrupts.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// Whether all relay threads have ended.
    pub fn is_finished(&self) -> bool {
        [&self.inward, &self.outward, &self.notify]
            .into_iter()
            .all(|t| t.as_ref().is_none_or(JoinHandle::is_finished))
    }

    /// Waits for fuse-in to end by itself, which it does when the kernel disconnects (the
    /// filesystem was unmounted or its connection aborted; note that a lazily detached mount
    /// stays connected while files are open on it), then stops fuse-out and fuse-notify and
    /// waits for them: no reply can reach the kernel any more. Call it after unmounting and
    /// after joining fuser's session (which then has replied to its FUSE_DESTROY); replies fuser
    /// sends later fail with `EPIPE` (fuser logs them), as they would fail with `ENODEV` on the
    /// device. Idempotent. To stop without waiting for the kernel, drop the proxy instead.
    pub fn join(&mut self) {
        drop(self.fuser_end.take());
        if let Some(handle) = self.inward.take() {
            if handle.join().is_err() {
                error!("the fuse-in proxy thread panicked");
            }
        }
        self.stop_and_join();
    }

    /// Stops every thread still running and waits for it (fuse-notify at most a second: the
    /// kernel may hold it in a notification write).
    fn stop_and_join(&mut self) {
        if self.inward.is_none() && self.outward.is_none() && self.notify.is_none() {
            return;
        }
        self.request_stop();
        for handle in [self.inward.take(), self.outward.take()].into_iter().flatten() {
            if handle.join().is_err() {
                error!("a FUSE proxy thread panicked");
            }
        }
        if let Some(handle) = self.notify.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                warn!(
                    "proxy: fuse-notify is stuck writing a notification to /dev/fuse; leaving it"
                );
            }
        }
    }

    /// Makes every thread stop now.
    fn request_stop(&self) {
        let s = &self.shared;
        s.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = rustix::io::write(&s.stop, &1u64.to_ne_bytes()) {
            warn!("proxy: cannot signal fuse-in to stop: {e}");
        }
        // Wakes fuse-out's recv (and a fuse-in blocked in send) and ends fuser's reads.
        let _ = shutdown(&s.socket, Shutdown::Both);
    }
}

impl Drop for Proxy {
    /// Stops the threads at once (unlike [`Proxy::join`]) and waits for them; the device then
    /// closes, which aborts the FUSE connection if the filesystem is still mounted.
    fn drop(&mut self) {
        drop(self.fuser_end.take());
        self.stop_and_join();
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("max_message", &self.max_message)
            .field("stats", &self.stats())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_owned()).spawn(f)
}

/// Raises both socket buffers to at least `want` bytes (never lowers them).
fn grow_buffers(fd: &OwnedFd, want: usize) {
    // The kernel doubles the value set and reports the doubled one.
    if sockopt::socket_send_buffer_size(fd).is_ok_and(|size| size < want)
        && sockopt::set_socket_send_buffer_size_force(fd, want).is_err()
    {
        if let Err(e) = sockopt::set_socket_send_buffer_size(fd, want) {
            warn!("proxy: cannot set SO_SNDBUF: {e}");
        }
    }
    if sockopt::socket_recv_buffer_size(fd).is_ok_and(|size| size < want)
        && sockopt::set_socket_recv_buffer_size_force(fd, want).is_err()
    {
        if let Err(e) = sockopt::set_socket_recv_buffer_size(fd, want) {
            warn!("proxy: cannot set SO_RCVBUF: {e}");
        }
    }
}

/// The largest message size ≤ `limit` (to a page) that `tx` can send to `rx`, found by sending.
fn probe_capacity(
    tx: &OwnedFd,
    rx: &OwnedFd,
    limit: usize,
    scratch: &[u8],
    sink: &mut [u8],
) -> io::Result<usize> {
    let mut fits = |len: usize| -> io::Result<bool> {
        match send(tx, &scratch[..len], SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(_) => {
                recv(rx, &mut *sink, RecvFlags::DONTWAIT)?;
                Ok(true)
            }
            Err(Errno::NOBUFS | Errno::MSGSIZE | Errno::NOMEM | Errno::AGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    if limit >= MIN_MESSAGE && fits(limit)? {
        return Ok(limit);
    }
    let mut bad = limit;
    let mut good = limit / 2 / PAGE * PAGE;
    while good >= MIN_MESSAGE && !fits(good)? {
        bad = good;
        good = good / 2 / PAGE * PAGE;
    }
    if good < MIN_MESSAGE {
        return Err(io::Error::other(format!(
            "the FUSE proxy socket cannot carry {MIN_MESSAGE}-byte messages"
        )));
    }
    while bad - good > PAGE {
        let mid = (good + (bad - good) / 2) / PAGE * PAGE;
        if mid <= good {
            break;
        }
        if fits(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

fn u32_at(msg: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&msg[at..at + 4]);
    u32::from_ne_bytes(b)
}

fn u64_at(msg: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&msg[at..at + 8]);
    u64::from_ne_bytes(b)
}

/// Requests the kernel waits a reply for.
fn expects_reply(opcode: u32) -> bool {
    !matches!(opcode, FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT | FUSE_NOTIFY_REPLY)
}

enum End {
    Unmounted,
    Stopped,
    Failed,
}

/// fuse-in: device → socket.
fn inward_loop(shared: &Shared, buf: &mut [u8], on_interrupt: &(dyn Fn(u64) + Send + Sync)) {
    let mut fuser_gone = false;
    let end = loop {
        if shared.stopping.load(Ordering::Relaxed) {
            break End::Stopped;
        }
        let len = match read_request(shared, buf) {
            Ok(0) => break End::Unmounted,
            Ok(len) => len,
            Err(Errno::AGAIN) => {
                if wait_for_device(shared) {
                    continue;
                }
                break End::Stopped;
            }
            // ENOENT: the request was interrupted before we got it (as fuser's
            // receive_retrying).
            Err(Errno::INTR | Errno::NOENT) => continue,
            Err(Errno::NODEV | Errno::CONNABORTED) => break End::Unmounted,
            Err(Errno::INVAL) => {
                error!(
                    "proxy: /dev/fuse refused a read into {} bytes: the negotiated max_write \
                     needs max_write + 80; cap max_write to the proxy's max_message - 4096",
                    buf.len()
                );
                break End::Failed;
            }
            Err(e) => {
                error!("proxy: reading /dev/fuse failed: {e}");
                break End::Failed;
            }
        };
        let msg = &buf[..len];
        if len < IN_HEADER_LEN {
            warn!("proxy: ignoring a {len}-byte message from /dev/fuse");
            continue;
        }
        let opcode = u32_at(msg, 4);
        let unique = u64_at(msg, 8);
        if opcode == FUSE_INTERRUPT {
            if len >= IN_HEADER_LEN + 8 {
                shared.interrupts.fetch_add(1, Ordering::Relaxed);
                on_interrupt(u64_at(msg, IN_HEADER_LEN));
            }
            continue;
        }
        if !fuser_gone {
            match send_message(&shared.socket, msg) {
                Ok(()) => {
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN) => {
                    if !shared.stopping.load(Ordering::Relaxed) {
                        warn!("proxy: fuser's end is closed; answering EIO until unmounted");
                    }
                    fuser_gone = true;
                }
                Err(e @ (Errno::NOBUFS | Errno::MSGSIZE | Errno::NOMEM)) => error!(
                    "proxy: a {len}-byte FUSE request (opcode {opcode}) does not fit through the \
                     proxy socket ({e}); cap max_write to the proxy's max_message - 4096"
                ),
                Err(e) => error!("proxy: forwarding a FUSE request (opcode {opcode}) failed: {e}"),
            }
        }
        if expects_reply(opcode) {
            write_error(shared, unique, Errno::IO);
        }
        shared.rejected.fetch_add(1, Ordering::Relaxed);
    };
    match end {
        End::Unmounted if !fuser_gone => {
            debug!("proxy: /dev/fuse disconnected (unmounted or aborted); ending fuser's session");
            let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
            if let Err(e) = send(&shared.socket, &destroy_request(), flags) {
                debug!("proxy: cannot send fuser a FUSE_DESTROY: {e}");
            }
            let _ = shutdown(&shared.socket, Shutdown::Write);
        }
        End::Unmounted => {}
        End::Stopped | End::Failed => {
            let _ = shutdown(&shared.socket, Shutdown::Both);
        }
    }
}

/// A request from the (non-blocking) device: taken at once if there is one, else looked for
/// during the busy-poll window with reads, so that the look that finds it also takes it;
/// `EAGAIN` if none came.
fn read_request(shared: &Shared, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut read = || rustix::io::read(&shared.device, &mut *buf);
    match read() {
        Err(Errno::AGAIN) => crate::busy_poll::watch(shared.busy_poll, || {
            Some(read()).filter(|got| *got != Err(Errno::AGAIN))
        })
        .unwrap_or(Err(Errno::AGAIN)),
        other => other,
    }
}

/// Waits until the device is readable (or disconnected): `true`, or until stopped: `false`.
fn wait_for_device(shared: &Shared) -> bool {
    loop {
        let mut fds =
            [PollFd::new(&shared.device, PollFlags::IN), PollFd::new(&shared.stop, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => return fds[1].revents().is_empty(),
            Err(Errno::INTR) => continue,
            Err(e) => {
                error!("proxy: poll on /dev/fuse failed: {e}");
                return false;
            }
        }
    }
}

fn send_message(socket: &OwnedFd, msg: &[u8]) -> Result<(), Errno> {
    loop {
        match send(socket, msg, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn destroy_request() -> [u8; IN_HEADER_LEN] {
    let mut msg = [0u8; IN_HEADER_LEN];
    msg[0..4].copy_from_slice(&(IN_HEADER_LEN as u32).to_ne_bytes());
    msg[4..8].copy_from_slice(&FUSE_DESTROY.to_ne_bytes());
    msg[8..16].copy_from_slice(&DESTROY_UNIQUE.to_ne_bytes());
    msg
}

/// Answers request `unique` with `errno` ourselves.
fn write_error(shared: &Shared, unique: u64, errno: Errno) {
    let mut msg = [0u8; OUT_HEADER_LEN];
    msg[0..4].copy_from_slice(&(OUT_HEADER_LEN as u32).to_ne_bytes());
    msg[4..8].copy_from_slice(&(-errno.raw_os_error()).to_ne_bytes());
    msg[8..16].copy_from_slice(&unique.to_ne_bytes());
    write_to_device(shared, &msg);
}

/// One `write(2)` of a reply or notification; expected failures are ignored.
fn write_to_device(shared: &Shared, msg: &[u8]) {
    loop {
        match rustix::io::write(&shared.device, msg) {
            Ok(_) => {
                shared.replies.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(Errno::INTR) => continue,
            // The request is no longer waiting (it was interrupted or aborted).
            Err(Errno::NOENT) => return,
            // Unmounted or aborted.
            Err(Errno::NODEV | Errno::CONNABORTED) => return,
            Err(e) => {
                let unique = if msg.len() >= OUT_HEADER_LEN { u64_at(msg, 8) } else { 0 };
                if unique == 0 {
                    debug!("proxy: a FUSE notification ({} bytes) failed: {e}", msg.len());
                } else {
                    warn!(
                        "proxy: writing a {}-byte FUSE reply (unique {unique}) to /dev/fuse \
                         failed: {e}",
                        msg.len()
                    );
                }
                return;
            }
        }
    }
}

/// fuse-out: socket → device.
fn outward_loop(shared: &Shared, buf: &mut [u8], notify: Sender<Vec<u8>>) {
    loop {
        let (copied, len) = match receive_reply(shared, buf) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(e) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    debug!("proxy: socket read failed: {e}");
                }
                break;
            }
        };
        if len == 0 {
            break;
        }
        if len > copied {
            error!("proxy: dropped a {len}-byte reply larger than the relay buffer ({copied})");
            continue;
        }
        let msg = &buf[..len];
        if len >= OUT_HEADER_LEN {
            match u64_at(msg, 8) {
                DESTROY_UNIQUE => continue,
                0 => {
                    if let Err(mpsc::SendError(msg)) = notify.send(msg.to_vec()) {
                        write_to_device(shared, &msg);
                    }
                    continue;
                }
                _ => {}
            }
        }
        write_to_device(shared, msg);
    }
}

/// One message from fuser: taken at once if there is one, else looked for during the
/// busy-poll window with receives that do not wait (the look that finds it takes it), else
/// waited for.
fn receive_reply(shared: &Shared, buf: &mut [u8]) -> Result<(usize, usize), Errno> {
    let mut now = || recv(&shared.socket, &mut *buf, RecvFlags::TRUNC | RecvFlags::DONTWAIT);
    match now() {
        Err(Errno::AGAIN) => crate::busy_poll::watch(shared.busy_poll, || {
            Some(now()).filter(|got| *got != Err(Errno::AGAIN))
        })
        .unwrap_or_else(|| recv(&shared.socket, &mut *buf, RecvFlags::TRUNC)),
        other => other,
    }
}

/// fuse-notify: notifications, which the kernel may block.
fn notify_loop(shared: &Shared, notifications: Receiver<Vec<u8>>) {
    for msg in notifications {
        write_to_device(shared, &msg);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn header(len: usize, opcode: u32, unique: u64) -> Vec<u8> {
        let mut msg = vec![0u8; len];
        msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        msg[4..8].copy_from_slice(&opcode.to_ne_bytes());
        msg[8..16].copy_from_slice(&unique.to_ne_bytes());
        msg
    }

    fn reply(unique: u64, error: i32) -> Vec<u8> {
        let mut msg = vec![0u8; OUT_HEADER_LEN];
        msg[0..4].copy_from_slice(&(OUT_HEADER_LEN as u32).to_ne_bytes());
        msg[4..8].copy_from_slice(&error.to_ne_bytes());
        msg[8..16].copy_from_slice(&unique.to_ne_bytes());
        msg
    }

    fn recv_msg(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 16];
        let (n, _) = recv(fd, &mut buf[..], RecvFlags::empty()).unwrap();
        buf.truncate(n);
        buf
    }

    /// A seqpacket pair stands in for /dev/fuse: the test plays the kernel on one end.
    fn fake_device() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap()
    }

    #[test]
    fn relays_filters_interrupts_and_ends_on_disconnect() {
        let (kernel, device) = fake_device();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let mut proxy =
            spawn(device, 1 << 16, Arc::new(move |u| seen2.lock().unwrap().push(u))).unwrap();
        assert_eq!(proxy.max_message(), 1 << 16);
        let fuser = proxy.take_fuser_end().unwrap();

        let mut interrupt = header(IN_HEADER_LEN + 8, FUSE_INTERRUPT, 11);
        interrupt[IN_HEADER_LEN..].copy_from_slice(&10u64.to_ne_bytes());
        send(&kernel, &interrupt, SendFlags::empty()).unwrap();
        let lookup = header(IN_HEADER_LEN + 6, 1, 12);
        send(&kernel, &lookup, SendFlags::empty()).unwrap();
        assert_eq!(recv_msg(&fuser), lookup, "the interrupt must not reach fuser");
        assert_eq!(*seen.lock().unwrap(), vec![10]);

        send(&fuser, &reply(12, 0), SendFlags::empty()).unwrap();
        assert_eq!(recv_msg(&kernel), reply(12, 0));
        let notification = reply(0, 1);
        send(&fuser, &notification, SendFlags::empty()).unwrap();
        assert_eq!(recv_msg(&kernel), notification);

        drop(kernel); // "unmount"
        let destroy = recv_msg(&fuser);
        assert_eq!(u32_at(&destroy, 4), FUSE_DESTROY);
        send(&fuser, &reply(DESTROY_UNIQUE, 0), SendFlags::empty()).unwrap();
        assert!(recv_msg(&fuser).is_empty(), "end of file after the FUSE_DESTROY");
        drop(fuser);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !proxy.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let stats = proxy.stats();
        proxy.join();
        assert_eq!(stats, ProxyStats { requests: 1, replies: 2, interrupts: 1, rejected: 0 });
    }

    #[test]
    fn answers_eio_when_fuser_is_gone_and_drop_stops() {
        let (kernel, device) = fake_device();
        let mut proxy = spawn(device, 1 << 16, Arc::new(|_| {})).unwrap();
        drop(proxy.take_fuser_end());
        send(&kernel, &header(IN_HEADER_LEN + 16, FUSE_FORGET, 20), SendFlags::empty()).unwrap();
        send(&kernel, &header(IN_HEADER_LEN + 16, 3, 22), SendFlags::empty()).unwrap();
        assert_eq!(recv_msg(&kernel), reply(22, -Errno::IO.raw_os_error()));
        let started = Instant::now();
        drop(proxy); // the "kernel" is still connected: drop must not wait for it
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn relays_replies_larger_than_max_message() {
        let (kernel, device) = fake_device();
        let mut proxy = spawn(device, MIN_MESSAGE, Arc::new(|_| {})).unwrap();
        let fuser = proxy.take_fuser_end().unwrap();
        let mut big = reply(30, 0);
        big.resize(6 * MIN_MESSAGE, 7);
        let len = big.len() as u32;
        big[0..4].copy_from_slice(&len.to_ne_bytes());
        send(&fuser, &big, SendFlags::empty()).unwrap();
        assert_eq!(recv_msg(&kernel), big);
    }

    #[test]
    fn measures_what_the_socket_carries() {
        let (_kernel, device) = fake_device();
        let mut proxy = spawn(device, DEFAULT_MAX_MESSAGE, Arc::new(|_| {})).unwrap();
        let max = proxy.max_message();
        assert!((MIN_MESSAGE..=DEFAULT_MAX_MESSAGE).contains(&max));
        let fuser = proxy.take_fuser_end().unwrap();
        let big = vec![0u8; max];
        send(&fuser, &big, SendFlags::DONTWAIT).unwrap();
        eprintln!("proxy max_message with {DEFAULT_MAX_MESSAGE} requested: {max}");
    }
}
