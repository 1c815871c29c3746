//! Spawning the real daemon binaries for the tests in this directory.

#![allow(dead_code)] // each test file uses part of this

use std::process::Command;
use std::time::Duration;

use scheme_bridge::Client;

/// Longest a test waits for something that should happen at once.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// Starts the daemon binary `name` (e.g. "chand") and handshakes with it for `scheme`.
pub fn spawn(name: &str, scheme: &str) -> Client {
    let _ = env_logger::builder().is_test(true).try_init();
    let path = match name {
        "chand" => env!("CARGO_BIN_EXE_chand"),
        "timed" => env!("CARGO_BIN_EXE_timed"),
        "nulld" => env!("CARGO_BIN_EXE_nulld"),
        "zerod" => env!("CARGO_BIN_EXE_zerod"),
        "randd" => env!("CARGO_BIN_EXE_randd"),
        other => panic!("no daemon binary {other}"),
    };
    Client::spawn(Command::new(path), scheme).expect("daemon starts and handshakes")
}
