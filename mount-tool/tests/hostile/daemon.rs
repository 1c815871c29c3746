//! The hostile daemon: a tiny well-behaved filesystem on stdin/stdout (root directory with
//! `good`, a regular file; `bad`, a stream; `hold`, a stream whose reads wait until cancelled;
//! `tick`, a stream that becomes readable, with an event, halfway through a flood) that misbehaves in one chosen way ([`Mode`]), almost always only for calls on `bad`, so the
//! tests can check that everything else keeps working. It speaks the wire with
//! `scheme_protocol`'s own codec and handshake; the misbehaviour is written raw where the codec
//! would refuse it. Its stderr lines start with `hostile-daemon:`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use scheme_bridge::region::Region;
use scheme_bridge::ring;
use scheme_protocol::{
    handshake, hello, Call, Errno, Fd, Frame, FrameReader, FrameWriter, Reply, Response, Stat, Tag,
    FEATURE_COMPOUND, FEATURE_PATH_STEPS, FEATURE_REGION, FEATURE_RING, MAX_FRAME,
};

/// `good`'s content (a regular file of this size).
pub const GOOD: &[u8] = b"good data\n";
/// What one open of `bad` reads (then end of file) when nothing goes wrong.
pub const BAD: &[u8] = b"bad data\n";
/// What `tick` reads once it is readable.
pub const TICK: &[u8] = b"tick\n";
/// What a duplicate reply to a read of `bad` carries: must never reach a reader.
pub const DUPLICATE: &[u8] = b"DUPLICATE\n";
/// Events sent by the `flood` mode: `HOSTILE_FLOOD_EVENTS`, by default a million.
pub fn flood_events() -> usize {
    let events = std::env::var("HOSTILE_FLOOD_EVENTS").ok().and_then(|n| n.parse().ok());
    events.unwrap_or(1_000_000)
}
/// Events for made-up handles sent by the `ghost-events` mode right after the handshake.
pub const GHOST_EVENTS: u64 = 10_000;

const MODE_DIR: u16 = 0x4000;
const MODE_FILE: u16 = 0x8000;
const MODE_CHR: u16 = 0x2000;
const O_CREAT: u64 = 0x0200_0000;
const EVENT_READ: u64 = 1;

/// How the daemon misbehaves (`HOSTILE_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not at all: the baseline.
    Honest,
    /// Reads of `bad` are answered with a tag nobody used (and never with the right one).
    WrongTag,
    /// Every call on `bad` is answered twice, the second time with different content.
    Duplicate,
    /// Reads of `bad` answer more bytes than asked; writes to it count more than was written.
    Oversize,
    /// A read of `bad` is answered with the length prefix 0xFFFF_FFFF, then the daemon idles.
    HugeFrame,
    /// A read of `bad` is answered correctly, directly followed by bytes that are no frame.
    Garbage,
    /// Events for handles that were never opened, at start and before every reply.
    GhostEvents,
    /// Reads of `bad` are never answered, and cancels for them are ignored.
    Stall,
    /// Opening `bad` starts a flood of [`flood_events`] events.
    Flood,
    /// Announces the compound calls, runs them honestly, except that a `StatPath` of `bad` is
    /// answered with a value, every `OpenStat` (a create) with a stat and no handle, and an
    /// `OnPath` of `hold` (a chmod: `bad` fails at its lookup already) with data.
    Compound,
    /// Maps the payload region, agrees to the frame rings, then writes a `head` no ring can
    /// have into the ring it writes (replies), and reads nothing.
    RingHead,
    /// The same with the `tail` of the ring it reads (calls): the caller side's writes fail.
    RingTail,
}

impl Mode {
    /// The mode named `name` (the case names of the runner).
    pub fn parse(name: &str) -> Option<Mode> {
        Some(match name {
            "honest" => Mode::Honest,
            "wrong-tag" => Mode::WrongTag,
            "duplicate" => Mode::Duplicate,
            "oversize" => Mode::Oversize,
            "huge-frame" => Mode::HugeFrame,
            "garbage" => Mode::Garbage,
            "ghost-events" => Mode::GhostEvents,
            "stall" => Mode::Stall,
            "flood" => Mode::Flood,
            "compound" => Mode::Compound,
            "ring-head" => Mode::RingHead,
            "ring-tail" => Mode::RingTail,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Good,
    Bad,
    Hold,
    Tick,
}

type Out = Arc<Mutex<FrameWriter<File>>>;

struct Daemon {
    mode: Mode,
    out: Out,
    open: HashMap<u64, (Node, u64)>,
    next_fd: u64,
    /// Reads of `hold` waiting for a cancel.
    parked: HashSet<Tag>,
    /// Set by the flood halfway through: `tick` is readable from then on.
    tick_ready: Arc<AtomicBool>,
}

fn say(what: &str) {
    eprintln!("hostile-daemon: {what}");
}

/// Serves `mode` on stdin/stdout until end of file; returns the exit code.
pub fn run(mode: Mode) -> i32 {
    let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned().expect("stdout"));
    let mut reader = FrameReader::new(std::io::stdin().lock(), MAX_FRAME);
    let mut writer = FrameWriter::new(stdout, MAX_FRAME);
    let mut ours = hello("hostile", MAX_FRAME);
    if mode == Mode::Compound {
        ours.features |= FEATURE_COMPOUND | FEATURE_PATH_STEPS;
    }
    let region = matches!(mode, Mode::RingHead | Mode::RingTail).then(map_region);
    if let Some(region) = &region {
        ours.features |= FEATURE_REGION | FEATURE_RING;
        say(&format!("mapped the payload region, {} bytes", region.len()));
    }
    if let Err(err) = handshake(&mut reader, &mut writer, &ours) {
        say(&format!("handshake failed: {err}"));
        return 1;
    }
    if let Some(region) = region {
        return scribble_on_rings(&region, mode, reader.get_mut());
    }
    let out = Arc::new(Mutex::new(writer));
    let mut daemon = Daemon {
        mode,
        out,
        open: HashMap::new(),
        next_fd: 10,
        parked: HashSet::new(),
        tick_ready: Arc::default(),
    };
    if mode == Mode::GhostEvents {
        let ghosts: Vec<Frame> =
            (0..GHOST_EVENTS).map(|i| Frame::Event { fd: Fd(1_000_000 + i), flags: 3 }).collect();
        daemon.send(&ghosts);
    }
    loop {
        match reader.read_frame() {
            Ok(Frame::Call { tag, call, .. }) => daemon.call(tag, call),
            Ok(Frame::Cancel { tag }) => {
                if daemon.parked.remove(&tag) {
                    daemon.send(&[Frame::Reply { tag, response: Err(Errno::EINTR) }]);
                }
            }
            Ok(other) => say(&format!("ignoring a {} frame", other.kind())),
            Err(scheme_protocol::Error::Closed) => return 0,
            Err(err) => {
                say(&format!("bad stream from the caller side: {err}"));
                return 1;
            }
        }
    }
}

/// The region the caller side handed over (`SCHEME_BRIDGE_REGION_FD`), mapped.
fn map_region() -> Region {
    let fd: i32 = std::env::var(scheme_bridge::region::ENV_FD)
        .ok()
        .and_then(|fd| fd.parse().ok())
        .expect("a payload region was offered");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .expect("the region opens");
    Region::map(file.into()).expect("the region maps")
}

/// Writes an index no ring can have (`ring-head`: the head of the replies' ring;
/// `ring-tail`: the tail of the calls' ring), then reads its pipe (wake-up bytes) to the end.
fn scribble_on_rings(region: &Region, mode: Mode, stdin: &mut impl std::io::Read) -> i32 {
    let at = match mode {
        Mode::RingHead => ring::Direction::ToCaller.header_at() + ring::HEAD,
        _ => ring::Direction::ToDaemon.header_at() + ring::TAIL,
    };
    let nonsense = (3 * ring::BYTES as u64).to_le_bytes();
    assert!(region.copy_in(at, &nonsense), "the ring header is inside the region");
    say(&format!("wrote index {} at byte {at} of the region", 3 * ring::BYTES));
    let _ = std::io::copy(stdin, &mut std::io::sink());
    0
}

impl Daemon {
    fn send(&self, frames: &[Frame]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = out.write_frames(frames) {
            say(&format!("cannot write: {err}"));
        }
    }

    fn raw(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.get_mut().write_all(bytes);
        let _ = out.get_mut().flush();
    }

    fn node_of(&self, call: &Call) -> Option<Node> {
        match call {
            Call::Open { path, .. }
            | Call::StatPath { path }
            | Call::OpenStat { path, .. }
            | Call::OnPath { path, .. } => node_at(path),
            other => other.fd().and_then(|fd| self.open.get(&fd.0)).map(|(node, _)| *node),
        }
    }

    fn call(&mut self, tag: Tag, call: Call) {
        let node = self.node_of(&call);
        let on_bad = node == Some(Node::Bad);
        let is_read = matches!(call, Call::Read { .. });
        let mut frames = Vec::new();
        if self.mode == Mode::GhostEvents {
            frames.push(Frame::Event { fd: Fd(u64::MAX), flags: u64::MAX });
            frames.push(Frame::Event { fd: Fd(0xdead_beef), flags: EVENT_READ });
        }
        if on_bad && is_read {
            match self.mode {
                Mode::Stall => return say(&format!("stalling tag {} forever", tag.0)),
                Mode::HugeFrame => {
                    say(&format!("answering tag {} with a 0xffffffff length prefix", tag.0));
                    return self.raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
                }
                _ => {}
            }
        }
        let Some(response) = self.answer(tag, &call) else { return };
        let response = match (&call, &response, on_bad, self.mode) {
            (Call::Read { len, .. }, Ok(_), true, Mode::Oversize) => {
                let too_long = (*len as usize).saturating_mul(2).max(*len as usize + 1);
                say(&format!("answering read tag {} of {len} bytes with {too_long}", tag.0));
                Ok(Reply::Data(vec![b'X'; too_long].into()))
            }
            (Call::Write { data, .. }, Ok(_), true, Mode::Oversize) => {
                Ok(Reply::Value(data.len() as u64 + 4096))
            }
            (Call::StatPath { .. }, Ok(_), true, Mode::Compound) => {
                say(&format!("answering stat_path tag {} of bad with a value", tag.0));
                Ok(Reply::Value(3))
            }
            (Call::OnPath { .. }, Ok(_), _, Mode::Compound) if node == Some(Node::Hold) => {
                say(&format!("answering on_path tag {} of hold with data", tag.0));
                Ok(Reply::Data(b"X".to_vec().into()))
            }
            (Call::OpenStat { .. }, _, _, Mode::Compound) => {
                say(&format!("answering open_stat tag {} with a bare stat", tag.0));
                Ok(Reply::Stat(stat_of(Node::Good)))
            }
            _ => response,
        };
        let reply_tag = match self.mode {
            Mode::WrongTag if on_bad && is_read => Tag(tag.0 ^ (1 << 40)),
            _ => tag,
        };
        frames.push(Frame::Reply { tag: reply_tag, response: response.clone() });
        if self.mode == Mode::Duplicate && on_bad {
            frames.push(Frame::Reply { tag, response: duplicate_of(&response) });
        }
        if self.mode == Mode::Garbage && on_bad && is_read {
            let mut bytes = Vec::new();
            for frame in &frames {
                scheme_protocol::codec::encode_frame(frame, MAX_FRAME, &mut bytes).expect("fits");
            }
            // A 7-byte body whose frame variant 0xefbeadde does not exist.
            bytes.extend_from_slice(&[7, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff]);
            say(&format!("answering tag {} and then sending garbage", tag.0));
            return self.raw(&bytes);
        }
        self.send(&frames);
        if self.mode == Mode::Flood && on_bad && matches!(call, Call::Open { .. }) {
            if let Ok(Reply::Value(fd)) = response {
                self.flood(Fd(fd));
            }
        }
    }

    /// Sends [`flood_events`] events for `fd` from another thread, in batches encoded once, and
    /// lets go of the pipe between batches so that replies still get their turn. Halfway, `tick`
    /// becomes readable and one event says so for each open `tick` handle.
    fn flood(&self, fd: Fd) {
        let out = Arc::clone(&self.out);
        let ticks: Vec<Frame> = (self.open.iter())
            .filter(|(_, (node, _))| *node == Node::Tick)
            .map(|(&fd, _)| Frame::Event { fd: Fd(fd), flags: EVENT_READ })
            .collect();
        let tick_ready = Arc::clone(&self.tick_ready);
        std::thread::spawn(move || {
            const BATCH: usize = 4096;
            let mut batch = Vec::new();
            for _ in 0..BATCH {
                let event = Frame::Event { fd, flags: EVENT_READ };
                scheme_protocol::codec::encode_frame(&event, MAX_FRAME, &mut batch).expect("fits");
            }
            let frame_len = batch.len() / BATCH;
            let (mut sent, total) = (0, flood_events());
            while sent < total {
                let n = BATCH.min(total - sent);
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                if out.get_mut().write_all(&batch[..n * frame_len]).is_err() {
                    return say(&format!("flood stopped after {sent} events"));
                }
                if sent < total / 2 && sent + n >= total / 2 {
                    tick_ready.store(true, Ordering::SeqCst);
                    let _ = out.write_frames(&ticks);
                    say(&format!("tick readable; {} events for it sent", ticks.len()));
                }
                drop(out);
                sent += n;
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            say(&format!("flood of {sent} events sent"));
        });
    }

    /// The honest answer; `None` for a parked read of `hold`.
    fn answer(&mut self, tag: Tag, call: &Call) -> Option<Response> {
        let handle = call.fd().map(|fd| self.open.get(&fd.0).copied().ok_or(Errno::EBADF));
        Some(match (call, handle) {
            (Call::Open { path, flags }, _) => match node_at(path) {
                Some(node) => {
                    self.next_fd += 1;
                    self.open.insert(self.next_fd, (node, 0));
                    Ok(Reply::Value(self.next_fd))
                }
                None if flags & O_CREAT != 0 => Err(Errno::EACCES),
                None => Err(Errno::ENOENT),
            },
            (Call::StatPath { path }, _) => {
                node_at(path).map(stat_of).map(Reply::Stat).ok_or(Errno::ENOENT)
            }
            (Call::OpenStat { path, flags }, _) => match node_at(path) {
                Some(node) => {
                    self.next_fd += 1;
                    self.open.insert(self.next_fd, (node, 0));
                    Ok(Reply::Opened { fd: Fd(self.next_fd), stat: stat_of(node) })
                }
                None if flags & O_CREAT != 0 => Err(Errno::EACCES),
                None => Err(Errno::ENOENT),
            },
            (Call::OnPath { path, flags, steps }, _) => {
                let open = Call::Open { path: path.clone(), flags: *flags };
                let opened = self.answer(tag, &open)?;
                let Ok(Reply::Value(fd)) = opened else { return Some(opened) };
                let mut last = Err(Errno::EINVAL);
                for step in steps {
                    last = self.answer(tag, &step.clone().on(Fd(fd)))?;
                    if last.is_err() {
                        break;
                    }
                }
                self.answer(tag, &Call::Close { fd: Fd(fd) });
                last
            }
            (_, Some(Err(errno))) => Err(errno),
            (Call::Fstat { .. }, Some(Ok((node, _)))) => Ok(Reply::Stat(stat_of(node))),
            (Call::Read { fd, len }, Some(Ok((node, pos)))) => {
                let content = match node {
                    Node::Good => GOOD,
                    Node::Bad => BAD,
                    Node::Tick if self.tick_ready.load(Ordering::SeqCst) => TICK,
                    Node::Tick => return Some(Err(Errno::EWOULDBLOCK)),
                    Node::Root => return Some(Err(Errno::EISDIR)),
                    Node::Hold => {
                        self.parked.insert(tag);
                        return None;
                    }
                };
                let start = (pos as usize).min(content.len());
                let end = (start + *len as usize).min(content.len());
                self.open.insert(fd.0, (node, end as u64));
                Ok(Reply::Data(content[start..end].into()))
            }
            (Call::Write { data, .. }, Some(Ok(_))) => Ok(Reply::Value(data.len() as u64)),
            (Call::Lseek { fd, offset, .. }, Some(Ok((node, _)))) => {
                self.open.insert(fd.0, (node, (*offset).max(0) as u64));
                Ok(Reply::Value((*offset).max(0) as u64))
            }
            (Call::Getdents { len, opaque, .. }, Some(Ok((Node::Root, _)))) => {
                Ok(Reply::Data(dirents(*opaque, *len as usize).into()))
            }
            (Call::Close { fd }, Some(Ok(_))) => {
                self.open.remove(&fd.0);
                Ok(Reply::Value(0))
            }
            (Call::Fevent { .. }, Some(Ok((Node::Tick, _)))) => {
                Ok(Reply::Value(if self.tick_ready.load(Ordering::SeqCst) {
                    EVENT_READ
                } else {
                    0
                }))
            }
            (
                Call::Fevent { .. } | Call::Fcntl { .. } | Call::Fsync { .. } | Call::Fchmod { .. },
                Some(Ok(_)),
            ) => Ok(Reply::Value(0)),
            _ => Err(Errno::ENOSYS),
        })
    }
}

fn node_at(path: &str) -> Option<Node> {
    Some(match path.trim_matches('/') {
        "" => Node::Root,
        "good" => Node::Good,
        "bad" => Node::Bad,
        "hold" => Node::Hold,
        "tick" => Node::Tick,
        _ => return None,
    })
}

fn stat_of(node: Node) -> Stat {
    let (ino, mode, size) = match node {
        Node::Root => (1, MODE_DIR | 0o755, 0),
        Node::Good => (2, MODE_FILE | 0o644, GOOD.len() as u64),
        Node::Bad => (3, MODE_CHR | 0o666, 0),
        Node::Hold => (4, MODE_CHR | 0o666, 0),
        Node::Tick => (5, MODE_CHR | 0o666, 0),
    };
    Stat { st_ino: ino, st_mode: mode, st_nlink: 1, st_size: size, ..Stat::default() }
}

/// A second answer that differs from the first.
fn duplicate_of(first: &Response) -> Response {
    match first {
        Ok(Reply::Data(_)) => Ok(Reply::Data(DUPLICATE.into())),
        Ok(Reply::Value(value)) => Ok(Reply::Value(value + 1000)),
        Ok(Reply::Stat(stat)) => Ok(Reply::Stat(Stat { st_ino: 99, st_size: 12345, ..*stat })),
        _ => Err(Errno::EIO),
    }
}

/// Getdents records (redox_syscall 0.5 layout) for the root, from cursor `opaque`, in `len`.
fn dirents(opaque: u64, len: usize) -> Vec<u8> {
    let entries: [(&str, u64, u8); 4] =
        [("good", 2, 8), ("bad", 3, 2), ("hold", 4, 2), ("tick", 5, 2)];
    let mut out = Vec::new();
    for (index, (name, inode, kind)) in entries.iter().enumerate().skip(opaque as usize) {
        let record_len = 19 + name.len() + 1;
        if out.len() + record_len > len {
            break;
        }
        out.extend(inode.to_le_bytes());
        out.extend((index as u64 + 1).to_le_bytes());
        out.extend((record_len as u16).to_le_bytes());
        out.push(*kind);
        out.extend(name.as_bytes());
        out.push(0);
    }
    out
}
