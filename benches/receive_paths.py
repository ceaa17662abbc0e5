#!/usr/bin/env python3
"""Receiving: a buffer per connection against one multishot receive per connection into a
provided-buffer ring, on the bare TCP echo server, beside ringstream, Bun and BustAPI turbo.

Two tables: server CPU per one-message echo (32 B, 512 B, 16 KiB, 100 connections or
`--echo-connections`; servers on core 0, the load generator on core 1, contenders
interleaved, medians), and server memory per
idle connection (10,000 connections that each echoed 32 bytes once). Every process is
stopped by PID; loopback only.

    cargo build --release --bins --examples
    python3 benches/receive_paths.py --rounds 5 --seconds 4
    python3 benches/receive_paths.py --only cpu --echo-connections 500 --sizes 32
"""

import argparse
import functools
import socket
import time

import ws_load
from benchlib import (bench, cell, interleave, markdown, medians, ringstream_path, start,
                      start_printing, stop, with_build)
from idle_memory import raise_open_files, rss_kib

# The ceiling receiving with one multishot receive per connection into a provided-buffer ring
# instead of one receive per read into the connection's own buffer.
MULTISHOT = "raw TCP echo, multishot receive"
# The same, each ring buffer copied into the connection's own buffer and given back at once:
# the receive path of a server that parses frames in a buffer of its own.
MULTISHOT_COPY = "raw TCP echo, multishot receive copied into a 1 KiB buffer"
RAW_VARIANTS = {MULTISHOT: ["--recv", "multishot"],
                MULTISHOT_COPY: ["--recv", "multishot-copy", "--buffer", "1024"]}
SIZES = [(32, "32 B"), (512, "512 B"), (16384, "16 KiB")]
MEMORY_SERVERS = [
    ("a 1 KiB read buffer per connection", ["--recv", "plain", "--buffer", "1024"]),
    ("a 16 KiB read buffer per connection", ["--recv", "plain", "--buffer", "16384"]),
    ("multishot receive, no buffer per connection", ["--recv", "multishot"]),
]


def contenders(build):
    """{name: argv} in the table's order: the two receive paths of the raw server, then
    ringstream and the fastest peers."""
    servers = {ws_load.CEILING: ws_load.SERVERS[ws_load.CEILING]}
    servers.update((name, [*ws_load.SERVERS[ws_load.CEILING], *flags])
                   for name, flags in RAW_VARIANTS.items())
    servers.update((name, ws_load.SERVERS[name]) for name in ["ringstream", "Bun", "BustAPI turbo"])
    return {name: with_build(argv, build) for name, argv in servers.items()}


def cpu_table(build, rounds, seconds, warmup, connections, sizes):
    """Interleaved rounds of every contender at every size; the median table."""
    servers = contenders(build)
    sizes = [(size, label) for size, label in SIZES if size in sizes]
    workloads = [(label, ["echo", "--size", str(size), "--connections", str(connections)])
                 for size, label in sizes]
    binary = ringstream_path(build)

    def run_one(name, addr, pid, workload):
        kind = ws_load.CEILING if name in RAW_VARIANTS else name
        return bench(binary, ws_load.load_args(kind, addr, workload), seconds, warmup, pid)

    starters = {name: functools.partial(start, argv) for name, argv in servers.items()}
    outcome = interleave(rounds, starters, workloads, run_one, ws_load.describe)
    rows = []
    for name in servers:
        cells = []
        for label, _ in workloads:
            m = medians(outcome.results.get((label, name), []))
            cpu, rate = m.get("server_cpu_us_per_op"), m.get("ops_per_sec")
            cells.append(f"{cell(cpu, '.2f')} ({cell(rate, ',.0f')})")
        rows.append([name, *cells])
    return markdown([f"server CPU µs per echo (ops/s), {connections} connections",
                     *[label for _, label in sizes]], rows)


def echo_once(conn):
    conn.sendall(b"x" * 32)
    got = 0
    while got < 32:
        chunk = conn.recv(64)
        if not chunk:
            raise RuntimeError("the server closed an idle connection")
        got += len(chunk)


def memory_table(build, connections, settle):
    """Server RSS per idle connection for each receive path of the raw server."""
    raise_open_files(connections)
    rows = []
    for label, flags in MEMORY_SERVERS:
        server, addr = start_printing([ringstream_path(build), "bench", "raw-tcp-server", *flags])
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
        rows.append([label, f"{per:,.0f} bytes", f"{before:,} → {after:,} KiB"])
    return markdown(["raw TCP echo server", "per idle connection", "server RSS before → after"],
                    rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=10000,
                        help="idle connections for the memory table")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--echo-connections", type=int, default=100,
                        help="connections for the CPU table")
    parser.add_argument("--sizes", type=int, nargs="+", default=[size for size, _ in SIZES],
                        choices=[size for size, _ in SIZES], help="message sizes of the CPU table")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--only", choices=["cpu", "memory"])
    args = parser.parse_args()
    if args.only != "memory":
        print(cpu_table(args.build, args.rounds, args.seconds, args.warmup,
                        args.echo_connections, args.sizes))
    if args.only != "cpu":
        print(memory_table(args.build, args.connections, args.settle))


if __name__ == "__main__":
    main()
