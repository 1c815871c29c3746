#!/usr/bin/env bash
# Issue 6's load targets in one run: stat latency with 1,000 reads blocked on chan streams
# next to idle (target: at most 1.2x), and schememount's RSS with 10,000 files open on a ramfs
# mount (target: under 50 MiB). Mounts chan and ramfs with schememount -f, runs bench/load.py,
# unmounts (also on failure or Ctrl-C).
#
# usage: bench/load.sh        (builds in release mode; root or fusermount3; python3)
#        REPS=15 (pairs of stat measurements, idle then blocked, of 2,000 stats each)
#        BLOCKED=1000 (reads blocked in the second state; 0 shows the stat path's own spread)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin schememount
SM=$PWD/target/release/schememount
work=$(mktemp -d)
pids=()
cleanup() {
    for m in "$work/chan" "$work/ramfs"; do "$SM" -u "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/chan" "$work/ramfs"
mount_fg() { # NAME DIR: start schememount -f in the background, wait until mounted
    "$SM" -f "$1" "$2" &
    pids+=($!)
    for _ in $(seq 100); do findmnt -n -M "$2" >/dev/null && return; sleep 0.05; done
    echo "schememount $1 did not mount $2" >&2
    exit 1
}
mount_fg chan "$work/chan"
chan_pid=${pids[-1]}
mount_fg ramfs "$work/ramfs"
ramfs_pid=${pids[-1]}
printf 'metric\tunit\tmedian\tmin\tmax\n'
python3 bench/load.py "$work/chan" "$chan_pid" "$work/ramfs" "$ramfs_pid" "${REPS:-15}"
