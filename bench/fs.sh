#!/usr/bin/env bash
# Throughput of the mounted ramfs next to a tmpfs directory, measured in the same run.
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
trap '$SM -u "$work/ram" 2>/dev/null || true; rm -rf "$work" "$tmpfs"' EXIT
mkdir "$work/ram"
$SM ramfs "$work/ram"

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
    for fs in tmpfs ramfs; do
        dir=$tmpfs; [ $fs = ramfs ] && dir=$work/ram
        results[$fs,write]+="$(seq_write "$dir") "
        results[$fs,read]+="$(seq_read "$dir") "
        rm -f "$dir/seq"
        results[$fs,meta]+="$(meta "$dir") "
    done
done

stat3() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]}'; }
printf '%-28s %12s %12s %12s %12s %12s %12s %8s\n' workload "tmpfs med" min max "ramfs med" min max ratio
for w in write read meta; do
    read -r tm tn tx <<<"$(echo "${results[tmpfs,$w]}" | stat3)"
    read -r rm rn rx <<<"$(echo "${results[ramfs,$w]}" | stat3)"
    label=$w; [ $w = meta ] && label="create+stat+unlink files/s"; [ $w != meta ] && label="seq $w ${SIZE_MB} MiB, MB/s"
    ratio=$(awk -v r="$rm" -v t="$tm" 'BEGIN { printf "%.2f", r / t }')
    printf '%-28s %12s %12s %12s %12s %12s %12s %8s\n' "$label" "$tm" "$tn" "$tx" "$rm" "$rn" "$rx" "$ratio"
done
