#!/usr/bin/env python3
"""WebSocket load benchmark: ringstream against tokio-tungstenite, fastwebsockets, Bun,
BustAPI (its turbo echo and its Python `@app.websocket` handler), uvicorn + Starlette,
uvicorn + FastAPI, and the raw-TCP ceiling.

Servers run on core 0 (one worker / one thread), the load generator (`ringstream bench`) on
core 1. Each round starts every contender in turn (interleaved) and runs every workload
against it; the table gives medians over the rounds of the rate and of the server's CPU time
per operation, each contender's ratios to ringstream, and the fraction of the raw-TCP echo
server's rate it reaches. Every echo is verified by the load generator. Every process is
stopped by PID.

    cargo build --release --bins --examples
    benches/peers/install.sh        # uvicorn, Starlette, FastAPI, BustAPI (.env); Bun (node_modules)
    python3 benches/ws_load.py --rounds 3 --seconds 5 --svg benches/charts

`--rates 20000,40000` adds open-loop rows (`ringstream bench echo --rate`): 32 B messages on
100 connections at each fixed offered rate, each connection sending its share on a schedule
whatever the echoes do, latency timed from the scheduled send time. They show the CPU per
message at ordinary load, where completions arrive apart; pick the rates as fractions of the
best peer's saturated rate (25% and 50%). The raw-TCP echoes run the same open loop
(`ringstream bench raw-tcp --rate`).

Three raw TCP echoes (no WebSocket) give the floor of each row: the io_uring echo receiving
once per read, as the engine does without a ring (the "raw-TCP rate" column is relative to it),
the same with one multishot receive per connection into a provided-buffer ring, and a plain C
epoll echo (`benches/peers/epoll_echo.c`, compiled with `cc` on first use). The handshake row's
floor is the raw server answering a fixed 101 and the close frames without parsing anything
(`raw-tcp-server --recv handshake`): the kernel's share of a handshake.

A peer that is not installed, or does not start, is skipped with one line. `--smoke` (one
short round of two workloads, `--build debug`) keeps the script from rotting;
`benches/peers/run.py` runs these tables beside the other workloads.
"""

import argparse
import functools
import os
import shutil
import subprocess
import sys

from benchlib import (PEERS, RELEASE, add_round_options, base_medians, bench, cell, chart_of,
                      interleave, markdown, matching, ratio, ringstream_path, rows_of, skip, slug,
                      start, with_build)

RINGSTREAM = os.path.join(RELEASE, "ringstream")
PYTHON = os.path.join(PEERS, ".env", "bin", "python")
UVICORN = [os.path.join(PEERS, ".env", "bin", "uvicorn"), "--app-dir", PEERS]
# uvicorn's documented fast set-up: uvloop, httptools, the websockets library.
UVICORN_OPTIONS = ["--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop", "--http",
                   "httptools", "--ws", "websockets", "--log-level", "warning",
                   "--no-access-log"]
CEILING = "raw TCP echo (ceiling)"
MULTISHOT_FLOOR = "raw TCP echo, multishot receive"
EPOLL_FLOOR = "epoll TCP echo (C)"
HANDSHAKE_FLOOR = "raw handshake (fixed 101, no parsing)"
RAW = {CEILING, MULTISHOT_FLOOR, EPOLL_FLOOR, HANDSHAKE_FLOOR}
EPOLL_SOURCE = os.path.join(PEERS, "epoll_echo.c")
EPOLL_ECHO = os.path.join(os.path.dirname(RELEASE), "epoll_echo")

SERVERS = {
    "ringstream": [RINGSTREAM, "serve", "--listen", "127.0.0.1:0", "--workers", "1",
                   "--log-level", "warn"],
    # The engine receiving with one receive per read, the ring never armed.
    "ringstream, receive per read": [RINGSTREAM, "serve", "--listen", "127.0.0.1:0", "--workers",
                                     "1", "--log-level", "warn", "--receive", "per-read"],
    # The engine receiving through one multishot receive per session into a buffer ring.
    "ringstream, ring receive": [RINGSTREAM, "serve", "--listen", "127.0.0.1:0", "--workers",
                                 "1", "--log-level", "warn", "--receive", "ring"],
    # The engine on its readiness (epoll) driver, where io_uring is blocked or not chosen.
    "ringstream, poll driver": [RINGSTREAM, "serve", "--listen", "127.0.0.1:0", "--workers",
                                "1", "--log-level", "warn", "--io-driver", "poll"],
    # The same echo written with the handler API (recv, then send) instead of the turbo route.
    "ringstream handler": [os.path.join(RELEASE, "examples", "ws_handler_echo"), "127.0.0.1:0"],
    "tokio-tungstenite": [os.path.join(RELEASE, "examples", "tokio_tungstenite_echo"),
                          "127.0.0.1:0"],
    # fastwebsockets' documented server: hyper answers the upgrade.
    "fastwebsockets": [os.path.join(RELEASE, "examples", "fastwebsockets_echo"), "127.0.0.1:0"],
    # uWebSockets inside Bun's runtime.
    "Bun": [os.path.join(PEERS, "node_modules", ".bin", "bun"),
            os.path.join(PEERS, "bun_echo.js"), "{port}"],
    # BustAPI's turbo echo: the handler runs in Rust, one worker.
    "BustAPI turbo": [PYTHON, os.path.join(PEERS, "bustapi_echo.py"), "{port}"],
    # BustAPI's `@app.websocket`: a Python coroutine per connection, one worker; text frames.
    "BustAPI Python handler": [PYTHON, os.path.join(PEERS, "bustapi_py_echo.py"), "{port}"],
    "uvicorn + Starlette": [*UVICORN, "starlette_echo:app", *UVICORN_OPTIONS],
    # The same set-up serving FastAPI's documented WebSocket endpoint.
    "uvicorn + FastAPI": [*UVICORN, "fastapi_echo:app", *UVICORN_OPTIONS],
    # A trivial TCP echo server on the engine's ring set-up: the kernel's floor.
    CEILING: [RINGSTREAM, "bench", "raw-tcp-server"],
    MULTISHOT_FLOOR: [RINGSTREAM, "bench", "raw-tcp-server", "--recv", "multishot"],
    # A readiness loop in C: the other floor.
    EPOLL_FLOOR: [EPOLL_ECHO, "{port}"],
    # The kernel's share of a handshake: accept, a fixed 101, the close frames, close.
    HANDSHAKE_FLOOR: [RINGSTREAM, "bench", "raw-tcp-server", "--recv", "handshake"],
}

# Options of the echo load for the servers that need them: BustAPI's Python handler is given
# str messages, and answers them, for text frames.
ECHO_OPTIONS = {"BustAPI Python handler": ["--text"]}

WORKLOADS = [
    ("handshakes, 64 workers", ["handshake", "--connections", "64"]),
    *[(f"echo {label}, {conns} conns",
       ["echo", "--size", str(size), "--connections", str(conns)])
      for conns in (100, 500) for size, label in ((32, "32 B"), (512, "512 B"),
                                                  (16384, "16 KiB"))],
    # Pipelined: 4 messages in flight per connection, so that reads and writes carry batches.
    *[(f"echo {label}, 100 conns × 4 in flight",
       ["echo", "--size", str(size), "--connections", "100", "--depth", "4"])
      for size, label in ((32, "32 B"), (512, "512 B"), (16384, "16 KiB"))],
]


def available(names, build, skip):
    """The servers of `names` whose program is there, as {name: argv}; `skip(name, why)` for
    each missing one."""
    servers = {}
    for name in names:
        argv = with_build(SERVERS[name], build)
        if name == EPOLL_FLOOR:
            compile_epoll_echo()
        if os.path.exists(argv[0]):
            servers[name] = argv
        else:
            skip(name, f"{argv[0]} is missing (cargo build --bins --examples; "
                       "benches/peers/install.sh)")
    return servers


def compile_epoll_echo():
    """Builds the C epoll echo beside the release binaries when its source is newer (or it is
    missing); a machine without `cc` skips it."""
    fresh = (os.path.exists(EPOLL_ECHO)
             and os.path.getmtime(EPOLL_ECHO) >= os.path.getmtime(EPOLL_SOURCE))
    if not fresh and shutil.which("cc"):
        os.makedirs(os.path.dirname(EPOLL_ECHO), exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", EPOLL_ECHO, EPOLL_SOURCE], check=True)


def load_args(name, addr, workload):
    """The load generator's mode arguments for `workload` against server `name` at `addr`, or
    None where it does not apply (the raw-TCP servers only echo: no handshakes)."""
    if name == HANDSHAKE_FLOOR:
        if workload[0] != "handshake":
            return None
        return ["handshake", "--url", f"ws://{addr}/ws/echo", *workload[1:]]
    if name in RAW:
        if workload[0] != "echo":
            return None
        return ["raw-tcp", "--addr", addr, *workload[1:]]
    extra = ECHO_OPTIONS.get(name, []) if workload[0] == "echo" else []
    return [workload[0], "--url", f"ws://{addr}/ws/echo", *workload[1:], *extra]


def collect(servers, workloads, build, rounds, seconds, warmup):
    """Interleaved rounds of `workloads` against `servers` ({name: argv}); see
    benchlib.interleave."""
    binary = ringstream_path(build)

    def run_one(name, addr, pid, workload):
        args = load_args(name, addr, workload)
        return (None, None) if args is None else bench(binary, args, seconds, warmup, pid)

    starters = {name: functools.partial(start, argv) for name, argv in servers.items()}
    return interleave(rounds, starters, workloads, run_one, describe)


def describe(result):
    return (f"{result['ops_per_sec']:,} ops/s, {result['server_cpu_us_per_op']} µs server "
            f"CPU/op, p50 {result['p50_us']} µs, p99 {result['p99_us']} µs")


def table(outcome, workloads, names):
    """The Markdown table's headers and rows: per workload and server, the medians and the
    ratios to ringstream and to the raw-TCP ceiling of the same workload."""
    headers = ["workload", "server", "ops/s", "server CPU µs/op", "CPU/op vs ringstream",
               "ops/s vs ringstream", "of the raw-TCP rate", "p50 / p99 µs"]
    rows = []
    for label, _ in workloads:
        base = base_medians(outcome, label)
        ceiling = base_medians(outcome, label, CEILING)

        def row(_name, m):
            rate, cpu = m.get("ops_per_sec"), m.get("server_cpu_us_per_op")
            reached = ratio(rate, ceiling.get("ops_per_sec"))
            return [cell(rate, ",.0f"), cell(cpu, ".2f"),
                    cell(ratio(cpu, base.get("server_cpu_us_per_op")), ".2f", "×"),
                    cell(ratio(rate, base.get("ops_per_sec")), ".2f", "×"),
                    cell(reached and 100 * reached, ".0f", "%"),
                    f"{cell(m.get('p50_us'), '.0f')} / {cell(m.get('p99_us'), '.0f')}"]

        rows += rows_of(outcome, label, names, len(headers), row)
    return headers, rows


def charts(outcome, workloads, names, directory):
    """One SVG per workload: the server CPU per operation of each server; their (label,
    path)."""
    drawn = [chart_of(outcome, label, names, "server_cpu_us_per_op", directory,
                      f"ws-{slug(label)}",
                      f"{label}: server CPU µs per operation (lower is better)")
             for label, _ in workloads]
    return [d for d in drawn if d]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_round_options(parser, seconds=5)
    parser.add_argument("--smoke", action="store_true",
                        help="one short round of two workloads, to check the script works")
    parser.add_argument("--svg", metavar="DIR", help="write one SVG bar chart per workload")
    parser.add_argument("--rates", default="",
                        help="comma-separated offered rates (messages/s) for open-loop rows")
    args = parser.parse_args()
    open_loop = [
        (f"echo 32 B at {rate:,}/s, 100 conns",
         ["echo", "--size", "32", "--connections", "100", "--rate", str(rate)])
        for rate in (int(r) for r in args.rates.split(",") if r.strip())]
    workloads = WORKLOADS + open_loop
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 0.5, 0.2
        workloads = [WORKLOADS[0], WORKLOADS[1], *open_loop]
    workloads = matching(workloads, args.workload, key=lambda w: w[0])
    names = matching(SERVERS, args.only, keep={"ringstream"})
    servers = available(names, args.build,
                        skip)
    outcome = collect(servers, workloads, args.build, args.rounds, args.seconds, args.warmup)
    print(markdown(*table(outcome, workloads, servers)), end="")
    if args.svg:
        charts(outcome, workloads, servers, args.svg)
    if outcome.errors:
        sys.exit(f"{len(outcome.errors)} workloads failed")


if __name__ == "__main__":
    main()
