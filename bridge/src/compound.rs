//! Compound wire calls -> several packets in a row, for the daemon side. `StatPath` is
//! `open(path, O_STAT | O_NOFOLLOW)`, `fstat`, `close`; `OpenStat` is `open(path, flags)`,
//! `fstat`. Each step is an ordinary packet to the scheme, as the Redox libc would make them;
//! the daemon side starts the next step when the scheme answers one, and answers the caller
//! once, so a stat costs one round trip on the pipe instead of three.

use scheme_protocol::{Call, Caller, Fd, Reply, Response};
use syscall::flag::{O_NOFOLLOW, O_STAT};

/// Where a packet stands in its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A plain call, or a compound's last step: its answer goes to the caller.
    Answer,
    /// A compound's open: fstat the new handle next (and close it after, unless `keep`).
    Opened { keep: bool, caller: Caller },
    /// A compound's fstat of handle `fd`.
    Statted { fd: u64, keep: bool },
}

/// A step the daemon side sends its scheme next, for the same caller tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Next {
    pub(crate) call: Call,
    pub(crate) caller: Caller,
    pub(crate) step: Step,
}

/// What to do once the scheme answered a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum After {
    /// Answer the caller with `response`; close handle `close` (a compound's, not kept).
    Answer { response: Response, close: Option<u64> },
    /// Send the next step; the caller waits on.
    Next(Next),
}

/// The first packet's call for `call` and its step: compounds start with their open.
pub(crate) fn start(call: Call, caller: Caller) -> (Call, Step) {
    match call {
        Call::StatPath { path } => {
            let flags = (O_STAT | O_NOFOLLOW) as u64;
            (Call::Open { path, flags }, Step::Opened { keep: false, caller })
        }
        Call::OpenStat { path, flags } => {
            (Call::Open { path, flags }, Step::Opened { keep: true, caller })
        }
        plain => (plain, Step::Answer),
    }
}

/// What follows the scheme's `response` to a packet at `step`. A cancelled call (already
/// answered `EINTR`) goes no further; a handle its open made is closed by the orphan rule,
/// one its fstat holds is closed here.
pub(crate) fn after(step: Step, response: Response, cancelled: bool) -> After {
    match step {
        Step::Answer => After::Answer { response, close: None },
        Step::Opened { keep, caller } => match response {
            Ok(Reply::Value(fd)) if !cancelled => After::Next(Next {
                call: Call::Fstat { fd: Fd(fd) },
                caller,
                step: Step::Statted { fd, keep },
            }),
            other => After::Answer { response: other, close: None },
        },
        Step::Statted { fd, keep } => {
            let close = (!keep || cancelled || response.is_err()).then_some(fd);
            let response = match response {
                Ok(Reply::Stat(stat)) if keep => Ok(Reply::Opened { fd: Fd(fd), stat }),
                other => other,
            };
            After::Answer { response, close }
        }
    }
}

#[cfg(test)]
mod tests {
    use scheme_protocol::{Errno, Stat};

    use super::*;

    const CALLER: Caller = Caller { pid: 7, uid: 1000, gid: 100 };

    fn stat() -> Stat {
        Stat { st_ino: 9, st_mode: 0o100644, ..Stat::default() }
    }

    #[test]
    fn plain_calls_are_answered_as_they_are() {
        let call = Call::Fstat { fd: Fd(3) };
        assert_eq!(start(call.clone(), CALLER), (call, Step::Answer));
        let answer = after(Step::Answer, Ok(Reply::Value(1)), false);
        assert_eq!(answer, After::Answer { response: Ok(Reply::Value(1)), close: None });
    }

    #[test]
    fn stat_path_is_a_stat_only_open_then_fstat_then_close() {
        let (first, step) = start(Call::StatPath { path: "a/b".into() }, CALLER);
        let flags = (O_STAT | O_NOFOLLOW) as u64;
        assert_eq!(first, Call::Open { path: "a/b".into(), flags });
        let After::Next(next) = after(step, Ok(Reply::Value(5)), false) else {
            panic!("an open that worked goes on to the fstat");
        };
        assert_eq!((next.call, next.caller), (Call::Fstat { fd: Fd(5) }, CALLER));
        let last = after(next.step, Ok(Reply::Stat(stat())), false);
        assert_eq!(last, After::Answer { response: Ok(Reply::Stat(stat())), close: Some(5) });
    }

    #[test]
    fn open_stat_keeps_the_handle_and_answers_both() {
        let (first, step) = start(Call::OpenStat { path: "f".into(), flags: 0x0203_0000 }, CALLER);
        assert_eq!(first, Call::Open { path: "f".into(), flags: 0x0203_0000 });
        let After::Next(next) = after(step, Ok(Reply::Value(4)), false) else {
            panic!("an open that worked goes on to the fstat");
        };
        let last = after(next.step, Ok(Reply::Stat(stat())), false);
        let opened = Ok(Reply::Opened { fd: Fd(4), stat: stat() });
        assert_eq!(last, After::Answer { response: opened, close: None });
    }

    #[test]
    fn a_failed_open_is_the_answer() {
        let (_, step) = start(Call::OpenStat { path: "f".into(), flags: 0 }, CALLER);
        let answer = after(step, Err(Errno::ENOENT), false);
        assert_eq!(answer, After::Answer { response: Err(Errno::ENOENT), close: None });
    }

    #[test]
    fn a_failed_fstat_closes_even_a_kept_handle() {
        let step = Step::Statted { fd: 4, keep: true };
        let answer = after(step, Err(Errno::EIO), false);
        assert_eq!(answer, After::Answer { response: Err(Errno::EIO), close: Some(4) });
    }

    #[test]
    fn a_cancelled_compound_stops_and_closes_what_it_holds() {
        let opened = Step::Opened { keep: true, caller: CALLER };
        // The open's handle is closed by the socket's rule for cancelled opens.
        let answer = after(opened, Ok(Reply::Value(4)), true);
        assert_eq!(answer, After::Answer { response: Ok(Reply::Value(4)), close: None });
        let statted = Step::Statted { fd: 4, keep: true };
        let After::Answer { close, .. } = after(statted, Ok(Reply::Stat(stat())), true) else {
            panic!("a cancelled compound never goes on");
        };
        assert_eq!(close, Some(4));
    }
}
