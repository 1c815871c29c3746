//! Registering a scheme with the Redox kernel: the only lines that exist only on Redox. The
//! socket is the file `:NAME` opened with `O_CREAT` (legacy `Packet`s), or with `O_CREAT |
//! O_FSYNC | O_EXLOCK` for v2 (`O_FSYNC` selects Sqe/Cqe, `O_EXLOCK` one-way `CloseMsg`), as
//! kernels of the redox_syscall 0.5.18 era take it. On other systems [`register`] says why not.

use std::fs::File;
use std::io;

use super::{legacy, v2, CallerMemory};
use crate::Client;

/// The protocol the kernel speaks on a scheme socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 56-byte `Packet`s both ways.
    Legacy,
    /// 64-byte `Sqe`s in, 16-byte `Cqe`s out.
    V2,
}

/// A registered scheme's socket: the kernel delivers the scheme's calls on it.
#[derive(Debug)]
pub struct KernelSocket {
    file: File,
    protocol: Protocol,
    memory: CallerMemory,
}

impl KernelSocket {
    /// Forwards every call the kernel delivers to the daemon behind `client` until the scheme
    /// is unmounted (see [`legacy::serve`] and [`v2::serve`]).
    pub fn serve(self, client: Client) -> io::Result<()> {
        let writer = self.file.try_clone()?;
        match self.protocol {
            Protocol::Legacy => legacy::serve(client, self.memory, self.file, writer),
            Protocol::V2 => v2::serve(client, self.memory, self.file, writer),
        }
    }
}

/// Registers scheme `name` with the kernel (root only). After this, opening `name:...` (or
/// `/scheme/name/...`) anywhere on the system reaches [`KernelSocket::serve`].
#[cfg(target_os = "redox")]
pub fn register(name: &str, protocol: Protocol) -> io::Result<KernelSocket> {
    use std::os::unix::fs::OpenOptionsExt;
    use syscall::flag::{O_EXLOCK, O_FSYNC};

    let flags = match protocol {
        Protocol::Legacy => 0,
        Protocol::V2 => O_FSYNC | O_EXLOCK,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(flags as i32)
        .open(format!(":{name}"))
        .map_err(|err| explain(name, err))?;
    Ok(KernelSocket { file, protocol, memory: CallerMemory::from_redox_kernel() })
}

/// Kernels since 2026-01 moved namespaces to a userspace manager and no longer take `:NAME`.
#[cfg(target_os = "redox")]
fn explain(name: &str, err: io::Error) -> io::Error {
    let hint = match err.kind() {
        io::ErrorKind::PermissionDenied => "registering a scheme needs root",
        io::ErrorKind::NotFound => {
            "this kernel no longer registers `:NAME` (namespaces moved to userspace, where a \
             scheme is created from /scheme/namespace/scheme-creation-cap and published with \
             libredox's register_scheme_to_ns, which redox_syscall 0.5.18 does not offer)"
        }
        _ => "the kernel refused the registration",
    };
    io::Error::new(err.kind(), format!("cannot register scheme {name:?}: {err}: {hint}"))
}

/// Registering a scheme needs the Redox kernel: always an `Unsupported` error here.
#[cfg(not(target_os = "redox"))]
pub fn register(name: &str, _protocol: Protocol) -> io::Result<KernelSocket> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot register scheme {name:?}: registering a scheme needs the Redox kernel; \
             on Linux, mount the daemon with schememount instead"
        ),
    ))
}
