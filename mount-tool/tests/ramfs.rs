//! The memory filesystem through a real mount, with the tools people use in a directory:
//! cp -a and diff -r of this repository, git, tar, rsync, find, du, ls -li with hard links,
//! mv over a file, O_APPEND from two processes, truncate, symlinks, touch -d, chmod, chown,
//! SQLite, df with a size limit, and an ordinary user meeting the daemon's permission checks.

mod util;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use util::{sh, Mount};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs `script` with `$M` set to the mount point; panics with its output if it fails.
fn ok(mount: &Mount, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .env("M", mount.root())
        .env("REPO", REPO)
        .output()
        .expect("bash runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "script failed:\n{script}\n--- output ---\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cp_a_of_this_repository_in_and_out_diffs_clean() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        src=$(mktemp -d); out=$(mktemp -d); trap 'rm -rf "$src" "$out"' EXIT
        git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 cp -a --parents -t "$src")
        cp -a "$src" "$M/tree"
        diff -r "$src" "$M/tree"
        cp -a "$M/tree" "$out/back"
        diff -r "$src" "$out/back"
        [ "$(find "$M/tree" -type f | wc -l)" = "$(find "$src" -type f | wc -l)" ]
        du -s "$M/tree" >/dev/null
    "#,
    );
}

#[test]
fn git_init_add_commit_log() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let log = ok(
        &mount,
        r#"
        cd "$M" && mkdir repo && cd repo
        git init -q . && git config user.email t@example.com && git config user.name T
        printf 'one\n' > a && mkdir d && printf 'two\n' > d/b && ln -s a link
        git add -A && git commit -qm first
        printf 'three\n' >> a && git commit -qam second
        git log --oneline | wc -l
        git fsck --no-progress 2>&1 | grep -v '^dangling' || true
    "#,
    );
    assert!(log.starts_with("2\n"), "{log}");
}

#[test]
fn tar_and_rsync_round_trip() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        src=$(mktemp -d); trap 'rm -rf "$src"' EXIT
        mkdir -p "$src/x/y"; head -c 300000 /dev/urandom > "$src/x/big"; echo hi > "$src/x/y/small"
        ln -s y/small "$src/x/rel"; chmod 0640 "$src/x/y/small"
        tar -C "$src" -cf "$M/a.tar" x
        mkdir "$M/untar" && tar -C "$M/untar" -xf "$M/a.tar"
        diff -r "$src/x" "$M/untar/x"
        rsync -a "$src/x/" "$M/synced/"
        diff -r "$src/x" "$M/synced"
        [ "$(stat -c %a "$M/synced/y/small")" = 640 ]
        tar -C "$M" -cf - synced | tar -tf - | grep synced/y/small >/dev/null  # not -q: an early exit would SIGPIPE tar under pipefail
    "#,
    );
}

#[test]
fn hard_links_share_inode_and_count() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        echo data > "$M/f"; ln "$M/f" "$M/g"
        set -- $(ls -li "$M/f" "$M/g" | awk '{print $1, $3}')
        [ "$1" = "$3" ] && [ "$2" = 2 ] && [ "$4" = 2 ]
        echo more >> "$M/g"; grep -q more "$M/f"
        rm "$M/f"; [ "$(stat -c %h "$M/g")" = 1 ]
    "#,
    );
}

#[test]
fn mv_over_a_file_truncate_and_touch() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        echo old > "$M/dst"; echo new > "$M/src"; mv "$M/src" "$M/dst"
        [ "$(cat "$M/dst")" = new ] && [ ! -e "$M/src" ]
        truncate -s 100000 "$M/dst"; [ "$(stat -c %s "$M/dst")" = 100000 ]
        [ "$(tail -c 10 "$M/dst" | tr -d '\0' | wc -c)" = 0 ]
        truncate -s 2 "$M/dst"; [ "$(cat "$M/dst")" = ne ]
        touch -d '2001-02-03 04:05:06.5' "$M/dst"
        [ "$(stat -c %y "$M/dst")" = "2001-02-03 04:05:06.500000000 +0000" ] || [ "$(date -d @"$(stat -c %Y "$M/dst")" +%Y)" = 2001 ]
        mkdir "$M/dir"; mv "$M/dst" "$M/dir/"; [ -f "$M/dir/dst" ]
        ! mv "$M/dir" "$M/dir/sub" 2>/dev/null
    "#,
    );
}

#[test]
fn append_from_two_processes_interleaves_whole_writes() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        for p in a b; do (for i in $(seq 200); do echo "$p$i" >> "$M/log"; done) & done; wait
        [ "$(wc -l < "$M/log")" = 400 ]
        [ "$(grep -c '^a' "$M/log")" = 200 ] && [ "$(grep -c '^b' "$M/log")" = 200 ]
    "#,
    );
}

#[test]
fn symlinks_relative_absolute_and_dangling() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        mkdir "$M/d"; echo target > "$M/d/t"
        ln -s t "$M/d/rel"; ln -s "$M/d/t" "$M/abs"; ln -s nowhere "$M/dangling"
        [ "$(cat "$M/d/rel")" = target ] && [ "$(cat "$M/abs")" = target ]
        [ "$(readlink "$M/d/rel")" = t ] && [ "$(readlink "$M/dangling")" = nowhere ]
        [ -L "$M/dangling" ] && [ ! -e "$M/dangling" ]
        ! cat "$M/dangling" 2>/dev/null
        [ "$(find "$M" -type l | wc -l)" = 3 ]
    "#,
    );
}

#[test]
fn chmod_chown_as_root_and_df_shows_the_limit() {
    let Some(mount) = Mount::start(&["-o", "max_bytes=1048576", "ramfs"]) else { return };
    ok(
        &mount,
        r#"
        echo x > "$M/f"; chmod 0751 "$M/f"; [ "$(stat -c %a "$M/f")" = 751 ]
        chown 1234:5678 "$M/f"; [ "$(stat -c %u:%g "$M/f")" = 1234:5678 ]
        [ "$(df -B4096 --output=size "$M" | tail -1 | tr -d ' ')" = 256 ]
        ! head -c 2000000 /dev/zero > "$M/big" 2>/dev/null
        rm -f "$M/big"; head -c 500000 /dev/zero > "$M/ok"
    "#,
    );
}

#[test]
fn sqlite_database_with_10000_rows() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let count = ok(
        &mount,
        r#"
        python3 - "$M/db.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table t (id integer primary key, name text, n integer)")
db.executemany("insert into t (name, n) values (?, ?)", ((f"row{i}", i * 7) for i in range(10000)))
db.commit()
db.execute("create index tn on t (n)")
db.commit()
db.close()
PY
        sqlite3 "$M/db.sqlite" "select count(*), sum(n) from t where n % 2 = 0; pragma integrity_check;"
    "#,
    );
    let even_sum: u64 = (0..10000u64).map(|i| i * 7).filter(|n| n % 2 == 0).sum();
    assert_eq!(count.trim(), format!("5000|{even_sum}\nok"));
}

#[test]
fn an_ordinary_user_meets_the_daemons_permission_checks() {
    let Some(mount) = Mount::start(&["-o", "allow_other", "ramfs"]) else { return };
    let user = "sbtestuser";
    let _ = Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", user]).status();
    let uid: u32 = sh(&format!("id -u {user}")).1.trim().parse().expect("user exists");
    ok(
        &mount,
        &format!(
            r#"
        chmod 0755 "$M"
        echo secret > "$M/private"; chmod 0600 "$M/private"
        echo public > "$M/public"; chmod 0644 "$M/public"
        mkdir "$M/locked"; chmod 0700 "$M/locked"; echo x > "$M/locked/f"
        mkdir "$M/mine"; chown {uid} "$M/mine"
    "#
        ),
    );
    let as_user = |script: &str| {
        Command::new("runuser")
            .args(["-u", user, "--", "sh", "-c", script])
            .env("M", mount.root())
            .status()
            .unwrap()
            .success()
    };
    assert!(!as_user("cat \"$M/private\" 2>/dev/null"), "0600 of root is unreadable");
    assert!(as_user("cat \"$M/public\" >/dev/null"));
    assert!(!as_user("echo no >> \"$M/public\" 2>/dev/null"), "0644 of root is not writable");
    assert!(!as_user("ls \"$M/locked\" >/dev/null 2>&1"), "0700 dir is not listable");
    assert!(!as_user("cat \"$M/locked/f\" 2>/dev/null"), "no search permission");
    assert!(!as_user("touch \"$M/new\" 2>/dev/null"), "root-owned 0755 dir refuses creation");
    assert!(as_user("echo mine > \"$M/mine/f\" && cat \"$M/mine/f\" >/dev/null"));
    let owner = std::fs::metadata(mount.path("mine/f")).unwrap().uid();
    assert_eq!(owner, uid, "the caller's uid reached the daemon");
}

#[test]
fn files_survive_the_kernel_forgetting_their_inodes() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let out = ok(
        &mount,
        r#"
        echo data > "$M/f"; mkdir "$M/d"; echo more > "$M/d/g"; ln "$M/f" "$M/d/h"
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        cat "$M/f" "$M/d/g" "$M/d/h"
        [ "$(stat -c %i "$M/f")" = "$(stat -c %i "$M/d/h")" ]
        rm "$M/f"; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        cat "$M/d/h"
    "#,
    );
    assert_eq!(out, "data\nmore\ndata\ndata\n");
}

/// `ls -l` of a cold directory comes from READDIRPLUS pages (many of them here): every entry
/// is listed once, with its own size, type and inode, the same ones a stat by name gives.
#[test]
fn ls_l_of_a_cold_directory_of_many_pages_matches_stat_by_name() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let out = ok(
        &mount,
        r#"
        mkdir "$M/big"; cd "$M/big"
        for i in $(seq 1 700); do head -c $i /dev/zero > "file-with-a-longish-name-$i"; done
        mkdir sub; ln -s file-with-a-longish-name-7 link; ln file-with-a-longish-name-9 hard
        cd /; sync; echo 3 > /proc/sys/vm/drop_caches
        ls -ln --time-style=+%s "$M/big" | awk 'NR > 1 { print substr($1, 1, 1), $2, $5, $7 }' | sort > /tmp/ls.$$
        ls -i "$M/big" | awk '{ print $1, $2 }' | sort -k2 > /tmp/ino.$$
        echo 3 > /proc/sys/vm/drop_caches
        for f in "$M"/big/*; do echo "$(stat -c %i "$f") ${f##*/}"; done | sort -k2 > /tmp/stat.$$
        cmp /tmp/ino.$$ /tmp/stat.$$ && echo same inodes
        wc -l < /tmp/ls.$$
        grep -c '^- 1 ' /tmp/ls.$$
        grep -E ' (sub|link|hard|file-with-a-longish-name-9|file-with-a-longish-name-700)$' /tmp/ls.$$
        awk '$1 == "-" && $4 ~ /^file/ { n = substr($4, 26); if (n != $3) bad++ } END { print bad + 0, "sizes wrong" }' /tmp/ls.$$
        rm -f /tmp/ls.$$ /tmp/ino.$$ /tmp/stat.$$
    "#,
    );
    let expected = "same inodes\n703\n699\n\
        - 1 700 file-with-a-longish-name-700\n- 2 9 file-with-a-longish-name-9\n\
        - 2 9 hard\nd 2 0 sub\nl 1 26 link\n0 sizes wrong\n";
    assert_eq!(out, expected);
}

/// fstat of an open file whose name was unlinked, or replaced by a rename, describes the open
/// file (POSIX), also once the kernel's cached attributes have expired and it asks again.
#[test]
fn fstat_of_an_open_file_outlives_its_name() {
    use std::io::Write;
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    let mut unlinked = std::fs::File::create(mount.path("unlinked")).unwrap();
    unlinked.write_all(b"12345").unwrap();
    std::fs::remove_file(mount.path("unlinked")).unwrap();
    let mut replaced = std::fs::File::create(mount.path("replaced")).unwrap();
    replaced.write_all(b"abc").unwrap();
    std::fs::write(mount.path("new"), "the replacement").unwrap();
    std::fs::rename(mount.path("new"), mount.path("replaced")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_200)); // past the 1 s attribute TTL
    assert_eq!(unlinked.metadata().expect("fstat after unlink").len(), 5);
    assert_eq!(replaced.metadata().expect("fstat after rename over").len(), 3);
    assert_eq!(std::fs::metadata(mount.path("replaced")).unwrap().len(), 15);
}

#[test]
fn without_a_limit_a_huge_truncate_is_enospc_not_an_out_of_memory_kill() {
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    ok(
        &mount,
        r#"
        touch "$M/f"; ! truncate -s 1T "$M/f" 2>/dev/null
        echo still alive > "$M/g"; [ "$(cat "$M/g")" = "still alive" ]
    "#,
    );
}

#[test]
fn in_process_mode_serves_the_same_filesystem() {
    let Some(mount) = Mount::start(&["--in-process", "ramfs"]) else { return };
    ok(
        &mount,
        r#"
        mkdir "$M/d"; echo data > "$M/d/f"; ln "$M/d/f" "$M/g"; ln -s d/f "$M/l"
        [ "$(cat "$M/l")" = data ] && [ "$(stat -c %h "$M/g")" = 2 ]
        cd "$M" && git init -q r && cd r && echo x > x && git add x
        git -c user.email=t@e -c user.name=T commit -qm one && [ "$(git log --oneline | wc -l)" = 1 ]
    "#,
    );
    let out =
        Command::new(util::SCHEMEMOUNT).args(["--in-process", "chan", "/tmp"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("the ramfs scheme only"));
}
