//! `dup(fd, path)` through the mount. FUSE cannot create a handle except by opening a path, so
//! the bridge does it in two steps that any program can take: an ioctl ([`DUP_IOCTL`]) on an
//! open file carries the dup buffer ("listen", "connect", ...), the bridge sends the dup to the
//! daemon and answers with a token; opening `<mount>/.dup/<token>` then yields the new handle
//! as an ordinary fd. Tokens are random (128 bits), single-use, valid for the uid that made
//! them only, and expire after [`TOKEN_LIFETIME`]; an expired token's handle is closed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use scheme_protocol::Fd;

/// `_IOWR('S', 1, char[256])`: in, the dup buffer (NUL-terminated); out, the token (NUL-terminated).
pub const DUP_IOCTL: u32 = (3 << 30) | ((IOCTL_BUF as u32) << 16) | ((b'S' as u32) << 8) | 1;
/// Bytes of the ioctl's in and out buffers.
pub const IOCTL_BUF: usize = 256;
/// The directory where tokens are opened.
pub const DUP_DIR: &str = ".dup";
/// How long a token can be opened.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30);

/// A dup'd daemon handle waiting to be opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) scheme: usize,
    pub(crate) fd: Fd,
    pub(crate) uid: u32,
    pub(crate) stream: bool,
    expires: Instant,
}

/// Why a token cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Unknown,
    OtherUser,
}

/// The token table.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    tickets: Mutex<HashMap<String, Ticket>>,
}

impl Tokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Ticket>> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new dup'd handle; returns its token and the expired tickets to close.
    pub(crate) fn issue(
        &self,
        scheme: usize,
        fd: Fd,
        uid: u32,
        stream: bool,
    ) -> std::io::Result<(String, Vec<Ticket>)> {
        let mut raw = [0u8; 16];
        rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let ticket = Ticket { scheme, fd, uid, stream, expires: Instant::now() + TOKEN_LIFETIME };
        let mut tickets = self.lock();
        let expired = sweep(&mut tickets);
        tickets.insert(token.clone(), ticket);
        Ok((token, expired))
    }

    /// Whether `uid` may open `token` (lookup: no side effects).
    pub(crate) fn check(&self, token: &str, uid: u32) -> Result<Ticket, Refused> {
        let tickets = self.lock();
        let ticket =
            tickets.get(token).filter(|t| t.expires > Instant::now()).ok_or(Refused::Unknown)?;
        if ticket.uid != uid && uid != 0 {
            return Err(Refused::OtherUser);
        }
        Ok(*ticket)
    }

    /// Opens `token` for `uid`: it is used up.
    pub(crate) fn redeem(&self, token: &str, uid: u32) -> Result<Ticket, Refused> {
        let ticket = self.check(token, uid)?;
        self.lock().remove(token);
        Ok(ticket)
    }

    /// Removes and returns every expired ticket, for closing.
    pub(crate) fn expired(&self) -> Vec<Ticket> {
        sweep(&mut self.lock())
    }
}

fn sweep(tickets: &mut HashMap<String, Ticket>) -> Vec<Ticket> {
    let now = Instant::now();
    let dead: Vec<String> =
        tickets.iter().filter(|(_, t)| t.expires <= now).map(|(k, _)| k.clone()).collect();
    dead.into_iter().filter_map(|token| tickets.remove(&token)).collect()
}

/// The dup buffer an ioctl carried: up to the first NUL.
pub(crate) fn buffer_of(in_data: &[u8]) -> &[u8] {
    in_data.split(|&b| b == 0).next().unwrap_or_default()
}

/// The ioctl answer: the token, NUL-padded to the out size.
pub(crate) fn answer(token: &str, out_size: usize) -> Vec<u8> {
    let mut out = token.as_bytes().to_vec();
    out.resize(out_size.max(token.len() + 1), 0);
    out.truncate(out_size);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_is_iowr_s_1_256() {
        assert_eq!(DUP_IOCTL, 0xC100_5301);
    }

    #[test]
    fn tokens_are_single_use_and_per_user() {
        let tokens = Tokens::default();
        let (token, _) = tokens.issue(0, Fd(4), 1000, true).unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(tokens.check(&token, 1001).unwrap_err(), Refused::OtherUser);
        assert_eq!(tokens.check(&token, 1000).unwrap().fd, Fd(4));
        assert_eq!(tokens.redeem(&token, 1000).unwrap().fd, Fd(4));
        assert_eq!(tokens.redeem(&token, 1000).unwrap_err(), Refused::Unknown);
        let (other, _) = tokens.issue(0, Fd(5), 1000, true).unwrap();
        assert_ne!(token, other);
    }

    #[test]
    fn expired_tokens_are_refused_and_handed_back_for_closing() {
        let tokens = Tokens::default();
        let (token, _) = tokens.issue(0, Fd(4), 0, true).unwrap();
        tokens.lock().get_mut(&token).unwrap().expires = Instant::now();
        assert_eq!(tokens.check(&token, 0).unwrap_err(), Refused::Unknown);
        let expired = tokens.expired();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].fd, Fd(4));
    }

    #[test]
    fn buffers_and_answers() {
        assert_eq!(buffer_of(b"listen\0\0garbage"), b"listen");
        let out = answer("abc", 8);
        assert_eq!(out, b"abc\0\0\0\0\0");
    }
}
