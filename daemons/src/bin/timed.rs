//! `timed`: the `time:` scheme (clocks 1 and 4, one-shot deadlines), served on stdio.

use std::process::ExitCode;

use scheme_bridge::serve_scheme_mut;
use scheme_daemons::time::TimeScheme;

fn main() -> ExitCode {
    scheme_daemons::run("time", |socket| {
        let poster = socket.event_poster();
        let mut scheme = TimeScheme::new(Box::new(move |id, flags| poster.post(id, flags)))?;
        serve_scheme_mut(socket, &mut scheme)
    })
}
