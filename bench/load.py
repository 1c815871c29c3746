#!/usr/bin/env python3
"""Issue 6's load targets, measured in one run (called by bench/load.sh):

- stat latency of a chan listener with 1,000 reads blocked on chan streams, next to idle;
- RSS of schememount and of its daemon with 10,000 files open on a ramfs mount.

usage: load.py CHAN_MOUNT CHAN_PID RAMFS_MOUNT RAMFS_PID [REPS]
Prints TSV lines: metric, unit, median, min, max.
"""
import os
import resource
import statistics
import sys
import threading
import time


def stat_us(path, count=2000):
    """Median microseconds per stat over `count` stats."""
    samples = []
    for _ in range(count):
        t = time.perf_counter_ns()
        os.stat(path)
        samples.append((time.perf_counter_ns() - t) / 1000)
    return statistics.median(samples)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def blocked_stat(chan, reps):
    listener = os.open(f"{chan}/load", os.O_CREAT | os.O_RDWR, 0o600)
    path = f"{chan}/load"
    idle = [stat_us(path) for _ in range(reps)]
    # BLOCKED=0 repeats the measurement with nothing blocked: the spread of the stat path alone.
    streams = [os.open(path, os.O_RDONLY) for _ in range(int(os.environ.get("BLOCKED", "1000")))]
    readers = [threading.Thread(target=lambda fd=fd: os.read(fd, 16), daemon=True) for fd in streams]
    for reader in readers:
        reader.start()
    time.sleep(1)  # let every read reach the daemon; the stats below must not wait for them
    busy = [stat_us(path) for _ in range(reps)]
    for fd in streams:
        os.close(fd)
    os.close(listener)
    return idle, busy


def handles_rss(ramfs, pid):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 12000), max(hard, 12000)))
    with open(f"{ramfs}/f", "w") as f:
        f.write("x")
    daemon = children(pid)[0]
    before = (rss_kib(pid), rss_kib(daemon))
    fds = [os.open(f"{ramfs}/f", os.O_RDONLY) for _ in range(10000)]
    after = (rss_kib(pid), rss_kib(daemon))
    for fd in fds:
        os.close(fd)
    return before, after


def row(metric, unit, values):
    values = sorted(values)
    print(f"{metric}\t{unit}\t{statistics.median(values):.2f}\t{values[0]:.2f}\t{values[-1]:.2f}")


def main():
    chan, chan_pid, ramfs, ramfs_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    idle, busy = blocked_stat(chan, reps)
    row("stat_idle", "us", idle)
    row(f"stat_{os.environ.get('BLOCKED', '1000')}_blocked", "us", busy)
    row("stat_blocked_over_idle", "ratio", [statistics.median(busy) / statistics.median(idle)])
    (sm0, d0), (sm1, d1) = handles_rss(ramfs, ramfs_pid)
    row("rss_schememount_idle", "MiB", [sm0 / 1024])
    row("rss_schememount_10k_handles", "MiB", [sm1 / 1024])
    row("rss_daemon_10k_handles", "MiB", [d1 / 1024])


if __name__ == "__main__":
    main()
