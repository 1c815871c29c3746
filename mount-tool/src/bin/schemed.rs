//! `schemed NAME -- DAEMON ARGS...`: on Redox, registers scheme NAME with the kernel and
//! forwards every call to DAEMON, a child process speaking the scheme-bridge wire on its
//! stdin/stdout (legacy `Packet`s by default, `--v2` for Sqe/Cqe). The daemon may be anything
//! that speaks the wire, e.g. `ssh host chand`. On Linux there is no kernel to register with:
//! it says so and points to schememount.

#![forbid(unsafe_code)]

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::Parser;
use scheme_bridge::redox::sys::{self, Protocol};
use scheme_bridge::Client;

/// Serve a Redox scheme from a daemon in another process (Redox only).
///
/// Example (on Redox, as root):
///   schemed chan -- chand            # chan: served by the chand child process
///   schemed --v2 chan -- ssh host chand
#[derive(Debug, Parser)]
#[command(name = "schemed", version, verbatim_doc_comment)]
struct Cli {
    /// Register with the v2 (Sqe/Cqe) kernel protocol instead of legacy Packets.
    #[arg(long)]
    v2: bool,

    /// The scheme to register; the daemon must serve it (or announce any scheme).
    name: String,

    /// The daemon command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "DAEMON ARGS")]
    daemon: Vec<String>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if !cfg!(target_os = "redox") {
        eprintln!(
            "schemed: registering scheme {:?} needs the Redox kernel; on Linux, mount the daemon \
             with schememount instead: schememount --daemon '{}' {} MOUNTPOINT",
            cli.name,
            cli.daemon.join(" "),
            cli.name,
        );
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("schemed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Registers the scheme, starts the daemon and serves until the scheme is unmounted; exits
/// (which unregisters the scheme) as soon as the daemon is gone.
fn run(cli: &Cli) -> Result<()> {
    let protocol = if cli.v2 { Protocol::V2 } else { Protocol::Legacy };
    let socket = sys::register(&cli.name, protocol)?;
    let mut command = Command::new(&cli.daemon[0]);
    command.args(&cli.daemon[1..]);
    let client = Client::spawn(command, &cli.name)
        .with_context(|| format!("cannot start daemon {:?}", cli.daemon.join(" ")))?;
    let closed = client.closed();
    let name = cli.name.clone();
    std::thread::spawn(move || {
        let _ = closed.recv();
        eprintln!("schemed: the daemon serving {name:?} is gone; unregistering");
        std::process::exit(1);
    });
    socket.serve(client).context("scheme socket")
}
