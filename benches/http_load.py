#!/usr/bin/env python3
"""Small-response HTTP load benchmark: ringstream (each io_uring set-up, the poll driver, and the
default set-up with the access log on, in each format) against the tokio epoll baseline, with
wrk.

The server runs on one core (`taskset -c 0`, one worker), wrk on the other (`taskset -c 1`).
Contenders are interleaved (A B C ... A B C ...), each run lasts --seconds, and the table gives
medians of requests/s and of server CPU time per request (utime + stime of the server process
from /proc, before and after the run). Every process this script starts is stopped by PID.

    python3 benches/http_load.py --runs 3 --seconds 10
    python3 benches/http_load.py --only coop --only "access log" --base coop   # the log's cost

Needs wrk (`apt-get install wrk`) and a release build (`cargo build --release --examples`).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
TICKS = os.sysconf("SC_CLK_TCK")

ROUTES = '[[routes]]\npath = "/health"\nkind = "health"\n'


def ringstream(setup=None, driver="uring", access_log=None):
    """A one-worker ringstream; with `access_log` ("combined" or "json") it logs every request
    to a file in the run's directory."""
    def start(config_dir):
        args = [os.path.join(RELEASE, "ringstream"), "serve", "--listen", "127.0.0.1:0",
                "--workers", "1", "--io-driver", driver, "--log-level", "warn"]
        if setup:
            name = f"{setup}-{access_log}" if access_log else setup
            path = os.path.join(config_dir, f"{name}.toml")
            log = ""
            if access_log:
                log_path = os.path.join(config_dir, f"{name}.log")
                log = f'access_log = "{log_path}"\naccess_log_format = "{access_log}"\n'
            with open(path, "w") as f:
                f.write(f'io_uring_setup = "{setup}"\n{log}{ROUTES}')
            args += ["--config", path]
        return args
    return start


def tokio_baseline(_config_dir):
    return [os.path.join(RELEASE, "examples", "tokio_http_baseline"), "127.0.0.1:0"]


CONTENDERS = {
    "ringstream io_uring default": ringstream("default"),
    "ringstream io_uring coop_taskrun": ringstream("coop_taskrun"),
    "ringstream io_uring defer_taskrun": ringstream("defer_taskrun"),
    "ringstream coop_taskrun, access log combined": ringstream("coop_taskrun",
                                                               access_log="combined"),
    "ringstream coop_taskrun, access log json": ringstream("coop_taskrun", access_log="json"),
    "ringstream poll (epoll)": ringstream(driver="poll"),
    "tokio current_thread (epoll) baseline": tokio_baseline,
}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


def run_once(argv, seconds, connections):
    server = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline().strip()
        addr = line.removeprefix("listening on ")
        url = f"http://{addr}/health"
        # Warm up connections and caches for a second, outside the measurement.
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", "-d1s", url],
                       capture_output=True, check=True)
        before, machine_before = cpu_seconds(server.pid), machine_busy_seconds()
        wrk = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}",
                              f"-d{seconds}s", url], capture_output=True, text=True, check=True)
        after, machine_after = cpu_seconds(server.pid), machine_busy_seconds()
        out = wrk.stdout
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        sys.exit(f"wrk reported errors for {argv[0]}:\n{out}")
    cpu = after - before
    # Busy time of the whole machine not spent by the server: wrk plus anything else. Near 100%
    # of one core means the load generator was the only other thing running.
    others = (machine_after - machine_before) - cpu
    return requests / seconds, cpu / requests * 1e6, cpu / seconds, others / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", action="append", help="substring of contender names to run")
    parser.add_argument("--base", help="substring of the contender the ratios compare to "
                                       "(default: the last one run)")
    args = parser.parse_args()
    names = [n for n in CONTENDERS if not args.only or any(o in n for o in args.only)]
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as config_dir:
        for run in range(args.runs):
            for name in names:
                rate, us, load, others = run_once(CONTENDERS[name](config_dir), args.seconds,
                                                  args.connections)
                results[name].append((rate, us, load))
                print(f"run {run + 1}: {name}: {rate:,.0f} req/s, {us:.2f} us CPU/req, "
                      f"server core {load * 100:.0f}% busy, client and rest of machine "
                      f"{others * 100:.0f}% of a core", file=sys.stderr)
    base_name = next((n for n in names if args.base and args.base in n), names[-1])
    base = statistics.median(us for _, us, _ in results[base_name])
    print(f"\n| server | requests/s (median) | server CPU µs/request (median) | "
          f"CPU/request vs {base_name} | server core busy |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        rate = statistics.median(r for r, _, _ in results[name])
        us = statistics.median(u for _, u, _ in results[name])
        load = statistics.median(l for _, _, l in results[name])
        print(f"| {name} | {rate:,.0f} | {us:.2f} | {us / base:.2f}× | {load * 100:.0f}% |")


if __name__ == "__main__":
    main()
