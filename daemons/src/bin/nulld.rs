//! `nulld`: the built-in `null:` scheme, served on stdio.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    scheme_daemons::run("null", |socket| scheme_daemons::builtin::serve("null", socket))
}
