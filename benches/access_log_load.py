#!/usr/bin/env python3
"""What the access log costs at an ordinary load: server CPU time per request with the log off
and on, at a fixed offered rate (oha -q), in interleaved rounds (off/on, then on/off).

The server runs on core 0 (one worker), oha on core 1. CPU time is every thread of the server
process (the worker and the log's writer thread), from /proc before and after each run, divided
by the requests answered. The table gives the medians and the median of the per-round ratios.
Every process this script starts is stopped by PID.

    python3 benches/access_log_load.py --rate 30000 --seconds 6 --rounds 10 --format combined

Needs oha (`cargo install oha`) and a release build (`cargo build --release --bin ringstream`).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ringstream")
TICKS = os.sysconf("SC_CLK_TCK")


def config(directory, log_format):
    """A one-route config; with `log_format`, every request is logged to a file."""
    name = log_format or "off"
    path = os.path.join(directory, f"{name}.toml")
    with open(path, "w") as f:
        f.write('io_uring_setup = "coop_taskrun"\n')
        if log_format:
            f.write(f'access_log = "{os.path.join(directory, "access.log")}"\n')
            f.write(f'access_log_format = "{log_format}"\n')
        f.write('[[routes]]\npath = "/health"\nkind = "health"\n')
    return path


def cpu_seconds(pid):
    """utime + stime of every thread of `pid`."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def run(directory, log_format, rate, seconds):
    """(server CPU µs per request, requests per second) of one run."""
    log = os.path.join(directory, "access.log")
    if os.path.exists(log):
        os.remove(log)
    server = subprocess.Popen(
        ["taskset", "-c", "0", BIN, "serve", "--listen", "127.0.0.1:0", "--workers", "1",
         "--config", config(directory, log_format), "--log-level", "warn"],
        stdout=subprocess.PIPE, text=True)
    try:
        addr = server.stdout.readline().strip().removeprefix("listening on ")
        url = f"http://{addr}/health"
        subprocess.run(["taskset", "-c", "1", "oha", "-z", "1s", "-c", "32", "--no-tui", url],
                       capture_output=True, check=True)
        before = cpu_seconds(server.pid)
        out = subprocess.run(
            ["taskset", "-c", "1", "oha", "-z", f"{seconds}s", "-c", "32", "-q", str(rate),
             "--no-tui", "--output-format", "json", url],
            capture_output=True, text=True, check=True)
        after = cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait()
    answered = sum(json.loads(out.stdout)["statusCodeDistribution"].values())
    return (after - before) / answered * 1e6, answered / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=30000, help="offered requests per second")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--format", choices=["combined", "json"], default="combined")
    args = parser.parse_args()
    off, on, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="ringstream-access-log-") as directory:
        for round_number in range(args.rounds):
            order = [None, args.format] if round_number % 2 == 0 else [args.format, None]
            result = {fmt: run(directory, fmt, args.rate, args.seconds) for fmt in order}
            off.append(result[None][0])
            on.append(result[args.format][0])
            ratios.append(on[-1] / off[-1])
            print(f"round {round_number}: off {off[-1]:.2f} µs/req ({result[None][1]:,.0f}/s), "
                  f"{args.format} {on[-1]:.2f} µs/req ({result[args.format][1]:,.0f}/s), "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    print()
    print(f"| {args.rate:,} req/s offered | server CPU µs/request (median) |")
    print("|---|---:|")
    print(f"| access log off | {statistics.median(off):.2f} |")
    print(f"| access log {args.format} | {statistics.median(on):.2f} |")
    print(f"\nmedian per-round ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
