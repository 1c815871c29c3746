//! `chand`: the built-in `chan:` scheme, served on stdio.

fn main() -> std::process::ExitCode {
    scheme_daemons::run("chan", |socket| scheme_daemons::builtin::serve("chan", socket))
}
