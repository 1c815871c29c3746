//! The built-in daemons by name, so one program can serve any of them (the daemon binaries,
//! and `schememount`, which re-executes itself in daemon mode to find them without setup).

use std::io;

use scheme_bridge::{serve_block_mut, serve_fs, serve_scheme_mut, SchemeSocket};

use crate::chan::ChanScheme;
use crate::ramfs::RamFs;
use crate::rand::RandScheme;
use crate::time::TimeScheme;
use crate::zero::{Kind, ZeroScheme};

/// The names of the built-in schemes.
pub const BUILTIN: [&str; 6] = ["chan", "time", "null", "zero", "rand", "ramfs"];

/// Options of the built-in schemes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// ramfs: the most bytes of file data it holds (ENOSPC beyond).
    pub max_bytes: Option<u64>,
}

/// Serves the built-in scheme `name` on `socket` until the caller side closes.
pub fn serve(name: &str, socket: &mut SchemeSocket) -> io::Result<()> {
    serve_with(name, Options::default(), socket)
}

/// Like [`serve`], with options.
pub fn serve_with(name: &str, options: Options, socket: &mut SchemeSocket) -> io::Result<()> {
    let poster = socket.event_poster();
    match name {
        "chan" => {
            let mut scheme = ChanScheme::new(Box::new(move |id, flags| poster.post(id, flags)));
            serve_block_mut(socket, &mut scheme)
        }
        "time" => {
            let mut scheme = TimeScheme::new(Box::new(move |id, flags| poster.post(id, flags)))?;
            serve_scheme_mut(socket, &mut scheme)
        }
        "null" => serve_scheme_mut(socket, &mut ZeroScheme::new(Kind::Null)),
        "zero" => serve_scheme_mut(socket, &mut ZeroScheme::new(Kind::Zero)),
        "rand" => serve_scheme_mut(socket, &mut RandScheme::new()?),
        "ramfs" => {
            let max_bytes = options.max_bytes.or_else(half_of_memory);
            serve_fs(socket, &mut RamFs::new(max_bytes))
        }
        other => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no built-in scheme {other:?} (built in: {})", BUILTIN.join(", ")),
        )),
    }
}

/// Like tmpfs, a memory filesystem without an explicit size may hold half of the machine's
/// memory, so `truncate -s 1T` is ENOSPC rather than the out-of-memory killer.
fn half_of_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024 / 2)
}
