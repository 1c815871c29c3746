//! The daemon main loops, one per redox_syscall 0.5.18 scheme trait, over a [`SchemeSocket`].
//! `Scheme`/`SchemeMut` answer every packet at once, so they are served on the calling thread
//! straight from the wire, one call after another (no reader thread, no hand-off); a cancel
//! therefore finds its call answered (a `handle` that blocks delays it, and the caller side
//! answers EINTR itself after its grace period: such schemes should be `SchemeBlock`). `SchemeBlock`/`SchemeBlockMut` keep the
//! requests that return `None` in a todo list, the way ipcd does, and retry them after every
//! new batch of requests and every posted event, answering each as soon as it completes. When
//! the caller side closes, parked requests are answered `ENODEV` (as ipcd does on unmount).

use std::io;

use log::debug;
use syscall::data::Packet;
use syscall::error::{Error, EINTR, ENODEV};
use syscall::number::{KSMSG_CANCEL, SYS_GETDENTS};
use syscall::{Scheme, SchemeBlock, SchemeBlockMut, SchemeMut};

use crate::socket::{Next, SchemeSocket};

/// Packets taken from the socket per batch.
const BATCH: usize = 64;

/// Serves a `Scheme` until the caller side closes.
pub fn serve_scheme<S: Scheme>(socket: &mut SchemeSocket, scheme: &S) -> io::Result<()> {
    serve_at_once(socket, |_, packet| scheme.handle(packet))
}

/// Serves a `SchemeMut` until the caller side closes.
pub fn serve_scheme_mut<S: SchemeMut>(socket: &mut SchemeSocket, scheme: &mut S) -> io::Result<()> {
    serve_at_once(socket, |_, packet| scheme.handle(packet))
}

/// Serves a `SchemeBlock` until the caller side closes, parking requests that return `None`.
pub fn serve_block<S: SchemeBlock>(socket: &mut SchemeSocket, scheme: &S) -> io::Result<()> {
    serve_parking(socket, |packet| scheme.handle(packet))
}

/// Serves a `SchemeBlockMut` until the caller side closes, parking requests that return `None`.
pub fn serve_block_mut<S: SchemeBlockMut>(
    socket: &mut SchemeSocket,
    scheme: &mut S,
) -> io::Result<()> {
    serve_parking(socket, |packet| scheme.handle(packet))
}

/// A scheme that lists directories with `getdents`, which redox_syscall 0.5.18's legacy
/// `handle` does not dispatch (it answers `SYS_GETDENTS` with ENOSYS).
pub trait Getdents {
    /// Fills `buf` with redox_syscall 0.5 dirent records (`syscall::dirent::DirentBuf`) of
    /// handle `id`, starting at the opaque cursor `opaque` (0 = the start); returns the bytes
    /// written, 0 at the end.
    fn getdents(&mut self, id: usize, buf: &mut [u8], opaque: u64) -> syscall::Result<usize>;
}

/// Serves a `SchemeMut` that also implements [`Getdents`] (a filesystem) until the caller
/// side closes. A `SYS_GETDENTS` packet carries `b` = handle, `c`/`d` = the buffer and the
/// opaque cursor in `uid | gid << 32` (PROTOCOL.md).
pub fn serve_fs<S: SchemeMut + Getdents>(
    socket: &mut SchemeSocket,
    scheme: &mut S,
) -> io::Result<()> {
    serve_at_once(socket, |socket, packet| {
        if packet.a != SYS_GETDENTS {
            return scheme.handle(packet);
        }
        let opaque = u64::from(packet.uid) | (u64::from(packet.gid) << 32);
        let result = socket
            .with_out_buffer(packet.id, |buf| scheme.getdents(packet.b, buf, opaque))
            .unwrap_or(Err(Error::new(syscall::error::EINVAL)));
        packet.a = Error::mux(result);
    })
}

fn serve_at_once(
    socket: &mut SchemeSocket,
    mut handle: impl FnMut(&SchemeSocket, &mut Packet),
) -> io::Result<()> {
    if socket.serve_inline(&mut handle)? {
        return Ok(());
    }
    let mut packets = Vec::with_capacity(BATCH);
    loop {
        packets.clear();
        match socket.next_packets(&mut packets, BATCH)? {
            Next::Closed => return Ok(()),
            Next::Woken => continue,
            Next::Packets => {}
        }
        // Nothing is ever parked here, so cancellations have nothing to act on.
        packets.retain(|packet| !is_cancel(packet));
        for packet in packets.iter_mut() {
            handle(socket, packet);
        }
        socket.write_packets(&packets);
    }
}

fn serve_parking(
    socket: &mut SchemeSocket,
    mut handle: impl FnMut(&Packet) -> Option<usize>,
) -> io::Result<()> {
    let mut todo: Vec<Packet> = Vec::new();
    let mut incoming = Vec::with_capacity(BATCH);
    loop {
        incoming.clear();
        if socket.next_packets(&mut incoming, BATCH)? == Next::Closed {
            answer_all(socket, &mut todo, ENODEV);
            return Ok(());
        }
        for packet in incoming.drain(..) {
            if is_cancel(&packet) {
                cancel(socket, &mut todo, packet.b as u64);
            } else {
                todo.push(packet);
            }
        }
        run_until_stuck(socket, &mut todo, &mut handle);
    }
}

/// Runs every request in the todo list, oldest first, and keeps going while any completes
/// (a completed write may unblock a read parked before it). Each answer is written at once:
/// a scheme may post an event for a handle that an earlier answer created, and the caller
/// side must know that handle before the event arrives.
fn run_until_stuck(
    socket: &SchemeSocket,
    todo: &mut Vec<Packet>,
    handle: &mut impl FnMut(&Packet) -> Option<usize>,
) {
    loop {
        let before = todo.len();
        todo.retain(|packet| match handle(packet) {
            Some(result) => {
                socket.write_packet(&Packet { a: result, ..*packet });
                false
            }
            None => true,
        });
        if todo.len() == before || todo.is_empty() {
            return;
        }
    }
}

/// A `KSMSG_CANCEL` for a parked request answers it `EINTR` (the caller already has its
/// EINTR; this frees the request). A request that already completed is not affected.
fn cancel(socket: &SchemeSocket, todo: &mut Vec<Packet>, target: u64) {
    if let Some(at) = todo.iter().position(|packet| packet.id == target) {
        debug!("cancelled parked packet {target}");
        let packet = todo.remove(at);
        socket.write_packet(&Packet { a: Error::mux(Err(Error::new(EINTR))), ..packet });
    }
}

fn answer_all(socket: &SchemeSocket, todo: &mut Vec<Packet>, errno: i32) {
    let replies: Vec<Packet> = todo
        .drain(..)
        .map(|packet| Packet { a: Error::mux(Err(Error::new(errno))), ..packet })
        .collect();
    socket.write_packets(&replies);
}

fn is_cancel(packet: &Packet) -> bool {
    packet.id == 0 && packet.a == KSMSG_CANCEL
}
