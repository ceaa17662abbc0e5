#!/usr/bin/env python3
"""WebSocket echo through a proxy: ringstream's `proxy` route against nginx and a bare relay.

The upstream is ringstream's echo route (one worker) on core 1, beside the load generator
(`ringstream bench echo`, one message in flight on each connection, and with `--rates` also
at fixed offered rates in open loop); in front of it on core 0, in turn, each round:
ringstream's `proxy` route at `/ws/` (defaults: every WebSocket protection of the route runs
on the client's frames) with each of the io_uring set-ups `coop_taskrun` and `defer_taskrun`,
nginx (one process, `proxy_http_version 1.1`, `Upgrade`/`Connection` passed, access log off),
and the floors: `examples/raw_relay.rs` (one upstream connection per client connection,
bytes copied both ways on io_uring, no HTTP), receiving per read and, with `--multishot`,
through one multishot receive per side into a buffer ring.

Server CPU is the proxy process's utime + stime from /proc/PID/stat around each measured run,
per echoed message (each message crosses the proxy twice); a run beside more than
--max-foreign cores of other processes' load is taken again, up to --retries times. Medians
of interleaved rounds (A B C A B C ...). Loopback only; every process started here is
stopped by PID; every run is bounded in time.

    python3 benches/ws_proxy_load.py                       # about 4 minutes
    python3 benches/ws_proxy_load.py --rounds 1 --seconds 1 # a smoke run
    python3 benches/ws_proxy_load.py --base OLD/ringstream --only coop --only base --only nginx
    python3 benches/ws_proxy_load.py --sizes 32 --rates 20000   # also at a fixed offered rate

Needs nginx (`benches/peers/install.sh nginx`) and `cargo build --release --bins --examples`.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile

import subprocess

from benchlib import ROOT, interleave, markdown, skip, stop
from benchlib import bench, free_port
from proxy_load import NGINX_HEAD, Window, frozen, launch, launch_on_port, nginx_binary, \
    versions, write

UPSTREAM_TOML = """listen = "127.0.0.1:0"
workers = 1

[[routes]]
path = "/ws/echo"
kind = "echo"
"""

NGINX_CONF = """# The nginx peer of benches/ws_proxy_load.py: tunnelling WebSocket upgrades under /ws/
# to one upstream.
""" + NGINX_HEAD + """
    server {{
        listen 127.0.0.1:{port};
        location /ws/ {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def proxy_toml(upstream, ring_setup=None):
    setup = f'io_uring_setup = "{ring_setup}"\n' if ring_setup else ""
    return (f'listen = "127.0.0.1:0"\nworkers = 1\n{setup}\n[[routes]]\npath = "/ws/"\n'
            f'kind = "proxy"\nupstreams = ["{upstream}"]\n')


def servers(run_dir, binary, relay, upstream, base=None):
    """{name: start()} for each proxy that can run here (with `base`, a second ringstream
    binary's proxy too, for an A/B in the same run)."""
    found = {}

    for setup in ("coop_taskrun", "defer_taskrun"):
        def ringstream(setup=setup):
            config = write(run_dir, f"proxy-{setup}.toml", proxy_toml(upstream, setup))
            return launch([binary, "serve", "--config", config], 0, printing=True)
        found[f"ringstream proxy ({setup})"] = ringstream

    if base:
        def ringstream_base():
            config = write(run_dir, "proxy-base.toml", proxy_toml(upstream))
            return launch([base, "serve", "--config", config], 0, printing=True)
        found["ringstream proxy (base binary)"] = ringstream_base

    nginx = nginx_binary()
    if nginx:
        def nginx_proxy():
            port = free_port()
            conf = write(run_dir, "nginx.conf",
                         NGINX_CONF.format(run=run_dir, port=port, upstream=upstream))
            for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(run_dir, name), exist_ok=True)
            return launch_on_port([nginx, "-c", conf, "-e", os.path.join(run_dir, "error.log")],
                                  0, port)
        found["nginx"] = nginx_proxy
    else:
        skip("nginx", "not installed (benches/peers/install.sh nginx)")

    if relay:
        for name, mode in (("raw relay (floor)", []), ("multishot relay", ["--multishot"])):
            def raw_relay(mode=mode):
                port = free_port()
                return launch_on_port([relay, f"127.0.0.1:{port}", upstream, *mode], 0, port)
            found[name] = raw_relay
    else:
        skip("raw relay", "target/release/examples/raw_relay is not built")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--sizes", default="32,1024", help="message sizes in bytes")
    parser.add_argument("--rates", default="",
                        help="offered messages/s (open loop), each a workload of its own")
    parser.add_argument("--max-foreign", type=float, default=0.1)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--base", help="another ringstream binary, measured beside (an A/B)")
    parser.add_argument("--only", action="append", help="substring of proxy names to run")
    args = parser.parse_args()

    run_dir = tempfile.mkdtemp(prefix="ws-proxy-load-")
    copies = frozen("release", run_dir)
    binary = next((c for c, o in copies.items() if o.endswith("ringstream")), None)
    relay = next((c for c, o in copies.items() if o.endswith("raw_relay")), None)
    if binary is None:
        sys.exit("build first: cargo build --release --bins --examples")
    upstream_conf = write(run_dir, "upstream.toml", UPSTREAM_TOML)
    upstream_process, upstream = launch([binary, "serve", "--config", upstream_conf], 1,
                                        printing=True)
    if upstream_process is None:
        sys.exit("the upstream echo server did not start")
    rates = [None] + [int(rate) for rate in args.rates.split(",") if rate]
    workloads = [(f"echo {size} B, {args.connections} conns"
                  + (f", {rate:,}/s offered" if rate else ""), (size, rate))
                 for size in map(int, args.sizes.split(",")) for rate in rates]

    def run_one(name, addr, pid, workload):
        size, rate = workload
        mode = ["echo", "--url", f"ws://{addr}/ws/echo", "--size", str(size),
                "--connections", str(args.connections)]
        if rate:
            mode += ["--rate", str(rate)]
        for _ in range(args.retries + 1):
            window = Window({"proxy": pid}, {"upstream": upstream_process.pid})
            result, error = bench(binary, mode, args.seconds, args.warmup, pid)
            if error:
                return None, error
            # The window spans the warm-up too: the CPU is divided by every message it saw.
            messages = result["ops"] * (args.seconds + args.warmup) / args.seconds
            window.close(messages, result)
            if result["errors"]:
                return None, f"{result['errors']} errors"
            if result["foreign_cores"] <= args.max_foreign:
                return result, None
            print(f"{name}: foreign load {result['foreign_cores']:.2f} cores: again",
                  file=sys.stderr)
        return result, None

    def describe(r):
        return (f"{r['ops_per_sec']:,.0f} msg/s, {r['proxy_cpu_us_per_req']:.2f} µs/msg, "
                f"foreign {r['foreign_cores']:.2f}")

    try:
        found = servers(run_dir, binary, relay, upstream, args.base)
        if args.only:
            found = {name: start for name, start in found.items()
                     if any(part in name for part in args.only)}
        outcome = interleave(args.rounds, found, workloads, run_one, describe)
    finally:
        stop(upstream_process)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    print(f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}; ringstream {commit} "
          f"(release build). {versions()}.")
    rows = []
    for label, _ in workloads:
        base = {}
        for name in ("nginx", "raw relay (floor)"):
            runs = outcome.results.get((label, name))
            if runs:
                base[name] = statistics.median(r["proxy_cpu_us_per_req"] for r in runs)
        for (found_label, name), runs in outcome.results.items():
            if found_label != label:
                continue
            cpu = [r["proxy_cpu_us_per_req"] for r in runs]
            mid = statistics.median(cpu)
            rows.append([label, name, f"{statistics.median(r['ops_per_sec'] for r in runs):,.0f}",
                         f"{mid:.2f}", f"{min(cpu):.2f}–{max(cpu):.2f}",
                         f"{mid / base['nginx']:.2f}×" if "nginx" in base else "—",
                         f"{mid / base['raw relay (floor)']:.2f}×"
                         if "raw relay (floor)" in base else "—",
                         f"{statistics.median(r['p50_us'] for r in runs):.0f} / "
                         f"{statistics.median(r['p99_us'] for r in runs):.0f}"])
    print(markdown(["workload", "proxy", "messages/s", "proxy CPU µs/message", "rounds' range",
                    "vs nginx", "vs relay", "p50 / p99 µs"], rows))
    for (label, name), error in outcome.errors.items():
        print(f"{label}: {name}: failed: {error}")
    print(f"python3 {' '.join(sys.argv)}  # {platform.node()}")


if __name__ == "__main__":
    main()
