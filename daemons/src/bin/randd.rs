//! `randd`: the built-in `rand:` scheme, served on stdio.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    scheme_daemons::run("rand", |socket| scheme_daemons::builtin::serve("rand", socket))
}
