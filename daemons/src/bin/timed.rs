//! `timed`: the built-in `time:` scheme, served on stdio.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    scheme_daemons::run("time", |socket| scheme_daemons::builtin::serve("time", socket))
}
