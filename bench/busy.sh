#!/usr/bin/env bash
# What busy polling buys and what it costs. Mounts ramfs twice, with -o busy_poll=0 (each end
# of the wire blocks in read at once) and with the default window, and runs the same
# workloads on both: 4 KiB O_DIRECT preads and create/stat/unlink. With SCHEME=chan it mounts
# chan instead (a parking daemon behind the interrupt relay, where three more threads poll)
# and times stats of a listener. For each it prints the
# median (min-max) time per operation over REPS runs, and the CPU time the mount and its
# daemon used per operation (their threads' schedstat, so the CPU busy polling burns shows).
#
# usage: bench/busy.sh             (as root; builds in release mode)
#        PIN=cpu0 bench/busy.sh    (everything on CPU 0: frame rings are still watched, pipes not)
#        SCHEME=chan bench/busy.sh (stat of a chan listener)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5} COUNT=${COUNT:-20000} FILES=${FILES:-2000} WINDOW=${WINDOW:-50} PIN=${PIN:-none}
SCHEME=${SCHEME:-ramfs}
case $SCHEME in ramfs) WORKLOADS=(pread meta) ;; chan) WORKLOADS=(stat) ;; *) echo "SCHEME: ramfs or chan" >&2; exit 2 ;; esac
case $PIN in none) PINCMD=() ;; cpu0) PINCMD=(taskset -c 0) ;; *) echo "PIN: none or cpu0" >&2; exit 2 ;; esac
cargo build --release -q --bin schememount --bin schemebench
SM=target/release/schememount
SB=target/release/schemebench
work=$(mktemp -d)
pids=()
cleanup() {
    for m in "$work"/w*; do [ -d "$m" ] && { $SM -u "$m" 2>/dev/null || $SM -u --abort "$m" 2>/dev/null || true; }; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# mount WINDOW: a foreground schememount with that busy-poll window; prints its pid
mount_with() {
    mkdir -p "$work/w$1"
    "${PINCMD[@]}" "$SM" -f -o "busy_poll=$1" "$SCHEME" "$work/w$1" </dev/null >"$work/log$1" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do findmnt -rn -M "$work/w$1" >/dev/null && return; sleep 0.05; done
    echo "busy.sh: mount with busy_poll=$1 failed: $(cat "$work/log$1")" >&2
    exit 1
}

# cpu_ns PID...: CPU nanoseconds used so far by every thread of the PIDs and their children
cpu_ns() {
    local pid all=()
    for pid in "$@"; do all+=("$pid" $(pgrep -P "$pid" || true)); done
    cat $(printf '/proc/%s/task/*/schedstat ' "${all[@]}") 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# one WINDOW PID WORKLOAD: prints "us_per_op cpu_us_per_op" for one run
one() {
    local dir=$work/w$1 pid=$2 before after out ops
    before=$(cpu_ns "$pid")
    case $3 in
    pread) out=$("${PINCMD[@]}" $SB fs "$dir" --workload pread --io-size 4k --count "$COUNT"); ops=$COUNT ;;
    meta) # its first line: files per second over create, stat and unlink
        out=$("${PINCMD[@]}" $SB fs "$dir" --workload meta --count "$FILES")
        out=${out%%$'\n'*} ops=$FILES ;;
    stat) out=$("${PINCMD[@]}" $SB fs "$dir" --workload stat --count "$COUNT"); ops=$COUNT ;;
    esac
    after=$(cpu_ns "$pid")
    awk -v line="$out" -v cpu=$((after - before)) -v ops="$ops" -v w="$3" 'BEGIN {
        split(line, f, "\t"); v = f[3]; if (w == "meta") v = 1e6 / v;
        printf "%.3f %.3f\n", v, cpu / 1000 / ops }'
}

stats() { sort -n | awk '{a[NR]=$1} END {printf "%.2f (%.2f-%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mount_with 0
off_pid=${pids[-1]}
mount_with "$WINDOW"
on_pid=${pids[-1]}
echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $SCHEME, placement ${PIN}; busy_poll=0 vs busy_poll=$WINDOW; $REPS runs; $(nproc) CPUs"
printf '| %-28s | %-20s | %-20s | %-8s |\n' "workload, per operation" "busy_poll=0" "busy_poll=$WINDOW" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------" "----------------------" "----------------------" "----------"
for workload in "${WORKLOADS[@]}"; do
    offs=() ons=()
    for _ in $(seq "$REPS"); do # interleaved, so both see the same machine state
        offs+=("$(one 0 "$off_pid" $workload)")
        ons+=("$(one "$WINDOW" "$on_pid" $workload)")
    done
    for col in 1 2; do
        label=$([ $col = 1 ] && echo "$workload: time (µs)" || echo "$workload: mount+daemon CPU (µs)")
        off=$(printf '%s\n' "${offs[@]}" | cut -d' ' -f$col | stats)
        on=$(printf '%s\n' "${ons[@]}" | cut -d' ' -f$col | stats)
        ratio=$(awk -v a="${on%% *}" -v b="${off%% *}" 'BEGIN { printf "%.2f", a / b }')
        printf '| %-28s | %-20s | %-20s | %-8s |\n' "$label" "$off" "$on" "$ratio"
    done
done
