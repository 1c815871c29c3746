//! The `chan:` scheme: ipcd's local stream sockets (ipcd `src/chan.rs`, newest semantics).
//! `open(NAME, O_CREAT)` listens, `open(NAME)` connects, `dup(listener, "listen")` accepts.
//! Legacy read/write carry no per-call flags, so (as in ipcd 2019) O_NONBLOCK comes from the
//! handle's stored flags (open, F_SETFL); otherwise blocking calls answer `Ok(None)` (parked).
//! Browsing extensions: O_STAT opens of listener names, and a listing of the scheme root.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str;

use syscall::{
    calc_seek_offset_usize, Error, EventFlags, Result, SchemeBlockMut, Stat, EAGAIN, EBADF, EEXIST,
    EINVAL, ENOENT, ENOTDIR, EPIPE, ESPIPE, EVENT_READ, EVENT_WRITE, EWOULDBLOCK, F_GETFL, F_SETFL,
    MODE_DIR, MODE_SOCK, O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NONBLOCK, O_RDONLY, O_STAT,
};

use crate::PostEvent;

/// The scheme prefix fpath reports (ipcd keeps the legacy `chan:` form).
const FPATH_PREFIX: &str = "chan:";
/// Mode of listeners, streams and stat-only handles.
const SOCKET_MODE: u16 = MODE_SOCK | 0o666;
/// Mode of the scheme root.
const ROOT_MODE: u16 = MODE_DIR | 0o755;

/// The other end of a client stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remote {
    /// Queued on a listener, not accepted yet.
    Waiting,
    /// Connected to this handle id.
    Open(usize),
    /// The peer has closed: reads drain the buffer then see EOF, writes fail with EPIPE.
    Closed,
}

#[derive(Debug)]
struct Listener {
    /// The registered name; `None` for an unnamed listener (reachable only through its fd).
    path: Option<String>,
    /// Ids of clients waiting to be accepted, oldest first.
    awaiting: VecDeque<usize>,
}

#[derive(Debug)]
struct Client {
    /// Bytes written by the peer and not read yet.
    /// Bytes written by the peer and not read yet; a deque, so a read takes from the front
    /// in time proportional to what it takes, however much is buffered behind it.
    buffer: VecDeque<u8>,
    remote: Remote,
    /// The listener's name, for streams accepted from a named listener; `None` otherwise.
    path: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Listener(Listener),
    Client(Client),
    /// Extension: an O_STAT open of a listener name; it does not connect.
    StatOnly {
        name: String,
    },
    /// Extension: the scheme root, whose read lists listener names; `offset` = bytes read.
    Root {
        offset: usize,
    },
}

#[derive(Debug)]
struct Handle {
    /// Open flags, replaced by F_SETFL; only O_NONBLOCK (and O_CREAT for dup-by-name) matter.
    flags: usize,
    kind: Kind,
}

impl Handle {
    fn is_nonblocking(&self) -> bool {
        self.flags & O_NONBLOCK != 0
    }

    /// What is ready right now (see `fevent`).
    fn readiness(&self) -> EventFlags {
        match &self.kind {
            Kind::Client(client) => client_readiness(client),
            Kind::Listener(listener) if !listener.awaiting.is_empty() => EVENT_READ | EVENT_WRITE,
            Kind::Listener(_) | Kind::StatOnly { .. } | Kind::Root { .. } => EventFlags::empty(),
        }
    }

    fn stat(&self) -> Stat {
        let (mode, size) = match &self.kind {
            Kind::Root { .. } => (ROOT_MODE, 0),
            Kind::Client(client) => (SOCKET_MODE, client.buffer.len() as u64),
            Kind::Listener(_) | Kind::StatOnly { .. } => (SOCKET_MODE, 0),
        };
        Stat { st_mode: mode, st_size: size, st_nlink: 1, ..Stat::default() }
    }

    /// The part of fpath after `chan:`, if this handle has one.
    fn fpath_suffix(&self) -> Option<&str> {
        match &self.kind {
            Kind::Client(client) => client.path.as_deref(),
            Kind::StatOnly { name } => Some(name),
            Kind::Root { .. } => Some(""),
            Kind::Listener(_) => None,
        }
    }
}

fn client_readiness(client: &Client) -> EventFlags {
    let mut ready = EventFlags::empty();
    if matches!(client.remote, Remote::Open(_)) {
        ready |= EVENT_WRITE;
    }
    if !client.buffer.is_empty() || client.remote == Remote::Closed {
        ready |= EVENT_READ;
    }
    ready
}

/// `EAGAIN` for a non-blocking handle, else `Ok(None)`: park the request for a later retry.
fn would_block(handle: &Handle) -> Result<Option<usize>> {
    if handle.is_nonblocking() {
        Err(Error::new(EAGAIN))
    } else {
        Ok(None)
    }
}

/// Whether an open of the empty name (without O_CREAT) means "browse the root": a directory
/// open, a stat, or a plain read-only open.
fn opens_root(flags: usize) -> bool {
    flags & (O_DIRECTORY | O_STAT) != 0 || flags & O_ACCMODE == O_RDONLY
}

fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let len = dst.len().min(src.len());
    dst[..len].copy_from_slice(&src[..len]);
    len
}

/// The `chan:` scheme.
pub struct ChanScheme {
    handles: HashMap<usize, Handle>,
    /// Registered listener names → listener id (sorted, for a stable root listing).
    listeners: BTreeMap<String, usize>,
    next_id: usize,
    post: PostEvent,
}

impl ChanScheme {
    /// `post(id, flags)` is called for every readiness event (see the module docs).
    pub fn new(post: PostEvent) -> Self {
        Self { handles: HashMap::new(), listeners: BTreeMap::new(), next_id: 1, post }
    }

    fn insert(&mut self, flags: usize, kind: Kind) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.handles.insert(id, Handle { flags, kind });
        id
    }

    fn lookup(&self, id: usize) -> Result<&Handle> {
        self.handles.get(&id).ok_or(Error::new(EBADF))
    }

    fn lookup_mut(&mut self, id: usize) -> Result<&mut Handle> {
        self.handles.get_mut(&id).ok_or(Error::new(EBADF))
    }

    fn client_mut(&mut self, id: usize) -> Option<&mut Client> {
        match self.handles.get_mut(&id) {
            Some(Handle { kind: Kind::Client(client), .. }) => Some(client),
            _ => None,
        }
    }

    fn is_listener(&self, id: usize) -> bool {
        matches!(self.lookup(id), Ok(Handle { kind: Kind::Listener(_), .. }))
    }

    /// Creates a listener or connects to one, as `open(name, flags)` does in ipcd.
    fn open_name(&mut self, name: &str, flags: usize) -> Result<usize> {
        let create = flags & O_CREAT != 0;
        match self.listeners.get(name) {
            None if create => Ok(self.create_listener(name, flags)),
            None => Err(Error::new(ENOENT)),
            Some(_) if create && flags & O_EXCL != 0 => Err(Error::new(EEXIST)),
            Some(&listener_id) => self.connect(listener_id, flags),
        }
    }

    /// A new listener; the name is registered only if non-empty.
    fn create_listener(&mut self, name: &str, flags: usize) -> usize {
        let path = (!name.is_empty()).then(|| name.to_owned());
        let listener = Listener { path: path.clone(), awaiting: VecDeque::new() };
        let id = self.insert(flags, Kind::Listener(listener));
        if let Some(path) = path {
            self.listeners.insert(path, id);
        }
        id
    }

    /// A new client queued on the listener, which is told it has someone waiting.
    fn connect(&mut self, listener_id: usize, flags: usize) -> Result<usize> {
        if !self.is_listener(listener_id) {
            return Err(Error::new(EBADF));
        }
        let client = Client { buffer: VecDeque::new(), remote: Remote::Waiting, path: None };
        let client_id = self.insert(flags, Kind::Client(client));
        if let Ok(Handle { kind: Kind::Listener(listener), .. }) = self.lookup_mut(listener_id) {
            listener.awaiting.push_back(client_id);
        }
        (self.post)(listener_id, EVENT_READ | EVENT_WRITE);
        Ok(client_id)
    }

    /// Pops the oldest client that is still waiting (closed ones are skipped).
    fn pop_waiting_client(&mut self, listener_id: usize) -> Option<usize> {
        loop {
            let candidate = match &mut self.lookup_mut(listener_id).ok()?.kind {
                Kind::Listener(listener) => listener.awaiting.pop_front()?,
                _ => return None,
            };
            if self.client_mut(candidate).is_some() {
                return Some(candidate);
            }
        }
    }

    /// `dup(listener, "listen")`: a new stream connected to the oldest waiting client.
    fn accept(&mut self, listener_id: usize) -> Result<Option<usize>> {
        let handle = self.lookup(listener_id)?;
        let Kind::Listener(listener) = &handle.kind else {
            return Err(Error::new(EBADF));
        };
        let (flags, path) = (handle.flags, listener.path.clone());
        let Some(client_id) = self.pop_waiting_client(listener_id) else {
            return if flags & O_NONBLOCK != 0 { Err(Error::new(EWOULDBLOCK)) } else { Ok(None) };
        };
        let stream = Client { buffer: VecDeque::new(), remote: Remote::Open(client_id), path };
        let stream_id = self.insert(flags, Kind::Client(stream));
        if let Some(client) = self.client_mut(client_id) {
            client.remote = Remote::Open(stream_id);
        }
        (self.post)(client_id, EVENT_WRITE);
        Ok(Some(stream_id))
    }

    /// `dup(listener, "connect")`: a new client queued on this (possibly unnamed) listener.
    /// It inherits the listener's flags without O_CREAT/O_EXCL, so it blocks iff the listener
    /// does (ipcd gives it flags 0).
    fn connect_through(&mut self, listener_id: usize) -> Result<Option<usize>> {
        let flags = self.lookup(listener_id)?.flags & !(O_CREAT | O_EXCL);
        self.connect(listener_id, flags).map(Some)
    }

    /// `dup(handle, NAME)`: on a socket without a path, acts like `open(NAME, its flags)`.
    fn dup_by_name(&mut self, id: usize, buf: &[u8]) -> Result<Option<usize>> {
        let name = str::from_utf8(buf).map_err(|_| Error::new(EBADF))?;
        let handle = self.lookup(id)?;
        let renamable = match &handle.kind {
            Kind::Listener(_) => true,
            Kind::Client(client) => client.path.is_none(),
            Kind::StatOnly { .. } | Kind::Root { .. } => false,
        };
        if name.is_empty() || !renamable {
            return Err(Error::new(EBADF));
        }
        let flags = handle.flags;
        self.open_name(name.trim_start_matches('/'), flags).map(Some)
    }

    /// Appends to the peer's buffer; READ is posted only when it turns non-empty.
    fn deliver(&mut self, peer_id: usize, bytes: &[u8]) {
        let Some(peer) = self.client_mut(peer_id) else {
            return;
        };
        let was_empty = peer.buffer.is_empty();
        peer.buffer.extend(bytes);
        if was_empty && !bytes.is_empty() {
            (self.post)(peer_id, EVENT_READ);
        }
    }

    /// The peer of a closing stream sees EOF; READ is posted if that makes it readable.
    fn hang_up(&mut self, peer_id: usize) {
        let Some(peer) = self.client_mut(peer_id) else {
            return;
        };
        peer.remote = Remote::Closed;
        if peer.buffer.is_empty() {
            (self.post)(peer_id, EVENT_READ);
        }
    }

    /// The root listing: each registered listener name followed by '\n'.
    fn listing(&self) -> Vec<u8> {
        let mut listing = Vec::new();
        for name in self.listeners.keys() {
            listing.extend_from_slice(name.as_bytes());
            listing.push(b'\n');
        }
        listing
    }

    fn read_root(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        let listing = self.listing();
        let Kind::Root { offset } = &mut self.lookup_mut(id)?.kind else {
            return Err(Error::new(EBADF));
        };
        let start = (*offset).min(listing.len());
        let count = copy_truncated(buf, &listing[start..]);
        *offset = start + count;
        Ok(Some(count))
    }

    fn read_client(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        let handle = self.lookup_mut(id)?;
        let Kind::Client(client) = &mut handle.kind else {
            return Err(Error::new(EBADF));
        };
        if !client.buffer.is_empty() {
            let (front, back) = client.buffer.as_slices();
            let count = copy_truncated(buf, front);
            let count = count + copy_truncated(&mut buf[count..], back);
            client.buffer.drain(..count);
            Ok(Some(count))
        } else if client.remote == Remote::Closed {
            Ok(Some(0))
        } else {
            would_block(handle)
        }
    }

    /// Extension (a): a handle for fstat on an existing listener name; it does not connect.
    fn open_stat_only(&mut self, name: &str, flags: usize) -> Result<usize> {
        if !self.listeners.contains_key(name) {
            return Err(Error::new(ENOENT));
        }
        let name = name.to_owned();
        Ok(self.insert(flags, Kind::StatOnly { name }))
    }
}

impl SchemeBlockMut for ChanScheme {
    /// Leading '/' are stripped. Without O_CREAT: the empty name opened for browsing gives the
    /// root, O_DIRECTORY on a name is ENOTDIR (ENOENT if absent), O_STAT gives a stat-only
    /// handle; everything else follows ipcd (create a listener, EEXIST, or connect).
    fn open(&mut self, path: &str, flags: usize, _uid: u32, _gid: u32) -> Result<Option<usize>> {
        let name = path.trim_start_matches('/');
        let id = if flags & O_CREAT != 0 {
            self.open_name(name, flags)?
        } else if name.is_empty() && opens_root(flags) {
            self.insert(flags, Kind::Root { offset: 0 })
        } else if flags & O_DIRECTORY != 0 {
            let error = if self.listeners.contains_key(name) { ENOTDIR } else { ENOENT };
            return Err(Error::new(error));
        } else if flags & O_STAT != 0 {
            self.open_stat_only(name, flags)?
        } else {
            self.open_name(name, flags)?
        };
        Ok(Some(id))
    }

    fn dup(&mut self, id: usize, buf: &[u8]) -> Result<Option<usize>> {
        match buf {
            b"listen" => self.accept(id),
            b"connect" => self.connect_through(id),
            _ => self.dup_by_name(id, buf),
        }
    }

    fn read(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        match self.lookup(id)?.kind {
            Kind::Root { .. } => self.read_root(id, buf),
            Kind::Client(_) => self.read_client(id, buf),
            Kind::Listener(_) | Kind::StatOnly { .. } => Err(Error::new(EBADF)),
        }
    }

    fn write(&mut self, id: usize, buf: &[u8]) -> Result<Option<usize>> {
        let handle = self.lookup(id)?;
        let Kind::Client(client) = &handle.kind else {
            return Err(Error::new(EBADF));
        };
        match client.remote {
            Remote::Open(peer_id) => {
                self.deliver(peer_id, buf);
                Ok(Some(buf.len()))
            }
            Remote::Closed => Err(Error::new(EPIPE)),
            Remote::Waiting => would_block(handle),
        }
    }

    /// Only the root is seekable (over its listing); streams are ESPIPE.
    fn seek(&mut self, id: usize, pos: isize, whence: usize) -> Result<Option<isize>> {
        let listing_len = self.listing().len();
        let Kind::Root { offset } = &mut self.lookup_mut(id)?.kind else {
            return Err(Error::new(ESPIPE));
        };
        let new_offset = calc_seek_offset_usize(*offset, pos, whence, listing_len)?;
        *offset = new_offset as usize;
        Ok(Some(new_offset))
    }

    fn fcntl(&mut self, id: usize, cmd: usize, arg: usize) -> Result<Option<usize>> {
        let handle = self.lookup_mut(id)?;
        match cmd {
            F_GETFL => Ok(Some(handle.flags)),
            F_SETFL => {
                handle.flags = arg;
                Ok(Some(0))
            }
            _ => Err(Error::new(EINVAL)),
        }
    }

    /// Current readiness: a stream is WRITE-ready while connected and READ-ready with buffered
    /// data or at EOF; a listener is READ|WRITE-ready while someone waits to be accepted.
    fn fevent(&mut self, id: usize, _flags: EventFlags) -> Result<Option<EventFlags>> {
        Ok(Some(self.lookup(id)?.readiness()))
    }

    /// `chan:` + name for accepted streams of named listeners (and stat-only handles), `chan:`
    /// for the root; EBADF for listeners, connecting clients and unnamed streams.
    fn fpath(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        let suffix = self.lookup(id)?.fpath_suffix().ok_or(Error::new(EBADF))?;
        let path = format!("{FPATH_PREFIX}{suffix}");
        Ok(Some(copy_truncated(buf, path.as_bytes())))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat) -> Result<Option<usize>> {
        *stat = self.lookup(id)?.stat();
        Ok(Some(0))
    }

    fn fsync(&mut self, id: usize) -> Result<Option<usize>> {
        self.lookup(id)?;
        Ok(Some(0))
    }

    /// A connected stream hangs up its peer; a listener unregisters its name (clients still
    /// queued on it stay waiting); anything else is just dropped.
    fn close(&mut self, id: usize) -> Result<Option<usize>> {
        let handle = self.handles.remove(&id).ok_or(Error::new(EBADF))?;
        match handle.kind {
            Kind::Client(Client { remote: Remote::Open(peer_id), .. }) => self.hang_up(peer_id),
            Kind::Listener(Listener { path: Some(path), .. }) => {
                self.listeners.remove(&path);
            }
            _ => {}
        }
        Ok(Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{recording_poster, take, Recorded};
    use syscall::{O_RDWR, O_WRONLY, SEEK_SET};

    fn scheme() -> (ChanScheme, Recorded) {
        let (post, recorded) = recording_poster();
        (ChanScheme::new(post), recorded)
    }

    /// Unwraps an answered (not parked) success.
    fn done(result: Result<Option<usize>>) -> usize {
        result.expect("call failed").expect("call was parked")
    }

    fn errno<T: std::fmt::Debug>(result: Result<T>) -> i32 {
        result.expect_err("call succeeded").errno
    }

    fn listen(s: &mut ChanScheme, name: &str) -> usize {
        done(s.open(name, O_CREAT | O_RDWR, 0, 0))
    }

    fn connect(s: &mut ChanScheme, name: &str) -> usize {
        done(s.open(name, O_RDWR, 0, 0))
    }

    /// A listener plus an accepted pair: (listener, client, server stream).
    fn pair(s: &mut ChanScheme, name: &str) -> (usize, usize, usize) {
        let listener = listen(s, name);
        let client = connect(s, name);
        let server = done(s.dup(listener, b"listen"));
        (listener, client, server)
    }

    fn read_string(s: &mut ChanScheme, id: usize, len: usize) -> String {
        let mut buf = vec![0u8; len];
        let count = done(s.read(id, &mut buf));
        String::from_utf8(buf[..count].to_vec()).unwrap()
    }

    fn fpath_of(s: &mut ChanScheme, id: usize) -> Result<String> {
        let mut buf = [0u8; 64];
        let len = s.fpath(id, &mut buf)?.unwrap();
        Ok(String::from_utf8(buf[..len].to_vec()).unwrap())
    }

    fn stat_of(s: &mut ChanScheme, id: usize) -> Stat {
        let mut stat = Stat::default();
        assert_eq!(s.fstat(id, &mut stat), Ok(Some(0)));
        stat
    }

    fn readiness(s: &mut ChanScheme, id: usize) -> EventFlags {
        s.fevent(id, EVENT_READ | EVENT_WRITE).unwrap().unwrap()
    }

    #[test]
    fn ids_start_at_one_and_only_increase() {
        let (mut s, _) = scheme();
        assert_eq!(listen(&mut s, "a"), 1);
        assert_eq!(listen(&mut s, "b"), 2);
        assert_eq!(s.close(2), Ok(Some(0)));
        assert_eq!(listen(&mut s, "b"), 3);
    }

    #[test]
    fn create_makes_a_listener_and_exclusive_create_of_existing_is_eexist() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "hello");
        assert_eq!(errno(s.open("hello", O_CREAT | O_EXCL | O_RDWR, 0, 0)), EEXIST);
        assert!(take(&recorded).is_empty());
        assert_eq!(readiness(&mut s, listener), EventFlags::empty());
    }

    #[test]
    fn create_without_exclusive_on_existing_connects() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "hello");
        let client = done(s.open("hello", O_CREAT | O_RDWR, 0, 0));
        assert_eq!(take(&recorded), [(listener, EVENT_READ | EVENT_WRITE)]);
        assert_eq!(done(s.dup(listener, b"listen")), client + 1);
    }

    #[test]
    fn connecting_to_a_missing_name_is_enoent() {
        let (mut s, _) = scheme();
        assert_eq!(errno(s.open("nobody", O_RDWR, 0, 0)), ENOENT);
        assert_eq!(errno(s.open("", O_RDWR, 0, 0)), ENOENT);
        assert_eq!(errno(s.open("/", O_WRONLY, 0, 0)), ENOENT);
    }

    #[test]
    fn leading_slashes_are_stripped() {
        let (mut s, _) = scheme();
        let listener = listen(&mut s, "//srv");
        let client = connect(&mut s, "srv");
        let server = done(s.dup(listener, b"listen"));
        assert_eq!(done(s.write(client, b"x")), 1);
        assert_eq!(read_string(&mut s, server, 4), "x");
        assert_eq!(fpath_of(&mut s, server).unwrap(), "chan:srv");
    }

    #[test]
    fn connect_queues_a_waiting_client_and_wakes_the_listener() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "srv");
        let client = connect(&mut s, "srv");
        assert_eq!(take(&recorded), [(listener, EVENT_READ | EVENT_WRITE)]);
        assert_eq!(readiness(&mut s, listener), EVENT_READ | EVENT_WRITE);
        assert_eq!(readiness(&mut s, client), EventFlags::empty());
    }

    #[test]
    fn accept_connects_both_ends_and_wakes_the_client() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "srv");
        let client = connect(&mut s, "srv");
        take(&recorded);
        let server = done(s.dup(listener, b"listen"));
        assert_eq!(take(&recorded), [(client, EVENT_WRITE)]);
        assert_eq!(readiness(&mut s, client), EVENT_WRITE);
        assert_eq!(readiness(&mut s, server), EVENT_WRITE);
        assert_eq!(readiness(&mut s, listener), EventFlags::empty());
    }

    #[test]
    fn accept_takes_the_oldest_waiting_client_first() {
        let (mut s, _) = scheme();
        let listener = listen(&mut s, "srv");
        let first = connect(&mut s, "srv");
        let second = connect(&mut s, "srv");
        let to_first = done(s.dup(listener, b"listen"));
        let to_second = done(s.dup(listener, b"listen"));
        done(s.write(first, b"1"));
        done(s.write(second, b"2"));
        assert_eq!(read_string(&mut s, to_first, 8), "1");
        assert_eq!(read_string(&mut s, to_second, 8), "2");
    }

    #[test]
    fn accept_skips_clients_that_already_closed() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "srv");
        let gone = connect(&mut s, "srv");
        let stays = connect(&mut s, "srv");
        assert_eq!(s.close(gone), Ok(Some(0)));
        take(&recorded);
        let server = done(s.dup(listener, b"listen"));
        assert_eq!(take(&recorded), [(stays, EVENT_WRITE)]);
        done(s.write(stays, b"hi"));
        assert_eq!(read_string(&mut s, server, 8), "hi");
        assert_eq!(s.dup(listener, b"listen"), Ok(None));
    }

    #[test]
    fn accept_with_nobody_waiting_parks_or_would_block() {
        let (mut s, _) = scheme();
        let blocking = listen(&mut s, "a");
        assert_eq!(s.dup(blocking, b"listen"), Ok(None));
        let nonblocking = done(s.open("b", O_CREAT | O_RDWR | O_NONBLOCK, 0, 0));
        assert_eq!(errno(s.dup(nonblocking, b"listen")), EWOULDBLOCK);
        assert_eq!(EWOULDBLOCK, 41);
    }

    #[test]
    fn parked_accept_succeeds_when_retried_after_a_connect() {
        let (mut s, _) = scheme();
        let listener = listen(&mut s, "srv");
        assert_eq!(s.dup(listener, b"listen"), Ok(None));
        let client = connect(&mut s, "srv");
        let server = done(s.dup(listener, b"listen"));
        assert_eq!(readiness(&mut s, client), EVENT_WRITE);
        assert_eq!(readiness(&mut s, server), EVENT_WRITE);
    }

    #[test]
    fn accepted_stream_inherits_listener_flags_and_name() {
        let (mut s, _) = scheme();
        let flags = O_CREAT | O_RDWR | O_NONBLOCK;
        let listener = done(s.open("srv", flags, 0, 0));
        connect(&mut s, "srv");
        let server = done(s.dup(listener, b"listen"));
        assert_eq!(s.fcntl(server, F_GETFL, 0), Ok(Some(flags)));
        assert_eq!(fpath_of(&mut s, server).unwrap(), "chan:srv");
        assert_eq!(errno(s.read(server, &mut [0u8; 4])), EAGAIN);
    }

    #[test]
    fn listen_or_connect_on_a_non_listener_is_ebadf() {
        let (mut s, _) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        assert_eq!(errno(s.dup(client, b"listen")), EBADF);
        assert_eq!(errno(s.dup(server, b"listen")), EBADF);
        assert_eq!(errno(s.dup(client, b"connect")), EBADF);
        assert_eq!(errno(s.dup(99, b"listen")), EBADF);
    }

    #[test]
    fn unnamed_listener_pairs_through_dup_connect() {
        let (mut s, recorded) = scheme();
        let listener = done(s.open("", O_CREAT | O_RDWR, 0, 0));
        let client = done(s.dup(listener, b"connect"));
        assert_eq!(take(&recorded), [(listener, EVENT_READ | EVENT_WRITE)]);
        let server = done(s.dup(listener, b"listen"));
        done(s.write(server, b"ping"));
        assert_eq!(read_string(&mut s, client, 8), "ping");
        assert_eq!(errno(fpath_of(&mut s, server)), EBADF);
        assert_eq!(s.fcntl(client, F_GETFL, 0), Ok(Some(O_RDWR)));
    }

    #[test]
    fn dup_connect_client_blocks_like_its_listener() {
        let (mut s, _) = scheme();
        let listener = done(s.open("", O_CREAT | O_RDWR | O_NONBLOCK, 0, 0));
        let client = done(s.dup(listener, b"connect"));
        assert_eq!(errno(s.write(client, b"x")), EAGAIN);
    }

    #[test]
    fn dup_by_name_on_an_unnamed_listener_creates_a_named_one() {
        let (mut s, _) = scheme();
        let unnamed = done(s.open("", O_CREAT | O_RDWR, 0, 0));
        let named = done(s.dup(unnamed, b"late"));
        assert_ne!(named, unnamed);
        let client = connect(&mut s, "late");
        let server = done(s.dup(named, b"listen"));
        done(s.write(client, b"x"));
        assert_eq!(read_string(&mut s, server, 4), "x");
    }

    #[test]
    fn dup_by_name_on_an_unnamed_client_connects() {
        let (mut s, recorded) = scheme();
        let srv = listen(&mut s, "srv");
        let unnamed = done(s.open("", O_CREAT | O_RDWR, 0, 0));
        let loose_client = done(s.dup(unnamed, b"connect"));
        take(&recorded);
        let client = done(s.dup(loose_client, b"/srv"));
        assert_eq!(take(&recorded), [(srv, EVENT_READ | EVENT_WRITE)]);
        let server = done(s.dup(srv, b"listen"));
        done(s.write(server, b"ok"));
        assert_eq!(read_string(&mut s, client, 4), "ok");
    }

    #[test]
    fn dup_by_name_is_ebadf_for_named_streams_bad_names_and_non_sockets() {
        let (mut s, _) = scheme();
        let (_, _, server) = pair(&mut s, "srv");
        assert_eq!(errno(s.dup(server, b"other")), EBADF, "accepted streams have a path");
        let unnamed = done(s.open("", O_CREAT | O_RDWR, 0, 0));
        assert_eq!(errno(s.dup(unnamed, b"\xff\xfe")), EBADF, "invalid UTF-8");
        assert_eq!(errno(s.dup(unnamed, b"")), EBADF);
        let root = done(s.open("", O_DIRECTORY | O_RDONLY, 0, 0));
        assert_eq!(errno(s.dup(root, b"srv")), EBADF);
        let stat = done(s.open("srv", O_STAT, 0, 0));
        assert_eq!(errno(s.dup(stat, b"srv")), EBADF);
        assert_eq!(errno(s.dup(99, b"srv")), EBADF);
    }

    #[test]
    fn data_flows_both_ways_and_read_drains_in_pieces() {
        let (mut s, _) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        assert_eq!(done(s.write(client, b"hello ")), 6);
        assert_eq!(done(s.write(client, b"world")), 5);
        assert_eq!(stat_of(&mut s, server).st_size, 11);
        assert_eq!(read_string(&mut s, server, 3), "hel");
        assert_eq!(read_string(&mut s, server, 100), "lo world");
        done(s.write(server, b"back"));
        assert_eq!(read_string(&mut s, client, 100), "back");
    }

    #[test]
    fn interleaved_writes_and_reads_of_odd_sizes_keep_every_byte_in_order() {
        let (mut s, _) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        let stream: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let (mut written, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 7_001];
        for round in 1.. {
            let chunk = (round * 4_099) % 9_973 + 1;
            let end = (written + chunk).min(stream.len());
            assert_eq!(done(s.write(client, &stream[written..end])), end - written);
            written = end;
            let want = (round * 2_711) % buf.len() + 1;
            let count = done(s.read(server, &mut buf[..want]));
            got.extend_from_slice(&buf[..count]);
            if written == stream.len() && got.len() == stream.len() {
                break;
            }
        }
        assert!(got == stream, "the stream came out reordered or with bytes lost");
    }

    #[test]
    fn write_posts_read_only_when_the_peer_buffer_was_empty() {
        let (mut s, recorded) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        take(&recorded);
        done(s.write(client, b"a"));
        done(s.write(client, b"b"));
        done(s.write(client, b""));
        assert_eq!(take(&recorded), [(server, EVENT_READ)]);
        assert_eq!(readiness(&mut s, server), EVENT_READ | EVENT_WRITE);
        read_string(&mut s, server, 10);
        assert_eq!(readiness(&mut s, server), EVENT_WRITE);
        done(s.write(client, b"c"));
        assert_eq!(take(&recorded), [(server, EVENT_READ)]);
    }

    #[test]
    fn write_before_accept_parks_or_is_eagain() {
        let (mut s, _) = scheme();
        listen(&mut s, "srv");
        let client = connect(&mut s, "srv");
        assert_eq!(s.write(client, b"early"), Ok(None));
        assert_eq!(s.fcntl(client, F_SETFL, O_RDWR | O_NONBLOCK), Ok(Some(0)));
        assert_eq!(errno(s.write(client, b"early")), EAGAIN);
        assert_eq!(EAGAIN, 11);
    }

    #[test]
    fn read_with_nothing_buffered_parks_or_is_eagain() {
        let (mut s, _) = scheme();
        let (_, client, _) = pair(&mut s, "srv");
        assert_eq!(s.read(client, &mut [0u8; 8]), Ok(None));
        s.fcntl(client, F_SETFL, O_NONBLOCK).unwrap();
        assert_eq!(errno(s.read(client, &mut [0u8; 8])), EAGAIN);
        s.fcntl(client, F_SETFL, 0).unwrap();
        assert_eq!(s.read(client, &mut [0u8; 8]), Ok(None));
    }

    #[test]
    fn peer_close_delivers_buffered_data_then_eof_and_epipe() {
        let (mut s, recorded) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        done(s.write(server, b"last words"));
        take(&recorded);
        assert_eq!(s.close(server), Ok(Some(0)));
        assert!(take(&recorded).is_empty(), "already readable: no event");
        assert_eq!(readiness(&mut s, client), EVENT_READ);
        assert_eq!(read_string(&mut s, client, 100), "last words");
        assert_eq!(s.read(client, &mut [0u8; 8]), Ok(Some(0)));
        assert_eq!(errno(s.write(client, b"x")), EPIPE);
    }

    #[test]
    fn peer_close_with_empty_buffer_posts_read_for_eof() {
        let (mut s, recorded) = scheme();
        let (_, client, server) = pair(&mut s, "srv");
        take(&recorded);
        s.close(client).unwrap();
        assert_eq!(take(&recorded), [(server, EVENT_READ)]);
        assert_eq!(readiness(&mut s, server), EVENT_READ);
        assert_eq!(s.read(server, &mut [0u8; 8]), Ok(Some(0)));
    }

    #[test]
    fn closing_a_listener_frees_its_name_and_leaves_waiting_clients_waiting() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "srv");
        let client = connect(&mut s, "srv");
        take(&recorded);
        assert_eq!(s.close(listener), Ok(Some(0)));
        assert!(take(&recorded).is_empty());
        assert_eq!(errno(s.open("srv", O_RDWR, 0, 0)), ENOENT);
        assert_eq!(s.write(client, b"x"), Ok(None));
        let again = listen(&mut s, "srv");
        assert_eq!(s.dup(again, b"listen"), Ok(None), "old clients are not moved over");
    }

    #[test]
    fn listeners_do_not_read_or_write() {
        let (mut s, _) = scheme();
        let listener = listen(&mut s, "srv");
        assert_eq!(errno(s.read(listener, &mut [0u8; 4])), EBADF);
        assert_eq!(errno(s.write(listener, b"x")), EBADF);
    }

    #[test]
    fn fcntl_gets_and_sets_flags_and_rejects_other_commands() {
        let (mut s, _) = scheme();
        let listener = done(s.open("srv", O_CREAT | O_RDWR, 0, 0));
        assert_eq!(s.fcntl(listener, F_GETFL, 0), Ok(Some(O_CREAT | O_RDWR)));
        assert_eq!(s.fcntl(listener, F_SETFL, O_NONBLOCK), Ok(Some(0)));
        assert_eq!(s.fcntl(listener, F_GETFL, 0), Ok(Some(O_NONBLOCK)));
        assert_eq!(errno(s.dup(listener, b"listen")), EWOULDBLOCK);
        assert_eq!(errno(s.fcntl(listener, 1, 0)), EINVAL);
    }

    #[test]
    fn fsync_succeeds() {
        let (mut s, _) = scheme();
        let (listener, client, _) = pair(&mut s, "srv");
        assert_eq!(s.fsync(listener), Ok(Some(0)));
        assert_eq!(s.fsync(client), Ok(Some(0)));
    }

    #[test]
    fn fpath_only_for_accepted_named_streams_and_the_root() {
        let (mut s, _) = scheme();
        let (listener, client, server) = pair(&mut s, "srv");
        assert_eq!(fpath_of(&mut s, server).unwrap(), "chan:srv");
        assert_eq!(errno(fpath_of(&mut s, listener)), EBADF);
        assert_eq!(errno(fpath_of(&mut s, client)), EBADF);
        let root = done(s.open("", O_DIRECTORY, 0, 0));
        assert_eq!(fpath_of(&mut s, root).unwrap(), "chan:");
        let mut short = [0u8; 3];
        assert_eq!(s.fpath(server, &mut short), Ok(Some(3)));
        assert_eq!(&short, b"cha");
    }

    #[test]
    fn fstat_reports_sockets() {
        let (mut s, _) = scheme();
        let (listener, client, server) = pair(&mut s, "srv");
        done(s.write(server, b"1234"));
        assert_eq!(stat_of(&mut s, client).st_mode, MODE_SOCK | 0o666);
        assert_eq!(stat_of(&mut s, client).st_size, 4);
        assert_eq!(stat_of(&mut s, server).st_size, 0);
        assert_eq!(stat_of(&mut s, listener).st_mode, 0xC000 | 0o666);
    }

    #[test]
    fn stat_open_of_a_listener_name_does_not_connect() {
        let (mut s, recorded) = scheme();
        let listener = listen(&mut s, "srv");
        let stat = done(s.open("/srv", O_STAT, 0, 0));
        assert!(take(&recorded).is_empty());
        assert_eq!(readiness(&mut s, listener), EventFlags::empty());
        assert_eq!(s.dup(listener, b"listen"), Ok(None));
        assert_eq!(stat_of(&mut s, stat).st_mode, MODE_SOCK | 0o666);
        assert_eq!(fpath_of(&mut s, stat).unwrap(), "chan:srv");
        assert_eq!(readiness(&mut s, stat), EventFlags::empty());
        assert_eq!(errno(s.read(stat, &mut [0u8; 4])), EBADF);
        assert_eq!(errno(s.write(stat, b"x")), EBADF);
        assert_eq!(s.close(stat), Ok(Some(0)));
    }

    #[test]
    fn stat_open_of_a_missing_name_is_enoent() {
        let (mut s, _) = scheme();
        assert_eq!(errno(s.open("nobody", O_STAT, 0, 0)), ENOENT);
        let created = done(s.open("new", O_STAT | O_CREAT, 0, 0));
        assert_eq!(readiness(&mut s, created), EventFlags::empty());
        assert!(s.listeners.contains_key("new"), "O_CREAT still creates");
    }

    #[test]
    fn directory_open_of_a_listener_name_is_enotdir() {
        let (mut s, _) = scheme();
        listen(&mut s, "srv");
        assert_eq!(errno(s.open("srv", O_DIRECTORY | O_RDONLY, 0, 0)), ENOTDIR);
        assert_eq!(errno(s.open("nobody", O_DIRECTORY | O_RDONLY, 0, 0)), ENOENT);
    }

    #[test]
    fn root_lists_live_listener_names_and_reads_continue_to_eof() {
        let (mut s, _) = scheme();
        listen(&mut s, "beta");
        let gone = listen(&mut s, "gamma");
        listen(&mut s, "alpha");
        done(s.open("", O_CREAT | O_RDWR, 0, 0));
        s.close(gone).unwrap();
        for (path, flags) in [("", O_DIRECTORY), ("/", O_STAT), ("", O_RDONLY)] {
            let root = done(s.open(path, flags, 0, 0));
            assert_eq!(read_string(&mut s, root, 4), "alph");
            assert_eq!(read_string(&mut s, root, 100), "a\nbeta\n");
            assert_eq!(read_string(&mut s, root, 100), "");
        }
    }

    #[test]
    fn root_is_a_seekable_directory_that_never_connects() {
        let (mut s, recorded) = scheme();
        listen(&mut s, "srv");
        let root = done(s.open("", O_DIRECTORY | O_RDONLY, 0, 0));
        assert!(take(&recorded).is_empty());
        assert_eq!(stat_of(&mut s, root).st_mode, MODE_DIR | 0o755);
        assert_eq!(readiness(&mut s, root), EventFlags::empty());
        assert_eq!(read_string(&mut s, root, 100), "srv\n");
        assert_eq!(s.seek(root, 0, SEEK_SET), Ok(Some(0)));
        assert_eq!(read_string(&mut s, root, 100), "srv\n");
        assert_eq!(errno(s.write(root, b"x")), EBADF);
        assert_eq!(s.close(root), Ok(Some(0)));
    }

    #[test]
    fn streams_are_not_seekable() {
        let (mut s, _) = scheme();
        let (listener, client, _) = pair(&mut s, "srv");
        assert_eq!(errno(s.seek(client, 0, SEEK_SET)), ESPIPE);
        assert_eq!(errno(s.seek(listener, 0, SEEK_SET)), ESPIPE);
    }

    #[test]
    fn unknown_ids_are_ebadf() {
        let (mut s, _) = scheme();
        let id = listen(&mut s, "srv");
        s.close(id).unwrap();
        assert_eq!(errno(s.read(id, &mut [0u8; 4])), EBADF);
        assert_eq!(errno(s.write(id, b"x")), EBADF);
        assert_eq!(errno(s.dup(id, b"connect")), EBADF);
        assert_eq!(errno(s.fcntl(id, F_GETFL, 0)), EBADF);
        assert_eq!(errno(s.fevent(id, EVENT_READ)), EBADF);
        assert_eq!(errno(s.fpath(id, &mut [0u8; 8])), EBADF);
        assert_eq!(errno(s.fstat(id, &mut Stat::default())), EBADF);
        assert_eq!(errno(s.fsync(id)), EBADF);
        assert_eq!(errno(s.seek(id, 0, SEEK_SET)), EBADF);
        assert_eq!(errno(s.close(id)), EBADF);
    }
}
