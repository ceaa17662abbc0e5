#!/usr/bin/env python3
"""WebSocket load benchmark: ringstream against tokio-tungstenite, Bun, BustAPI's turbo echo,
uvicorn + Starlette, uvicorn + FastAPI, and the raw-TCP ceiling.

Servers run on core 0 (one worker / one thread), the load generator (`ringstream bench`) on
core 1. Each round starts every contender in turn (interleaved) and runs every workload
against it; the table gives medians over the rounds of the rate and of the server's CPU time
per operation, and each contender's ratio to ringstream. Every echo is verified by the load
generator. Every process is stopped by PID.

    cargo build --release --bins --examples
    benches/peers/install.sh        # uvicorn, Starlette, FastAPI, BustAPI (.env); Bun (node_modules)
    python3 benches/ws_load.py --rounds 3 --seconds 5 --svg benches/charts

A peer that is not installed, or does not start, is skipped with one line. `--smoke` (one
short round of two workloads, used by CI with `--build debug`) keeps the script from rotting.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchlib import free_port, start_on_port, start_printing, stop

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
    # The same set-up serving FastAPI's documented WebSocket endpoint.
    "uvicorn + FastAPI": [os.path.join(ROOT, "benches", "peers", ".env", "bin", "uvicorn"),
                          "--app-dir", os.path.join(ROOT, "benches", "peers"),
                          "fastapi_echo:app", "--host", "127.0.0.1", "--port", "{port}",
                          "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
                          "--log-level", "warning", "--no-access-log"],
    # A trivial TCP echo server on the engine's ring set-up: the kernel's floor.
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


def start(argv):
    """Starts a server on core 0; returns it and its address. Servers that cannot print their
    address are given a free port and waited for."""
    if "{port}" in argv:
        port = free_port()
        return start_on_port([a.replace("{port}", str(port)) for a in argv], port)
    return start_printing(argv)


def run(workload, name, addr, pid, seconds, warmup):
    args = list(workload)
    if name.startswith("raw"):
        # The raw-TCP client echoes bytes: no handshakes.
        if args[0] != "echo":
            return None
        args = ["raw-tcp", "--addr", addr] + args[1:]
    else:
        args = [args[0], "--url", f"ws://{addr}/ws/echo"] + args[1:]
    out = subprocess.run(["taskset", "-c", "1", RINGSTREAM, "bench", *args, "--seconds",
                          str(seconds), "--warmup", str(warmup), "--server-pid", str(pid),
                          "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name} / {workload}: {out.stderr or out.stdout}")
    return json.loads(out.stdout)


def with_build(argv, build):
    """`argv` with the release build's paths pointing at `build` (release or debug)."""
    target = os.path.join(ROOT, "target", build)
    return [a.replace(RELEASE, target) if a.startswith(RELEASE) else a for a in argv]


def svg_chart(label, rows):
    """A horizontal bar chart of server CPU per operation (lower is better) for one workload."""
    width, bar_left, row_h = 640, 200, 26
    height = 40 + row_h * len(rows)
    top = max(cpu for _, cpu in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="13">',
             f'<text x="10" y="20" font-weight="bold">{escape(label)}: server CPU µs per '
             f'operation (lower is better)</text>']
    for i, (name, cpu) in enumerate(rows):
        y = 32 + i * row_h
        w = max(1, int((width - bar_left - 90) * cpu / top))
        color = "#d9480f" if name == "ringstream" else "#868e96"
        parts.append(f'<text x="10" y="{y + 15}">{escape(name)}</text>')
        parts.append(f'<rect x="{bar_left}" y="{y}" width="{w}" height="{row_h - 6}" '
                     f'fill="{color}"/>')
        parts.append(f'<text x="{bar_left + w + 6}" y="{y + 15}">{cpu:.2f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    global RINGSTREAM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--only", action="append", help="substring of server names to run")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="one short round of two workloads, to check the script works")
    parser.add_argument("--svg", metavar="DIR", help="write one SVG bar chart per workload")
    args = parser.parse_args()
    workloads = WORKLOADS
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 0.5, 0.2
        workloads = [WORKLOADS[0], WORKLOADS[-1]]
    RINGSTREAM = with_build([RINGSTREAM], args.build)[0]
    servers = {}
    for name, argv in SERVERS.items():
        if args.only and name != "ringstream" and not any(o in name for o in args.only):
            continue
        argv = with_build(argv, args.build)
        if not os.path.exists(argv[0]):
            print(f"skipping {name}: {argv[0]} is missing (cargo build --release --bins "
                  f"--examples; benches/peers/install.sh)", file=sys.stderr)
            continue
        servers[name] = argv
    results = {}
    for round_ in range(args.rounds):
        for name, argv in list(servers.items()):
            server, addr = start(argv)
            if server is None:
                print(f"skipping {name}: it did not start", file=sys.stderr)
                del servers[name]
                continue
            try:
                for label, workload in workloads:
                    result = run(workload, name, addr, server.pid, args.seconds, args.warmup)
                    if result is None:
                        continue
                    results.setdefault((label, name), []).append(result)
                    print(f"round {round_ + 1}: {label}: {name}: {result['ops_per_sec']:,} ops/s,"
                          f" {result['server_cpu_us_per_op']} us server CPU/op,"
                          f" p50 {result['p50_us']} us, p99 {result['p99_us']} us",
                          file=sys.stderr)
            finally:
                stop(server)
    print("| workload | server | ops/s | server CPU µs/op | CPU/op vs ringstream | "
          "p50 / p99 µs |")
    print("|---|---|---:|---:|---:|---:|")
    for label, _ in workloads:
        base = None
        chart = []
        for name in servers:
            runs = results.get((label, name))
            if not runs:
                continue
            rate = statistics.median(r["ops_per_sec"] for r in runs)
            cpu = statistics.median(r["server_cpu_us_per_op"] for r in runs)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            base = base or cpu
            chart.append((name, cpu))
            print(f"| {label} | {name} | {rate:,.0f} | {cpu:.2f} | {cpu / base:.2f}× | "
                  f"{p50:.0f} / {p99:.0f} |")
        if args.svg and chart:
            os.makedirs(args.svg, exist_ok=True)
            slug = "".join(c if c.isalnum() else "-" for c in label.lower())
            slug = "-".join(part for part in slug.split("-") if part)
            with open(os.path.join(args.svg, f"ws-{slug}.svg"), "w") as out:
                out.write(svg_chart(label, chart))


if __name__ == "__main__":
    main()
