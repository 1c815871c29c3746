//! A serving thread that reads the wire itself ([`SchemeSocket::read_here`]): the calls,
//! cancels and follow-ups are taken on the thread that handles them, which sleeps in `poll` on
//! the pipe and a bell rung by event posts from other threads, instead of a reader thread
//! handing it each call.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{fence, Ordering};

use crossbeam_channel::TryRecvError;
use log::error;
use rustix::event::{poll, PollFd, PollFlags};
use syscall::data::Packet;

use super::shared::{inbound_of, Server};
use super::{Inbound, Next, SchemeSocket, WireIn};
use crate::bell::Bell;

impl SchemeSocket {
    /// Makes the thread that takes the packets read the wire itself from now on, instead of a
    /// reader thread handing it each call (a thread switch less per call): for a loop in which
    /// one thread takes every packet and never blocks in the scheme, as [`crate::serve_block`]'s.
    /// A cancel is then answered when that thread reads it, not at once (the caller side answers
    /// `EINTR` itself after its grace period if the thread is stuck). Returns `false`, changing
    /// nothing, if the wire is not a pipe this thread can wait on beside a bell (a socket made
    /// with [`SchemeSocket::new`]), if no bell could be made, or if packets were already taken.
    pub(crate) fn read_here(&mut self) -> bool {
        let on_pipe =
            self.unread.as_ref().is_some_and(|(frames, _, _)| wire_pipe(frames).is_some());
        if !on_pipe {
            return false;
        }
        let Some(bell) = Bell::new("waking a parking daemon; it keeps a reader thread") else {
            return false;
        };
        let _ = self.shared.server.set(Server { thread: std::thread::current().id(), bell });
        // Pairs with the fence in `Shared::wake`: a post that raced this either finds the
        // server (and rings) or put its wake in the channel before this thread's first look.
        fence(Ordering::SeqCst);
        self.here = self.unread.take().map(|(frames, _, _)| frames);
        true
    }

    /// [`SchemeSocket::next_packets`] for a socket whose serving thread reads the wire itself:
    /// takes what the channel and the pipe hold, watches both for the busy-poll window, then
    /// sleeps in `poll` on the pipe and the bell.
    pub(super) fn next_packets_here(
        &mut self,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<Next> {
        let (start, limit) = (out.len(), out.len() + max);
        let mut woken = false;
        loop {
            if self.take_here(out, limit, &mut woken) {
                break;
            }
            if self.nonblocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let window = self.busy_poll;
            let took = crate::busy_poll::watch(window, || {
                self.take_here(out, limit, &mut woken).then_some(())
            });
            if took.is_none() {
                self.sleep_here();
            } else {
                break;
            }
        }
        if out.len() > start {
            self.wake_owed = woken;
            Ok(Next::Packets)
        } else if woken {
            Ok(Next::Woken)
        } else {
            Ok(Next::Closed)
        }
    }

    /// Takes what is there without waiting: follow-up packets, orphans to close and wakes from
    /// the channel, then calls and cancels from the pipe, up to `limit` packets in `out`.
    /// Whether anything came of it: a packet, a wake, or the end of the wire.
    fn take_here(&mut self, out: &mut Vec<Packet>, limit: usize, woken: &mut bool) -> bool {
        let before = out.len();
        while out.len() < limit {
            match self.inbound.try_recv() {
                Ok(Inbound::Wake) => {
                    self.shared.wake_pending.store(false, Ordering::SeqCst);
                    *woken = true;
                }
                Ok(Inbound::Closed) | Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
                Ok(item) => out.extend(self.shared.to_packet(item)),
                Err(TryRecvError::Empty) => break,
            }
        }
        if !self.closed {
            self.read_frames_now(out, limit);
        }
        out.len() > before || *woken || self.closed
    }

    /// Turns the whole frames the pipe holds now into packets, without waiting.
    fn read_frames_now(&mut self, out: &mut Vec<Packet>, limit: usize) {
        let Some(frames) = self.here.as_mut() else { return };
        frames.get_mut().get_mut().set_nowait(true);
        while out.len() < limit {
            match frames.read_frame() {
                Ok(frame) => {
                    let item = inbound_of(&self.shared, frame);
                    out.extend(item.and_then(|item| self.shared.to_packet(item)));
                }
                Err(scheme_protocol::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    break;
                }
                Err(err) => {
                    if !matches!(err, scheme_protocol::Error::Closed) {
                        error!("caller side sent a bad stream, closing: {err}");
                    }
                    self.closed = true;
                    break;
                }
            }
        }
        frames.get_mut().get_mut().set_nowait(false);
    }

    /// Sleeps until the wire is readable (or hung up) or the bell rings.
    fn sleep_here(&mut self) {
        let (Some(frames), Some(Server { bell, .. })) =
            (self.here.as_mut(), self.shared.server.get())
        else {
            return;
        };
        if !frames.get_mut().get_mut().arm() {
            return;
        }
        let Some(pipe) = wire_pipe(frames) else { return };
        let mut fds = [PollFd::new(&pipe, PollFlags::IN), PollFd::new(bell, PollFlags::IN)];
        // EINTR: the caller looks again.
        if poll(&mut fds, None).is_ok() && !fds[1].revents().is_empty() {
            bell.hush();
        }
    }
}

/// The pipe under a wire's frame reader, if it is one.
pub(super) fn wire_pipe(frames: &WireIn) -> Option<BorrowedFd<'_>> {
    frames.get_ref().get_ref().pipe()
}
