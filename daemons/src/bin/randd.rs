//! `randd`: the `rand:` scheme (ChaCha20 CSPRNG), served on stdio.

use std::io;
use std::process::ExitCode;

use scheme_bridge::serve_scheme_mut;
use scheme_daemons::rand::RandScheme;

fn main() -> ExitCode {
    scheme_daemons::run("rand", |socket| {
        let mut scheme = RandScheme::new().map_err(io::Error::other)?;
        serve_scheme_mut(socket, &mut scheme)
    })
}
