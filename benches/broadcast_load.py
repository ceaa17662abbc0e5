#!/usr/bin/env python3
"""Broadcast benchmark: ringstream's broadcast route against Bun's pub/sub.

Each server runs on core 0 (ringstream with one worker; Bun is one process), the load
generator (`ringstream bench broadcast`) on core 1: K subscribers and one publisher on one
topic, the publisher keeping --window of its own messages outstanding (it is a member too and
gets them back). Every delivery is checked (per publisher in order, no gap, payload intact).
Rounds are interleaved (every server once per round, started anew each round); the table
gives medians of deliveries/s, the server's CPU per delivery, latency p50/p99 and the load
generator's CPU, and each server's ratio to ringstream. Every process is stopped by PID.

    cargo build --release --bins && benches/peers/install.sh bun
    python3 benches/broadcast_load.py --rounds 3 --seconds 10

`--deflate` measures permessage-deflate: ringstream with it off (the base), ringstream with
`permessage_deflate = true` on the broadcast route, and Bun with `perMessageDeflate` and
compressed publishes; the load generator offers the extension as Chromium does to the servers
that have it on, and inflates and checks every compressed delivery. The messages' fill is
hexadecimal text, which deflate compresses to a little over half.

`--workers N` compares ringstream with one worker against N workers pinned to the same core,
the members spread over them: what crossing between workers costs per delivery.

A server that is not installed, or does not start, is skipped with one line. `--smoke`
(100 subscribers, one round of 1 s, `--build debug`) keeps the script from rotting;
`benches/peers/run.py` runs this table beside the other workloads.
"""

import argparse
import os
import sys
import tempfile

from benchlib import (PEERS, base_medians, bench, cell, chart_of, interleave, markdown, ratio,
                      ringstream_path, rows_of, skip, slug, start)

BUN = os.path.join(PEERS, "node_modules", ".bin", "bun")


# The embedded default's broadcast route, with permessage-deflate offered.
DEFLATE_CONFIG = """[[routes]]
path = "/ws/broadcast/{topic}"
kind = "broadcast"
echo_to_sender = true
[routes.limits]
permessage_deflate = true
"""
# A server whose name ends so is sent the load with `--deflate`.
DEFLATE = ", deflate"


def servers(binary, skip, deflate_config=None):
    """{name: server argv} of the servers that are there ({port} is filled in at start);
    `skip(name, why)` for each missing one. With `deflate_config` (the path of
    DEFLATE_CONFIG), the deflate rows too."""
    ringstream = [binary, "serve", "--listen", "127.0.0.1:0", "--workers", "1",
                  "--log-level", "warn"]
    found = {"ringstream": ringstream}
    if deflate_config:
        found["ringstream" + DEFLATE] = [*ringstream, "--config", deflate_config]
    bun = [BUN, os.path.join(PEERS, "bun_broadcast.js"), "{port}"]
    if not os.path.exists(BUN):
        skip("Bun", "not installed (benches/peers/install.sh bun)")
    elif deflate_config:
        found["Bun" + DEFLATE] = [*bun, "deflate"]
    else:
        found["Bun"] = bun
    return found


def spread_over_workers(ringstream, workers):
    """ringstream with one worker, and with `workers` workers pinned to the same core (the
    server's `taskset -c 0` leaves them one CPU): SO_REUSEPORT spreads the members over the
    workers, so most deliveries cross from the publisher's worker to another one's inbox.
    What cross-worker fan-out costs, on a machine whose second core runs the load."""
    spread = list(ringstream)
    spread[spread.index("--workers") + 1] = str(workers)
    return {"ringstream": ringstream, f"ringstream, {workers} workers on core 0": spread}


def label(subscribers, size, window):
    return f"{subscribers:,} subscribers, {size} B, window {window}"


def collect(binary, argvs, rounds, seconds, warmup, subscribers, size, window):
    """Interleaved rounds of the broadcast load against each server of `argvs`; see
    benchlib.interleave."""
    load = ["broadcast", "--subscribers", str(subscribers), "--size", str(size),
            "--window", str(window)]

    def run_one(name, addr, pid, _spec):
        offer = ["--deflate"] if name.endswith(DEFLATE) else []
        return bench(binary, [*load, *offer, "--url", f"ws://{addr}/ws/broadcast/bench"],
                     seconds, warmup, pid, timeout=90)

    starters = {name: (lambda argv=argv: start(argv)) for name, argv in argvs.items()}
    workloads = [(label(subscribers, size, window), None)]
    return interleave(rounds, starters, workloads, run_one, describe)


def describe(result):
    return (f"{result['ops_per_sec']:,.0f} deliveries/s, {result['server_cpu_us_per_op']} µs "
            f"server CPU each, p50 {result['p50_us']} µs, p99 {result['p99_us']} µs")


def table(outcome, workload, names):
    """The Markdown table's headers and rows."""
    headers = ["workload", "server", "deliveries/s", "server CPU µs per delivery",
               "CPU vs ringstream", "deliveries/s vs ringstream", "p50 / p99 ms",
               "load generator CPU"]
    base = base_medians(outcome, workload)

    def row(_name, m):
        cpu, rate = m.get("server_cpu_us_per_op"), m.get("ops_per_sec")
        p50, p99 = m.get("p50_us"), m.get("p99_us")
        return [cell(rate, ",.0f"), cell(cpu, ".3f"),
                cell(ratio(cpu, base.get("server_cpu_us_per_op")), ".2f", "×"),
                cell(ratio(rate, base.get("ops_per_sec")), ".2f", "×"),
                f"{cell(p50 and p50 / 1000, '.1f')} / {cell(p99 and p99 / 1000, '.1f')}",
                cell(m.get("client_cpu_pct"), ".0f", "%")]

    return headers, rows_of(outcome, workload, names, len(headers), row)


def chart(outcome, workload, names, directory):
    """The SVG of the server CPU per delivery: (label, path), or None."""
    return chart_of(outcome, workload, names, "server_cpu_us_per_op", directory,
                    f"broadcast-{slug(workload)}",
                    f"broadcast, {workload}: server CPU µs per delivery (lower is better)",
                    ".3f")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--deflate", action="store_true",
                        help="permessage-deflate off against on (ringstream), and Bun's")
    parser.add_argument("--workers", type=int, default=0,
                        help="ringstream with one worker against this many workers, all on "
                             "core 0 (members spread over them; no Bun)")
    parser.add_argument("--smoke", action="store_true",
                        help="100 subscribers, one round of 1 s (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.subscribers = 1, 1, 0.2, 100
    binary = ringstream_path(args.build)
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing (cargo build --bins)")
    config = None
    if args.deflate:
        config = tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="ringstream-deflate-")
        config.write(DEFLATE_CONFIG)
        config.flush()
    argvs = servers(binary, skip, config and config.name)
    if args.workers:
        argvs = spread_over_workers(argvs["ringstream"], args.workers)
    outcome = collect(binary, argvs, args.rounds, args.seconds, args.warmup, args.subscribers,
                      args.size, args.window)
    workload = label(args.subscribers, args.size, args.window)
    print(markdown(*table(outcome, workload, argvs)), end="")
    if outcome.errors:
        sys.exit(f"{len(outcome.errors)} workloads failed")


if __name__ == "__main__":
    main()
