//! schememount's command line: background start, -u, and a clear one-line error for each
//! failure.

mod util;

use std::process::Command;

use util::{fuse_usable, is_mounted, SCHEMEMOUNT};

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(SCHEMEMOUNT).args(args).output().expect("runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn by_default_it_returns_once_mounted_and_u_unmounts() {
    if !fuse_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let (ok, err) = run(&["zero", path]);
    assert!(ok, "{err}");
    assert!(is_mounted(dir.path()), "mounted when the command returned");
    assert_eq!(std::fs::metadata(dir.path().join("x")).unwrap().len(), 0);
    let (ok, err) = run(&["-u", path]);
    assert!(ok, "{err}");
    assert!(!is_mounted(dir.path()));
}

#[test]
fn every_failure_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["chan", "/nonexistent/mnt"], "does not exist"),
        (&["chan", dir.path().to_str().unwrap()], "not empty"),
        (&["nosuch", "/tmp"], "no built-in scheme \"nosuch\""),
        (&["-o", "bogus", "chan", "/tmp"], "unknown mount option"),
        (&["--daemon", "echo not-a-daemon", "/tmp"], "does not speak the scheme-bridge protocol"),
    ];
    for (args, expected) in cases {
        let (ok, err) = run(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
