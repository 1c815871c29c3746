//! The shared `main` of every daemon binary: logs go to stderr (`RUST_LOG`, default `warn`),
//! the wire runs on stdin/stdout, and the exit status says whether serving ended cleanly.

use std::io;
use std::process::ExitCode;

use scheme_bridge::SchemeSocket;

/// Serves `scheme` on stdio with `serve` until the caller side closes the pipe.
pub fn run(scheme: &str, serve: impl FnOnce(&mut SchemeSocket) -> io::Result<()>) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match SchemeSocket::stdio(scheme).and_then(|mut socket| serve(&mut socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{scheme} daemon: {err}");
            ExitCode::FAILURE
        }
    }
}
