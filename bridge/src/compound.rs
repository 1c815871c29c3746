//! Compound wire calls -> several packets in a row, for the daemon side. `StatPath` is
//! `open(path, O_STAT | O_NOFOLLOW)`, `fstat`, `close`; `OpenStat` is `open(path, flags)`,
//! `fstat`; `OnPath` is `open(path, flags)`, its steps on the new handle, `close`. Each step is
//! an ordinary packet to the scheme, as the Redox libc would make them; the daemon side starts
//! the next step when the scheme answers one, and answers the caller once, so a stat or a
//! rename costs one round trip on the pipe instead of two or three.

use scheme_protocol::{Call, Caller, Errno, Fd, PathStep, Reply, Response, MAX_PATH_STEPS};
use syscall::flag::{O_NOFOLLOW, O_STAT};

/// Where a packet stands in its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A plain call: its answer goes to the caller.
    Answer,
    /// A compound's open: `steps` follow on the new handle, then its close (unless `keep`).
    Opened { steps: Vec<PathStep>, keep: bool, caller: Caller },
    /// A compound's step on handle `fd`; `rest` follow it. After the last one the handle is
    /// closed (unless `keep`) and the caller answered.
    OnHandle { fd: u64, rest: Vec<PathStep>, keep: bool, caller: Caller },
}

impl Step {
    /// The handle a compound holds at this step (closed if the step cannot be sent).
    pub(crate) fn handle(&self) -> Option<u64> {
        match self {
            Step::OnHandle { fd, .. } => Some(*fd),
            Step::Answer | Step::Opened { .. } => None,
        }
    }
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

/// The first packet's call for `call` and its step: compounds start with their open. An
/// `OnPath` without steps or with more than [`MAX_PATH_STEPS`] is `EINVAL`.
pub(crate) fn start(call: Call, caller: Caller) -> Result<(Call, Step), Errno> {
    let (call, steps, keep) = match call {
        Call::StatPath { path } => {
            let flags = (O_STAT | O_NOFOLLOW) as u64;
            (Call::Open { path, flags }, vec![PathStep::Fstat], false)
        }
        Call::OpenStat { path, flags } => (Call::Open { path, flags }, vec![PathStep::Fstat], true),
        Call::OnPath { steps, .. } if steps.is_empty() || steps.len() > MAX_PATH_STEPS => {
            return Err(Errno::EINVAL);
        }
        Call::OnPath { path, flags, steps } => (Call::Open { path, flags }, steps, false),
        plain => return Ok((plain, Step::Answer)),
    };
    Ok((call, Step::Opened { steps, keep, caller }))
}

/// What follows the scheme's `response` to a packet at `step`. A cancelled call (already
/// answered `EINTR`) goes no further; a handle its open made is closed by the orphan rule,
/// one a later step holds is closed here, as is one whose step failed.
pub(crate) fn after(step: Step, response: Response, cancelled: bool) -> After {
    match step {
        Step::Answer => After::Answer { response, close: None },
        Step::Opened { steps, keep, caller } => match response {
            Ok(Reply::Value(fd)) if !cancelled => next(fd, steps, keep, caller),
            other => After::Answer { response: other, close: None },
        },
        Step::OnHandle { fd, rest, keep, caller } => {
            if response.is_ok() && !cancelled && !rest.is_empty() {
                return next(fd, rest, keep, caller);
            }
            let close = (!keep || cancelled || response.is_err()).then_some(fd);
            let response = match response {
                Ok(Reply::Stat(stat)) if keep => Ok(Reply::Opened { fd: Fd(fd), stat }),
                other => other,
            };
            After::Answer { response, close }
        }
    }
}

/// The first of `steps` on handle `fd`, the others to follow it.
fn next(fd: u64, mut steps: Vec<PathStep>, keep: bool, caller: Caller) -> After {
    if steps.is_empty() {
        // `start` already refuses compounds without steps.
        return After::Answer { response: Err(Errno::EINVAL), close: Some(fd) };
    }
    let call = steps.remove(0).on(Fd(fd));
    After::Next(Next { call, caller, step: Step::OnHandle { fd, rest: steps, keep, caller } })
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
        assert_eq!(start(call.clone(), CALLER), Ok((call, Step::Answer)));
        let answer = after(Step::Answer, Ok(Reply::Value(1)), false);
        assert_eq!(answer, After::Answer { response: Ok(Reply::Value(1)), close: None });
    }

    #[test]
    fn stat_path_is_a_stat_only_open_then_fstat_then_close() {
        let (first, step) = start(Call::StatPath { path: "a/b".into() }, CALLER).unwrap();
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
        let call = Call::OpenStat { path: "f".into(), flags: 0x0203_0000 };
        let (first, step) = start(call, CALLER).unwrap();
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
        let (_, step) = start(Call::OpenStat { path: "f".into(), flags: 0 }, CALLER).unwrap();
        let answer = after(step, Err(Errno::ENOENT), false);
        assert_eq!(answer, After::Answer { response: Err(Errno::ENOENT), close: None });
    }

    #[test]
    fn a_failed_fstat_closes_even_a_kept_handle() {
        let step = Step::OnHandle { fd: 4, rest: vec![], keep: true, caller: CALLER };
        let answer = after(step, Err(Errno::EIO), false);
        assert_eq!(answer, After::Answer { response: Err(Errno::EIO), close: Some(4) });
    }

    #[test]
    fn a_cancelled_compound_stops_and_closes_what_it_holds() {
        let opened = Step::Opened { steps: vec![PathStep::Fstat], keep: true, caller: CALLER };
        // The open's handle is closed by the socket's rule for cancelled opens.
        let answer = after(opened, Ok(Reply::Value(4)), true);
        assert_eq!(answer, After::Answer { response: Ok(Reply::Value(4)), close: None });
        let rest = vec![PathStep::Fstat];
        let midway = Step::OnHandle { fd: 4, rest, keep: true, caller: CALLER };
        let After::Answer { close, .. } = after(midway, Ok(Reply::Value(0)), true) else {
            panic!("a cancelled compound never goes on");
        };
        assert_eq!(close, Some(4));
    }

    /// Runs `call` through `start` and `after`, the scheme answering each packet with
    /// `answer(packet's call)`; returns the calls made and the final `After::Answer`.
    fn run(call: Call, answer: impl Fn(&Call) -> Response) -> (Vec<Call>, After) {
        let (first, mut step) = start(call, CALLER).unwrap();
        let mut made = vec![first];
        loop {
            match after(step, answer(made.last().unwrap()), false) {
                After::Next(next) => {
                    assert_eq!(next.caller, CALLER);
                    made.push(next.call);
                    step = next.step;
                }
                done => return (made, done),
            }
        }
    }

    #[test]
    fn on_path_makes_each_step_on_the_new_handle_and_answers_the_last() {
        let steps = vec![PathStep::Fchmod { mode: 0o600 }, PathStep::Fstat];
        let (made, done) = run(Call::OnPath { path: "f".into(), flags: 1, steps }, |call| {
            Ok(match call {
                Call::Open { .. } => Reply::Value(6),
                Call::Fstat { .. } => Reply::Stat(stat()),
                _ => Reply::Value(0),
            })
        });
        let open = Call::Open { path: "f".into(), flags: 1 };
        let fchmod = Call::Fchmod { fd: Fd(6), mode: 0o600 };
        assert_eq!(made, [open, fchmod, Call::Fstat { fd: Fd(6) }]);
        assert_eq!(done, After::Answer { response: Ok(Reply::Stat(stat())), close: Some(6) });
    }

    #[test]
    fn on_path_stops_at_the_first_failed_step_and_closes() {
        let steps = vec![PathStep::Frename { path: "g".into() }, PathStep::Fstat];
        let (made, done) =
            run(Call::OnPath { path: "f".into(), flags: 1, steps }, |call| match call {
                Call::Open { .. } => Ok(Reply::Value(6)),
                _ => Err(Errno::EPERM),
            });
        assert_eq!(made.len(), 2, "no fstat after the failed frename: {made:?}");
        assert_eq!(done, After::Answer { response: Err(Errno::EPERM), close: Some(6) });
    }

    #[test]
    fn on_path_needs_one_to_eight_steps() {
        for count in [0, MAX_PATH_STEPS + 1] {
            let steps = vec![PathStep::Fstat; count];
            let call = Call::OnPath { path: "f".into(), flags: 0, steps };
            assert_eq!(start(call, CALLER), Err(Errno::EINVAL), "{count} steps");
        }
        let steps = vec![PathStep::Fstat; MAX_PATH_STEPS];
        assert!(start(Call::OnPath { path: "f".into(), flags: 0, steps }, CALLER).is_ok());
    }
}
