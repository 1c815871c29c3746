//! Starting the scheme daemons: a built-in scheme is this same program re-run with `--serve
//! NAME` (so nothing needs installing next to it); `--daemon COMMAND` runs any program through
//! `sh -c`. Daemons start before the mount exists, with `/` as working directory and without
//! the /dev/fuse descriptor, so they cannot deadlock on their own mount.

use std::process::Command;

use anyhow::{bail, Context, Result};
use scheme_bridge::Client;
use scheme_daemons::builtin::BUILTIN;

use crate::options::DaemonOptions;

/// Starts the built-in daemon `name` and handshakes with it.
pub(crate) fn start_builtin(name: &str, options: DaemonOptions) -> Result<Client> {
    if !BUILTIN.contains(&name) {
        bail!(
            "no built-in scheme {name:?} (built in: {}; or use --daemon COMMAND)",
            BUILTIN.join(", ")
        );
    }
    let exe = std::env::current_exe().context("cannot find this program to start the daemon")?;
    let mut command = Command::new(exe);
    command.arg("--serve").arg(name);
    if let Some(bytes) = options.max_bytes {
        command.arg("--max-bytes").arg(bytes.to_string());
    }
    if options.no_region {
        command.env(scheme_bridge::region::ENV_ENABLE, "0");
    }
    if options.no_ring {
        command.env(scheme_bridge::ring::ENV_ENABLE, "0");
    }
    connect(command, name).with_context(|| format!("daemon for {name:?} failed to start"))
}

/// Starts `command_line` through `sh -c` and handshakes with it; `scheme` ("" = any) is the
/// name it must serve.
pub(crate) fn start_command(command_line: &str, scheme: &str) -> Result<Client> {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(command_line);
    connect(command, scheme)
        .with_context(|| format!("daemon {command_line:?} failed its handshake"))
}

fn connect(mut command: Command, scheme: &str) -> Result<Client> {
    command.current_dir("/");
    let busy_poll = scheme_bridge::busy_poll::configured();
    command.env(scheme_bridge::busy_poll::ENV, busy_poll.as_micros().to_string());
    if crate::background::in_background() {
        // Nobody reads a background mount's stderr; holding it would keep a caller's pipe open.
        command.stderr(std::process::Stdio::null());
    }
    Ok(Client::spawn(command, scheme)?)
}
