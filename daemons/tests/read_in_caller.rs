//! `Client::submit_and_read` against the real `chand` process: with no reader thread, the thread
//! that sends a call reads its answer and runs its completion itself, threads that send calls
//! at once all get their answers (a sender that finds the wire held leaves the reading to its
//! holder), a thread blocked in a call runs the completions it reads, `closed()` fires when an
//! idle daemon dies although no thread reads the wire, and a call queued with `submit_ahead`
//! goes out with the next one (or, with nothing after it, anyway).

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use scheme_bridge::{CallError, Client};
use scheme_protocol::{Call, Caller, Fd, Reply};
use syscall::flag::{F_GETFL, O_CREAT, O_RDWR};
use util::{spawn, PROMPTLY};

fn me() -> Caller {
    Caller { pid: u64::from(std::process::id()), uid: 0, gid: 0 }
}

fn getfl(fd: Fd) -> Call {
    Call::Fcntl { fd, cmd: F_GETFL as u64, arg: 0 }
}

#[test]
fn a_lone_calls_completion_runs_in_the_sending_thread_before_it_returns() {
    let client = spawn("chand", "chan");
    let listener = client.open("lone", O_CREAT | O_RDWR).unwrap();
    for _ in 0..100 {
        let (tx, rx) = channel();
        let sender = thread::current().id();
        client.submit_and_read(
            me(),
            getfl(listener),
            Box::new(move |answer| tx.send((thread::current().id(), answer)).unwrap()),
        );
        let (ran_on, answer) = rx.try_recv().expect("answered before submit_and_read returned");
        assert_eq!(ran_on, sender, "the completion ran on another thread");
        assert!(matches!(answer, Ok(Reply::Value(_))), "{answer:?}");
    }
}

#[test]
fn eight_threads_sending_at_once_all_get_every_answer() {
    const THREADS: usize = 8;
    const CALLS: usize = 2_000;
    let client = spawn("chand", "chan");
    let listener = client.open("busy", O_CREAT | O_RDWR).unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..THREADS)
        .map(|_| {
            let (client, answered) = (client.clone(), Arc::clone(&answered));
            thread::spawn(move || {
                for _ in 0..CALLS {
                    let answered = Arc::clone(&answered);
                    client.submit_and_read(
                        me(),
                        getfl(listener),
                        Box::new(move |answer| {
                            assert!(matches!(answer, Ok(Reply::Value(_))), "{answer:?}");
                            answered.fetch_add(1, Ordering::SeqCst);
                        }),
                    );
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    // A sender that found the wire held returned at once; its answer is read by the holder,
    // which lets go only when no call is in flight.
    let deadline = Instant::now() + PROMPTLY;
    while answered.load(Ordering::SeqCst) < THREADS * CALLS && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(answered.load(Ordering::SeqCst), THREADS * CALLS, "answers left unread");
}

#[test]
fn a_thread_blocked_in_a_call_runs_the_completions_it_reads() {
    let client = spawn("chand", "chan");
    let listener = client.open("parked", O_CREAT | O_RDWR).unwrap();
    let near = client.open("parked", O_RDWR).unwrap();
    let far = client.dup(listener, b"listen").unwrap();
    let reader = {
        let client = client.clone();
        thread::spawn(move || client.read(near, 16)) // parks in the daemon, reading the wire
    };
    thread::sleep(Duration::from_millis(100));
    let (tx, rx) = channel();
    client.submit_and_read(me(), getfl(listener), Box::new(move |answer| tx.send(answer).unwrap()));
    let answer = rx.recv_timeout(PROMPTLY).expect("the blocked caller ran the completion");
    assert!(matches!(answer, Ok(Reply::Value(_))), "{answer:?}");
    client.write(far, b"done").unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), b"done");
}

#[test]
fn closed_fires_when_an_idle_daemon_dies_with_no_thread_reading() {
    use rustix::process::{kill_process, Pid, Signal};
    let client = spawn("chand", "chan");
    let closed = client.closed();
    let (tx, rx) = channel();
    client.submit_and_read(
        me(),
        Call::Open { path: "idle".into(), flags: (O_CREAT | O_RDWR) as u64 },
        Box::new(move |a| tx.send(a).unwrap()),
    );
    rx.try_recv().expect("answered in this thread").unwrap();
    let daemon = Pid::from_raw(client.daemon_pid().unwrap() as i32).unwrap();
    kill_process(daemon, Signal::KILL).unwrap();
    let killed = Instant::now();
    assert!(closed.recv_timeout(PROMPTLY).is_err(), "closed() still open after the daemon died");
    assert!(killed.elapsed() < Duration::from_secs(1), "took {:?}", killed.elapsed());
    let (tx, rx) = channel();
    client.submit_and_read(me(), getfl(Fd(0)), Box::new(move |a| tx.send(a).unwrap()));
    let after = rx.recv_timeout(PROMPTLY).expect("a call after the end is answered");
    assert!(matches!(after, Err(CallError::Disconnected(_))), "{after:?}");
    drop::<Client>(client);
}

#[test]
fn a_call_sent_ahead_goes_out_and_is_answered_with_the_next_one() {
    let client = spawn("chand", "chan");
    let listener = client.open("ahead", O_CREAT | O_RDWR).unwrap();
    let (tx, rx) = channel();
    let first = tx.clone();
    client.submit_ahead(
        me(),
        getfl(listener),
        Box::new(move |a| first.send(("ahead", a)).unwrap()),
    );
    assert!(rx.try_recv().is_err(), "answered before anything was sent");
    client.submit_and_read(me(), getfl(listener), Box::new(move |a| tx.send(("next", a)).unwrap()));
    let answers: Vec<_> = rx.try_iter().collect();
    assert_eq!(answers.len(), 2, "both answered before submit_and_read returned: {answers:?}");
    assert_eq!(answers[0].0, "ahead");
    assert!(answers.iter().all(|(_, a)| matches!(a, Ok(Reply::Value(_)))), "{answers:?}");
}

/// A call queued ahead of nothing (a breach of `submit_ahead`'s contract) is still sent and
/// answered: the watchdog sends it after a tick and starts a reader thread.
#[test]
fn a_call_sent_ahead_of_nothing_is_answered_anyway() {
    let client = spawn("chand", "chan");
    let listener = client.open("alone", O_CREAT | O_RDWR).unwrap();
    let (tx, rx) = channel();
    client.submit_ahead(me(), getfl(listener), Box::new(move |a| tx.send(a).unwrap()));
    let answer = rx.recv_timeout(PROMPTLY).expect("answered");
    assert!(matches!(answer, Ok(Reply::Value(_))), "{answer:?}");
}
