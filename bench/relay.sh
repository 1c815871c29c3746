#!/usr/bin/env bash
# What the interrupt relay costs per FUSE request. Mounts the zero scheme twice, with the
# relay (-o intr) and with -o nointr (fuser reads /dev/fuse itself), and times 4 KiB reads:
# each is one FUSE READ round trip (zero is a direct-I/O stream). Prints median, min and max
# microseconds per read over REPS runs of COUNT reads each, and the ratio of the medians.
#
# usage: bench/relay.sh            (builds in release mode; needs root or fusermount3)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-7}
COUNT=${COUNT:-20000}
cargo build --release -q --bin schememount
SM=target/release/schememount
work=$(mktemp -d)
trap 'for m in "$work"/relay "$work"/direct; do $SM -u "$m" 2>/dev/null || true; done; rm -rf "$work"' EXIT
mkdir "$work/relay" "$work/direct"
$SM -o intr zero "$work/relay"
$SM -o nointr zero "$work/direct"

# microseconds per 4 KiB read, one run
per_read() {
    local start end
    start=$(date +%s%N)
    dd if="$1/x" of=/dev/null bs=4096 count="$COUNT" status=none
    end=$(date +%s%N)
    awk -v ns=$((end - start)) -v n="$COUNT" 'BEGIN { printf "%.3f\n", ns / 1000 / n }'
}

stats() { sort -n | awk '{a[NR]=$1} END {printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]}'; }

relay=(); direct=()
for _ in $(seq "$REPS"); do            # interleaved, so both see the same machine state
    relay+=("$(per_read "$work/relay")")
    direct+=("$(per_read "$work/direct")")
done
read -r rmed rmin rmax <<<"$(printf '%s\n' "${relay[@]}" | stats)"
read -r dmed dmin dmax <<<"$(printf '%s\n' "${direct[@]}" | stats)"
printf '%-22s %10s %10s %10s\n' "4 KiB read, us/op" median min max
printf '%-22s %10s %10s %10s\n' "with relay" "$rmed" "$rmin" "$rmax"
printf '%-22s %10s %10s %10s\n' "nointr (fuser direct)" "$dmed" "$dmin" "$dmax"
awk -v r="$rmed" -v d="$dmed" 'BEGIN { printf "relay / direct = %.3f\n", r / d }'
