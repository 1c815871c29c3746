//! `schememount`: mounts Redox scheme daemons as Linux filesystems. Thin glue: parse the
//! command line, then unmount, serve a built-in daemon (`--serve`, how the mount starts its
//! daemons), go to the background, or mount in the foreground.

#![forbid(unsafe_code)]

mod background;
mod cli;
mod daemon;
mod options;
mod run;

use std::process::ExitCode;

use clap::Parser;
use scheme_bridge::fuse::kernel;

use cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(scheme) = &cli.serve {
        let options = scheme_daemons::builtin::Options { max_bytes: cli.max_bytes };
        return scheme_daemons::run(scheme, |socket| {
            scheme_daemons::builtin::serve_with(scheme, options, socket)
        });
    }
    let level = if cli.debug { "info" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = if cli.unmount {
        unmount(&cli).map(|()| true)
    } else if cli.foreground || cli.debug {
        run::mount_and_serve(&cli)
    } else {
        return match background::spawn_and_wait() {
            Ok(code) => code,
            Err(err) => fail(&err),
        };
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => fail(&err),
    }
}

fn unmount(cli: &Cli) -> anyhow::Result<()> {
    if cli.args.len() != 1 {
        anyhow::bail!("-u takes just the mount point");
    }
    let mountpoint = cli.mountpoint();
    if cli.abort {
        kernel::abort_connection(&mountpoint)?;
    } else {
        kernel::unmount_path(&mountpoint, cli.lazy)?;
    }
    Ok(())
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("schememount: {err:#}");
    ExitCode::FAILURE
}
