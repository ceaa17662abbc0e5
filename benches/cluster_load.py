#!/usr/bin/env python3
"""Cross-node broadcast benchmark: ringstream's [cluster] against Socket.IO's Redis adapter.

The script starts its own redis-server (loopback, a free port, `--save '' --appendonly no`),
the one broker both clusters use. Each server under test is three processes: nodes A and B on
that Redis (ringstream: `serve --config FILE` with one worker, the broadcast route and a
`[cluster]` section; Socket.IO: benches/peers/socketio_broadcast.js with the Redis adapter) and
a node C alone (ringstream without `[cluster]`, Socket.IO with its in-memory adapter). One
topic, K subscribers and P publishers (members too: each gets its own messages back from its
own node), every delivery checked (per publisher in order, no gap, payload intact) by
`ringstream bench broadcast`; three placements:

- cross-node: publishers on A, subscribers on B (`--subscribe-url`): every counted delivery
  crossed Redis;
- local, clustered: everyone on A, which still publishes each message to Redis;
- one node: everyone on C, no Redis at all.

Server CPU per delivery is utime + stime of the nodes' processes (A and B together; C alone)
over the measured window, divided by the subscribers' deliveries; Redis's is given apart, per
delivery and per published message (what it handles), read from its threads' schedstat in
nanoseconds (it uses a few percent of a core: 10 ms ticks would not show it). A
publisher's message stays outstanding until it is back at the publisher and every subscriber
has it, so the window bounds the slowest subscriber's backlog in every placement, between the
nodes too; the latencies are that backlog (p50 ≈ window × subscribers ÷ deliveries/s), not a
service time.

Socket.IO is driven by the same load generator, speaking engine.io over a plain WebSocket
exactly as socket.io-client does with `transports: ["websocket"]` (`40` connect, events,
`2`/`3` ping/pong): the Socket.IO server does all the work it does for its own clients
(engine.io and Socket.IO parsing and encoding, rooms, the adapter), and both servers face the
same client, with the same checks, on the same core. A dedicated Node.js client would cost
several times more CPU per message and become the bottleneck on the load generator's one core.
Two rows for Socket.IO, because it carries bytes two ways: a Buffer argument (a text frame
announcing the attachment, then a binary frame: two frames per delivery) and the bytes as a
hexadecimal string (one text frame of twice the bytes, as a JSON app would send them).
ringstream sends each message as one binary frame.

Two cores: the three nodes of the server under test and redis-server share core 0 (taskset),
the load generator runs on core 1; idle nodes cost nothing measurable. Rounds are interleaved
(each server's nodes started anew each round, every placement run against them), the table
gives medians, every process is stopped by PID, every run is bounded in time, and everything
listens on loopback only.

    cargo build --release --bins && benches/peers/install.sh redis socketio
    python3 benches/cluster_load.py --rounds 3 --seconds 4

A server that is not installed, or does not start, is skipped with one line. `--smoke` (50
subscribers, one round of 1 s, `--build debug`) keeps the script from rotting.
"""

import argparse
import datetime
import os
import platform
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple

from benchlib import (PEERS, ROOT, bench, cell, free_port, interleave, markdown, medians,
                      ratio, ringstream_path, rows_of, skip, stop, wait_for_port)

SOCKETIO_SERVER = os.path.join(PEERS, "socketio_broadcast.js")
SOCKETIO_INSTALLED = os.path.join(PEERS, "node_modules", "@socket.io", "redis-adapter")
# How long a node may take to print its address (Node.js needs a second on a busy machine).
START_TIMEOUT = 20
TOPIC = "bench"
CROSS, LOCAL, ONE = "cross-node", "local, clustered node", "one node, no cluster"
PLACEMENTS = [CROSS, LOCAL, ONE]
# Socket.IO's two ways of carrying the bytes: (server name, `--socketio` value).
SOCKETIO_PAYLOADS = [("Socket.IO (Buffer)", "binary"), ("Socket.IO (hex string)", "text")]


class Nodes(NamedTuple):
    """A started server under test: the addresses and PIDs of its clustered nodes A and B and
    of its lone node C."""
    a: str
    b: str
    c: str
    pids: tuple


class Group:
    """Processes started together and stopped together, by PID (benchlib.stop calls
    send_signal and wait): one server under test for benchlib.interleave."""

    def __init__(self, processes):
        self.processes = processes
        self.pid = processes[0].pid

    def send_signal(self, sig):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)

    def wait(self):
        for process in self.processes:
            process.wait()


def start_node(argv, log):
    """Starts `argv` on core 0, its stderr into `log`; returns (process, ADDR) once it prints
    `listening on ADDR`, or (None, None) if it does not within START_TIMEOUT."""
    process = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.PIPE,
                               stderr=log, text=True)
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline().strip() if ready else ""
    if line.startswith("listening on "):
        return process, line.removeprefix("listening on ")
    process.kill()
    process.wait()
    return None, None


def start_group(argvs, logs):
    """Starts the nodes A, B and C of `argvs` (in that order); returns (Group, Nodes), or
    (None, None) with what the failing node said on `skip`'s line."""
    started, addrs = [], []
    for name, argv in zip("ABC", argvs):
        log = os.path.join(logs, f"node-{name}.log")
        with open(log, "w") as out:
            process, addr = start_node(argv, out)
        if process is None:
            for other in started:
                stop(other)
            with open(log) as f:
                said = f.read().strip().splitlines()
            print(f"node {name} did not start: {' / '.join(said[-2:]) or 'no output'}",
                  file=sys.stderr)
            return None, None
        started.append(process)
        addrs.append(addr)
    return Group(started), Nodes(*addrs, pids=tuple(p.pid for p in started))


def ringstream_config(directory, node, redis_url):
    """A config file of node `node`: one worker on a free loopback port, the broadcast route
    and, given `redis_url`, the cluster."""
    path = os.path.join(directory, f"ringstream-{node}.toml")
    cluster = f'\n[cluster]\nredis = "{redis_url}"\nnode_id = "{node}"\n' if redis_url else ""
    with open(path, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nworkers = 1\n{cluster}\n'
                '[[routes]]\npath = "/ws/broadcast/{topic}"\nkind = "broadcast"\n'
                'echo_to_sender = true\n')
    return path


def servers(binary, redis_url, directory):
    """{name: (start, URL of TOPIC at ADDR, load options)} of the servers that are there;
    `skip(name, why)` for each missing one."""
    def starter(name, argvs):
        logs = os.path.join(directory, name.replace(" ", "-"))
        os.makedirs(logs, exist_ok=True)
        return lambda: start_group(argvs, logs)

    ringstream = [[binary, "serve", "--config", ringstream_config(directory, node, url),
                   "--log-level", "warn"]
                  for node, url in [("a", redis_url), ("b", redis_url), ("c", None)]]
    found = {"ringstream": (starter("ringstream", ringstream),
                            lambda addr: f"ws://{addr}/ws/broadcast/{TOPIC}", [])}
    node = shutil.which("node")
    if node and os.path.isdir(SOCKETIO_INSTALLED):
        socketio = [[node, SOCKETIO_SERVER, "0", redis_url], [node, SOCKETIO_SERVER, "0", redis_url],
                    [node, SOCKETIO_SERVER, "0"]]
        for name, payload in SOCKETIO_PAYLOADS:
            found[name] = (starter(name, socketio),
                           lambda addr: (f"ws://{addr}/socket.io/?EIO=4&transport=websocket"
                                         f"&room={TOPIC}"),
                           ["--socketio", payload])
    else:
        for name, _ in SOCKETIO_PAYLOADS:
            skip(name, "not installed (benches/peers/install.sh socketio)")
    return found


def load_args(placement, nodes, url, extra, redis_pid):
    """`ringstream bench broadcast` options of one placement beyond the load's shape: the
    URLs, the PIDs whose CPU counts (the first goes to benchlib.bench) and the broker's."""
    pid_a, pid_b, pid_c = nodes.pids
    if placement == CROSS:
        urls = ["--url", url(nodes.a), "--subscribe-url", url(nodes.b)]
    elif placement == LOCAL:
        urls = ["--url", url(nodes.a)]
    else:
        return pid_c, ["--url", url(nodes.c), *extra]
    return pid_a, [*urls, *extra, "--server-pid", str(pid_b), "--broker-pid", str(redis_pid)]


def collect(binary, found, redis_pid, shape, rounds, seconds, warmup):
    """Interleaved rounds of every placement against every server of `found`; see
    benchlib.interleave."""
    load = ["broadcast", "--subscribers", str(shape.subscribers), "--publishers",
            str(shape.publishers), "--size", str(shape.size), "--window", str(shape.window)]

    def run_one(name, nodes, _pid, placement):
        _, url, extra = found[name]
        pid, args = load_args(placement, nodes, url, extra, redis_pid)
        result, error = bench(binary, [*load, *args], seconds, warmup, pid, timeout=90)
        if result is not None:
            result["total_cpu_us_per_op"] = total_cpu(result)
            broker, published = result.get("broker_cpu_us_per_op"), result.get("published")
            if broker is not None and published:
                result["broker_cpu_us_per_message"] = broker * result["ops"] / published
        return result, error

    starters = {name: start for name, (start, _, _) in found.items()}
    workloads = [(placement, placement) for placement in PLACEMENTS]
    return interleave(rounds, starters, workloads, run_one, describe)


def total_cpu(result):
    """The nodes' and Redis's CPU µs per delivery together (Redis's is none on one node)."""
    nodes = result.get("server_cpu_us_per_op")
    return None if nodes is None else nodes + (result.get("broker_cpu_us_per_op") or 0)


def describe(result):
    broker = result.get("broker_cpu_us_per_op")
    redis = f" + Redis {broker} µs" if broker is not None else ""
    return (f"{result['ops_per_sec']:,.0f} deliveries/s, nodes {result['server_cpu_us_per_op']} "
            f"µs{redis} CPU each, p50 {result['p50_us']} µs, p99 {result['p99_us']} µs")


def table(outcome, names):
    """The Markdown table's headers and rows: every placement of every server."""
    headers = ["delivery", "server", "deliveries/s", "nodes' CPU µs per delivery",
               "Redis CPU µs per delivery", "Redis CPU µs per message",
               "CPU (nodes + Redis) vs one node",
               "CPU vs ringstream", "p50 / p99 ms", "load generator CPU"]
    rows = []
    for placement in PLACEMENTS:
        base = medians(outcome.results.get((placement, "ringstream"), []))

        def row(name, m):
            alone = medians(outcome.results.get((ONE, name), []))
            total, p50, p99 = m.get("total_cpu_us_per_op"), m.get("p50_us"), m.get("p99_us")
            return [cell(m.get("ops_per_sec"), ",.0f"), cell(m.get("server_cpu_us_per_op"), ".3f"),
                    cell(m.get("broker_cpu_us_per_op"), ".3f"),
                    cell(m.get("broker_cpu_us_per_message"), ".1f"),
                    cell(ratio(total, alone.get("total_cpu_us_per_op")), ".2f", "×"),
                    cell(ratio(total, base.get("total_cpu_us_per_op")), ".2f", "×"),
                    f"{cell(p50 and p50 / 1000, '.1f')} / {cell(p99 and p99 / 1000, '.1f')}",
                    cell(m.get("client_cpu_pct"), ".0f", "%")]

        rows += rows_of(outcome, placement, names, len(headers), row)
    return headers, rows


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_line(build, load_before):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    return (f"`benches/cluster_load.py` on {now:%Y-%m-%d %H:%M} UTC: {cpu}, {os.cpu_count()} "
            f"cores, Linux {platform.release()}; load average {load_before} before, "
            f"{load_average()} after; ringstream {commit} ({build} build); {versions()}.")


def versions():
    """The peers' versions: Node.js, Socket.IO, its Redis adapter, redis-server."""
    found = []
    node = shutil.which("node")
    if node and os.path.isdir(SOCKETIO_INSTALLED):
        script = ("const v = (m) => require(require('path').join(process.argv[1], 'node_modules', "
                  "m, 'package.json')).version; console.log(`Node.js ${process.version}, "
                  "socket.io ${v('socket.io')}, @socket.io/redis-adapter "
                  "${v('@socket.io/redis-adapter')}, redis ${v('redis')}`)")
        out = subprocess.run([node, "-e", script, PEERS], capture_output=True, text=True)
        found.append(out.stdout.strip())
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    found.append(" ".join(out.stdout.split()[:3]))
    return "; ".join(f for f in found if f)


class Shape(NamedTuple):
    """The broadcast load of every run."""
    subscribers: int
    publishers: int
    size: int
    window: int


def start_redis():
    """redis-server on a free loopback port, core 0, nothing saved: (process, URL)."""
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", "0", "redis-server", "--bind", "127.0.0.1", "--port", str(port),
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_port(process, port):
        process.kill()
        process.wait()
        sys.exit("redis-server did not start")
    return process, f"redis://127.0.0.1:{port}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--only", action="append", help="substring of server names to run")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="50 subscribers, one round of 1 s, debug build (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.subscribers = 1, 1, 0.2, 50
        args.build = "debug"
    binary = ringstream_path(args.build)
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing (cargo build --bins)")
    if not shutil.which("redis-server"):
        sys.exit("redis-server is missing (benches/peers/install.sh redis)")
    shape = Shape(args.subscribers, args.publishers, args.size, args.window)
    load_before = load_average()
    redis, redis_url = start_redis()
    try:
        with tempfile.TemporaryDirectory(prefix="ringstream-cluster-") as directory:
            found = servers(binary, redis_url, directory)
            found = {name: spec for name, spec in found.items()
                     if not args.only or any(o in name for o in args.only)}
            outcome = collect(binary, found, redis.pid, shape, args.rounds, args.seconds,
                              args.warmup)
    finally:
        redis.kill()
        redis.wait()
    print(f"{shape.subscribers:,} subscribers, {shape.publishers} publisher"
          f"{'s' if shape.publishers > 1 else ''}, {shape.size} B messages, window "
          f"{shape.window}; medians of {args.rounds} round{'s' if args.rounds > 1 else ''} of "
          f"{args.seconds:g} s.\n")
    print(markdown(*table(outcome, found)), end="")
    print(f"\n{machine_line(args.build, load_before)}")
    print("Nodes A, B and C of the server under test and redis-server on core 0, the load "
          "generator on core 1.")
    commands = {}
    for (placement, name), runs in outcome.results.items():
        commands.setdefault(f"{placement}, {name}", runs[0]["command"])
    if commands:
        print("\nOne command of each row (PIDs and ports of its round):\n\n```sh")
        for row, command in commands.items():
            print(f"# {row}\n{' '.join(shlex.quote(arg) for arg in command.split(' '))}")
        print("```")
    if outcome.errors or outcome.not_started:
        sys.exit(f"{len(outcome.errors)} runs failed, {len(outcome.not_started)} servers did "
                 "not start")


if __name__ == "__main__":
    main()
