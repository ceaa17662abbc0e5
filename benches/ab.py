#!/usr/bin/env python3
"""A/B of two ringstream binaries in one run: does a change cost CPU, rate or memory?

Each round runs, against each binary in turn (the order alternates from round to round), a
32 B echo on 100 and on 500 connections, a 512 B echo on 100 and handshakes on 64
connections, then measures the memory of idle WebSockets. The server runs on core 0 with one
worker; the load generator is the HEAD binary's `bench` subcommand for both, on core 1, so
only the server differs. The
table gives, per figure, the medians of the rounds for base and head, head/base, and each
side's spread (lowest to highest round). Loopback only; every process is stopped by PID;
each run of the load generator and each idle-memory measurement is bounded in time.

    python3 benches/ab.py --base OLD/target/release/ringstream --head target/release/ringstream
    python3 benches/ab.py --base ... --head ... --smoke     # one short round, 200 idle connections
"""

import argparse
import datetime
import os
import platform
import sys

from benchlib import bench, interleave, markdown, median, start
from idle_memory import measure, raise_open_files

WORKLOADS = [
    ("echo 32 B, 100 conns", ["echo", "--size", "32", "--connections", "100"]),
    ("echo 32 B, 500 conns", ["echo", "--size", "32", "--connections", "500"]),
    ("echo 512 B, 100 conns", ["echo", "--size", "512", "--connections", "100"]),
    ("handshakes, 64 conns", ["handshake", "--connections", "64"]),
]
# (key of the load generator's JSON, what the row says, format)
FIGURES = [("server_cpu_us_per_op", "server CPU µs/op", ".2f"),
           ("ops_per_sec", "ops/s", ",.0f")]
IDLE = "bytes_per_connection"


def serve(binary):
    return [binary, "serve", "--listen", "127.0.0.1:0", "--workers", "1", "--log-level", "warn"]


def machine():
    """The CPU model, the kernel and the load average, as one line each."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return cpu, platform.release(), load


def run_rounds(binaries, load_binary, args, idle_connections):
    """Interleaved rounds: {(label, name): [figures, ...]} and {(label, name): error}."""
    results, errors = {}, {}

    def run_one(_name, addr, pid, spec):
        return bench(load_binary, [spec[0], "--url", f"ws://{addr}/ws/echo", *spec[1:]],
                     args.seconds, args.warmup, pid)

    def describe(r):
        return f"{r['ops_per_sec']:,} ops/s, {r['server_cpu_us_per_op']} µs server CPU/op"

    for round_ in range(args.rounds):
        order = list(binaries.items())
        if round_ % 2:
            order.reverse()
        # One round of interleave per call (its lines say "round 1"), so that the order can
        # alternate.
        print(f"round {round_ + 1} of {args.rounds}: {', '.join(n for n, _ in order)}",
              file=sys.stderr)
        outcome = interleave(1, {name: (lambda b=binary: start(serve(b))) for name, binary
                                 in order}, WORKLOADS, run_one, describe)
        for key, runs in outcome.results.items():
            results.setdefault(key, []).extend(runs)
        errors.update(outcome.errors)
        for name in outcome.not_started:
            errors[("start", name)] = "did not start"
        for name, binary in order:
            figures = measure(serve(binary), idle_connections, args.settle, args.time_limit)
            if figures is None or not figures["opened"]:
                errors[("idle", name)] = "no idle connection opened"
                continue
            results.setdefault(("idle", name), []).append(figures)
            print(f"idle: {name}: {figures['opened']:,} open, "
                  f"{figures[IDLE]:,.0f} bytes per connection", file=sys.stderr)
    return results, errors


def spread(runs, key, fmt):
    values = [r[key] for r in runs if r.get(key) is not None]
    return f"{min(values):{fmt}}–{max(values):{fmt}}" if values else "–"


def table(results, idle_connections, labels):
    """Headers and rows: per figure, base and head medians, head/base, both spreads, and
    whether the medians differ by more than the wider spread."""
    base_label, head_label = labels
    headers = ["workload", "figure", base_label, head_label, f"{head_label}/{base_label}",
               f"{base_label} rounds", f"{head_label} rounds", "beyond the spread"]
    specs = [(label, key, what, fmt) for label, _ in WORKLOADS for key, what, fmt in FIGURES]
    specs.append(("idle", IDLE, f"bytes per idle WebSocket ({idle_connections:,} open)", ",.0f"))
    rows, beyond, compared = [], 0, 0
    for label, key, what, fmt in specs:
        base, head = results.get((label, "base"), []), results.get((label, "head"), [])
        b, h = median(base, key), median(head, key)
        if b is None or h is None:
            rows.append([label if label != "idle" else "idle memory", what, "–", "–", "–",
                         "–", "–", "–"])
            continue
        width = max(max(r[key] for r in runs) - min(r[key] for r in runs)
                    for runs in (base, head))
        # One round has no spread to compare with.
        out = None if min(len(base), len(head)) < 2 else abs(h - b) > width
        beyond += bool(out)
        compared += out is not None
        rows.append([label if label != "idle" else "idle memory", what, f"{b:{fmt}}",
                     f"{h:{fmt}}", f"{h / b:.3f}", spread(base, key, fmt),
                     spread(head, key, fmt), {None: "–", True: "yes", False: "no"}[out]])
    return headers, rows, beyond, compared


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the baseline ringstream binary")
    parser.add_argument("--head", required=True, help="the ringstream binary under test")
    parser.add_argument("--base-label", default="base")
    parser.add_argument("--head-label", default="head")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--idle-connections", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds the idle connections sit before their memory is read")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds allowed for opening the idle connections")
    parser.add_argument("--smoke", action="store_true",
                        help="one short round and 200 idle connections, to check the script")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.idle_connections = 1, 0.5, 0.2, 200
    for path in (args.base, args.head):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is not an executable")
    raise_open_files(args.idle_connections)
    cpu, kernel, load_before = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    binaries = {"base": os.path.abspath(args.base), "head": os.path.abspath(args.head)}
    results, errors = run_rounds(binaries, binaries["head"], args, args.idle_connections)
    load_after = machine()[2]
    headers, rows, beyond, compared = table(results, args.idle_connections,
                                  (args.base_label, args.head_label))

    print(f"`benches/ab.py` on {started:%Y-%m-%d %H:%M} UTC: {cpu}, {os.cpu_count()} cores, "
          f"Linux {kernel}; load average {load_before} before, {load_after} after.\n")
    print(f"{args.base_label}: `{args.base}`  ")
    print(f"{args.head_label}: `{args.head}`\n")
    print(f"Server on core 0 (`serve --workers 1`), load generator (the head binary's `bench "
          f"... --json`) on core 1; {args.rounds} interleaved round(s) of {args.seconds:g} s "
          f"after {args.warmup:g} s of warm-up, the order alternating; medians. Server CPU is "
          f"utime + stime from `/proc/PID/stat`. \"beyond the spread\": the medians differ by "
          f"more than the wider of the two sides' lowest-to-highest range.\n")
    print(markdown(headers, rows), end="")
    print(f"\n{beyond} of {compared} figures differ beyond the spread of their rounds"
          + (" (one round has no spread)." if compared < len(rows) else "."))
    for (label, name), error in errors.items():
        print(f"{label}: {name}: FAILED: {error}", file=sys.stderr)
    if errors:
        sys.exit(f"{len(errors)} measurements failed")


if __name__ == "__main__":
    main()
