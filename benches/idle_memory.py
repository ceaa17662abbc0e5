#!/usr/bin/env python3
"""Server memory per idle WebSocket connection, for ringstream or any WebSocket server of
benches/ws_load.py.

Starts the server on core 0 (one worker / one thread), opens N WebSocket connections to
/ws/echo from this process (on core 1), lets them sit idle, and reports the server's RSS
(summed over its processes) before and after: the difference divided by the connections
opened is the memory one idle connection costs. Opening is bounded by --time-limit: a server
slower to accept reports how many it reached. Every connection and the server are closed at
the end; the server is stopped by PID. The open-file limit is raised as far as needed.

    cargo build --release
    python3 benches/idle_memory.py --connections 10000
    python3 benches/idle_memory.py --connections 2000 --server ringstream --server Bun
"""

import argparse
import asyncio
import os
import resource
import sys
import time

from benchlib import cell, markdown, ratio, skip, start, stop, with_build, write_chart
from ws_load import RAW, SERVERS

UPGRADE = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
# The servers with WebSocket connections to hold open.
WEBSOCKET_SERVERS = [name for name in SERVERS if name not in RAW]


def raise_open_files(connections):
    """Raises this process's open-file limit (which the servers it starts inherit) to hold
    `connections` sockets and some more; exits if it cannot."""
    need = connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        if hard < need:
            sys.exit(f"the open-file limit ({hard}) is below {connections} connections "
                     "(raise it with ulimit -Hn, or run as root)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_tree(pid):
    """`pid` and every process below it."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def rss_kib(pid):
    """The resident memory of `pid` and its children, in KiB."""
    total = 0
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


async def open_one(host, port, semaphore):
    async with semaphore:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(UPGRADE)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {head[:40]!r}")
        except BaseException:
            # Refused, failed or out of time: a connection not counted is not kept either.
            writer.close()
            raise
        return writer


async def hold_idle(host, port, pid, count, settle, time_limit):
    """Opens up to `count` connections within `time_limit` seconds, waits `settle` seconds,
    and returns the server's RSS before and after, the connections open, the failures and the
    seconds spent opening."""
    semaphore = asyncio.Semaphore(256)
    before = rss_kib(pid)
    started = time.monotonic()
    tasks = [asyncio.create_task(open_one(host, port, semaphore)) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=time_limit)
    opening = time.monotonic() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    writers = [t.result() for t in done if not t.exception()]
    failed = sum(1 for t in done if t.exception())
    await asyncio.sleep(settle)
    after = rss_kib(pid)
    for writer in writers:
        writer.close()
    return before, after, len(writers), failed, opening


def measure(argv, connections, settle=2.0, time_limit=60.0):
    """The idle-memory figures of the server `argv` (started on core 0, this process on core
    1 meanwhile): a dict, or None when it did not start."""
    server, addr = start(argv)
    if server is None:
        return None
    affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {1} if 1 in affinity else affinity)
        host, port = addr.rsplit(":", 1)
        time.sleep(0.3)
        before, after, opened, failed, opening = asyncio.run(
            hold_idle(host, int(port), server.pid, connections, settle, time_limit))
    finally:
        os.sched_setaffinity(0, affinity)
        stop(server)
    return {"connections": connections, "opened": opened, "failed": failed,
            "opening_seconds": round(opening, 2), "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_connection": (after - before) * 1024 / opened if opened else None,
            "command": " ".join(argv)}


def collect(names, build, connections, settle=2.0, time_limit=60.0):
    """`measure` of each server of `names` in turn: {name: figures}, and the names of those
    that did not start (each skipped with one line)."""
    results, not_started = {}, []
    for name in names:
        result = measure(with_build(SERVERS[name], build), connections, settle, time_limit)
        if result is None:
            skip(name, "it did not start")
            not_started.append(name)
        else:
            results[name] = result
            print(f"idle memory: {name}: {describe(result)}", file=sys.stderr)
    return results, not_started


def describe(result):
    per = result["bytes_per_connection"]
    return (f"{result['opened']:,} of {result['connections']:,} connections open in "
            f"{result['opening_seconds']} s, RSS {result['rss_before_kib']:,} → "
            f"{result['rss_after_kib']:,} KiB, "
            + ("–" if per is None else f"{per:,.0f} bytes per connection"))


def table(results):
    """The Markdown table's headers and rows of {name: measure(...)}."""
    headers = ["server", "connections open", "RSS idle", "RSS with the connections",
               "per connection", "vs ringstream"]
    base = (results.get("ringstream") or {}).get("bytes_per_connection")
    rows = []
    for name, r in results.items():
        reached = f"{r['opened']:,}"
        if r["opened"] < r["connections"]:
            reached += (f" of {r['connections']:,} in {r['opening_seconds']:.0f} s"
                        + (f" ({r['failed']:,} failed)" if r["failed"] else ""))
        per = r["bytes_per_connection"]
        rows.append([name, reached, f"{r['rss_before_kib'] / 1024:,.1f} MiB",
                     f"{r['rss_after_kib'] / 1024:,.1f} MiB", cell(per, ",.0f", " B"),
                     cell(ratio(per, base), ".2f", "×")])
    return headers, rows


def chart(results, directory):
    """The SVG of the bytes per idle connection: its path, or None."""
    rows = [(name, r["bytes_per_connection"]) for name, r in results.items()]
    count = max((r["connections"] for r in results.values()), default=0)
    return write_chart(directory, "idle-memory",
                       f"{count:,} idle WebSocket connections: server RSS bytes per connection "
                       "(lower is better)", rows, ",.0f")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before measuring")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds allowed for opening the connections")
    parser.add_argument("--server", action="append", choices=WEBSOCKET_SERVERS,
                        help="a server of benches/ws_load.py (default: ringstream)")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    args = parser.parse_args()
    raise_open_files(args.connections)
    results, _ = collect(args.server or ["ringstream"], args.build, args.connections,
                         args.settle, args.time_limit)
    print(markdown(*table(results)), end="")


if __name__ == "__main__":
    main()
