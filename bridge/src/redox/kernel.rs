//! The kernel-facing plumbing both protocols share: whole requests read from the kernel socket;
//! answers written back under one lock from whichever thread has them (the client's reply
//! reader, for forwarded calls); the table of outstanding requests (kernel id -> wire tag) that
//! turns a kernel cancel into a wire cancel and answers each request exactly once; and the
//! thread that turns daemon events into kernel messages.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::DerefMut;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::{select, Sender};
use log::{debug, error, warn};
use scheme_protocol::{Call, Caller, Errno, Reply, Tag};

use super::calls::{Forward, KernelResult};
use crate::{CallResult, Client, Event};

/// Requests read from the kernel socket per `read` (the kernel returns as many as fit).
const BATCH: usize = 64;

/// Turns the kernel's result for a request into the bytes of its answer.
pub(crate) type Respond = Box<dyn FnOnce(KernelResult) -> Vec<u8> + Send>;

/// Reads whole requests of type `T` from `kernel_in` and hands each to `handle`, until the
/// kernel closes the socket (the scheme is being unmounted).
pub(crate) fn for_each_request<T: Default + DerefMut<Target = [u8]>>(
    kernel_in: impl Read,
    mut handle: impl FnMut(T),
) -> io::Result<()> {
    let size = std::mem::size_of::<T>();
    let mut reader = BufReader::with_capacity(size * BATCH, kernel_in);
    loop {
        match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
        let mut request = T::default();
        reader.read_exact(&mut request)?;
        handle(request);
    }
}

/// A request the daemon has not answered yet.
#[derive(Debug, Default)]
struct Pending {
    /// The wire tag, once the call is sent.
    tag: Option<Tag>,
    /// The kernel cancelled it; only then is `EINTR` a valid answer.
    cancelled: bool,
}

struct Shared {
    client: Client,
    out: Mutex<Box<dyn Write + Send>>,
    pending: Mutex<HashMap<u64, Pending>>,
}

/// The translator's connection to both sides: the daemon's [`Client`] and the kernel socket's
/// write half. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Core {
    shared: Arc<Shared>,
}

impl Core {
    pub(crate) fn new(client: Client, kernel_out: impl Write + Send + 'static) -> Core {
        let shared = Shared {
            client,
            out: Mutex::new(Box::new(kernel_out)),
            pending: Mutex::new(HashMap::new()),
        };
        Core { shared: Arc::new(shared) }
    }

    /// The largest payload one wire call or reply carries.
    pub(crate) fn max_payload(&self) -> usize {
        self.shared.client.max_payload()
    }

    /// Sends `forward` for kernel request `id` and returns at once; when the daemon answers,
    /// the reply's bytes are copied out and `respond`'s answer is written to the kernel.
    pub(crate) fn forward(&self, id: u64, caller: Caller, forward: Forward, respond: Respond) {
        if self.shared.pending().insert(id, Pending::default()).is_some() {
            error!("kernel reused request id {id} while it was outstanding");
        }
        let Forward { call, finish } = forward;
        let name = call.name();
        let shared = Arc::clone(&self.shared);
        let done = move |answer: CallResult<Reply>| {
            let Some(pending) = shared.pending().remove(&id) else {
                warn!("{name}: request {id} was already answered; dropped");
                return;
            };
            let result = match finish.complete(name, answer) {
                Err(Errno::EINTR) if !pending.cancelled => {
                    warn!("{name}: daemon answered EINTR without a cancel; EIO");
                    Err(Errno::EIO)
                }
                result => result,
            };
            shared.write(&respond(result));
        };
        // If the daemon is gone, `done` has already run (with EIO) when submit returns.
        let tag = self.shared.client.submit(caller, call, Box::new(done));
        if let Some(pending) = self.shared.pending().get_mut(&id) {
            pending.tag = Some(tag);
        }
    }

    /// Sends `call` without answering the kernel; `done` sees the daemon's answer.
    pub(crate) fn send_only(
        &self,
        caller: Caller,
        call: Call,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
    ) {
        let name = call.name();
        self.shared.client.submit(
            caller,
            call,
            Box::new(move |answer| {
                if let Err(err) = &answer {
                    debug!("{name} (no answer expected by the kernel): {err}");
                }
                done(answer);
            }),
        );
    }

    /// Answers the kernel at once, without asking the daemon.
    pub(crate) fn answer_now(&self, answer: &[u8]) {
        self.shared.write(answer);
    }

    /// The kernel gave up on request `id`: the daemon side answers it `EINTR` at once. A
    /// request already answered is left alone.
    pub(crate) fn cancel(&self, id: u64) {
        let tag = match self.shared.pending().get_mut(&id) {
            Some(pending) => {
                pending.cancelled = true;
                pending.tag
            }
            None => None,
        };
        match tag {
            Some(tag) => self.shared.client.cancel(tag),
            None => debug!("cancel for request {id}, which is not outstanding; ignored"),
        }
    }

    /// Starts the thread that writes `encode(event)` to the kernel for every daemon event,
    /// until the returned pump is dropped or the daemon is gone.
    pub(crate) fn pump_events(
        &self,
        encode: fn(Event) -> Option<Vec<u8>>,
    ) -> io::Result<EventPump> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let events = self.shared.client.events().clone();
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(crate::thread_name(self.shared.client.scheme(), "kernel-events"))
            .spawn(move || loop {
                select! {
                    recv(events) -> event => match event {
                        Ok(event) => {
                            if let Some(message) = encode(event) {
                                shared.write(&message);
                            }
                        }
                        Err(_) => return,
                    },
                    recv(stopped) -> _ => return,
                }
            })?;
        Ok(EventPump { stop: Some(stop), thread: Some(thread) })
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one answer or message to the kernel; a failure is logged (there is nobody to
    /// tell: the kernel socket is gone).
    fn write(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = out.write_all(bytes).and_then(|()| out.flush()) {
            error!("cannot write to the kernel socket: {err}");
        }
    }
}

/// Forwards daemon events to the kernel until dropped.
pub(crate) struct EventPump {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EventPump {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
