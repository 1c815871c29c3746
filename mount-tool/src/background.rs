//! Going to the background the way FUSE tools do, without fork: the command re-runs itself in
//! the foreground (`-f`) in a new process group with its stdout as a status pipe, and returns
//! once that process reports the mount ready (exit 0) or exits (with its status). Scripts can
//! run `schememount chan /mnt/chan && ls /mnt/chan` with no sleeping or polling.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};

/// Set in the environment of the foreground process when its stdout is the status pipe.
const STATUS_ENV: &str = "SCHEMEMOUNT_STATUS_PIPE";
const READY: &str = "ready";

/// Runs this command again in the foreground and waits for it to report.
pub(crate) fn spawn_and_wait() -> Result<ExitCode> {
    let exe =
        std::env::current_exe().context("cannot find this program to run it in the background")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("-f")
        .env(STATUS_ENV, "1")
        .env(BACKGROUND_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .context("cannot start the background process")?;
    let status_pipe = child.stdout.take().expect("stdout was piped");
    let mut line = String::new();
    let _ = BufReader::new(status_pipe).read_line(&mut line);
    if line.trim() == READY {
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait().context("lost the background process")?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8))
}

/// In the foreground process started by [`spawn_and_wait`]: tells the waiting command that the
/// mount is ready and points stdout at /dev/null. A process that went to the background also
/// lets go of stderr (like other FUSE tools; `-f` keeps it), so that a caller reading the
/// command's output, `$(schememount ...)` for instance, is not held open by the mount.
pub(crate) fn report_ready(detach_stderr: bool) -> Result<()> {
    if std::env::var_os(STATUS_ENV).is_none() {
        return Ok(());
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{READY}")?;
    stdout.flush()?;
    let null = File::options().write(true).open("/dev/null")?;
    rustix::stdio::dup2_stdout(&null)?;
    if detach_stderr {
        rustix::stdio::dup2_stderr(&null)?;
    }
    Ok(())
}

/// Set in the environment of a process that [`spawn_and_wait`] started.
const BACKGROUND_ENV: &str = "SCHEMEMOUNT_BACKGROUND";

/// Whether this process is the background half of [`spawn_and_wait`].
pub(crate) fn in_background() -> bool {
    std::env::var_os(BACKGROUND_ENV).is_some()
}
