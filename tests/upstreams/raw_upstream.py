"""A raw HTTP/1.1 upstream on asyncio streams, for the proxy route's error and smuggling tests.

Usage: raw_upstream.py --port P --mode MODE --log FILE

Listens on 127.0.0.1:P (P = 0 picks a free port) and prints `listening PORT` on stdout once
bound. Every accepted connection appends `{"connection": k}` to FILE (k counts from 1), in
every mode. FILE gets one JSON object per line, each line written whole in one write.

Modes:
- record: a strict request parser. Each request appends
  `{"method", "target", "version", "headers": [[name, value], ...], "body_len",
  "body_sha256", "trailers"}` (names as received) and is answered
  `HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok` (the head only to HEAD); the connection
  is kept for the next request unless the request said `Connection: close` or was HTTP/1.0.
  Anything a lenient parser might read differently from a strict one (a bare LF or CR, an
  obs-fold, whitespace before a colon, two Content-Length, Content-Length with
  Transfer-Encoding, a Transfer-Encoding not ending in chunked, a bad chunk) appends
  `{"desync": "<why>"}` and closes the connection without an answer.
- reset: closes every connection as soon as it is accepted, with SO_LINGER 0 (an RST).
- garbage: reads the request head, answers `NOT HTTP AT ALL\\r\\n\\r\\n` and closes.
- silent: reads everything and never answers; the connection stays open.
- truncated: reads the request head, answers
  `HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\n` and 10 bytes of body, and closes.
- close-idle: like record, but closes a connection once it has been idle 200 ms after an
  answer (a keep-alive pool's stale connection).
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import struct
import sys

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
IDLE_CLOSE = 0.2
TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
REQUEST_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^ \x00-\x1f\x7f]+) (HTTP/1\.[01])$")
CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]+)(;[^\r\n]*)?$")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


class Desync(Exception):
    """A request a strict parser refuses: the reason goes to the log."""


class Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())


def latin1(data: bytes) -> str:
    return data.decode("latin-1")


async def read_head(reader: asyncio.StreamReader, first: bytes = b"") -> bytes | None:
    """The bytes up to and including the first CRLFCRLF (after `first`, already read); None at
    a clean EOF before any byte."""
    try:
        return first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial and not first:
            return None
        raise Desync("connection closed inside the head")
    except asyncio.LimitOverrunError:
        raise Desync("head too long")


def check_line_endings(data: bytes, what: str) -> None:
    """Every CR must start a CRLF and every LF must end one."""
    stripped = data.replace(b"\r\n", b"")
    if b"\r" in stripped:
        raise Desync(f"bare CR in the {what}")
    if b"\n" in stripped:
        raise Desync(f"bare LF in the {what}")


def parse_head(head: bytes) -> dict:
    check_line_endings(head, "head")
    lines = head[:-4].split(b"\r\n")
    match = REQUEST_LINE.match(lines[0])
    if not match:
        raise Desync(f"bad request line {latin1(lines[0])!r}")
    method, target, version = match.groups()
    headers = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise Desync("obs-fold")
        name, colon, value = line.partition(b":")
        if not colon:
            raise Desync(f"header line without a colon {latin1(line)!r}")
        if not TOKEN.match(name):
            if name.rstrip(b" \t") != name:
                raise Desync(f"whitespace before the colon in {latin1(line)!r}")
            raise Desync(f"bad header name {latin1(name)!r}")
        value = value.strip(b" \t")
        if any(b < 0x20 and b != 0x09 or b == 0x7F for b in value):
            raise Desync(f"control character in the value of {latin1(name)}")
        headers.append((latin1(name), latin1(value)))
    return {
        "method": latin1(method),
        "target": latin1(target),
        "version": latin1(version),
        "headers": headers,
    }


def framing(request: dict) -> tuple[str, int]:
    """("length", n) or ("chunked", 0), refusing every ambiguous combination."""
    lengths = [v for n, v in request["headers"] if n.lower() == "content-length"]
    encodings = [v for n, v in request["headers"] if n.lower() == "transfer-encoding"]
    if len(lengths) > 1:
        raise Desync("two Content-Length")
    if lengths and encodings:
        raise Desync("Content-Length with Transfer-Encoding")
    if encodings:
        codings = [c.strip().lower() for c in ",".join(encodings).split(",")]
        if codings[-1] != "chunked":
            raise Desync(f"Transfer-Encoding not ending in chunked: {', '.join(encodings)!r}")
        if codings.count("chunked") > 1:
            raise Desync("chunked twice in Transfer-Encoding")
        return ("chunked", 0)
    if lengths:
        if not re.fullmatch(r"[0-9]{1,18}", lengths[0]):
            raise Desync(f"bad Content-Length {lengths[0]!r}")
        return ("length", int(lengths[0]))
    return ("length", 0)


async def read_line(reader: asyncio.StreamReader, what: str) -> bytes:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError:
        raise Desync(f"connection closed inside the {what}")
    except asyncio.LimitOverrunError:
        raise Desync(f"{what} too long")
    check_line_endings(line, what)
    return line[:-2]


async def read_body(reader: asyncio.StreamReader, kind: str, length: int, digest) -> tuple[int, list]:
    """Feeds the body to `digest`; returns (its length, the trailers of a chunked body)."""
    try:
        if kind == "length":
            left = length
            while left:
                data = await reader.read(min(left, 256 * 1024))
                if not data:
                    raise Desync("connection closed inside the body")
                digest.update(data)
                left -= len(data)
            return length, []
        total = 0
        while True:
            line = await read_line(reader, "chunk size line")
            match = CHUNK_SIZE.match(line)
            if not match or len(match.group(1)) > 16:
                raise Desync(f"bad chunk size line {latin1(line)!r}")
            size = int(match.group(1), 16)
            if size == 0:
                break
            left = size
            while left:
                data = await reader.read(min(left, 256 * 1024))
                if not data:
                    raise Desync("connection closed inside a chunk")
                digest.update(data)
                left -= len(data)
            total += size
            if await reader.readexactly(2) != b"\r\n":
                raise Desync("chunk data not followed by CRLF")
        trailers = []
        while True:
            line = await read_line(reader, "trailer")
            if not line:
                return total, trailers
            if line[:1] in (b" ", b"\t"):
                raise Desync("obs-fold in the trailers")
            name, colon, value = line.partition(b":")
            if not colon or not TOKEN.match(name):
                raise Desync(f"bad trailer line {latin1(line)!r}")
            trailers.append([latin1(name), latin1(value.strip(b" \t"))])
    except asyncio.IncompleteReadError:
        raise Desync("connection closed inside the body")


def keeps_alive(request: dict) -> bool:
    tokens = {
        t.strip().lower()
        for n, v in request["headers"]
        if n.lower() == "connection"
        for t in v.split(",")
    }
    if request["version"] == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def serve_records(reader, writer, log: Log, idle_close: bool) -> None:
    answered = False
    while True:
        first = b""
        if idle_close and answered:
            # Idle until the next head's first byte, for IDLE_CLOSE at most.
            try:
                first = await asyncio.wait_for(reader.readexactly(1), IDLE_CLOSE)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                return
        try:
            head = await read_head(reader, first)
            if head is None:
                return
            request = parse_head(head)
            kind, length = framing(request)
            digest = hashlib.sha256()
            body_len, trailers = await read_body(reader, kind, length, digest)
        except Desync as why:
            log.write({"desync": str(why)})
            return
        log.write(
            {
                "method": request["method"],
                "target": request["target"],
                "version": request["version"],
                "headers": [[n, v] for n, v in request["headers"]],
                "body_len": body_len,
                "body_sha256": digest.hexdigest(),
                "trailers": trailers,
            }
        )
        writer.write(OK if request["method"] == "HEAD" else OK + b"ok")
        await writer.drain()
        if not keeps_alive(request):
            return
        answered = True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mode",
        required=True,
        choices=["record", "reset", "garbage", "silent", "truncated", "close-idle"],
    )
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    log = Log(args.log)
    connections = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        log.write({"connection": connections})
        try:
            if args.mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if args.mode in ("record", "close-idle"):
                await serve_records(reader, writer, log, args.mode == "close-idle")
            elif args.mode == "garbage":
                await read_head(reader)
                writer.write(b"NOT HTTP AT ALL\r\n\r\n")
                await writer.drain()
            elif args.mode == "silent":
                while await reader.read(64 * 1024):
                    pass
                # The peer closed its side: keep ours open until it goes.
                await asyncio.Event().wait()
            elif args.mode == "truncated":
                await read_head(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"0123456789")
                await writer.drain()
        except (Desync, ConnectionError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    server = await asyncio.start_server(
        on_connection, "127.0.0.1", args.port, limit=MAX_HEAD, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
