//! The foreground life of a mount: start the daemons, mount, report ready, then wait for a
//! signal (SIGINT, SIGTERM, SIGHUP: clean unmount, exit 0), a daemon that dies (its pending
//! calls have already failed with EIO; unmount, exit 1) or an unmount from outside (exit 0).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{tick, Receiver};
use log::info;
use scheme_bridge::fuse::{self, MountConfig, Mounted};
use scheme_bridge::{Backend, Client, InProcess, Trace};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::cli::Cli;
use crate::{background, daemon, options};

/// Why the mount ended.
enum End {
    Signal(i32),
    DaemonDied(String),
    UnmountedElsewhere,
}

/// Mounts and serves until the end; the result is the exit status.
pub(crate) fn mount_and_serve(cli: &Cli) -> Result<bool> {
    let mountpoint = cli.mountpoint();
    let schemes = cli.schemes();
    if schemes.len() > 1 && !cli.namespace {
        bail!("several schemes need --namespace (got {})", schemes.join(", "));
    }
    let mut config = MountConfig { namespace: cli.namespace, ..MountConfig::default() };
    config.options.auto_unmount = true;
    config.options.subtype = "schememount".into();
    config.options.fsname = fsname(cli);
    if cli.schemes() == ["ramfs"] && cli.daemon.is_none() {
        // A memory filesystem changes only through this mount: the kernel may cache what it
        // saw for a second, as libfuse does by default (-o entry_timeout=0,attr_timeout=0 not to).
        config.ttl = fuse::Ttl { entry: Duration::from_secs(1), attr: Duration::from_secs(1) };
    }
    if cli.daemon.is_none() && schemes.iter().all(|name| NEVER_BLOCKS.contains(&name.as_str())) {
        // No call of these schemes waits, so there is nothing for Ctrl-C to interrupt, and the
        // interrupt relay's two extra thread hand-offs per request would be pure cost
        // (`-o intr` turns it on anyway).
        config.interrupts = false;
        // And the FUSE thread may wait for each answer itself (no hand-off to a reply thread).
        config.calls_never_block = true;
    }
    let mut daemon_options = options::DaemonOptions::default();
    options::apply(&mut config, &mut daemon_options, &cli.options)?;
    if let Some(window) = daemon_options.busy_poll {
        scheme_bridge::busy_poll::set_window(window);
    }
    // Signals are caught before anything starts, so none is lost while mounting.
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot catch signals")?;
    let (signal_rx, signal_handle) = forward_signals(signals)?;
    let trace = cli.debug.then(|| Arc::new(Trace::new()));
    let backends = start_backends(cli, daemon_options, trace.as_ref())?;
    let mounted = fuse::mount(backends, &mountpoint, config)
        .with_context(|| format!("cannot mount on {}", mountpoint.display()))?;
    info!("mounted {} on {}", cli.args[..cli.args.len() - 1].join(" "), mountpoint.display());
    background::report_ready(background::in_background() && !cli.debug)?;
    let end = wait_for_end(&mounted, &signal_rx);
    let clean = finish(mounted, &end, &mountpoint);
    signal_handle.close();
    if let Some(trace) = trace {
        eprint!("{}", trace.summary());
    }
    Ok(clean)
}

fn fsname(cli: &Cli) -> String {
    match &cli.daemon {
        Some(command) => format!("scheme:{command}"),
        None => format!("scheme:{}", cli.schemes().join("+")),
    }
}

/// Built-in schemes whose calls all answer at once (unlike chan's reads or time's timers).
const NEVER_BLOCKS: [&str; 4] = ["null", "zero", "rand", "ramfs"];

/// The schemes to mount: daemons behind the wire, or (`--in-process`) ramfs in this process.
fn start_backends(
    cli: &Cli,
    options: options::DaemonOptions,
    trace: Option<&Arc<Trace>>,
) -> Result<Vec<(String, Arc<dyn Backend>)>> {
    if cli.in_process {
        return in_process(cli, options);
    }
    let clients = start_daemons(cli, options)?;
    clients.iter().for_each(|(_, client)| client.set_limits(options.limits));
    if let Some(trace) = trace {
        clients.iter().for_each(|(_, client)| client.set_trace(Arc::clone(trace)));
    }
    Ok(clients
        .into_iter()
        .map(|(name, client)| (name, Arc::new(client) as Arc<dyn Backend>))
        .collect())
}

fn in_process(
    cli: &Cli,
    options: options::DaemonOptions,
) -> Result<Vec<(String, Arc<dyn Backend>)>> {
    match cli.schemes() {
        [name] if name == "ramfs" && cli.daemon.is_none() => {
            let ramfs = scheme_daemons::ramfs::RamFs::new(options.max_bytes);
            Ok(vec![(name.clone(), Arc::new(InProcess::new(name, ramfs)) as Arc<dyn Backend>)])
        }
        _ => bail!("--in-process serves the ramfs scheme only (one that never blocks)"),
    }
}

fn start_daemons(cli: &Cli, options: options::DaemonOptions) -> Result<Vec<(String, Client)>> {
    if let Some(command) = &cli.daemon {
        let expected = cli.schemes().first().map(String::as_str).unwrap_or("");
        let client = daemon::start_command(command, expected)?;
        return Ok(vec![(client.scheme().to_owned(), client)]);
    }
    if cli.schemes().is_empty() {
        bail!(
            "name a scheme to mount (chan, time, null, zero, rand, ramfs) or give --daemon COMMAND"
        );
    }
    cli.schemes()
        .iter()
        .map(|name| Ok((name.clone(), daemon::start_builtin(name, options)?)))
        .collect()
}

/// Moves `signals` to a thread that forwards each one to the returned channel.
fn forward_signals(mut signals: Signals) -> Result<(Receiver<i32>, Handle)> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    let handle = signals.handle();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if tx.send(signal).is_err() {
                return;
            }
        }
    })?;
    Ok((rx, handle))
}

fn wait_for_end(mounted: &Mounted, signals: &Receiver<i32>) -> End {
    let backends = mounted.backends();
    let closed: Vec<Receiver<()>> = backends.iter().map(|b| b.closed()).collect();
    let ticker = tick(Duration::from_millis(100));
    loop {
        let mut select = crossbeam_channel::Select::new();
        for rx in &closed {
            select.recv(rx);
        }
        let signal_index = select.recv(signals);
        let tick_index = select.recv(&ticker);
        let op = select.select();
        match op.index() {
            i if i == signal_index => {
                if let Ok(signal) = op.recv(signals) {
                    return End::Signal(signal);
                }
            }
            i if i == tick_index => {
                let _ = op.recv(&ticker);
                if mounted.session_ended() {
                    return End::UnmountedElsewhere;
                }
            }
            i => {
                let _ = op.recv(&closed[i]);
                return End::DaemonDied(format!(
                    "the connection to the daemon for {:?} ended (it exited, or broke the \
                     protocol: see the message above)",
                    backends[i].scheme()
                ));
            }
        }
    }
}

/// Unmounts as the end requires; returns whether it was a clean end.
fn finish(mounted: Mounted, end: &End, mountpoint: &std::path::Path) -> bool {
    let result = match end {
        End::Signal(signal) => {
            info!("signal {signal}: unmounting {}", mountpoint.display());
            mounted.unmount()
        }
        End::UnmountedElsewhere => {
            info!("{} was unmounted", mountpoint.display());
            mounted.unmounted_elsewhere()
        }
        End::DaemonDied(why) => {
            eprintln!(
                "schememount: {why}; every pending call failed with EIO; removing the mount {}",
                mountpoint.display()
            );
            // Files may still be open on the dead mount: abort the connection and detach.
            let _ = mounted.abort();
            return false;
        }
    };
    if let Err(err) = result {
        eprintln!("schememount: unmounting {}: {err}", mountpoint.display());
    }
    true
}
