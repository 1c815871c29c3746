//! Starting daemons that fail the handshake: each gives a clear error and leaves no process.

use std::process::Command;

use scheme_bridge::Client;
use scheme_protocol::Error;

#[test]
fn a_daemon_serving_another_scheme_is_refused_by_name() {
    let err = Client::spawn(Command::new(env!("CARGO_BIN_EXE_chand")), "time").unwrap_err();
    assert!(matches!(err, Error::SchemeMismatch { .. }), "{err:?}");
    assert_eq!(err.to_string(), "scheme mismatch: expected \"time\", peer serves \"chan\"");
}

#[test]
fn a_program_that_does_not_speak_the_protocol_is_named_as_such() {
    let mut echo = Command::new("echo");
    echo.arg("this is not a scheme daemon");
    let err = Client::spawn(echo, "").unwrap_err();
    assert!(matches!(err, Error::NotAPeer { .. }), "{err:?}");
    assert!(err.to_string().contains("does not speak the scheme-bridge protocol"), "{err}");
}

#[test]
fn a_program_that_exits_at_once_is_a_closed_connection() {
    let err = Client::spawn(Command::new("true"), "").unwrap_err();
    assert!(matches!(err, Error::Closed | Error::Io(_)), "{err:?}");
}

#[test]
fn a_missing_program_is_an_io_error() {
    let err = Client::spawn(Command::new("/nonexistent/daemon"), "").unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}

#[test]
fn the_daemon_exits_when_the_client_goes_away() {
    let client = Client::spawn(Command::new(env!("CARGO_BIN_EXE_nulld")), "null").unwrap();
    let pid = client.daemon_pid().unwrap();
    drop(client);
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(gone, "daemon {pid} still exists (zombie or running) after the client was dropped");
}

#[test]
fn a_daemon_that_never_answers_is_killed_after_the_handshake_timeout() {
    let mut silent = Command::new("sleep");
    silent.arg("600");
    let started = std::time::Instant::now();
    let err = Client::spawn(silent, "").unwrap_err();
    assert!(err.to_string().contains("no handshake within"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
