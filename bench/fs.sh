#!/usr/bin/env bash
# Throughput of the mounted ramfs (out of process, the product; and --in-process, fuser calling
# the scheme directly) next to a tmpfs directory, measured in the same run.
# Workloads: sequential write and read of SIZE_MB MiB with 1 MiB requests (dd), and
# create+stat+unlink of NFILES files (one Python process per pass, same for both).
# Prints median, min and max over REPS runs, and ramfs/tmpfs ratios of the medians.
#
# usage: bench/fs.sh          (builds in release mode; root or fusermount3; /dev/shm is tmpfs)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
SIZE_MB=${SIZE_MB:-256}
NFILES=${NFILES:-2000}
cargo build --release -q --bin schememount
SM=target/release/schememount
work=$(mktemp -d)
tmpfs=$(mktemp -d -p /dev/shm)
trap '$SM -u "$work/ram" 2>/dev/null || true; $SM -u "$work/inproc" 2>/dev/null || true; rm -rf "$work" "$tmpfs"' EXIT
mkdir "$work/ram" "$work/inproc"
$SM ramfs "$work/ram"
$SM --in-process ramfs "$work/inproc"

now() { date +%s%N; }
mbps() { awk -v ns="$1" -v mb="$SIZE_MB" 'BEGIN { printf "%.1f\n", mb / (ns / 1e9) }'; }

seq_write() { local t=$(now); dd if=/dev/zero of="$1/seq" bs=1M count="$SIZE_MB" conv=fsync status=none; mbps $(( $(now) - t )); }
seq_read() {
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    local t=$(now); dd if="$1/seq" of=/dev/null bs=1M status=none; mbps $(( $(now) - t ))
}
meta() {
    python3 - "$1" "$NFILES" <<'PY'
import os, sys, time
d, n = sys.argv[1] + "/meta", int(sys.argv[2])
os.mkdir(d)
t = time.monotonic()
for i in range(n): os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
for i in range(n): os.stat(f"{d}/f{i}")
for i in range(n): os.unlink(f"{d}/f{i}")
took = time.monotonic() - t
os.rmdir(d)
print(f"{n / took:.0f}")
PY
}

declare -A results
for _ in $(seq "$REPS"); do
    for fs in tmpfs inproc ramfs; do
        case $fs in tmpfs) dir=$tmpfs ;; inproc) dir=$work/inproc ;; ramfs) dir=$work/ram ;; esac
        results[$fs,write]+="$(seq_write "$dir") "
        results[$fs,read]+="$(seq_read "$dir") "
        rm -f "$dir/seq"
        results[$fs,meta]+="$(meta "$dir") "
    done
done

stat3() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]}'; }
row() { read -r med min max <<<"$(echo "${results[$1,$2]}" | stat3)"; printf '%10s (%s-%s)' "$med" "$min" "$max"; }
med() { echo "${results[$1,$2]}" | stat3 | cut -d' ' -f1; }
printf '%-30s %26s %26s %26s %9s %9s\n' workload tmpfs "in-process ramfs" "ramfs (schememount)" "ram/tmp" "ram/inp"
for w in write read meta; do
    label="seq $w ${SIZE_MB} MiB, MB/s"; [ $w = meta ] && label="create+stat+unlink, files/s"
    r1=$(awk -v r="$(med ramfs $w)" -v t="$(med tmpfs $w)" 'BEGIN { printf "%.2f", r / t }')
    r2=$(awk -v r="$(med ramfs $w)" -v t="$(med inproc $w)" 'BEGIN { printf "%.2f", r / t }')
    printf '%-30s %26s %26s %26s %9s %9s\n' "$label" "$(row tmpfs $w)" "$(row inproc $w)" "$(row ramfs $w)" "$r1" "$r2"
done
