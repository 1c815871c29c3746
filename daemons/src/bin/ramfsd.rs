//! `ramfsd [--max-bytes N]`: the built-in memory filesystem scheme, served on stdio.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use scheme_daemons::builtin::{serve_with, Options};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let max_bytes = match args.as_slice() {
        [] => None,
        [flag, value] if flag == "--max-bytes" => match value.parse() {
            Ok(bytes) => Some(bytes),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    scheme_daemons::run("ramfs", |socket| serve_with("ramfs", Options { max_bytes }, socket))
}

fn usage() -> ExitCode {
    eprintln!("usage: ramfsd [--max-bytes BYTES]");
    ExitCode::from(2)
}
