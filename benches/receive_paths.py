#!/usr/bin/env python3
"""Receiving: a buffer per connection against one multishot receive per connection into a
provided-buffer ring, on the bare TCP echo server, beside ringstream, Bun and BustAPI turbo.

Two tables: server CPU per one-message echo (32 B, 512 B, 16 KiB, 100 connections; servers on
core 0, the load generator on core 1, contenders interleaved, medians), and server memory per
idle connection (10,000 connections that each echoed 32 bytes once). Every process is
stopped by PID; loopback only.

    cargo build --release --bins --examples
    python3 benches/receive_paths.py --rounds 5 --seconds 4
"""

import argparse
import os
import resource
import socket
import statistics
import sys
import time

import ws_load
from benchlib import start_printing, stop
from idle_memory import rss_kib

# The ceiling receiving with one multishot receive per connection into a provided-buffer ring
# instead of one receive per read into the connection's own buffer.
MULTISHOT = "raw TCP echo, multishot receive"
CONTENDERS = {
    "raw TCP echo (ceiling)": ws_load.SERVERS["raw TCP echo (ceiling)"],
    MULTISHOT: [ws_load.RINGSTREAM, "bench", "raw-tcp-server", "--recv", "multishot"],
    **{name: ws_load.SERVERS[name] for name in ["ringstream", "Bun", "BustAPI turbo"]},
}
SIZES = [32, 512, 16384]
MEMORY_SERVERS = [
    ("a 1 KiB read buffer per connection", ["--recv", "plain", "--buffer", "1024"]),
    ("a 16 KiB read buffer per connection", ["--recv", "plain", "--buffer", "16384"]),
    ("multishot receive, no buffer per connection", ["--recv", "multishot"]),
]


def cpu_table(rounds, seconds, warmup):
    """Interleaved rounds of every contender at every size; prints the median table."""
    results = {}
    available = [name for name, argv in CONTENDERS.items() if os.path.exists(argv[0])]
    for round_ in range(rounds):
        for name in available:
            server, addr = ws_load.start(CONTENDERS[name])
            if server is None:
                print(f"skipping {name}: it did not start", file=sys.stderr)
                continue
            try:
                for size in SIZES:
                    workload = ["echo", "--size", str(size), "--connections", "100"]
                    result = ws_load.run(workload, name, addr, server.pid, seconds, warmup)
                    results.setdefault((name, size), []).append(result)
                    print(f"round {round_ + 1}: {name}, {size} B: {result['ops_per_sec']:,} "
                          f"ops/s, {result['server_cpu_us_per_op']} us/op", file=sys.stderr)
            finally:
                stop(server)
    print("| server CPU µs per echo (ops/s) | 32 B | 512 B | 16 KiB |")
    print("|---|---:|---:|---:|")
    for name in available:
        cells = []
        for size in SIZES:
            runs = results.get((name, size), [])
            if not runs:
                cells.append("–")
                continue
            cpu = statistics.median(r["server_cpu_us_per_op"] for r in runs)
            rate = statistics.median(r["ops_per_sec"] for r in runs)
            cells.append(f"{cpu:.2f} ({rate:,.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


def echo_once(conn):
    conn.sendall(b"x" * 32)
    got = 0
    while got < 32:
        chunk = conn.recv(64)
        if not chunk:
            raise RuntimeError("the server closed an idle connection")
        got += len(chunk)


def memory_table(connections, settle):
    """Server RSS per idle connection for each receive path of the raw server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if connections + 64 > hard:
        raise SystemExit(f"the open-file limit ({hard}) is below {connections} connections")
    print("| raw TCP echo server | per idle connection | server RSS before → after |")
    print("|---|---:|---:|")
    for label, flags in MEMORY_SERVERS:
        server, addr = start_printing([ws_load.RINGSTREAM, "bench", "raw-tcp-server", *flags])
        if server is None:
            raise SystemExit("the raw server did not start")
        host, port = addr.rsplit(":", 1)
        conns = []
        try:
            # One echo first, so that the ring (or the allocator) is set up before `before`.
            with socket.create_connection((host, int(port))) as first:
                echo_once(first)
            time.sleep(settle / 4)
            before = rss_kib(server.pid)
            for _ in range(connections):
                conn = socket.create_connection((host, int(port)))
                conns.append(conn)
                echo_once(conn)
            time.sleep(settle)
            after = rss_kib(server.pid)
        finally:
            for conn in conns:
                conn.close()
            stop(server)
        per = (after - before) * 1024 / connections
        print(f"| {label} | {per:,.0f} bytes | {before:,} → {after:,} KiB |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=10000,
                        help="idle connections for the memory table")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--only", choices=["cpu", "memory"])
    args = parser.parse_args()
    if args.only != "memory":
        cpu_table(args.rounds, args.seconds, args.warmup)
    if args.only != "cpu":
        memory_table(args.connections, args.settle)


if __name__ == "__main__":
    main()
