//! `zerod`: the `zero:` scheme, served on stdio.

use std::process::ExitCode;

use scheme_bridge::serve_scheme_mut;
use scheme_daemons::zero::{Kind, ZeroScheme};

fn main() -> ExitCode {
    scheme_daemons::run("zero", |socket| serve_scheme_mut(socket, &mut ZeroScheme::new(Kind::Zero)))
}
