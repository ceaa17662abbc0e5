#!/usr/bin/env python3
"""WebSocket load benchmark: ringstream against tokio-tungstenite, Bun, BustAPI's turbo echo,
uvicorn + Starlette, and the raw-TCP ceiling.

Servers run on core 0 (one worker / one thread), the load generator (`ringstream bench`) on
core 1. Each round starts every contender in turn (interleaved) and runs every workload
against it; the table gives medians over the rounds of the rate and of the server's CPU time
per operation, and each contender's ratio to ringstream. Every echo is verified by the load
generator. Every process is stopped by PID.

    cargo build --release --bins --examples
    benches/peers/install.sh        # uvicorn + Starlette + BustAPI (.env), Bun (node_modules)
    python3 benches/ws_load.py --rounds 3 --seconds 5
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
RINGSTREAM = os.path.join(RELEASE, "ringstream")

SERVERS = {
    "ringstream": [RINGSTREAM, "serve", "--listen", "127.0.0.1:0", "--workers", "1",
                   "--log-level", "warn"],
    # The same echo written with the handler API (recv, then send) instead of the turbo route.
    "ringstream handler": [os.path.join(RELEASE, "examples", "ws_handler_echo"), "127.0.0.1:0"],
    "tokio-tungstenite": [os.path.join(RELEASE, "examples", "tokio_tungstenite_echo"),
                          "127.0.0.1:0"],
    # uWebSockets inside Bun's runtime.
    "Bun": [os.path.join(ROOT, "benches", "peers", "node_modules", ".bin", "bun"),
            os.path.join(ROOT, "benches", "peers", "bun_echo.js"), "{port}"],
    # BustAPI's turbo echo: the handler runs in Rust, one worker.
    "BustAPI turbo": [os.path.join(ROOT, "benches", "peers", ".env", "bin", "python"),
                      os.path.join(ROOT, "benches", "peers", "bustapi_echo.py"), "{port}"],
    # uvicorn's documented fast set-up: uvloop, httptools, the websockets library.
    "uvicorn + Starlette": [os.path.join(ROOT, "benches", "peers", ".env", "bin", "uvicorn"),
                            "--app-dir", os.path.join(ROOT, "benches", "peers"),
                            "starlette_echo:app", "--host", "127.0.0.1", "--port", "{port}",
                            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
                            "--log-level", "warning", "--no-access-log"],
    "raw TCP echo (ceiling)": [RINGSTREAM, "bench", "raw-tcp-server"],
}

WORKLOADS = [
    ("echo 32 B, 100 conns", ["echo", "--size", "32", "--connections", "100"]),
    ("echo 512 B, 100 conns", ["echo", "--size", "512", "--connections", "100"]),
    ("echo 16 KiB, 100 conns", ["echo", "--size", "16384", "--connections", "100"]),
    # Pipelined: 4 messages in flight per connection, so that reads and writes carry batches.
    ("echo 32 B, 100 conns × 4 in flight",
     ["echo", "--size", "32", "--connections", "100", "--depth", "4"]),
    ("echo 512 B, 100 conns × 4 in flight",
     ["echo", "--size", "512", "--connections", "100", "--depth", "4"]),
    ("echo 16 KiB, 100 conns × 4 in flight",
     ["echo", "--size", "16384", "--connections", "100", "--depth", "4"]),
    ("handshakes, 64 workers", ["handshake", "--connections", "64"]),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv):
    """Starts a server on core 0; returns it and its address. Servers that cannot print their
    address are given a free port and waited for."""
    if "{port}" in argv:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        server = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server, f"127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        server.kill()
        sys.exit(f"{argv[0]} did not start")
    server = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    addr = server.stdout.readline().strip().removeprefix("listening on ")
    return server, addr


def run(workload, name, addr, pid, seconds):
    args = list(workload)
    if name.startswith("raw"):
        # The raw-TCP client keeps one message in flight.
        if args[0] != "echo" or "--depth" in args:
            return None
        args = ["raw-tcp", "--addr", addr] + args[1:]
    else:
        args = [args[0], "--url", f"ws://{addr}/ws/echo"] + args[1:]
    out = subprocess.run(["taskset", "-c", "1", RINGSTREAM, "bench", *args, "--seconds",
                          str(seconds), "--server-pid", str(pid), "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name} / {workload}: {out.stderr or out.stdout}")
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--only", action="append", help="substring of server names to run")
    args = parser.parse_args()
    servers = {n: a for n, a in SERVERS.items()
               if not args.only or n == "ringstream" or any(o in n for o in args.only)}
    results = {}
    for round_ in range(args.rounds):
        for name, argv in servers.items():
            server, addr = start(argv)
            try:
                for label, workload in WORKLOADS:
                    result = run(workload, name, addr, server.pid, args.seconds)
                    if result is None:
                        continue
                    results.setdefault((label, name), []).append(result)
                    print(f"round {round_ + 1}: {label}: {name}: {result['ops_per_sec']:,} ops/s,"
                          f" {result['server_cpu_us_per_op']} us server CPU/op,"
                          f" p50 {result['p50_us']} us, p99 {result['p99_us']} us",
                          file=sys.stderr)
            finally:
                server.send_signal(signal.SIGKILL)
                server.wait()
    print("| workload | server | ops/s | server CPU µs/op | CPU/op vs ringstream | "
          "p50 / p99 µs |")
    print("|---|---|---:|---:|---:|---:|")
    for label, _ in WORKLOADS:
        base = None
        for name in servers:
            runs = results.get((label, name))
            if not runs:
                continue
            rate = statistics.median(r["ops_per_sec"] for r in runs)
            cpu = statistics.median(r["server_cpu_us_per_op"] for r in runs)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            base = base or cpu
            print(f"| {label} | {name} | {rate:,.0f} | {cpu:.2f} | {cpu / base:.2f}× | "
                  f"{p50:.0f} / {p99:.0f} |")


if __name__ == "__main__":
    main()
