//! The seed's hello example over the client library, against a real `chand` child process:
//! a server opens `chan:hello` with O_CREAT and loops on `dup(listener, "listen")`, writing
//! "Hello World!\n" to each connection and closing it; N clients (default 20, or the first
//! argument) connect concurrently and each prints what it read before end of file.

#![forbid(unsafe_code)]

use std::process::{Command, ExitCode};
use std::thread;

use scheme_bridge::{find_daemon, CallResult, Client};
use scheme_protocol::{Caller, Fd};
use syscall::flag::{O_CREAT, O_RDWR};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let clients = match std::env::args().nth(1).map(|arg| arg.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: hello [CLIENTS]   (CLIENTS is a positive number, default 20)");
            return ExitCode::from(2);
        }
    };
    match run(clients) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hello: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(clients: usize) -> Result<(), Box<dyn std::error::Error>> {
    let chand =
        find_daemon("chand").ok_or("cannot find the chand daemon: run `cargo build` first")?;
    let client = Client::spawn(Command::new(&chand), "chan")?;
    println!("started {} (pid {})", chand.display(), client.daemon_pid().unwrap_or(0));
    let listener = client.open("hello", O_CREAT | O_RDWR)?;
    let server = {
        let client = client.clone();
        thread::spawn(move || serve(&client, listener, clients))
    };
    let readers: Vec<_> = (0..clients)
        .map(|n| {
            let caller = Caller { pid: 1000 + n as u64, ..client.caller() };
            let client = client.with_caller(caller);
            thread::spawn(move || greet(&client))
        })
        .collect();
    for (n, reader) in readers.into_iter().enumerate() {
        let line = reader.join().map_err(|_| "client thread panicked")??;
        print!("client {n:2}: {}", String::from_utf8_lossy(&line));
    }
    server.join().map_err(|_| "server thread panicked")??;
    println!("{clients} clients greeted over chan:hello");
    Ok(())
}

/// The server loop: accept, greet, close.
fn serve(client: &Client, listener: Fd, connections: usize) -> CallResult<()> {
    for _ in 0..connections {
        let stream = client.dup(listener, b"listen")?;
        client.write(stream, b"Hello World!\n")?;
        client.close(stream)?;
    }
    client.close(listener)
}

/// One client: connect, read until end of file.
fn greet(client: &Client) -> CallResult<Vec<u8>> {
    let stream = client.open("hello", O_RDWR)?;
    let mut line = Vec::new();
    loop {
        let chunk = client.read(stream, 4096)?;
        if chunk.is_empty() {
            break;
        }
        line.extend(chunk);
    }
    client.close(stream)?;
    Ok(line)
}
