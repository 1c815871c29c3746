//! The nodes the bridge makes up itself rather than asking a daemon: the `.dup` directory and
//! its `<token>` entries (see `dup.rs`), and the dup ioctl that issues the tokens.

use std::sync::Arc;
use std::time::Duration;

use fuser::{
    Errno as LinuxErrno, FileHandle, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyEntry,
    ReplyIoctl, ReplyOpen, Request,
};
use scheme_protocol::{Bytes, Call, Caller, Stat};
use syscall::flag::MODE_FILE;

use super::attr::{self, synthetic_dir};
use super::dup::{self, Refused, DUP_IOCTL};
use super::handles::Handle;
use super::inodes::{Kind, Node, DUP_DIR, ROOT, TOKEN_PREFIX};
use super::shared::fd_of;
use super::table::SchemeFs;

impl SchemeFs {
    /// Answers lookups of `.dup` (in the root) and of tokens in it.
    pub(crate) fn lookup_special(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &str,
        reply: ReplyEntry,
    ) -> Result<(), ReplyEntry> {
        let Ok(parent_node) = self.shared.node(parent.0) else { return Err(reply) };
        if parent.0 == ROOT && name == dup::DUP_DIR {
            let ino = self.shared.inodes().lookup(DUP_DIR, "", Kind::Dir, 0);
            reply.entry(&Duration::ZERO, &synthetic_dir(ino, self.shared.owner), Generation(0));
            return Ok(());
        }
        if parent_node.scheme != DUP_DIR {
            return Err(reply);
        }
        let caller = Caller { pid: u64::from(req.pid()), uid: req.uid(), gid: req.gid() };
        for ticket in self.shared.tokens.expired() {
            self.shared.close_quietly(ticket.scheme, caller, ticket.fd);
        }
        match self.shared.tokens.check(name, req.uid()) {
            Ok(ticket) => {
                let path = format!("{TOKEN_PREFIX}{name}");
                let ino = self.shared.inodes().lookup(ticket.scheme, &path, Kind::Stream, 0);
                reply.entry(&Duration::ZERO, &self.token_attr(ino, ticket.uid), Generation(0));
            }
            Err(Refused::Unknown) => reply.error(LinuxErrno::ENOENT),
            Err(Refused::OtherUser) => reply.error(LinuxErrno::EACCES),
        }
        Ok(())
    }

    /// Answers getattr of made-up nodes; gives the reply back for daemon nodes.
    pub(crate) fn getattr_special(
        &self,
        node: &Node,
        ino: u64,
        reply: ReplyAttr,
    ) -> Result<(), ReplyAttr> {
        if node.scheme == DUP_DIR {
            reply.attr(&Duration::ZERO, &synthetic_dir(ino, self.shared.owner));
        } else if node.path.starts_with(TOKEN_PREFIX) {
            reply.attr(&Duration::ZERO, &self.token_attr(ino, rustix::process::geteuid().as_raw()));
        } else {
            return Err(reply);
        }
        Ok(())
    }

    /// Opens `.dup/<token>`: the token is used up and the dup'd daemon handle becomes the file.
    pub(crate) fn open_special(
        &self,
        req: &Request,
        node: &Node,
        reply: ReplyOpen,
    ) -> Result<(), ReplyOpen> {
        let Some(token) = node.path.strip_prefix(TOKEN_PREFIX) else { return Err(reply) };
        let slot = match self.shared.counters.handle(req.uid()) {
            Ok(slot) => slot,
            Err(err) => {
                reply.error(err);
                return Ok(());
            }
        };
        match self.shared.tokens.redeem(token, req.uid()) {
            Ok(ticket) => {
                let handle = Handle::new((ticket.scheme, ticket.fd), ticket.stream, 0, slot);
                let fh = self.shared.handles.insert(handle);
                let flags = FopenFlags::FOPEN_DIRECT_IO
                    | FopenFlags::FOPEN_NONSEEKABLE
                    | FopenFlags::FOPEN_STREAM;
                reply.opened(FileHandle(fh), flags);
                // A used token never resolves again: let the kernel forget its name and node.
                let dup_dir = self.shared.inodes().dir_of_tokens();
                if let Some(dup_dir) = dup_dir {
                    self.shared.forget_name(dup_dir, token);
                }
            }
            Err(Refused::Unknown) => reply.error(LinuxErrno::ENOENT),
            Err(Refused::OtherUser) => reply.error(LinuxErrno::EACCES),
        }
        Ok(())
    }

    /// The dup ioctl: dup the file's daemon handle with the given buffer, answer a token.
    pub(crate) fn dup_ioctl(
        &self,
        req: &Request,
        fh: FileHandle,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        if cmd != DUP_IOCTL {
            return reply.error(LinuxErrno::ENOTTY);
        }
        let Some(handle) = self.shared.handles.get(fh.0) else {
            return reply.error(LinuxErrno::EBADF);
        };
        let buf = dup::buffer_of(in_data);
        if buf.is_empty() {
            return reply.error(LinuxErrno::EINVAL);
        }
        let caller = Caller { pid: u64::from(req.pid()), uid: req.uid(), gid: req.gid() };
        let call = Call::Dup { fd: handle.fd, buf: Bytes::from(buf) };
        let (shared, scheme) = (Arc::clone(&self.shared), handle.scheme);
        self.shared.call_interruptible(req.unique().0, scheme, caller, call, move |r| {
            let fd = match fd_of(r) {
                Ok(fd) => fd,
                Err(err) => return reply.error(err),
            };
            match shared.tokens.issue(scheme, fd, caller.uid, true) {
                Ok((token, expired)) => {
                    for ticket in expired {
                        shared.close_quietly(ticket.scheme, caller, ticket.fd);
                    }
                    reply.ioctl(0, &dup::answer(&token, out_size as usize));
                }
                Err(err) => {
                    shared.close_quietly(scheme, caller, fd);
                    reply.error(LinuxErrno::from(err));
                }
            }
        });
    }

    fn token_attr(&self, ino: u64, uid: u32) -> fuser::FileAttr {
        let stat = Stat { st_mode: MODE_FILE | 0o600, st_uid: uid, st_nlink: 1, ..Stat::default() };
        let mut attr = attr::from_stat(ino, &stat, self.shared.owner);
        attr.size = 0;
        attr
    }
}
