//! `schemectl`: scheme calls that FUSE has no system call for, on files of a schememount.
//!
//! `schemectl dup --fd 3 listen` dups the scheme handle behind fd 3 with the buffer "listen"
//! (for chan: waits for a client and accepts it) and prints the path that opens the new handle,
//! `<mount>/.dup/<token>` (single use, same user, valid for 30 seconds). A shell server:
//!
//! ```sh
//! exec 3>/mnt/chan/hello                      # O_CREAT: a chan listener named hello
//! while stream=$(schemectl dup --fd 3 listen); do
//!     echo "Hello World!" > "$stream"
//! done
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use scheme_bridge::fuse::dup::{DUP_DIR, DUP_IOCTL, IOCTL_BUF};
use scheme_bridge::fuse::kernel::is_fuse_mountpoint;

/// Scheme calls with no Linux system call, on files of a schememount.
#[derive(Debug, Parser)]
#[command(name = "schemectl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// dup(handle, BUFFER): print the path that opens the new handle.
    Dup {
        /// The open file descriptor (inherited from the shell) whose handle to dup.
        #[arg(long, conflicts_with = "file")]
        fd: Option<i32>,
        /// A file of the mount to open (read-only) and dup. Note that opening a chan name
        /// connects to it; use --fd for a listener.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The dup buffer, e.g. "listen" or "connect".
        buffer: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("schemectl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Command::Dup { fd, file, buffer } = cli.command;
    if buffer.is_empty() || buffer.len() >= IOCTL_BUF {
        bail!("the dup buffer must be 1 to {} bytes", IOCTL_BUF - 1);
    }
    let (opened, path) = match (fd, file) {
        (Some(fd), None) => (
            None,
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .with_context(|| format!("fd {fd} is not open"))?,
        ),
        (None, Some(path)) => (
            Some(File::open(&path).with_context(|| format!("cannot open {}", path.display()))?),
            path,
        ),
        _ => bail!("give --fd N or --file PATH"),
    };
    let borrowed = match (&opened, fd) {
        (Some(file), _) => file.as_fd(),
        // SAFETY: the fd was checked to be open just above and stays open for this process's life.
        (None, Some(fd)) => unsafe { BorrowedFd::borrow_raw(fd) },
        (None, None) => unreachable!("one of fd and file is set"),
    };
    let token = dup(borrowed, &buffer)?;
    let root = mount_root(&std::fs::canonicalize(&path).unwrap_or(path))?;
    println!("{}", root.join(DUP_DIR).join(token).display());
    Ok(())
}

/// Sends the dup ioctl; returns the token.
fn dup(fd: BorrowedFd<'_>, buffer: &str) -> Result<String> {
    let mut buf = [0u8; IOCTL_BUF];
    buf[..buffer.len()].copy_from_slice(buffer.as_bytes());
    // SAFETY: DUP_IOCTL is _IOWR('S', 1, [u8; 256]): the kernel reads and writes exactly the
    // 256 bytes of `buf`, which lives for the whole call.
    let ioctl = unsafe { rustix::ioctl::Updater::<DUP_IOCTL, [u8; IOCTL_BUF]>::new(&mut buf) };
    // SAFETY: as above; `ioctl` borrows `buf` mutably for the duration of the call.
    unsafe { rustix::ioctl::ioctl(fd, ioctl) }
        .context("dup failed (is this a file of a schememount?)")?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The schememount mount point that contains `path`.
fn mount_root(path: &Path) -> Result<PathBuf> {
    path.ancestors()
        .find(|dir| is_fuse_mountpoint(dir))
        .map(Path::to_path_buf)
        .with_context(|| format!("{} is not inside a FUSE mount", path.display()))
}
