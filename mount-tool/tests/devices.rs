//! The built-in device-like schemes through a real mount: null, zero, rand, time with the
//! ordinary tools (`ls`, `cat`, `head -c`, `stat`, `echo >`).

mod util;

use util::{sh, Mount};

#[test]
fn zero_reads_zeros_with_head_and_stats_as_an_empty_file() {
    let Some(mount) = Mount::start(&["zero"]) else { return };
    let (status, out) =
        sh(&format!("head -c 100000 {}/any | tr -d '\\0' | wc -c", mount.root().display()));
    assert!(status.success());
    assert_eq!(out.trim(), "0");
    let (_, out) = sh(&format!("head -c 100000 {}/any | wc -c", mount.root().display()));
    assert_eq!(out.trim(), "100000");
    let (status, out) = sh(&format!("stat -c '%F %s' {}/any", mount.root().display()));
    assert!(status.success());
    assert_eq!(out.trim(), "regular empty file 0");
    let (status, _) = sh(&format!("ls -la {}", mount.root().display()));
    assert!(status.success());
}

#[test]
fn null_swallows_echo_and_cat_reads_nothing() {
    let Some(mount) = Mount::start(&["null"]) else { return };
    let file = mount.path("sink");
    let (status, _) = sh(&format!("echo hello > {}", file.display()));
    assert!(status.success());
    let (status, out) = sh(&format!("cat {}", file.display()));
    assert!(status.success());
    assert_eq!(out, "");
}

#[test]
fn rand_gives_different_bytes_each_time() {
    let Some(mount) = Mount::start(&["rand"]) else { return };
    let one = sh(&format!("head -c 32 {} | od -An -tx1", mount.path("urandom").display())).1;
    let two = sh(&format!("head -c 32 {} | od -An -tx1", mount.path("urandom").display())).1;
    assert_eq!(one.split_whitespace().count(), 32);
    assert_ne!(one, two);
}

#[test]
fn time_reads_a_16_byte_timespec_per_slot() {
    let Some(mount) = Mount::start(&["time"]) else { return };
    let (status, out) = sh(&format!("head -c 32 {}/4 | wc -c", mount.root().display()));
    assert!(status.success());
    assert_eq!(out.trim(), "32");
    let (status, _) = sh(&format!("cat {}/2 2>/dev/null", mount.root().display()));
    assert!(!status.success(), "clock 2 does not exist");
}
