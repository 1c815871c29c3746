//! A daemon that stops in the middle of a reply frame must not keep a caller from its timeout.
//! A caller blocked in `Client::call` reads the wire itself (the leader) with reads that do
//! not wait, so it sleeps only in a `poll` that the watchdog's bell can end, never inside a
//! read that waits for the rest of a frame.
//!
//! The daemon is this test: a real child process (`sh`, two `cat`s) relays the client's pipes
//! to a pair of FIFOs, and a thread here speaks the wire on them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use rustix::fs::{mkfifoat, Mode, CWD};
use scheme_bridge::{CallError, Client, Limits};
use scheme_protocol::codec::encode_frame;
use scheme_protocol::{handshake, hello, Errno, Fd, Frame, FrameReader, Reply, MAX_FRAME};

/// Longest the test waits for what should happen at once.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Serves the wire on the FIFOs `calls` and `replies`: handshakes, answers the first call with
/// the first half of its reply frame, then sends nothing more until `done` says so.
fn cut_daemon(calls: &Path, replies: &Path, done: std::sync::mpsc::Receiver<()>) {
    let mut reader = FrameReader::new(File::open(calls).expect("open calls"), MAX_FRAME);
    let mut writer = scheme_protocol::FrameWriter::new(
        OpenOptions::new().write(true).open(replies).expect("open replies"),
        MAX_FRAME,
    );
    handshake(&mut reader, &mut writer, &hello("cut", MAX_FRAME)).expect("handshake");
    let Ok(Frame::Call { tag, .. }) = reader.read_frame() else { panic!("expected a call") };
    let reply = Frame::Reply { tag, response: Ok(Reply::Data(vec![7; 4096].into())) };
    let mut bytes = Vec::new();
    encode_frame(&reply, MAX_FRAME, &mut bytes).unwrap();
    let out = writer.get_mut();
    out.write_all(&bytes[..bytes.len() / 2]).unwrap();
    out.flush().unwrap();
    let _ = done.recv_timeout(PROMPTLY * 2);
}

#[test]
fn a_reply_cut_off_in_the_middle_does_not_keep_a_leader_from_its_timeout() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let (calls, replies) = (dir.path().join("calls"), dir.path().join("replies"));
    for fifo in [&calls, &replies] {
        mkfifoat(CWD, fifo, Mode::RUSR | Mode::WUSR).unwrap();
    }
    let (stop, done) = channel();
    let daemon = {
        let (calls, replies) = (calls.clone(), replies.clone());
        std::thread::spawn(move || cut_daemon(&calls, &replies, done))
    };
    let mut relay = Command::new("sh");
    // (An asynchronous command's stdin is /dev/null unless redirected from a saved copy.)
    let script = r#"exec 3<&0; cat <&3 > "$1" & exec cat "$2""#;
    relay.args(["-c", script, "sh"]).arg(&calls).arg(&replies);
    let client = Client::spawn(relay, "cut").expect("the relay starts and the daemon handshakes");
    let timeout = Duration::from_millis(300);
    client.set_limits(Limits { call_timeout: Some(timeout), ..Limits::default() });

    let (answered, answer) = channel();
    let started = Instant::now();
    let caller = {
        let client = client.clone();
        // fpath answers at once by design, so it has a timeout; its reply is the cut one.
        std::thread::spawn(move || answered.send(client.fpath(Fd(1))))
    };
    let answer = answer.recv_timeout(PROMPTLY).expect("the caller heard its timeout");
    assert_eq!(answer, Err(CallError::Errno(Errno::EIO)));
    assert!(started.elapsed() >= timeout, "answered before its timeout: {:?}", started.elapsed());
    caller.join().unwrap().unwrap();

    let _ = stop.send(());
    daemon.join().unwrap();
    drop(client);
}
