//! The daemon main loops, one per redox_syscall 0.5.18 scheme trait, over a [`SchemeSocket`].
//! `Scheme`/`SchemeMut` answer every packet at once, so they are served on the calling thread
//! straight from the wire, one call after another (no reader thread, no hand-off); a cancel
//! therefore finds its call answered (a `handle` that blocks delays it, and the caller side
//! answers EINTR itself after its grace period: such schemes should be `SchemeBlock`). `SchemeBlock`/`SchemeBlockMut` keep the
//! requests that return `None` in a todo list, the way ipcd does, and retry them after every
//! new batch of requests and every posted event, answering each as soon as it completes. Their
//! serving thread reads the wire itself as well, where it is a pipe: it sleeps in `poll` on
//! the pipe and a bell that event posts from other threads ring (`SchemeSocket::read_here`).
//! When the caller side closes, parked requests are answered `ENODEV` (as ipcd does on
//! unmount).

use std::collections::HashSet;
use std::io;

use log::debug;
use syscall::data::Packet;
use syscall::error::{Error, EINTR, ENODEV};
use syscall::flag::O_STAT;
use syscall::number::{
    KSMSG_CANCEL, SYS_CLOSE, SYS_FPATH, SYS_FSTAT, SYS_FSTATVFS, SYS_GETDENTS, SYS_OPEN,
};
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
    // No reader thread: this one takes each call off the wire (`SchemeSocket::read_here`).
    socket.read_here();
    let mut todo: Vec<Packet> = Vec::new();
    let mut incoming = Vec::with_capacity(BATCH);
    let mut queries = Queries::default();
    loop {
        incoming.clear();
        if socket.next_packets(&mut incoming, BATCH)? == Next::Closed {
            answer_all(socket, &mut todo, ENODEV);
            return Ok(());
        }
        let mut retry = incoming.is_empty(); // woken by an event
        for packet in incoming.drain(..) {
            if is_cancel(&packet) {
                cancel(socket, &mut todo, packet.b as u64);
            } else if queries.is_query(&packet) {
                // A query changes nothing, so it cannot unblock a parked request: answer it
                // without retrying them all (a stat stays cheap with 1,000 reads parked).
                match handle(&packet) {
                    Some(result) => {
                        queries.answered(&packet, result);
                        socket.write_packet(&Packet { a: result, ..packet });
                    }
                    None => todo.push(packet),
                }
            } else {
                todo.push(packet);
                retry = true;
            }
        }
        if retry {
            run_until_stuck(socket, &mut todo, &mut handle);
        }
    }
}

/// Requests that only look: fstat, fstatvfs, fpath, and the open and close of an `O_STAT`
/// handle (a handle for looking at a node, which connects or creates nothing).
#[derive(Default)]
struct Queries {
    stat_handles: HashSet<usize>,
}

impl Queries {
    fn is_query(&self, packet: &Packet) -> bool {
        match packet.a {
            SYS_FSTAT | SYS_FSTATVFS | SYS_FPATH => true,
            SYS_OPEN => packet.d & O_STAT == O_STAT,
            SYS_CLOSE => self.stat_handles.contains(&packet.b),
            _ => false,
        }
    }

    fn answered(&mut self, packet: &Packet, result: usize) {
        match packet.a {
            SYS_OPEN if Error::demux(result).is_ok() => drop(self.stat_handles.insert(result)),
            SYS_CLOSE => drop(self.stat_handles.remove(&packet.b)),
            _ => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_looking_requests_are_queries_and_an_o_stat_handle_closes_as_one() {
        let mut queries = Queries::default();
        let open_stat = Packet { a: SYS_OPEN, d: O_STAT, ..Packet::default() };
        let open_plain = Packet { a: SYS_OPEN, d: 0, ..Packet::default() };
        assert!(queries.is_query(&open_stat));
        assert!(!queries.is_query(&open_plain));
        assert!(queries.is_query(&Packet { a: SYS_FSTAT, ..Packet::default() }));
        queries.answered(&open_stat, 7);
        let close = |b| Packet { a: SYS_CLOSE, b, ..Packet::default() };
        assert!(queries.is_query(&close(7)));
        assert!(!queries.is_query(&close(8)));
        queries.answered(&close(7), 0);
        assert!(!queries.is_query(&close(7)));
        let write = Packet { a: syscall::number::SYS_WRITE, ..Packet::default() };
        assert!(!queries.is_query(&write));
    }
}
