#!/usr/bin/env python3
"""Issue 6's load targets, measured in one run (called by bench/load.sh):

- stat latency of a chan listener with 1,000 reads blocked on chan streams (held by a
  separate process, killed after each measurement), next to idle, alternating;
- RSS of schememount and of its daemon with 10,000 files open on a ramfs mount.

usage: load.py CHAN_MOUNT CHAN_PID RAMFS_MOUNT RAMFS_PID [REPS]
       load.py --block CHAN_MOUNT NAME COUNT   (the blocker process)
Prints TSV lines: metric, unit, median, min, max.
"""
import os
import resource
import statistics
import subprocess
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


def block_reads(chan, name, count):
    """The blocker process: a chan listener `name` and `count` streams to it, each with a
    thread blocked reading; prints "ready", then waits to be killed."""
    listener = os.open(f"{chan}/{name}", os.O_CREAT | os.O_RDWR, 0o600)
    streams = [os.open(f"{chan}/{name}", os.O_RDONLY) for _ in range(count)]
    for fd in streams:
        threading.Thread(target=lambda fd=fd: os.read(fd, 16), daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)
    os.close(listener)


def reads_waiting(pid):
    """Threads of process `pid` asleep in a FUSE request."""
    waiting = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as f:
                wchan = f.read()
            waiting += "fuse" in wchan or "request_wait_answer" in wchan
        except OSError:
            pass
    return waiting


def with_blocked_reads(chan, name, count, measure):
    """Runs `measure()` while another process has `count` reads blocked on chan streams, then
    kills that process (its reads are interrupted and cancelled in the daemon)."""
    blocker = subprocess.Popen(
        [sys.executable, __file__, "--block", chan, name, str(count)], stdout=subprocess.PIPE
    )
    try:
        if blocker.stdout.readline().strip() != b"ready":
            raise RuntimeError("the blocker process did not start")
        deadline = time.monotonic() + 30
        while reads_waiting(blocker.pid) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {reads_waiting(blocker.pid)} of {count} reads blocked")
            time.sleep(0.01)
        time.sleep(0.2)  # every read is in the daemon: the stats below must not wait for them
        return measure()
    finally:
        blocker.kill()
        blocker.wait()


def blocked_stat(chan, reps):
    """Stat latency idle and with reads blocked, alternating (idle, blocked, idle, ...) so
    that the machine's drift falls on both alike."""
    path = f"{chan}/load"
    listener = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    count = int(os.environ.get("BLOCKED", "1000"))
    idle, busy = [], []
    for rep in range(reps):
        idle.append(stat_us(path))
        busy.append(with_blocked_reads(chan, f"block{rep}", count, lambda: stat_us(path)))
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
    if sys.argv[1] == "--block":
        return block_reads(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    chan, chan_pid, ramfs, ramfs_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 15
    idle, busy = blocked_stat(chan, reps)
    row("stat_idle", "us", idle)
    row(f"stat_{os.environ.get('BLOCKED', '1000')}_blocked", "us", busy)
    row("stat_blocked_over_idle", "ratio", [statistics.median(busy) / statistics.median(idle)])
    # The paired statistic: each blocked measurement over the idle one just before it.
    row("stat_blocked_over_idle_per_pair", "ratio", [b / i for b, i in zip(busy, idle)])
    (sm0, d0), (sm1, d1) = handles_rss(ramfs, ramfs_pid)
    row("rss_schememount_idle", "MiB", [sm0 / 1024])
    row("rss_schememount_10k_handles", "MiB", [sm1 / 1024])
    row("rss_daemon_10k_handles", "MiB", [d1 / 1024])


if __name__ == "__main__":
    main()
