#!/usr/bin/env python3
"""Server memory per idle WebSocket connection.

Starts `ringstream serve` (one worker, loopback), opens N WebSocket connections to /ws/echo
from this process, lets them sit idle, and reports the server's RSS before and after: the
difference divided by N is the memory one idle connection costs. Every connection and the
server are closed at the end; the server is stopped by PID.

    python3 benches/idle_memory.py --connections 10000

Needs a release build (`cargo build --release`).
"""

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ringstream")
UPGRADE = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_one(host, port, semaphore):
    async with semaphore:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(UPGRADE)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {head[:40]!r}")
        return writer


async def measure(host, port, pid, count, settle):
    semaphore = asyncio.Semaphore(256)
    before = rss_kib(pid)
    writers = await asyncio.gather(*(open_one(host, port, semaphore) for _ in range(count)))
    await asyncio.sleep(settle)
    after = rss_kib(pid)
    for writer in writers:
        writer.close()
    return before, after


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before measuring")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.connections + 64 > hard:
        raise SystemExit(f"the open-file limit ({hard}) is below {args.connections} connections")
    server = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--workers", "1", "--log-level", "warn"],
        stdout=subprocess.PIPE, text=True)
    try:
        addr = server.stdout.readline().strip().removeprefix("listening on ")
        host, port = addr.rsplit(":", 1)
        time.sleep(0.2)
        before, after = asyncio.run(measure(host, int(port), server.pid, args.connections,
                                            args.settle))
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    per = (after - before) * 1024 / args.connections
    print(f"server RSS {before} KiB idle, {after} KiB with {args.connections} idle WebSocket "
          f"connections: {per:,.0f} bytes per connection")


if __name__ == "__main__":
    main()
