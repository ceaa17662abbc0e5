#!/usr/bin/env python3
"""Server memory under a flood of half-sent maximum-size WebSocket messages.

Starts `ringstream serve --workers 1` on core 0 with `max_message_size` = --message and the
`max_buffered_bytes` under test, then opens --connections WebSockets to /ws/echo from this
process (core 1). Each sends the header of a maximum-size binary message and as much of its
payload, up to --part of it (all but the last bytes by default), as the kernel accepts, and
never the rest: the attack that pins
connections x message size of memory in a server that buffers whole frames. The sends are
retried for --seconds while the server reads what it will; then the server's RSS and its
/metrics (`ringstream_buffered_bytes`, `ringstream_buffer_pauses_total`) are read, and one
more connection checks that a small message is still echoed. Each budget runs in its own
server; the default compares the default budget (256 MiB) with an unbounded one (1024 GiB,
as if there were no budget).

    cargo build --release
    python3 benches/memory_attack.py                       # 4,000 x 1 MiB, 256 MiB vs unbounded
    python3 benches/memory_attack.py --budget 64MiB --connections 4000

Markdown goes to stdout, progress to stderr. The server is stopped by PID at the end, also on
failure; every phase is bounded in time.
"""

import argparse
import os
import platform
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import free_port, markdown, ringstream_path, stop, wait_for_port
from idle_memory import raise_open_files, rss_kib

UPGRADE = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
MASK = b"\x37\xfa\x21\x3d"

CONFIG = """\
listen = "127.0.0.1:{port}"
workers = 1

[limits]
max_buffered_bytes = "{budget}"
max_message_size = {message}
timeout = "300s"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/metrics"
kind = "metrics"
"""


def size(text):
    """Bytes of a size written as N, NKiB, NMiB or NGiB."""
    for suffix, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if text.endswith(suffix):
            return int(text[:-len(suffix)]) * factor
    return int(text)


def frame_header(length):
    """A masked binary frame header announcing `length` payload bytes."""
    return bytes([0x82, 0x80 | 127]) + struct.pack(">Q", length) + MASK


def upgrade(port):
    """A WebSocket to /ws/echo, upgraded, left non-blocking."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(UPGRADE)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(answer.split(b"\r\n")[0].decode())
    sock.setblocking(False)
    return sock


def metrics(port):
    """The server's /metrics as {name: value} (unlabelled samples only)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            values[name] = float(value)
    return values


def still_echoes(port):
    """Whether a fresh connection gets its small message back (within 10 s)."""
    sock = upgrade(port)
    sock.setblocking(True)
    sock.settimeout(10)
    payload = b"still here"
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + MASK + masked)
    try:
        answer = sock.recv(64)
    except OSError:
        return False
    finally:
        sock.close()
    return answer[2:] == payload


def attack(binary, budget, args):
    """One server with `budget`: returns its figures."""
    port = free_port()
    message = size(args.message)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(CONFIG.format(port=port, budget=budget, message=message))
        path = f.name
    server = None
    sockets = []
    try:
        server = subprocess.Popen(["taskset", "-c", "0", binary, "serve", "--config", path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for_port(server, port):
            sys.exit(f"the server with max_buffered_bytes = {budget} did not start")
        before = rss_kib(server.pid)
        print(f"  {budget}: opening {args.connections}", file=sys.stderr)
        pending = {}
        part = int(message * args.part)
        chunk = bytes(64 * 1024)
        deadline = time.monotonic() + args.seconds
        for _ in range(args.connections):
            sock = upgrade(port)
            sockets.append(sock)
            pending[sock] = [frame_header(message), part]
        selector = selectors.DefaultSelector()
        for sock in sockets:
            selector.register(sock, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                state = pending.get(sock)
                if state is None:
                    continue
                try:
                    if state[0]:
                        state[0] = state[0][sock.send(state[0]):]
                        continue
                    sent = sock.send(chunk[:min(len(chunk), state[1])])
                    state[1] -= sent
                except BlockingIOError:
                    continue
                if state[1] == 0:
                    del pending[sock]
                    selector.unregister(sock)
        # Let what the kernel holds be read.
        time.sleep(min(5, max(0, deadline - time.monotonic())))
        after = rss_kib(server.pid)
        seen = metrics(port)
        echoes = still_echoes(port)
        return {
            "budget": budget,
            "connections": len(sockets),
            "parts sent whole": len(sockets) - len(pending),
            "rss before MiB": before / 1024,
            "rss after MiB": after / 1024,
            "held MiB": seen.get("ringstream_buffered_bytes", 0) / (1 << 20),
            "pauses": int(seen.get("ringstream_buffer_pauses_total", 0)),
            "small echo": "yes" if echoes else "NO",
        }
    finally:
        for sock in sockets:
            sock.close()
        if server is not None:
            stop(server)
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--part", type=float, default=0.99,
                        help="fraction of each message's payload sent (never all of it)")
    parser.add_argument("--message", default="1MiB", help="max_message_size, and each attack's")
    parser.add_argument("--budget", action="append",
                        help="max_buffered_bytes to run (default: 256MiB and 1024GiB)")
    parser.add_argument("--seconds", type=float, default=40, help="time to push the parts")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    args = parser.parse_args()
    raise_open_files(args.connections + 16)
    os.sched_setaffinity(0, {1})
    binary = ringstream_path(args.build)
    budgets = args.budget or ["256MiB", "1024GiB"]
    rows = [attack(binary, budget, args) for budget in budgets]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"{args.connections} connections, each with {args.part:.0%} of a {args.message} "
          f"message sent; "
          f"{cpu}, Linux {platform.release()}\n")
    keys = list(rows[0])
    print(markdown(keys, [[f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k])
                           for k in keys] for row in rows]))


if __name__ == "__main__":
    main()
