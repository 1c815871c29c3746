//! Finding a daemon program by name without configuration: next to the running executable
//! (where `cargo build` and `cargo install` put the workspace's binaries), one directory up
//! (for `target/*/examples/` and `target/*/deps/`), then on `PATH`.

use std::env;
use std::path::{Path, PathBuf};

/// The path of the daemon program `name` (e.g. `"chand"`), if it can be found.
pub fn find_daemon(name: &str) -> Option<PathBuf> {
    let exe = env::current_exe().ok()?;
    let beside = exe.parent().map(Path::to_path_buf);
    let above = beside.as_deref().and_then(Path::parent).map(Path::to_path_buf);
    let path = env::var_os("PATH").unwrap_or_default();
    beside
        .into_iter()
        .chain(above)
        .chain(env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
