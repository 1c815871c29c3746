//! schememount's command line: background start, -u, and a clear one-line error for each
//! failure.

mod util;

use std::path::Path;
use std::process::Command;

use util::{fuse_usable, is_mounted, SCHEMEMOUNT};

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(SCHEMEMOUNT).args(args).output().expect("runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Unmounts (aborting the connection) whatever is still mounted at its path when dropped, so
/// that a failing test leaves no mount and no background schememount behind.
struct CleanUp<'a>(&'a Path);

impl Drop for CleanUp<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = Command::new(SCHEMEMOUNT).args(["-u", "--abort"]).arg(self.0).status();
        }
    }
}

#[test]
fn by_default_it_returns_once_mounted_and_u_unmounts() {
    if !fuse_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _clean_up = CleanUp(dir.path());
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
    let cases: [(&[&str], &str); 6] = [
        (&["chan", "/nonexistent/mnt"], "does not exist"),
        (&["chan", dir.path().to_str().unwrap()], "not empty"),
        (&["nosuch", "/tmp"], "no built-in scheme \"nosuch\""),
        (&["-o", "bogus", "chan", "/tmp"], "unknown mount option"),
        (&["-o", "busy_poll=soon", "chan", "/tmp"], "busy_poll=soon: not a number"),
        (&["--daemon", "echo not-a-daemon", "/tmp"], "does not speak the scheme-bridge protocol"),
    ];
    for (args, expected) in cases {
        let (ok, err) = run(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// A mount made at the same path right after `-u` may get the old mount's device number; the
/// old schememount, still ending, must not take it for its own and unmount it.
#[test]
fn a_mount_made_right_after_u_at_the_same_path_stays() {
    if !fuse_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _clean_up = CleanUp(dir.path());
    let path = dir.path().to_str().unwrap();
    for _ in 0..3 {
        let (ok, err) = run(&["chan", path]);
        assert!(ok, "{err}");
        let (ok, err) = run(&["-u", path]);
        assert!(ok, "{err}");
        let (ok, err) = run(&["chan", path]);
        assert!(ok, "{err}");
        // The old process ends within its 100 ms tick; give it ample time to do harm.
        std::thread::sleep(std::time::Duration::from_millis(800));
        let still = is_mounted(dir.path());
        let (ok, err) = run(&["-u", path]);
        assert!(still, "the new mount was unmounted by the old schememount");
        assert!(ok, "{err}");
    }
}

/// When a mount ends, its daemon sees its stdin close and exits by itself: nothing the mount
/// starts later (fusermount3, which stays running for auto_unmount) inherits a copy of the
/// daemon's pipes. (A descriptor duplicated without close-on-exec once kept each daemon
/// waiting until the mount killed it after its grace period: "did not exit after its stdin
/// closed; killing it".)
#[test]
fn after_u_every_daemon_exits_by_itself() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !fuse_usable() {
        return;
    }
    for scheme in ["ramfs", "chan", "zero"] {
        let dir = tempfile::tempdir().unwrap();
        let _clean_up = CleanUp(dir.path());
        let path = dir.path().to_str().unwrap();
        let mut child = Command::new(SCHEMEMOUNT)
            .args([scheme, path, "-f"])
            .env("SCHEMEMOUNT_STATUS_PIPE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "{scheme}");
        std::fs::read_dir(dir.path()).unwrap().for_each(drop);
        let (ok, err) = run(&["-u", path]);
        assert!(ok, "{scheme}: {err}");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{scheme}: {:?}: {stderr}", out.status);
        assert!(!stderr.contains("did not exit"), "{scheme}: {stderr}");
    }
}
