#!/usr/bin/env bash
# bench/run.sh - the project's benchmark in one command: the mounted ramfs out of process (the
# product) next to the same ramfs served in process, tmpfs and sshfs, plus the bridge's chan
# streams and wire round trips next to plain pipes, all in the same run.
#
# usage (as root: it mounts tmpfs and drops caches):
#   bench/run.sh                  full run, ~20-30 min; writes bench/results/latest.{md,tsv,svg}
#   QUICK=1 bench/run.sh          smoke run, a few minutes; writes target/bench-quick/latest.*
#
# Environment knobs [default]:
#   REPS [5]         runs per contender and placement; a cell is median (min-max) over them
#   SIZE_MB [256]    sequential write/read file size, and bytes per chan/pipe stream, in MiB
#   PIN [both]       none: unpinned; cpu0: every mount process and every client on CPU 0
#                    (`taskset -c 0`; schememount's daemon and sshfs's sftp-server inherit it);
#                    both: the two, one after the other, reported in separate tables
#   QUICK [0]        1: SIZE_MB=16, REPS=1 and small counts (each knob can still be set)
#   NREAD [20000]    O_DIRECT preads per run (1 B and 4 KiB)
#   NMETA [2000]     files created, statted and unlinked per run
#   NLS [1000]       entries of the directory `ls -l` lists
#   NOPEN [5000]     open+read+close of a 4 KiB file per run
#   NRTT [20000]     round trips per run, over the wire, as bare frames, over a pipe, through
#                    three-process chains over pipes and over shared memory, and a loop (1 B, 4 KiB)
#   OUT [bench/results/latest]  output prefix: OUT.md (tables, machine, command), OUT.tsv
#                    (every measurement), OUT.svg (bench/plot.py)
#   TIMEOUT [600]    seconds before one workload is given up on (it is reported as err)
#
# Contenders (each mounted fresh per placement):
#   tmpfs   mount -t tmpfs
#   inproc  schememount --in-process ramfs DIR  (fuser calls the ramfs scheme directly)
#   bridge  schememount ramfs DIR               (FUSE -> wire -> pipe -> ramfs daemon process)
#   sshfs   sshfs -o ssh_command=bench/fake-ssh.sh localhost:SRC DIR  (SFTP over a pipe to
#           sftp-server, which serves its own tmpfs SRC)
# and for the stream metrics a `schememount chan DIR`. Every workload is timed inside
# schemebench (bench/runner), so no process start-up is timed, except `ls -l`, which is timed
# around the command. Each workload runs on every contender back to back (in an order that
# rotates), so the two figures of a ratio are taken seconds apart.
# Whatever fails is reported as err (with the command and its message in OUT.md) and the run
# goes on; an EXIT trap unmounts everything and ends every process it started, also on
# failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    REPS=${REPS:-1} SIZE_MB=${SIZE_MB:-16} NREAD=${NREAD:-2000} NMETA=${NMETA:-200}
    NLS=${NLS:-100} NOPEN=${NOPEN:-500} NRTT=${NRTT:-2000} OUT=${OUT:-target/bench-quick/latest}
fi
REPS=${REPS:-5} SIZE_MB=${SIZE_MB:-256} PIN=${PIN:-both} NREAD=${NREAD:-20000}
NMETA=${NMETA:-2000} NLS=${NLS:-1000} NOPEN=${NOPEN:-5000} NRTT=${NRTT:-20000}
OUT=${OUT:-bench/results/latest} TIMEOUT=${TIMEOUT:-600}
COMMAND="QUICK=$QUICK REPS=$REPS SIZE_MB=$SIZE_MB PIN=$PIN NREAD=$NREAD NMETA=$NMETA NLS=$NLS NOPEN=$NOPEN NRTT=$NRTT bench/run.sh"

die() { echo "run.sh: $*" >&2; exit 1; }
for knob in REPS SIZE_MB NREAD NMETA NLS NOPEN NRTT TIMEOUT; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive whole number, not '${!knob}'"
done
case $PIN in
both) PLACEMENTS=(unpinned cpu0) ;;
none | unpinned) PLACEMENTS=(unpinned) ;;
cpu0 | 0 | pinned) PLACEMENTS=(cpu0) ;;
*) die "PIN must be both, none or cpu0, not '$PIN'" ;;
esac
[ "$(id -u)" = 0 ] || die "run me as root: I mount tmpfs and write /proc/sys/vm/drop_caches"
[ -c /dev/fuse ] || die "no /dev/fuse"

# ---- 1. tools ------------------------------------------------------------------------------
SFTP_SERVER=/usr/lib/openssh/sftp-server
if ! command -v sshfs >/dev/null || ! command -v fusermount3 >/dev/null ||
    ! command -v python3 >/dev/null || [ ! -x "$SFTP_SERVER" ]; then
    echo "== installing sshfs, openssh-sftp-server, fuse3, python3"
    # (without Recommends, which would add an ssh server that nothing here uses)
    apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends sshfs openssh-sftp-server fuse3 python3
fi
for tool in sshfs fusermount3 python3 taskset findmnt timeout; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$SFTP_SERVER" ] || die "$SFTP_SERVER is missing"
export SFTP_SERVER

# ---- 2. build ------------------------------------------------------------------------------
# What is built, looked at before this run writes its own results into the tree (results of
# an earlier run, such as latest.* before a repeat, are not changes to what is built).
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no -- . ':!bench/results' 2>/dev/null)
[ -z "$dirty" ] || git_rev="$git_rev (with uncommitted changes)"
echo "== cargo build --release (schememount, zerod, schemebench)"
cargo build --release -q --bin schememount --bin zerod --bin schemebench
SM=$ROOT/target/release/schememount
ZEROD=$ROOT/target/release/zerod
SB=$ROOT/target/release/schemebench

# ---- 3. scratch space, mounts, processes, cleanup -----------------------------------------
WORK=$(mktemp -d /tmp/schemebench.XXXXXX)
RAW=$WORK/raw.tsv
FAILURES=$WORK/failures.md
: >"$RAW"
: >"$FAILURES"
MOUNTS=() # "kind:dir", in mounting order
PIDS=()   # processes started here (mount processes and their children)
PINCMD=()

is_mounted() { findmnt -rn -M "$1" >/dev/null 2>&1; }
is_fuse() { findmnt -rn -M "$1" -o FSTYPE 2>/dev/null | grep -q '^fuse'; }

unmount_one() { # KIND DIR
    case $1 in
    tmpfs) umount "$2" || umount -l "$2" ;;
    schememount) "$SM" -u "$2" || "$SM" -u --abort "$2" ;;
    sshfs) fusermount3 -u "$2" || fusermount3 -u -z "$2" ;;
    esac
}

stop_pid() { # PID: up to 10 s to exit on its own, then TERM, then KILL (this pid only)
    local pid=$1 i
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: pid $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)) still runs; TERM" >&2
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

teardown() { # unmount everything (newest first), then end every process
    local i entry
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        entry=${MOUNTS[i]}
        if is_mounted "${entry#*:}"; then unmount_one "${entry%%:*}" "${entry#*:}" || true; fi
    done
    for entry in "${PIDS[@]}"; do stop_pid "$entry"; done
    MOUNTS=()
    PIDS=()
}

leftovers() { # prints mounts under WORK and live processes of PIDS-history, if any
    awk -v w="$WORK/" 'index($2, w) == 1 { print "still mounted: " $2 }' /proc/mounts
    local pid
    for pid in "${STARTED[@]}"; do
        if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
            echo "still running: pid $pid $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)"
        fi
    done
}
STARTED=()

cleanup() {
    local status=$?
    set +e
    trap - INT TERM HUP
    teardown
    local left
    left=$(leftovers)
    if [ -n "$left" ]; then
        echo "run.sh: WARNING, left behind (scratch $WORK kept):" >&2
        echo "$left" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM HUP

track() { PIDS+=("$@"); STARTED+=("$@"); }

mount_tmpfs() { # DIR
    mkdir -p "$1"
    MOUNTS+=("tmpfs:$1")
    mount -t tmpfs -o "size=$((SIZE_MB * 3 + 512))m" tmpfs "$1"
}

start_fuse() { # KIND DIR LOG COMMAND...: runs COMMAND (in the foreground mode) and waits for DIR
    local kind=$1 dir=$2 log=$3 pid i
    shift 3
    mkdir -p "$dir"
    MOUNTS+=("$kind:$dir")
    "${PINCMD[@]}" "$@" </dev/null >"$log" 2>&1 &
    pid=$!
    track "$pid"
    for ((i = 0; i < 200; i++)); do
        is_fuse "$dir" && break
        kill -0 "$pid" 2>/dev/null || die "$* did not mount: $(cat "$log")"
        sleep 0.05
    done
    is_fuse "$dir" || die "$* did not mount within 10 s: $(cat "$log")"
    # Its children (the scheme daemon, sftp-server, fusermount3's auto-unmount helper).
    local children
    children=$(pgrep -P "$pid" || true)
    [ -z "$children" ] || track $children
}

mount_all() { # PLACEMENT: every contender and the chan mount, fresh
    local p=$WORK/$1
    mkdir -p "$p/log"
    mount_tmpfs "$p/tmpfs"
    start_fuse schememount "$p/inproc" "$p/log/inproc" "$SM" -f --in-process ramfs "$p/inproc"
    start_fuse schememount "$p/bridge" "$p/log/bridge" "$SM" -f ramfs "$p/bridge"
    mount_tmpfs "$p/sshfs-src"
    start_fuse sshfs "$p/sshfs" "$p/log/sshfs" \
        sshfs -f -o "ssh_command=$ROOT/bench/fake-ssh.sh" "localhost:$p/sshfs-src" "$p/sshfs"
    start_fuse schememount "$p/chan" "$p/log/chan" "$SM" -f chan "$p/chan"
}

# ---- 4. measuring -------------------------------------------------------------------------
# measure PLACEMENT CONTENDER REP SCHEMEBENCH-ARGS...: runs one workload, appends its lines
# to RAW; a failure goes to FAILURES with the command and schemebench's message.
measure() {
    local placement=$1 contender=$2 rep=$3 out rc=0 metric unit value
    shift 3
    out=$("${PINCMD[@]}" timeout --foreground -k 10 "$TIMEOUT" "$SB" "$@" 2>"$WORK/stderr") || rc=$?
    while IFS=$'\t' read -r metric unit value; do
        [ -n "$metric" ] && [ -n "$value" ] || continue
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$placement" "$contender" "$metric" "$unit" "$rep" "$value" >>"$RAW"
        printf '  %-8s rep %-2s %-7s %-22s %12s %s\n' "$placement" "$rep" "$contender" "$metric" "$value" "$unit"
    done <<<"$out"
    if [ "$rc" != 0 ]; then
        local why
        why=$(tr '\n' ' ' <"$WORK/stderr" | sed "s|$WORK|\$WORK|g")
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then why="timed out after ${TIMEOUT} s. $why"; fi
        printf -- '- %s, %s, rep %s: `schemebench %s` exited %s: %s\n' "$placement" "$contender" \
            "$rep" "$(echo "$*" | sed "s|$WORK|\$WORK|g")" "$rc" "$why" >>"$FAILURES"
        echo "  FAILED ($rc): schemebench $* : $why" >&2
    fi
    return 0
}

# The file-system workloads, one line of schemebench fs arguments (after DIR) each.
fs_workloads() {
    local direct bs
    for direct in "" --direct; do
        for bs in 128k 1m; do
            echo "--workload write-seq --bs $bs --size-mb $SIZE_MB $direct"
        done
    done
    for direct in "" --direct; do
        for bs in 128k 1m; do
            echo "--workload read-seq --bs $bs --size-mb $SIZE_MB $direct"
        done
    done
    echo "--workload pread --io-size 1 --count $NREAD"
    echo "--workload pread --io-size 4k --count $NREAD"
    echo "--workload meta --count $NMETA"
    echo "--workload ls-l --count $NLS"
    echo "--workload openread --count $NOPEN"
}
mapfile -t FS_WORKLOADS < <(fs_workloads)

# fs_round PLACEMENT REP: each workload on every contender back to back, so that the figures
# a ratio divides are taken seconds apart, not a whole suite apart (the host's load drifts);
# the contenders' order rotates with every workload and every repetition. Then each
# contender's files go (until then every contender keeps its SIZE_MB file, so a round holds
# four of them in memory: tmpfs, the two ramfs mounts, sshfs's tmpfs).
fs_round() {
    local placement=$1 rep=$2 w i n=${#CONTENDERS[@]} contender workload
    for ((w = 0; w < ${#FS_WORKLOADS[@]}; w++)); do
        read -ra workload <<<"${FS_WORKLOADS[w]}"
        for ((i = 0; i < n; i++)); do
            contender=${CONTENDERS[(i + w + rep - 1) % n]}
            measure "$placement" "$contender" "$rep" fs "$WORK/$placement/$contender" "${workload[@]}"
        done
    done
    for contender in "${CONTENDERS[@]}"; do
        if ! rm -rf "$WORK/$placement/$contender/schemebench" 2>"$WORK/stderr"; then
            printf -- '- %s, %s, rep %s: `rm -rf DIR/schemebench` failed: %s\n' "$placement" \
                "$contender" "$rep" "$(tr '\n' ' ' <"$WORK/stderr")" >>"$FAILURES"
        fi
    done
}

ipc_suite() { # PLACEMENT REP
    local placement=$1 rep=$2 size
    measure "$placement" bridge "$rep" chan-stream "$WORK/$placement/chan" --mb "$SIZE_MB"
    measure "$placement" pipe "$rep" pipe-stream --mb "$SIZE_MB"
    for size in 1 4k; do
        measure "$placement" bridge "$rep" wire-rtt --size "$size" --count "$NRTT" --daemon "$ZEROD"
        measure "$placement" frames "$rep" frame-rtt --size "$size" --count "$NRTT"
        measure "$placement" chain "$rep" chain-rtt --size "$size" --count "$NRTT"
        measure "$placement" shared "$rep" shared-chain-rtt --size "$size" --count "$NRTT"
        measure "$placement" loop "$rep" loop-rtt --size "$size" --count "$NRTT"
        measure "$placement" pipe "$rep" pipe-rtt --size "$size" --count "$NRTT"
    done
}

CONTENDERS=(tmpfs inproc bridge sshfs)
START=$(date -u +%FT%TZ)
SECONDS=0
for placement in "${PLACEMENTS[@]}"; do
    case $placement in
    cpu0) PINCMD=(taskset -c 0) ;;
    *) PINCMD=() ;;
    esac
    echo "== $placement: mounting tmpfs, inproc, bridge, sshfs, chan"
    mount_all "$placement"
    for ((rep = 1; rep <= REPS; rep++)); do
        fs_round "$placement" "$rep"
        ipc_suite "$placement" "$rep"
    done
    echo "== $placement: unmounting"
    teardown
done
PINCMD=()
left=$(leftovers)
[ -z "$left" ] || printf -- '- left behind after unmounting: %s\n' "$(echo "$left" | tr '\n' ';')" >>"$FAILURES"
ELAPSED=$SECONDS

# ---- 5. results ---------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    printf 'placement\tcontender\tmetric\tunit\trep\tvalue\n'
    cat "$RAW"
} >"$OUT.tsv"
python3 bench/plot.py "$OUT.tsv" "$OUT.svg" || echo "- bench/plot.py failed" >>"$FAILURES"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
fuser_version=$(awk '/^name = "fuser"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
{
    echo "# Benchmark: scheme-bridge vs. in-process FUSE, tmpfs and sshfs"
    echo
    echo "Made by \`bench/run.sh\` (issue 6); raw values in \`$(basename "$OUT").tsv\`."
    echo
    echo "- command: \`$COMMAND\`"
    echo "- date: $START, took $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
    echo "- machine: kernel $(uname -r), $(nproc) CPUs ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "- build: $git_rev, $(rustc --version 2>/dev/null), fuser $fuser_version, release profile"
    echo "- sshfs: $(sshfs -V 2>&1 | sed -n 's/^SSHFS version //p'); $(fusermount3 -V 2>&1)"
    echo "- sizes: ${SIZE_MB} MiB sequential files and streams; $NREAD preads; $NMETA files; $NLS entries; $NOPEN opens; $NRTT round trips"
    echo
    echo "Each cell is the median (min-max) of $REPS runs; ratios divide medians. \"better\" says"
    echo "which way is good: for a higher-is-better metric a ratio under 1 means the bridge is"
    echo "slower, for a lower-is-better one a ratio over 1 does. MB/s = 10^6 bytes/s. Compare only"
    echo "figures of the same placement, and ratios from the same run."
    echo
    echo "![relative speed per metric](./$(basename "$OUT").svg)"
    echo
    "$SB" report "$OUT.tsv"
    cat <<EOF
### Metrics

- \`write_{128k,1m}_{buffered,direct}\`: open(O_CREAT|O_TRUNC[|O_DIRECT]), ${SIZE_MB} MiB in 128 KiB or
  1 MiB writes, fsync, close; timed open to close, on a fresh file.
- \`read_{128k,1m}_cold\`: sync, drop caches (\`echo 3 > /proc/sys/vm/drop_caches\`), then read that
  file to the end in 128 KiB or 1 MiB requests (tmpfs is the page cache, so its "cold" read is a
  memory copy). \`read_*_direct\`: the same with O_DIRECT.
- \`pread_1b_direct\`, \`pread_4k_direct\`: preads on an O_DIRECT fd of a 1 MiB file (1 B at offset 0,
  4 KiB sequential), after 100 untimed ones; one FUSE round trip each.
- \`meta_*\`: $NMETA x create+close (O_EXCL), then $NMETA x stat, then $NMETA x unlink; files/s for the whole
  cycle and µs per file per phase.
- \`ls_l_cold_ms\`: \`LC_ALL=C ls -l\` of a directory of $NLS empty files after dropping caches, timed
  around the command (fork and exec included, about 1 ms).
- \`openread_ops_per_s\`: open + read 4 KiB + close of a 4 KiB file.
- \`stream_64k\`: a writer process sends ${SIZE_MB} MiB in 64 KiB writes to a reader process; bridge:
  through a chan stream of \`schememount chan\` (a listener, a connecting open, the accept by the dup
  ioctl); pipe: the same two programs over a plain pipe.
- \`rtt_1b\`, \`rtt_4k\`: bridge: \`scheme_bridge::Client::read(fd, SIZE)\` to a spawned \`zerod\` over the
  wire, no FUSE; pipe: a two-process ping-pong moving the same bytes as the wire's call and reply
  frames; frames: the same ping-pong with the real frames, encoded and decoded by the codec on
  both ends (the serialized wire alone, without the client library and the daemon's packets);
  chain: the pipe's bytes through a relay process to its echo child and back (three processes,
  as program, FUSE server and daemon are); shared: the same, with the relay's hop to the echo
  process through shared memory, the CPU handed over with \`sched_yield\` (as the bridge's frame
  rings do); loop: the same bytes to a forwarding process, on to the echo process and straight
  back to the first (as if the daemon answered the kernel itself, which the bridge does not
  do). µs per round trip.
- Floor (pinned only): what bridge/inproc of a pread would be if the bridge's hop cost only what
  a third process adds to a pipe ping-pong: (inproc pread + chain - pipe) / inproc pread; with
  shared instead of chain, the same over frame rings; with loop, the floor of a daemon
  answering the kernel itself.
- n/a: the file system refused O_DIRECT (EINVAL). err: the workload failed (see below).

### Failures

EOF
    if [ -s "$FAILURES" ]; then cat "$FAILURES"; else echo "None."; fi
} >"$OUT.md"

echo
echo "== results: $OUT.md, $OUT.tsv, $OUT.svg ($((ELAPSED / 60)) min $((ELAPSED % 60)) s)"
"$SB" report "$OUT.tsv"
if [ -s "$FAILURES" ]; then
    echo "== failures:"
    cat "$FAILURES"
fi
