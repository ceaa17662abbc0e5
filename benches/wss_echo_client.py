#!/usr/bin/env python3
"""A wss:// echo load for benches/tls_load.py: CONNECTIONS WebSockets over TLS, each with one
32-byte binary message in flight (send, wait for the echo, send again), for SECONDS.

    python3 benches/wss_echo_client.py HOST:PORT PATH CONNECTIONS SECONDS

Every connection is opened and upgraded first; then it prints `connected` (flushed) and the
messages start; at the end it prints `messages N`, the echoes received during SECONDS, each
checked byte for byte, before closing: the caller reads the server's CPU time at each line.
Certificates are not verified (the benchmark's own). Exits non-zero on any error.
"""

import asyncio
import base64
import os
import ssl
import sys
import time

SIZE = 32
MASK = b"\x5c\x1e\xa7\x33"


def client_frame(payload):
    """A masked binary frame (RFC 6455 §5.2) carrying `payload` (under 126 bytes)."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + MASK + masked


async def connect(host, port, path, context):
    reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                   server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head.splitlines()[0]!r}")
    return reader, writer


async def echo(reader, writer, deadline, counts):
    payload = os.urandom(SIZE)
    frame = client_frame(payload)
    expected = bytes([0x82, SIZE]) + payload
    while time.monotonic() < deadline:
        writer.write(frame)
        echoed = await reader.readexactly(len(expected))
        if echoed != expected:
            raise RuntimeError(f"a wrong echo: {echoed!r}")
        counts[0] += 1


async def main():
    addr, path, connections, seconds = sys.argv[1:5]
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    streams = await asyncio.gather(*(connect(host, int(port), path, context)
                                     for _ in range(int(connections))))
    print("connected", flush=True)
    counts = [0]
    deadline = time.monotonic() + float(seconds)
    await asyncio.gather(*(echo(reader, writer, deadline, counts)
                           for reader, writer in streams))
    print(f"messages {counts[0]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
