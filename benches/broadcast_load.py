#!/usr/bin/env python3
"""Broadcast benchmark: ringstream's broadcast route against Bun's pub/sub.

Each server runs on core 0 (ringstream with one worker; Bun is one process), the load
generator (`ringstream bench broadcast`) on core 1: K subscribers and one publisher on one
topic, the publisher keeping --window of its own messages outstanding (it is a member too and
gets them back). Every delivery is checked (per publisher in order, no gap, payload intact).
Rounds are interleaved (every server once per round, started once for the whole run); the
table gives medians of deliveries/s, the server's CPU per delivery, latency p50/p99 and the
load generator's CPU, and each server's ratio to ringstream. Every process is stopped by PID.

    cargo build --release --bins && benches/peers/install.sh bun
    python3 benches/broadcast_load.py --rounds 3 --seconds 10

A server that is not installed, or does not start, is skipped with one line. `--smoke`
(100 subscribers, one round of 1 s, `--build debug`) keeps the script from rotting.
"""

import argparse
import json
import os
import subprocess
import sys

from benchlib import free_port, median, start_on_port, start_printing, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "benches", "peers")
BUN = os.path.join(PEERS, "node_modules", ".bin", "bun")






def start_ringstream(binary):
    return start_printing([binary, "serve", "--listen", "127.0.0.1:0", "--workers", "1",
                           "--log-level", "warn"])


def start_bun():
    if not os.path.exists(BUN):
        return None, None
    port = free_port()
    return start_on_port([BUN, os.path.join(PEERS, "bun_broadcast.js"), str(port)], port)




def run(binary, addr, topic, pid, args):
    argv = ["taskset", "-c", "1", binary, "bench", "broadcast",
            "--url", f"ws://{addr}/ws/broadcast/{topic}",
            "--subscribers", str(args.subscribers), "--size", str(args.size),
            "--window", str(args.window), "--seconds", str(args.seconds),
            "--warmup", str(args.warmup), "--server-pid", str(pid), "--json"]
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=args.seconds + args.warmup + 90)
    if out.returncode != 0:
        return None, (out.stderr or out.stdout).strip()
    return json.loads(out.stdout), None




def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="100 subscribers, one round of 1 s (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.subscribers = 1, 1, 0.2, 100
    binary = os.path.join(ROOT, "target", args.build, "ringstream")
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing (cargo build --bins)")

    servers = {}
    for name, start in [("ringstream", lambda: start_ringstream(binary)), ("Bun", start_bun)]:
        process, addr = start()
        if process is None:
            print(f"skipping {name}: not installed or did not start "
                  "(benches/peers/install.sh bun)", file=sys.stderr)
            continue
        servers[name] = (process, addr)
    results = {}
    try:
        for round_ in range(args.rounds):
            for name, (process, addr) in servers.items():
                result, error = run(binary, addr, f"r{round_}", process.pid, args)
                if error:
                    sys.exit(f"{name}: {error}")
                results.setdefault(name, []).append(result)
                print(f"round {round_ + 1}: {name}: {result['ops_per_sec']:,.0f} deliveries/s, "
                      f"{result['server_cpu_us_per_op']} µs server CPU each, "
                      f"p50 {result['p50_us']} µs, p99 {result['p99_us']} µs", file=sys.stderr)
    finally:
        for process, _ in servers.values():
            stop(process)

    base = results.get("ringstream")
    base_cpu = median(base, "server_cpu_us_per_op") if base else None
    print(f"| {args.subscribers} subscribers, {args.size} B, window {args.window} | "
          "deliveries/s | server CPU per delivery | vs ringstream | p50 / p99 | "
          "load generator CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        cpu = median(runs, "server_cpu_us_per_op")
        ratio = f"{cpu / base_cpu:.2f}×" if cpu and base_cpu else "–"
        print(f"| {name} | {median(runs, 'ops_per_sec'):,.0f} | {cpu:.3f} µs | {ratio} | "
              f"{median(runs, 'p50_us') / 1000:.1f} / {median(runs, 'p99_us') / 1000:.1f} ms | "
              f"{median(runs, 'client_cpu_pct'):.0f}% |")


if __name__ == "__main__":
    main()
