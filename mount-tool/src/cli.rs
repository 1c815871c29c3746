//! The command line, in one place (clap derive; the doc comments are the `--help` text).

use std::path::PathBuf;

use clap::Parser;

/// Mount Redox scheme daemons as Linux filesystems.
///
/// Starts a built-in scheme daemon (chan, time, null, zero, rand) or any program that speaks
/// the scheme-bridge wire protocol on stdin/stdout, and mounts it at MOUNTPOINT. Returns once
/// the mount is ready; the exit status says whether mounting worked.
///
/// Examples:
///   schememount chan /mnt/chan                      # ipcd's chan scheme
///   schememount -o max_bytes=64M ramfs /mnt/ram     # a memory filesystem
///   schememount --namespace chan time rand /scheme  # /scheme/chan, /scheme/time, /scheme/rand
///   schememount --daemon 'ssh host chand' chan /mnt/remote
///   schememount -u /mnt/chan                        # unmount
#[derive(Debug, Parser)]
#[command(name = "schememount", version, verbatim_doc_comment)]
pub(crate) struct Cli {
    /// Scheme names, then the mount point. Several names need --namespace.
    #[arg(value_name = "SCHEME... MOUNTPOINT", required_unless_present = "serve", num_args = 1..)]
    pub(crate) args: Vec<String>,

    /// Run this command (through `sh -c`) as the daemon instead of a built-in one; it must speak
    /// the wire protocol on stdin/stdout. A SCHEME given with it is the name it must serve.
    #[arg(long, value_name = "COMMAND")]
    pub(crate) daemon: Option<String>,

    /// Serve the scheme inside schememount itself (ramfs only): fuser calls the scheme's
    /// handle directly, with no daemon process and no wire. For comparing, or convenience.
    #[arg(long)]
    pub(crate) in_process: bool,

    /// Mount several schemes under one root that lists them, like Redox's /scheme.
    #[arg(long)]
    pub(crate) namespace: bool,

    /// Stay in the foreground.
    #[arg(short = 'f', long)]
    pub(crate) foreground: bool,

    /// Trace every scheme call to stderr and print a per-call summary at exit (implies -f).
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,

    /// Mount options, comma separated: ro, allow_other, default_permissions, uid=N, gid=N,
    /// max_write=BYTES, read_ahead_kb=KIB (the kernel's readahead for the mount; as large as
    /// max_write by default; needs root, others keep the kernel's 128), max_bytes=BYTES (ramfs
    /// size), entry_timeout=SECONDS and
    /// attr_timeout=SECONDS (how long the kernel caches names and attributes; 0 by default,
    /// since scheme names come and go; 1 for ramfs; while attributes are cached, file data is
    /// too, across opens, until a refresh shows the file changed), noauto_unmount, intr and nointr (the
    /// interrupt relay that lets Ctrl-C cancel a blocked call: on by default, off by default
    /// for null, zero, rand and ramfs, whose calls never block), max_requests=N (daemon calls
    /// in flight per mount and per daemon, EAGAIN beyond; 32768 and 16384), max_handles=N (open
    /// files per uid, EMFILE beyond; 65536), call_timeout=SECONDS (how long a call that should
    /// answer at once, such as a stat, may take before it fails with EIO; 30, 0 = never),
    /// busy_poll=MICROSECONDS (how long the mount and its daemon watch their wire before
    /// sleeping, which saves a wake-up per call at the price of that much CPU; 50, 0 = off; a
    /// pipe is not watched when the processes may only use one CPU, the frame rings are; on one
    /// CPU, or with busy_poll=0, ramfs, null, zero and rand answers are read by the FUSE thread
    /// itself), noregion (large reads and writes, and all frames, go through the pipe instead
    /// of a memory region shared with a built-in daemon), noring (frames go through the pipe,
    /// large payloads still through the region).
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    pub(crate) options: Vec<String>,

    /// Unmount MOUNTPOINT instead of mounting.
    #[arg(short = 'u', long = "unmount")]
    pub(crate) unmount: bool,

    /// With -u: detach now even if busy (the connection lives until the last file closes).
    #[arg(long, requires = "unmount")]
    pub(crate) lazy: bool,

    /// With -u: abort the FUSE connection first (every blocked call fails), then detach.
    #[arg(long, requires = "unmount", conflicts_with = "lazy")]
    pub(crate) abort: bool,

    /// Internal: serve the built-in SCHEME on stdin/stdout (how schememount starts daemons).
    #[arg(long, hide = true, value_name = "SCHEME")]
    pub(crate) serve: Option<String>,

    /// Internal, with --serve ramfs: the most bytes of file data.
    #[arg(long, hide = true, requires = "serve")]
    pub(crate) max_bytes: Option<u64>,
}

impl Cli {
    /// The mount point: the last positional argument.
    pub(crate) fn mountpoint(&self) -> PathBuf {
        PathBuf::from(self.args.last().expect("clap requires one"))
    }

    /// The scheme names: every positional argument but the last.
    pub(crate) fn schemes(&self) -> &[String] {
        &self.args[..self.args.len() - 1]
    }
}
