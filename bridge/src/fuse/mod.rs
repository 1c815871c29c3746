//! FUSE -> wire: mounts scheme daemons as a Linux filesystem. The bridge owns the /dev/fuse
//! descriptor ([`kernel`]) and relays it to fuser through a socket ([`proxy`]) so that
//! FUSE_INTERRUPT reaches the bridge (fuser 0.18 would answer it ENOSYS, which switches
//! interrupts off for the whole mount); the op table ([`SchemeFs`]) turns each FUSE request
//! into scheme calls; daemon events wake the kernel's pollers.

mod attr;
mod dir;
pub mod dup;
mod errno;
mod flags;
mod handles;
mod inodes;
mod interrupts;
pub mod kernel;
mod limits;
mod payload;
mod plus;
pub mod proxy;
mod readahead;
mod shared;
mod special;
mod steps;
mod table;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{select, Receiver, Sender};
use log::{debug, warn};

pub use table::SchemeFs;

use crate::backend::Backend;
pub use limits::MountLimits;
pub use shared::Ttl;
use shared::{Scheme, Shared};

/// The write size asked for when the kernel does not say how many pages it allows.
pub const DEFAULT_MAX_WRITE: u32 = 1 << 20;

/// The largest write the relay can carry in one message (see `proxy.rs`).
const RELAY_MAX_WRITE: u32 = 4 << 20;

/// The largest write this kernel allows: `fs.fuse.max_pages_limit` pages (256, i.e. 1 MiB,
/// by default), capped at what the relay carries.
pub fn kernel_max_write() -> u32 {
    let pages = std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match pages {
        Some(pages) => pages.saturating_mul(4096).clamp(DEFAULT_MAX_WRITE, RELAY_MAX_WRITE),
        None => DEFAULT_MAX_WRITE,
    }
}

/// The FUSE header in front of a write's payload, with room to spare.
const FUSE_HEADER: usize = 4096;

/// How long aborting waits for the answers to calls a dead daemon left.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Kernel mount options.
    pub options: kernel::MountOptions,
    /// Show every file as owned by this uid (`-o uid=N`).
    pub uid: Option<u32>,
    /// Show every file as owned by this gid (`-o gid=N`).
    pub gid: Option<u32>,
    /// Several schemes under one root that lists them (`--namespace`).
    pub namespace: bool,
    /// The largest write to ask the kernel for.
    pub max_write: u32,
    /// How long the kernel may cache names and attributes.
    pub ttl: Ttl,
    /// Relay /dev/fuse so that FUSE_INTERRUPT cancels scheme calls (on by default; off hands
    /// the device straight to fuser, which answers interrupts ENOSYS).
    pub interrupts: bool,
    /// Every scheme's calls answer at once (ramfs, null, zero, rand: none parks a call). The
    /// mount then reads no events (such schemes post none), and when nothing polls the wire
    /// (one CPU, or `-o busy_poll=0`) the FUSE thread reads its calls' answers itself instead
    /// of a reader thread handing each one over (see `Scheme::answers_here`). Never for a
    /// scheme whose calls may block (a chan read): the blocked call would hold the FUSE thread,
    /// and every request after it. Off by default.
    pub calls_never_block: bool,
    /// Limits on calls in flight and open files.
    pub limits: MountLimits,
    /// The kernel's readahead for the mount in KiB (`-o read_ahead_kb=N`); by default as much
    /// as one request may carry (`max_write`). Needs root; others keep the kernel's 128 KiB.
    pub read_ahead_kb: Option<u32>,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            options: kernel::MountOptions::default(),
            uid: None,
            gid: None,
            namespace: false,
            max_write: kernel_max_write(),
            interrupts: true,
            calls_never_block: false,
            ttl: Ttl::default(),
            limits: MountLimits::default(),
            read_ahead_kb: None,
        }
    }
}

/// A live mount. Dropping it unmounts.
#[derive(Debug)]
pub struct Mounted {
    kernel: kernel::KernelMount,
    session: Option<fuser::BackgroundSession>,
    proxy: Option<proxy::Proxy>,
    shared: Arc<Shared>,
    stop_events: Option<Sender<()>>,
    event_threads: Vec<JoinHandle<()>>,
}

/// Mounts `schemes` (name, backend: a connected [`Client`](crate::Client) or an
/// [`InProcess`](crate::InProcess) scheme) at `mountpoint`. With one scheme and no
/// namespace its root is the mount's root; otherwise each is a directory named after it.
pub fn mount(
    schemes: Vec<(String, Arc<dyn Backend>)>,
    mountpoint: &Path,
    config: MountConfig,
) -> io::Result<Mounted> {
    if schemes.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no scheme to mount"));
    }
    let namespace = config.namespace || schemes.len() > 1;
    let never_blocks = config.calls_never_block;
    // A hand-off costs a context switch unless the thread taking it polls on another CPU.
    let answers_here = never_blocks && crate::busy_poll::window().is_zero();
    let schemes = schemes
        .into_iter()
        .map(|(name, backend)| Scheme {
            name,
            backend,
            never_blocks,
            answers_here,
            queued_streak: 0.into(),
            unlooked: 0.into(),
        })
        .collect();
    let owner = attr::Owner { uid: config.uid, gid: config.gid };
    let shared = Arc::new(Shared::new(schemes, namespace, owner, config.ttl, config.limits));
    if let Some(warning) = kernel::check_request_timeout() {
        warn!("{warning}");
    }
    let mut kernel = kernel::mount(mountpoint, &config.options)?;
    let device = kernel.take_device().ok_or_else(|| io::Error::other("no /dev/fuse descriptor"))?;
    let (fuser_end, proxy, max_write) = if config.interrupts {
        let target = Arc::clone(&shared);
        let message = config.max_write as usize + FUSE_HEADER;
        let mut proxy =
            proxy::spawn(device, message, Arc::new(move |unique| target.interrupt(unique)))?;
        let max_write =
            config.max_write.min(proxy.max_message().saturating_sub(FUSE_HEADER) as u32);
        let fuser_end =
            proxy.take_fuser_end().ok_or_else(|| io::Error::other("relay has no fuser end"))?;
        (fuser_end, Some(proxy), max_write)
    } else {
        (device, None, config.max_write)
    };
    let read_ahead_kb = config.read_ahead_kb.unwrap_or(max_write / 1024);
    let readahead = Arc::new(readahead::Readahead::new(kernel.dev(), read_ahead_kb));
    let fs = SchemeFs { shared: Arc::clone(&shared), max_write, readahead };
    let acl =
        if config.options.allow_other { fuser::SessionACL::All } else { fuser::SessionACL::Owner };
    if answers_here {
        let _ = shared.requests.set(fuser_end.try_clone()?);
    }
    let session = fuser::Session::from_fd(fs, fuser_end, acl, fuser::Config::default())?.spawn()?;
    let (stop_events, stopped) = crossbeam_channel::bounded(0);
    let mut event_threads = spawn_event_relays(&shared, &stopped)?;
    event_threads.push(spawn_forgetter(&shared, session.notifier(), &stopped)?);
    debug!("mounted {} (max_write {max_write})", mountpoint.display());
    Ok(Mounted {
        kernel,
        session: Some(session),
        proxy,
        shared,
        stop_events: Some(stop_events),
        event_threads,
    })
}

/// One thread per scheme: each event the daemon posts wakes the kernel pollers of every FUSE
/// file open on that daemon handle (the kernel then polls again for the actual readiness).
fn spawn_event_relays(
    shared: &Arc<Shared>,
    stopped: &Receiver<()>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (index, scheme) in shared.schemes.iter().enumerate() {
        if scheme.never_blocks {
            continue; // nothing to wait for, so nothing to post (and no reader thread needed)
        }
        let events = scheme.backend.events();
        let (shared, stopped) = (Arc::downgrade(shared), stopped.clone());
        let thread = std::thread::Builder::new()
            .name(crate::thread_name(&scheme.name, "events"))
            .spawn(move || loop {
            let event = select! {
                recv(events) -> event => match event { Ok(event) => event, Err(_) => return },
                recv(stopped) -> _ => return,
            };
            let Some(shared) = shared.upgrade() else { return };
            for handle in shared.handles.for_daemon_fd(index, event.fd) {
                let poll = handle.io().poll.clone();
                if let Some(poll) = poll {
                    let _ = poll.notify();
                }
            }
        })?;
        threads.push(thread);
    }
    Ok(threads)
}

/// Tells the kernel to drop names nobody will use again (redeemed `.dup` tokens), so that it
/// forgets their nodes instead of caching them until memory runs short. On its own thread:
/// the kernel may hold such a notification until a request in flight is answered.
fn spawn_forgetter(
    shared: &Arc<Shared>,
    notifier: fuser::Notifier,
    stopped: &Receiver<()>,
) -> io::Result<JoinHandle<()>> {
    let (tx, names) = crossbeam_channel::bounded::<(u64, String)>(FORGET_BACKLOG);
    let _ = shared.forget_names.set(tx);
    let stopped = stopped.clone();
    std::thread::Builder::new().name("fuse-forget".into()).spawn(move || loop {
        let (parent, name) = select! {
            recv(names) -> name => match name { Ok(name) => name, Err(_) => return },
            recv(stopped) -> _ => return,
        };
        if let Err(err) = notifier.inval_entry(fuser::INodeNo(parent), name.as_ref()) {
            debug!("invalidating {name}: {err}");
        }
    })
}

/// Names waiting to be invalidated; beyond this they are left to the kernel's own reclaim.
const FORGET_BACKLOG: usize = 4096;

impl Mounted {
    /// The schemes, to watch for a daemon that dies.
    pub fn backends(&self) -> Vec<Arc<dyn Backend>> {
        self.shared.schemes.iter().map(|s| Arc::clone(&s.backend)).collect()
    }

    /// Whether the kernel ended the session (someone ran `fusermount -u`, or it was aborted).
    pub fn session_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts, waits for the session to end and stops the daemons.
    pub fn unmount(mut self) -> io::Result<()> {
        self.shutdown()
    }

    /// Ends the mount after it was unmounted from outside ([`Mounted::session_ended`]): stops
    /// everything without touching whatever is mounted at the path by now.
    pub fn unmounted_elsewhere(mut self) -> io::Result<()> {
        self.kernel.forget();
        self.shutdown()
    }

    /// Aborts the FUSE connection (every blocked caller gets an error at once), detaches the
    /// mount and stops the daemons: for a daemon that died.
    pub fn abort(mut self) -> io::Result<()> {
        self.let_answers_out(ANSWER_GRACE);
        let result = kernel::abort_connection(self.kernel.mountpoint());
        let _ = self.shutdown();
        result
    }

    /// Waits (at most `grace`) until every call the daemon left has been answered to the
    /// kernel (EIO once the daemon is gone), so that aborting does not overtake those answers
    /// and hand the callers ECONNABORTED instead.
    fn let_answers_out(&self, grace: std::time::Duration) {
        let deadline = std::time::Instant::now() + grace;
        while self.shared.counters.unanswered() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if self.proxy.is_some() {
            // The answers still cross the relay's socket to its writer thread.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let result = self.kernel.unmount().or_else(|err| {
            // Busy (files open): detach now and abort the connection, as libfuse's lazy
            // unmount plus exit would, so that the session ends and nobody stays blocked.
            warn!("{err}; aborting the connection and detaching");
            let aborted = kernel::abort_connection(self.kernel.mountpoint());
            let _ = self.kernel.unmount();
            aborted
        });
        // Stopping the daemons first fails the calls they still hold (blocked reads of a busy
        // mount) while the relay still carries their EIO answers, which the disconnected device
        // then refuses quietly; after the relay, fuser would log each one's EPIPE.
        for scheme in &self.shared.schemes {
            scheme.backend.shutdown();
        }
        if let Some(session) = self.session.take() {
            join_within(session, SESSION_GRACE);
        }
        if let Some(mut proxy) = self.proxy.take() {
            proxy.join();
        }
        self.stop_events.take();
        for thread in self.event_threads.drain(..) {
            let _ = thread.join();
        }
        result
    }
}

/// How long an unmount waits for fuser's loop to end.
const SESSION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Joins fuser's loop if it ends within `grace`; otherwise leaves it (the process is ending).
fn join_within(session: fuser::BackgroundSession, grace: std::time::Duration) {
    let deadline = std::time::Instant::now() + grace;
    while !session.guard.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !session.guard.is_finished() {
        warn!("the FUSE session did not end; leaving it");
        return;
    }
    if let Err(err) = session.join() {
        debug!("session ended with {err}");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.session.is_some() {
            if let Err(err) = self.shutdown() {
                warn!("unmount failed: {err}");
            }
        }
    }
}
