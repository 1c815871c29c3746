//! A simulated Redox kernel and a scripted daemon, to run the translators on Linux.
//! [`SimKernel`] plays the kernel's side of a scheme socket: it numbers requests (Packet ids,
//! Sqe tags), writes them into a pipe the translator reads, and hands each answer to the
//! thread waiting for that id; events, and answers nobody waits for, are kept for inspection.
//! [`ScriptedDaemon`] plays a daemon on the wire one frame at a time, bad frames included.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, PipeReader, PipeWriter, Write};
use std::ops::DerefMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use scheme_protocol::{
    handshake, hello, Call, Caller, Fd, Frame, FrameReader, FrameWriter, Response, Tag, MAX_FRAME,
};
use syscall::data::Packet;
use syscall::schemev2::{Cqe, CqeOpcode, Sqe};

use super::kernel::for_each_request;
use crate::Client;

/// How one kernel protocol numbers requests and tells answers from events.
pub trait SimProtocol: Send + Sync + 'static {
    /// What the kernel sends.
    type Request: Copy + Default + Send + DerefMut<Target = [u8]> + 'static;
    /// What comes back: answers and events.
    type Answer: Copy + Default + Send + fmt::Debug + DerefMut<Target = [u8]> + 'static;
    /// Stamps `request` with the kernel's id for it.
    fn set_id(request: &mut Self::Request, id: u64);
    /// The request an answer is for, or `None` for an event.
    fn answer_id(answer: &Self::Answer) -> Option<u64>;
}

/// The legacy protocol: `Packet` both ways; id 0 answers are events.
#[derive(Debug)]
pub struct Legacy;

impl SimProtocol for Legacy {
    type Request = Packet;
    type Answer = Packet;

    fn set_id(request: &mut Packet, id: u64) {
        request.id = id;
    }

    fn answer_id(answer: &Packet) -> Option<u64> {
        (answer.id != 0).then_some(answer.id)
    }
}

/// The v2 protocol: `Sqe` in, `Cqe` out; `SendFevent` Cqes are events.
#[derive(Debug)]
pub struct V2;

impl SimProtocol for V2 {
    type Request = Sqe;
    type Answer = Cqe;

    fn set_id(request: &mut Sqe, id: u64) {
        request.tag = id as u32;
    }

    fn answer_id(answer: &Cqe) -> Option<u64> {
        (answer.flags & 0b111 != CqeOpcode::SendFevent as u8).then_some(u64::from(answer.tag))
    }
}

type Waiting<P> = Arc<Mutex<HashMap<u64, Sender<<P as SimProtocol>::Answer>>>>;

/// The kernel's side of a simulated scheme socket. Shared by any number of "caller" threads.
pub struct SimKernel<P: SimProtocol> {
    requests: Mutex<Option<PipeWriter>>,
    waiting: Waiting<P>,
    events: Receiver<P::Answer>,
    strays: Receiver<P::Answer>,
    next_id: AtomicU64,
}

impl<P: SimProtocol> fmt::Debug for SimKernel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimKernel").field("next_id", &self.next_id).finish_non_exhaustive()
    }
}

/// The translator's end of a simulated scheme socket.
#[derive(Debug)]
pub struct SimSocket {
    /// Where the translator reads requests.
    pub requests: PipeReader,
    /// Where the translator writes answers and events.
    pub answers: PipeWriter,
}

/// A request sent and not yet answered.
#[derive(Debug)]
pub struct SimCall<P: SimProtocol> {
    id: u64,
    answer: Receiver<P::Answer>,
}

impl<P: SimProtocol> SimCall<P> {
    /// The id the kernel gave the request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits at most `timeout` for the answer.
    pub fn wait(self, timeout: Duration) -> Option<P::Answer> {
        self.answer.recv_timeout(timeout).ok()
    }

    /// The answer, if it has arrived.
    pub fn try_answer(&self) -> Option<P::Answer> {
        self.answer.try_recv().ok()
    }

    /// Waits at most [`PATIENCE`] for the answer. If none comes the translator hung or lost
    /// the request, and it may still write into the caller's buffers, which the caller would
    /// free while unwinding from a panic: so this reports and aborts the process instead.
    pub fn answer(self) -> P::Answer {
        let id = self.id;
        self.wait(PATIENCE).unwrap_or_else(|| {
            eprintln!("simulated kernel: request {id} was never answered; aborting");
            std::process::abort()
        })
    }
}

/// How long [`SimCall::answer`] waits before it declares the translator hung.
pub const PATIENCE: Duration = Duration::from_secs(10);

impl<P: SimProtocol> SimKernel<P> {
    /// A kernel and the socket end to hand the translator.
    pub fn new() -> io::Result<(SimKernel<P>, SimSocket)> {
        let (requests_reader, requests_writer) = std::io::pipe()?;
        let (answers_reader, answers_writer) = std::io::pipe()?;
        let waiting: Waiting<P> = Arc::default();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (strays_tx, strays) = crossbeam_channel::unbounded();
        let reader_waiting = Arc::clone(&waiting);
        std::thread::Builder::new().name("sim-kernel-answers".into()).spawn(move || {
            let dispatch = |answer: P::Answer| match P::answer_id(&answer) {
                None => drop(events_tx.send(answer)),
                Some(id) => {
                    match reader_waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&id)
                    {
                        Some(waiter) => drop(waiter.send(answer)),
                        None => drop(strays_tx.send(answer)),
                    }
                }
            };
            if let Err(err) = for_each_request(answers_reader, dispatch) {
                log::error!("simulated kernel: bad answer stream: {err}");
            }
        })?;
        let kernel = SimKernel {
            requests: Mutex::new(Some(requests_writer)),
            waiting,
            events,
            strays,
            next_id: AtomicU64::new(1),
        };
        Ok((kernel, SimSocket { requests: requests_reader, answers: answers_writer }))
    }

    /// Numbers `request`, sends it and returns at once.
    pub fn start(&self, mut request: P::Request) -> SimCall<P> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        P::set_id(&mut request, id);
        let (tx, answer) = crossbeam_channel::bounded(1);
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        self.post(request);
        SimCall { id, answer }
    }

    /// Numbers `request`, sends it and waits for its answer (see [`SimCall::answer`]).
    pub fn call(&self, request: P::Request) -> P::Answer {
        self.start(request).answer()
    }

    /// Sends `request` exactly as given (a message with no answer, such as a cancel).
    pub fn post(&self, request: P::Request) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pipe) = requests.as_mut() {
            pipe.write_all(&request).expect("the translator reads requests");
        }
    }

    /// Events the translator wrote (legacy `id = 0` packets, `SendFevent` Cqes).
    pub fn events(&self) -> &Receiver<P::Answer> {
        &self.events
    }

    /// Answers for ids nobody waited for: unknown ids, or a second answer to one request.
    pub fn strays(&self) -> &Receiver<P::Answer> {
        &self.strays
    }

    /// Closes the socket, as unmounting the scheme does: the translator's read ends.
    pub fn unmount(&self) {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// A daemon on the wire driven by hand: the test reads each frame the translator's client
/// sends and writes each answer itself, including ones a real daemon never would.
#[derive(Debug)]
pub struct ScriptedDaemon {
    frames: Receiver<Frame>,
    out: Option<FrameWriter<PipeWriter>>,
}

impl ScriptedDaemon {
    /// A daemon for `scheme` and a client connected to it, handshaken.
    pub fn connect(scheme: &str) -> io::Result<(ScriptedDaemon, Client)> {
        Self::connect_with_max_frame(scheme, MAX_FRAME)
    }

    /// Like [`ScriptedDaemon::connect`], announcing `max_frame` (the client then caps calls).
    pub fn connect_with_max_frame(
        scheme: &str,
        max_frame: usize,
    ) -> io::Result<(ScriptedDaemon, Client)> {
        let (from_client, to_daemon) = std::io::pipe()?;
        let (from_daemon, to_client) = std::io::pipe()?;
        let ours = hello(scheme, max_frame);
        let daemon = std::thread::spawn(move || {
            let mut reader = FrameReader::new(from_client, MAX_FRAME);
            let mut writer = FrameWriter::new(to_client, MAX_FRAME);
            handshake(&mut reader, &mut writer, &ours).map(|_| (reader, writer))
        });
        let client = Client::connect(from_daemon, to_daemon, scheme).map_err(io::Error::other)?;
        let (reader, writer) = daemon
            .join()
            .map_err(|_| io::Error::other("handshake thread panicked"))?
            .map_err(io::Error::other)?;
        let (tx, frames) = crossbeam_channel::unbounded();
        std::thread::Builder::new().name("scripted-daemon".into()).spawn(move || {
            let mut reader = reader;
            while let Ok(frame) = reader.read_frame() {
                if tx.send(frame).is_err() {
                    return;
                }
            }
        })?;
        Ok((ScriptedDaemon { frames, out: Some(writer) }, client))
    }

    /// The next frame from the client, if one comes within `timeout`.
    pub fn next_frame(&self, timeout: Duration) -> Option<Frame> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// The next call (waiting at most [`PATIENCE`]).
    ///
    /// # Panics
    ///
    /// If none comes, or another frame comes first.
    #[track_caller]
    pub fn next_call(&self) -> (Tag, Caller, Call) {
        match self.next_frame(PATIENCE) {
            Some(Frame::Call { tag, caller, call }) => (tag, caller, call),
            other => panic!("expected a call, got {other:?}"),
        }
    }

    /// Whether nothing arrives within `timeout`.
    pub fn is_quiet(&self, timeout: Duration) -> bool {
        self.next_frame(timeout).is_none()
    }

    /// Answers `tag`.
    pub fn reply(&mut self, tag: Tag, response: Response) {
        self.send(&Frame::Reply { tag, response });
    }

    /// Posts an event for handle `fd`.
    pub fn event(&mut self, fd: u64, flags: u64) {
        self.send(&Frame::Event { fd: Fd(fd), flags });
    }

    /// Writes `bytes` to the wire as they are (garbage, half frames).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.get_mut().write_all(bytes);
        }
    }

    /// Closes the daemon's end, as a daemon that exits does.
    pub fn hang_up(&mut self) {
        self.out.take();
    }

    fn send(&mut self, frame: &Frame) {
        if let Some(out) = self.out.as_mut() {
            out.write_frame(frame).expect("the client reads frames");
        }
    }
}
