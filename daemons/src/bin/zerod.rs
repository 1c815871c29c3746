//! `zerod`: the built-in `zero:` scheme, served on stdio.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    scheme_daemons::run("zero", |socket| scheme_daemons::builtin::serve("zero", socket))
}
