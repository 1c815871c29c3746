//! `chand`: ipcd's `chan:` scheme, served on stdio.

use std::process::ExitCode;

use scheme_bridge::serve_block_mut;
use scheme_daemons::chan::ChanScheme;

fn main() -> ExitCode {
    scheme_daemons::run("chan", |socket| {
        let poster = socket.event_poster();
        let mut scheme = ChanScheme::new(Box::new(move |id, flags| poster.post(id, flags)));
        serve_block_mut(socket, &mut scheme)
    })
}
