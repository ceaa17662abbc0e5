#!/usr/bin/env python3
"""Per-client rates across nodes (`[cluster]`): how close one client spread evenly over 2 and
3 nodes stays to its budget, and how many Redis calls the leases cost per 1,000 decisions.

A redis-server of the script's own on a free loopback port, and N ringstream nodes (one
worker each) sharing it, all on core 0; the client on core 1: one kept-alive connection per
node from 127.0.0.5, requests taking turns between the nodes as fast as the answers come, for
--seconds. The route has `rate_limit_requests = R` (per minute) with `burst = B`; the budget
over the run is R/60 x seconds + B. A rate-limit service that asks Redis per decision (envoy's
ratelimit, a Python limiter with a Redis backend) makes 1,000 calls per 1,000 decisions.

The second table is the connection cap across nodes (`max_concurrent_connections = 2`, two
nodes): a client holding one connection on node A tries one more on A and one on B, either
at the same instant (two threads released together) or 100 ms apart; it counts the pairs in
which both were admitted (one over the cap).

    cargo build --release --bin ringstream && benches/peers/install.sh redis
    python3 benches/cluster_rates.py --seconds 10 --rounds 3

Every process is stopped by PID; everything talks to loopback only.
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, markdown, ringstream_path, stop, wait_for_port

CONFIG = """
listen = "127.0.0.1:{port}"
workers = 1
[limits]
exempt = ["127.0.0.1/32"]
{limits}
[cluster]
redis = "redis://127.0.0.1:{redis}"
node_id = "n{index}"
[[routes]]
path = "/stats"
kind = "stats"
[[routes]]
path = "/health"
kind = "health"
"""


def start_redis():
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", "0", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_port(process, port):
        stop(process)
        sys.exit("redis-server did not start (benches/peers/install.sh redis)")
    return process, port


def start_node(binary, index, redis, limits, directory):
    port = free_port()
    path = os.path.join(directory, f"n{index}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(port=port, limits=limits, redis=redis, index=index))
    process = subprocess.Popen(["taskset", "-c", "0", binary, "serve", "--config", path,
                                "--log-level", "error"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if not wait_for_port(process, port):
        stop(process)
        sys.exit(f"node {index} did not start")
    return process, port


def get(port, path):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def stats(port):
    return json.loads(get(port, "/stats"))


def status_of(sock, buffer):
    """Reads one bodyless-or-small response from `sock`; returns its status and the rest."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, rest = buffer.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest[length:]


def load(ports, seconds):
    """Requests taking turns between `ports` for `seconds`: (allowed, refused)."""
    socks = []
    for port in ports:
        s = socket.socket()
        s.bind(("127.0.0.5", 0))
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append([s, b""])
    allowed = refused = 0
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        entry = socks[i % len(socks)]
        entry[0].sendall(request)
        status, entry[1] = status_of(entry[0], entry[1])
        if status == 200:
            allowed += 1
        elif status == 429:
            refused += 1
        else:
            raise RuntimeError(f"unexpected status {status}")
        i += 1
    for s, _ in socks:
        s.close()
    return allowed, refused


class Cluster:
    """A redis-server and `nodes` ringstream nodes with `limits`, stopped on exit."""

    def __init__(self, binary, nodes, limits):
        self.binary, self.nodes, self.limits = binary, nodes, limits

    def __enter__(self):
        self.directory = tempfile.TemporaryDirectory()
        self.redis, redis_port = start_redis()
        self.procs, self.ports = [], []
        for index in range(self.nodes):
            process, port = start_node(self.binary, index, redis_port, self.limits,
                                       self.directory.name)
            self.procs.append(process)
            self.ports.append(port)
        deadline = time.monotonic() + 10
        while any(stats(p)["cluster"]["nodes"] < self.nodes for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes never saw each other")
            time.sleep(0.1)
        return self

    def __exit__(self, *_):
        for process in self.procs:
            stop(process)
        stop(self.redis)
        self.directory.cleanup()


def run(binary, nodes, rate, burst, seconds):
    limits = f"rate_limit_requests = {rate}\nburst = {burst}"
    with Cluster(binary, nodes, limits) as cluster:
        allowed, refused = subprocess_free_load(cluster.ports, seconds)
        calls = sum(stats(p)["cluster"]["leases"]["redis_calls"] for p in cluster.ports)
        return allowed, refused, calls


def connect_from(host, port):
    """A kept-alive connection from `host` asking for /health; its status and socket."""
    s = socket.socket()
    s.bind((host, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = status_of(s, b"")
    return status, s


def cap_pairs(binary, pairs, apart):
    """Pairs (of `pairs`) in which a client at 1 of its cap of 2 got both of two more
    connections, one per node, made at once (`apart` = 0) or `apart` seconds apart."""
    import threading
    over = 0
    with Cluster(binary, 2, "max_concurrent_connections = 2") as cluster:
        a, b = cluster.ports
        for trial in range(pairs):
            host = f"127.0.{1 + trial // 250}.{1 + trial % 250}"
            _, held = connect_from(host, a)
            time.sleep(0.15)
            results = []
            start = threading.Barrier(2)

            def attempt(port, delay):
                start.wait()
                time.sleep(delay)
                results.append(connect_from(host, port))

            threads = [threading.Thread(target=attempt, args=(a, 0)),
                       threading.Thread(target=attempt, args=(b, apart))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            over += sum(1 for status, _ in results if status == 200) == 2
            for _, s in results:
                s.close()
            held.close()
            time.sleep(0.15)
    return over


def subprocess_free_load(ports, seconds):
    os.sched_setaffinity(0, {1})
    try:
        return load(ports, seconds)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true", help="one short round (keeps it working)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 1, 1
    binary = ringstream_path(args.build)
    print(f"{platform.processor() or platform.machine()}, Linux {platform.release()}; "
          f"{args.rounds} rounds of {args.seconds:g} s, medians", file=sys.stderr)
    rows = []
    for rate, burst in [(600, 10), (6000, 100)]:
        for nodes in (2, 3):
            runs = [run(binary, nodes, rate, burst, args.seconds) for _ in range(args.rounds)]
            budget = rate / 60 * args.seconds + burst
            allowed = statistics.median(r[0] for r in runs)
            decisions = statistics.median(r[0] + r[1] for r in runs)
            calls = statistics.median(r[2] for r in runs)
            rows.append([
                f"{rate}/min, burst {burst}", str(nodes), f"{decisions:,.0f}", f"{allowed:,.0f}",
                f"{budget:,.0f}", f"{allowed / budget:.3f}x",
                f"{calls / decisions * 1000:.1f}", f"{calls / max(allowed, 1) * 1000:.0f}",
            ])
    print(markdown(["rule", "nodes", "decisions", "admitted", "budget", "admitted / budget",
                    "Redis calls per 1,000 decisions", "per 1,000 admitted"], rows))
    pairs = 10 if args.smoke else 100
    rows = [[label, str(pairs), str(cap_pairs(binary, pairs, apart))]
            for label, apart in [("at the same instant", 0), ("100 ms apart", 0.1)]]
    print(markdown(["two more connections, one per node", "pairs", "both admitted"], rows))


if __name__ == "__main__":
    main()
