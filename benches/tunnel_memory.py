#!/usr/bin/env python3
"""Proxy memory per idle WebSocket tunnel: ringstream's `proxy` route in front of an echo
upstream, against another ringstream build in the same run.

The upstream (ringstream's echo route, one worker) runs on core 1; each round starts the
proxy of each build on core 0 (one worker), opens N WebSocket tunnels through it from this
process (core 1), lets them sit idle and reads the proxy's RSS before and after (as
benches/idle_memory.py does for sessions the server serves itself): the difference divided
by the tunnels opened is what one idle tunnel costs the proxy, both of its connections
included. Medians of interleaved rounds; every process is stopped by PID.

    cargo build --release
    python3 benches/tunnel_memory.py --base OLD/ringstream --tunnels 4000 --rounds 3
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from benchlib import ROOT, markdown, start, stop
from idle_memory import measure, raise_open_files

UPSTREAM = 'listen = "127.0.0.1:0"\nworkers = 1\n\n[[routes]]\npath = "/ws/echo"\nkind = "echo"\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tunnels", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", help="another ringstream binary, measured beside")
    args = parser.parse_args()
    raise_open_files(2 * args.tunnels)
    binary = os.path.join(ROOT, "target", "release", "ringstream")
    if not os.access(binary, os.X_OK):
        sys.exit("build first: cargo build --release")
    run_dir = tempfile.mkdtemp(prefix="tunnel-memory-")
    # A copy: a rebuild in the work tree during the run does not change the build measured.
    binary = shutil.copy2(binary, os.path.join(run_dir, "ringstream"))
    builds = {"ringstream": binary}
    if args.base:
        builds["base binary"] = args.base
    upstream_conf = os.path.join(run_dir, "upstream.toml")
    with open(upstream_conf, "w") as f:
        f.write(UPSTREAM)
    upstream, addr = start(["taskset", "-c", "1", binary, "serve", "--config", upstream_conf])
    if upstream is None:
        sys.exit("the upstream echo server did not start")
    proxy_conf = os.path.join(run_dir, "proxy.toml")
    with open(proxy_conf, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nworkers = 1\n\n[[routes]]\npath = "/ws/"\n'
                f'kind = "proxy"\nupstreams = ["{addr}"]\n')
    results = {}
    try:
        for round_ in range(args.rounds):
            for name, build in builds.items():
                result = measure([build, "serve", "--config", proxy_conf], args.tunnels)
                if result is None or not result["opened"]:
                    sys.exit(f"{name}: no tunnel opened")
                print(f"round {round_ + 1}: {name}: {result['opened']} tunnels "
                      f"({result['failed']} failed), "
                      f"{result['bytes_per_connection']:,.0f} B each", file=sys.stderr)
                results.setdefault(name, []).append(result["bytes_per_connection"])
    finally:
        stop(upstream)
    rows = [[name, f"{statistics.median(each):,.0f}", f"{min(each):,.0f}–{max(each):,.0f}"]
            for name, each in results.items()]
    print(markdown(["proxy", "bytes per idle tunnel", "rounds' range"], rows))
    print(f"python3 {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
