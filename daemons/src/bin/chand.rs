//! `chand`: the built-in `chan:` scheme, served on stdio.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    scheme_daemons::run("chan", |socket| scheme_daemons::builtin::serve("chan", socket))
}
