#!/usr/bin/env python3
"""Soak: thousands of WebSockets held open for minutes, then a drain.

Starts `ringstream serve --workers 2` with a config whose `heartbeat_interval` is short (5 s),
so that the server's pings really run, and opens --connections WebSockets to /ws/echo from
client processes of this script (at most --per-process each: the open-file limit is per
process), their sockets bound to 127.0.0.2 .. 127.0.0.(1 + --sources) before they connect so
that no (source, destination) pair runs out of ports. The clients answer every ping with its
pong; a fraction of them (--echo-fraction) send a small text message every second and check
that the same bytes come back. The connections are held for --minutes while the server's RSS
is sampled every 5 s; then the server gets SIGTERM, every connection still open must receive
a close frame with code 1001, and the process must exit 0 within `drain_timeout`.

    cargo build --release --bins
    python3 benches/soak.py                    # 19,000 connections, 5 minutes
    python3 benches/soak.py --smoke --build debug   # 2,000 connections for 20 s (CI)

Markdown goes to stdout, progress to stderr. The exit status is 1 when a connection was lost
during the hold, a connection open at the drain did not get close 1001, the server exited
with another status than 0, or its drain took longer than `drain_timeout`. Before starting, it
waits while another benchmark runs (`pgrep -f benches/ab.py`), polling every 30 s. Every
phase is bounded in time; the server and the client processes are stopped by PID at the end,
also on failure. The server's log is kept in target/soak/server.log.
"""

import argparse
import asyncio
import base64
import collections
import datetime
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time

from benchlib import ROOT, markdown, ringstream_path
from idle_memory import raise_open_files, rss_kib

OUT = os.path.join(ROOT, "target", "soak")
SAMPLE_SECONDS = 5
# Seconds allowed for one handshake, and connections opening at once per client process.
HANDSHAKE_SECONDS = 10
OPENING_AT_ONCE = 256

CONFIG = """\
listen = "127.0.0.1:0"
drain_timeout = "{drain}s"

[limits]
heartbeat_interval = "{heartbeat}s"

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/ws/echo"
kind = "echo"
"""


def log(message):
    print(f"soak: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Client process: holds its share of the connections.


def mask_frame(opcode, payload, key):
    """A final, masked frame (payload under 126 bytes: pongs, closes and the echoes)."""
    n = len(payload)
    assert n < 126
    if n:
        stream = (key * (n // 4 + 1))[:n]
        masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
        payload = masked.to_bytes(n, "big")
    return bytes((0x80 | opcode, 0x80 | n)) + key + payload


class Client:
    """What one client process counts."""

    def __init__(self, count, first):
        self.count, self.first = count, first
        self.conns = []
        self.open = 0
        self.draining = False
        self.drain_started = None
        self.lost = collections.Counter()  # why connections ended before the drain
        self.drain_codes = collections.Counter()  # close codes received during the drain
        self.drain_without_close = 0
        self.last_close_after = 0.0
        self.pings = 0
        self.echo_sent = self.echo_ok = self.echo_bad = 0
        self.protocol_errors = collections.Counter()
        self.all_closed = asyncio.Event()

    def key(self):
        return random.randbytes(4)

    def ended(self, conn, reason):
        self.open -= 1
        if not self.draining:
            self.lost[reason] += 1
        elif conn.close_code is None:
            self.drain_without_close += 1
        if self.draining and self.open == 0:
            self.all_closed.set()


class Conn(asyncio.Protocol):
    """One WebSocket: the upgrade, then pings answered, echoes checked, the close answered."""

    __slots__ = ("client", "transport", "buf", "upgraded", "handshake", "close_code",
                 "pings", "pending", "seq", "ident", "closed")

    def __init__(self, client, ident):
        self.client, self.ident = client, ident
        self.transport = None
        self.buf = b""
        self.upgraded = False
        self.handshake = asyncio.get_running_loop().create_future()
        self.close_code = None
        self.pings = 0
        self.pending = None
        self.seq = 0
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: "
                        + base64.b64encode(random.randbytes(16))
                        + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                if not self.handshake.done():
                    self.handshake.set_exception(
                        RuntimeError(buf[:buf.find(b"\r\n")].decode("latin-1")))
                self.transport.close()
                return
            self.upgraded = True
            self.client.open += 1
            buf = buf[end + 4:]
        client = self.client
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            opcode, length, at = b0 & 0x0F, b1 & 0x7F, 2
            if b1 & 0x80:
                client.protocol_errors["masked frame from the server"] += 1
            if length == 126:
                if len(buf) < 4:
                    break
                length, at = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + length:
                break
            payload, buf = buf[at:at + length], buf[at + length:]
            if opcode == 0x9:
                self.pings += 1
                client.pings += 1
                self.transport.write(mask_frame(0xA, payload, client.key()))
            elif opcode in (0x1, 0x2):
                if self.pending is not None and payload == self.pending:
                    client.echo_ok += 1
                else:
                    client.echo_bad += 1
                self.pending = None
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if client.draining:
                    client.drain_codes[self.close_code] += 1
                    client.last_close_after = max(client.last_close_after,
                                                  time.monotonic() - client.drain_started)
                self.transport.write(mask_frame(0x8, payload[:2], client.key()))
            elif opcode != 0xA:
                client.protocol_errors[f"opcode {opcode}"] += 1
        self.buf = buf
        if self.upgraded and not self.handshake.done():
            self.handshake.set_result(True)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionError("closed during the upgrade"))
        if self.upgraded and not self.closed:
            self.closed = True
            if self.close_code is not None:
                reason = f"close {self.close_code}"
            elif exc is not None:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "closed without a close frame"
            self.client.ended(self, reason)

    def echo(self):
        """Sends the next echo message unless the last one is still unanswered."""
        if self.closed or self.pending is not None:
            return
        self.seq += 1
        self.pending = f"echo {self.ident} {self.seq}".encode()
        self.client.echo_sent += 1
        self.transport.write(mask_frame(0x1, self.pending, self.client.key()))


async def open_one(loop, client, ident, host, port, sources, semaphore):
    async with semaphore:
        source = f"127.0.0.{2 + ident % sources}"
        transport, conn = await loop.create_connection(
            lambda: Conn(client, ident), host, port, local_addr=(source, 0))
        try:
            await asyncio.wait_for(conn.handshake, HANDSHAKE_SECONDS)
        except BaseException:
            transport.abort()
            raise
        return conn


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def echo_loop(client, echoers):
    """Every second, each echoing connection sends one message (spread over the second)."""
    slices = 10
    while True:
        for i in range(slices):
            for conn in echoers[i::slices]:
                conn.echo()
            await asyncio.sleep(1 / slices)


async def client_main(args):
    loop = asyncio.get_running_loop()
    client = Client(args.count, args.first)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    started = time.monotonic()
    semaphore = asyncio.Semaphore(OPENING_AT_ONCE)
    tasks = [asyncio.create_task(open_one(loop, client, ident, args.host, args.port,
                                          args.sources, semaphore))
             for ident in range(args.first, args.first + args.count)]
    done, pending = await asyncio.wait(tasks, timeout=args.ramp_limit)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures = collections.Counter()
    for task in done:
        if task.exception() is None:
            client.conns.append(task.result())
        else:
            exc = task.exception()
            failures[f"{type(exc).__name__}: {exc}"[:120]] += 1
    if pending:
        failures[f"not open within {args.ramp_limit:.0f} s"] += len(pending)
    emit("ramped", opened=len(client.conns), seconds=round(time.monotonic() - started, 2),
         failures=dict(failures))

    echoers = [c for c in client.conns if int((c.ident + 1) * args.echo_fraction)
               > int(c.ident * args.echo_fraction)]
    echo_task = asyncio.create_task(echo_loop(client, echoers))

    async def status():
        while True:
            emit("status", open=client.open, lost=sum(client.lost.values()), pings=client.pings,
                 echo_ok=client.echo_ok, echo_bad=client.echo_bad)
            await asyncio.sleep(SAMPLE_SECONDS)

    status_task = asyncio.create_task(status())
    try:
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] == "stop":
                return
            if line[0] == "drain":
                break
        echo_task.cancel()
        client.draining = True
        client.drain_started = time.monotonic()
        open_at_drain = client.open
        unanswered = sum(1 for c in echoers if c.pending is not None and not c.closed)
        pings = sorted(c.pings for c in client.conns if not c.closed)
        if client.open == 0:
            client.all_closed.set()
        emit("draining", open=open_at_drain)
        try:
            await asyncio.wait_for(client.all_closed.wait(), float(line[1]))
        except asyncio.TimeoutError:
            pass
        emit("final", opened=len(client.conns), open_at_drain=open_at_drain,
             lost=dict(client.lost),
             drain_codes={str(code): n for code, n in client.drain_codes.items()},
             drain_without_close=client.drain_without_close, still_open=client.open,
             last_close_after=round(client.last_close_after, 3), pings=client.pings,
             pings_min=pings[0] if pings else None, pings_max=pings[-1] if pings else None,
             echo_sent=client.echo_sent, echo_ok=client.echo_ok, echo_bad=client.echo_bad,
             echo_unanswered=unanswered, protocol_errors=dict(client.protocol_errors))
    finally:
        echo_task.cancel()
        status_task.cancel()
        for conn in client.conns:
            if conn.transport is not None:
                conn.transport.abort()


def run_client(args):
    raise_open_files(args.count)
    asyncio.run(client_main(args))


# ---------------------------------------------------------------------------------------------
# The conductor: the server, the client processes, the samples and the report.


def other_benchmark():
    """The PIDs of running benches/ab.py processes (not this process or its ancestors)."""
    out = subprocess.run(["pgrep", "-f", "benches/ab.py"], capture_output=True, text=True)
    mine, pid = set(), os.getpid()
    while pid > 1:
        mine.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return [int(p) for p in out.stdout.split() if int(p) not in mine]


def wait_for_quiet(limit_minutes):
    """Waits (polling every 30 s, at most `limit_minutes`) while another benchmark runs."""
    deadline = time.monotonic() + limit_minutes * 60
    while True:
        others = other_benchmark()
        if not others:
            return
        if time.monotonic() > deadline:
            sys.exit(f"another benchmark still runs after {limit_minutes} minutes: {others}")
        log(f"waiting: benches/ab.py runs (PID {', '.join(map(str, others))}); next look in 30 s")
        time.sleep(30)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 ** 2),
            "kernel": platform.release()}


def revision(binary):
    """The commit the sources are at, and whether the binary can be older than them."""
    def git(*argv):
        return subprocess.run(["git", "-C", ROOT, *argv], capture_output=True,
                              text=True).stdout.strip()
    sources = ["engine", "bin", "protocol", "limits", "Cargo.toml", "Cargo.lock"]
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", *sources):
        head += " with uncommitted changes"
    built = os.path.getmtime(binary)
    for top in sources:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if any(os.path.getmtime(os.path.join(folder, f)) > built for f in files):
                return head + ", the binary older than some of its sources"
        if os.path.isfile(os.path.join(ROOT, top)) and os.path.getmtime(
                os.path.join(ROOT, top)) > built:
            return head + ", the binary older than some of its sources"
    return head


class Worker:
    """A client process of this script and what it last reported."""

    def __init__(self, process, count):
        self.process, self.count = process, count
        self.events = {}
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        async for line in self.process.stdout:
            event = json.loads(line)
            self.events[event["event"]] = event
            self.arrived.set()
        self.events["exited"] = {}
        self.arrived.set()

    async def wait_for(self, name, seconds):
        deadline = time.monotonic() + seconds
        while name not in self.events and "exited" not in self.events:
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return None
        return self.events.get(name)

    async def send(self, line):
        try:
            self.process.stdin.write(line.encode() + b"\n")
            await self.process.stdin.drain()
        except (ConnectionError, RuntimeError):
            pass


async def stop_process(process, sig=signal.SIGKILL, seconds=10):
    """Signals a process this script started (by its PID) unless it has exited, and reaps it."""
    if process.returncode is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(process.wait(), seconds)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def read_address(server, seconds=15):
    try:
        line = (await asyncio.wait_for(server.stdout.readline(), seconds)).decode().strip()
    except asyncio.TimeoutError:
        return None
    return line.removeprefix("listening on ") if line.startswith("listening on ") else None


async def conduct(args, binary):
    os.makedirs(OUT, exist_ok=True)
    config = os.path.join(OUT, "soak.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(drain=args.drain_timeout, heartbeat=args.heartbeat))
    server_log = os.path.join(OUT, "server.log")
    r = {"asked": args.connections, "hold_seconds": args.hold, "server_log": server_log}
    processes, workers = [], []
    try:
        with open(server_log, "w") as log_file:
            server = await asyncio.create_subprocess_exec(
                binary, "serve", "--config", config, "--listen", "127.0.0.1:0", "--workers",
                str(args.workers), "--log-level", "info", stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log_file)
        processes.append(server)
        addr = await read_address(server)
        if addr is None:
            r["failure"] = "the server did not start (see its log)"
            return r
        host, port = addr.rsplit(":", 1)
        log(f"server PID {server.pid} on {addr}")
        await asyncio.sleep(0.5)
        r["rss_idle_kib"] = rss_kib(server.pid)

        shares = []
        left = args.connections
        while left > 0:
            shares.append(min(left, args.per_process))
            left -= shares[-1]
        first = 0
        for count in shares:
            process = await asyncio.create_subprocess_exec(
                sys.executable, os.path.abspath(__file__), "--client", "--host", host,
                "--port", port, "--count", str(count), "--first", str(first),
                "--sources", str(args.sources), "--echo-fraction", str(args.echo_fraction),
                "--ramp-limit", str(args.ramp_limit), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
            processes.append(process)
            workers.append(Worker(process, count))
            first += count
        log(f"{len(workers)} client process(es) opening {args.connections:,} connections from "
            f"127.0.0.2..127.0.0.{1 + args.sources}")

        ramped = [await w.wait_for("ramped", args.ramp_limit + 30) for w in workers]
        if any(e is None for e in ramped):
            r["failure"] = "a client process did not finish opening its connections"
            return r
        r["established"] = sum(e["opened"] for e in ramped)
        r["ramp_seconds"] = max(e["seconds"] for e in ramped)
        r["open_failures"] = sum((collections.Counter(e["failures"]) for e in ramped),
                                 collections.Counter())
        log(f"{r['established']:,} of {args.connections:,} open in {r['ramp_seconds']} s"
            + (f"; failures: {dict(r['open_failures'])}" if r["open_failures"] else ""))
        await asyncio.sleep(2)
        r["rss_ramp_kib"] = rss_kib(server.pid)

        samples = []
        started = time.monotonic()
        while True:
            if server.returncode is not None:
                r["failure"] = f"the server exited during the hold (status {server.returncode})"
                break
            samples.append((round(time.monotonic() - started), rss_kib(server.pid)))
            status = [w.events.get("status", {}) for w in workers]
            log(f"{samples[-1][0]:>4} s: RSS {samples[-1][1]:,} KiB, open "
                f"{sum(s.get('open', 0) for s in status):,}, lost "
                f"{sum(s.get('lost', 0) for s in status)}, pings answered "
                f"{sum(s.get('pings', 0) for s in status):,}, echoes verified "
                f"{sum(s.get('echo_ok', 0) for s in status):,}")
            left = args.hold - (time.monotonic() - started)
            if left <= 0:
                break
            await asyncio.sleep(min(SAMPLE_SECONDS, left))
        r["samples"] = samples
        r["rss_end_kib"] = samples[-1][1]
        if "failure" in r:
            return r

        for w in workers:
            await w.send(f"drain {args.drain_timeout + 10}")
        acks = [await w.wait_for("draining", 10) for w in workers]
        if any(a is None for a in acks):
            r["failure"] = "a client process did not acknowledge the drain"
            return r
        r["open_at_drain"] = sum(a["open"] for a in acks)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            r["exit_status"] = await asyncio.wait_for(server.wait(), args.drain_timeout + 5)
            r["drain_seconds"] = time.monotonic() - signalled
        except asyncio.TimeoutError:
            r["exit_status"] = None
            r["drain_seconds"] = None
        log(f"SIGTERM: exit status {r['exit_status']} after "
            + (f"{r['drain_seconds']:.2f} s" if r["drain_seconds"] is not None else
               f"more than {args.drain_timeout + 5} s (killed)"))
        finals = [await w.wait_for("final", args.drain_timeout + 20) for w in workers]
        if any(f is None for f in finals):
            r["failure"] = "a client process did not report after the drain"
            return r
        total = collections.Counter()
        for f in finals:
            for key in ("pings", "echo_sent", "echo_ok", "echo_bad", "echo_unanswered",
                        "drain_without_close", "still_open"):
                total[key] += f[key]
        r.update(total)
        r["lost"] = sum((collections.Counter(f["lost"]) for f in finals), collections.Counter())
        r["drain_codes"] = sum((collections.Counter(f["drain_codes"]) for f in finals),
                               collections.Counter())
        r["protocol_errors"] = sum((collections.Counter(f["protocol_errors"]) for f in finals),
                                   collections.Counter())
        r["pings_min"] = min((f["pings_min"] for f in finals if f["pings_min"] is not None),
                             default=None)
        r["pings_max"] = max((f["pings_max"] for f in finals if f["pings_max"] is not None),
                             default=None)
        r["last_close_after"] = max(f["last_close_after"] for f in finals)
        return r
    finally:
        for w in workers:
            await w.send("stop")
        for process in reversed(processes):
            await stop_process(process, signal.SIGTERM if process is not processes[0]
                               else signal.SIGKILL)
        for w in workers:
            w.reader.cancel()


def mib(kib):
    return f"{kib / 1024:,.1f} MiB"


def verdicts(r, args):
    """The reasons the soak failed (empty when it passed)."""
    failed = []
    if "failure" in r:
        failed.append(r["failure"])
    if r.get("established", 0) < args.connections:
        failed.append(f"{args.connections - r.get('established', 0):,} connections not opened")
    if r.get("lost"):
        failed.append(f"{sum(r['lost'].values()):,} connections lost during the hold: "
                      f"{dict(r['lost'])}")
    if "open_at_drain" in r:
        got = r["drain_codes"].get("1001", 0)
        if got < r["open_at_drain"]:
            failed.append(f"{r['open_at_drain'] - got:,} of {r['open_at_drain']:,} connections "
                          f"did not get close 1001 (codes {dict(r['drain_codes'])}, "
                          f"{r['drain_without_close']} closed without a close frame, "
                          f"{r['still_open']} still open)")
        if r["exit_status"] != 0:
            failed.append(f"exit status {r['exit_status']}")
        if r["drain_seconds"] is None or r["drain_seconds"] > args.drain_timeout:
            failed.append(f"drain longer than drain_timeout ({args.drain_timeout} s)")
    if r.get("echo_bad"):
        failed.append(f"{r['echo_bad']} echoes did not match")
    if r.get("protocol_errors"):
        failed.append(f"protocol errors: {dict(r['protocol_errors'])}")
    return failed


def rss_series(samples):
    """The RSS samples as runs of equal values: "0–70 s: 68,420 KiB, 75 s: 68,428 KiB"."""
    runs = []
    for second, kib in samples:
        if runs and runs[-1][2] == kib:
            runs[-1][1] = second
        else:
            runs.append([second, second, kib])
    return ", ".join((f"{a} s" if a == b else f"{a}–{b} s") + f": {kib:,} KiB"
                     for a, b, kib in runs)


def max_connections(server_log):
    """The server's max_connections as it logged it at start (after the open-file limit)."""
    match = re.search(r"ringstream started .*max_connections=(\d+)", "".join(
        server_log_tail(server_log, 50)))
    return int(match.group(1)) if match else None


def report(r, args, command, info, when, failed):
    lines = [f"`{command}` on {when:%Y-%m-%d %H:%M} UTC: {info['cpu']}, {info['cores']} cores, "
             f"{info['memory_gib']} GiB, Linux {info['kernel']}; ringstream {info['revision']} "
             f"({args.build} build), `--workers {args.workers}`, `heartbeat_interval = "
             f"\"{args.heartbeat}s\"`, `drain_timeout = \"{args.drain_timeout}s\"`; clients in "
             f"{-(-args.connections // args.per_process)} Python process(es) bound to "
             f"127.0.0.2..127.0.0.{1 + args.sources}.", ""]
    rows = []
    est = r.get("established")
    if est is not None:
        opened = f"{est:,} of {args.connections:,} in {r['ramp_seconds']:.1f} s"
        if r["open_failures"]:
            opened += f" (failed: {dict(r['open_failures'])})"
        rows.append(["connections established", opened])
    if max_connections(r["server_log"]) is not None:
        rows.append(["server's max_connections (lowered to fit its open-file limit)",
                     f"{max_connections(r['server_log']):,}"])
    if "lost" in r:
        rows.append(["connections lost during the hold", f"{sum(r['lost'].values()):,}"
                     + (f" ({dict(r['lost'])})" if r["lost"] else "")])
    if "rss_idle_kib" in r:
        rows.append(["server RSS before the connections", mib(r["rss_idle_kib"])])
    if "rss_ramp_kib" in r:
        rows.append(["server RSS after the ramp", mib(r["rss_ramp_kib"])])
    if r.get("samples"):
        end, ramp = r["rss_end_kib"], r["rss_ramp_kib"]
        values = [kib for _, kib in r["samples"]]
        rows.append([f"server RSS at the end of the hold ({r['samples'][-1][0]} s)",
                     f"{mib(end)} ({(end - ramp) / ramp * 100:+.1f}% from the ramp)"])
        rows.append([f"server RSS over the hold ({len(values)} samples, every "
                     f"{SAMPLE_SECONDS} s)", f"{mib(min(values))} – {mib(max(values))}"])
        if est:
            rows.append(["server RSS per connection (after the ramp − before)",
                         f"{(ramp - r['rss_idle_kib']) * 1024 / est:,.0f} B"])
    if "pings" in r:
        rows.append(["server pings answered with a pong",
                     f"{r['pings']:,} ({r['pings_min']}–{r['pings_max']} per connection)"])
        rows.append(["echoes verified", f"{r['echo_ok']:,} of {r['echo_sent']:,} sent "
                     f"({r['echo_bad']} mismatched, {r['echo_unanswered']} in flight at the "
                     "drain)"])
    if "open_at_drain" in r:
        codes = ", ".join(f"{code}: {n:,}" for code, n in sorted(r["drain_codes"].items()))
        rows.append(["close frames at SIGTERM",
                     f"1001 on {r['drain_codes'].get('1001', 0):,} of {r['open_at_drain']:,} "
                     f"open connections" + (f" (codes {codes})" if set(r["drain_codes"])
                                            - {"1001"} else "")
                     + (f", {r['drain_without_close']} closed without one"
                        if r["drain_without_close"] else "")
                     + (f", {r['still_open']} still open" if r["still_open"] else "")])
        rows.append(["last close frame after the drain began", f"{r['last_close_after']:.2f} s"])
        rows.append(["drain (SIGTERM to exit)", "did not exit" if r["drain_seconds"] is None
                     else f"{r['drain_seconds']:.2f} s (drain_timeout {args.drain_timeout} s)"])
        rows.append(["exit status", str(r["exit_status"])])
    lines.append(markdown(["", "figure"], rows).rstrip())
    if r.get("samples"):
        lines += ["", "Server RSS during the hold: " + rss_series(r["samples"]) + "."]
    lines += ["", "Result: " + ("**FAILED**: " + "; ".join(failed) if failed else "**passed**")]
    return "\n".join(lines) + "\n"


def server_log_tail(path, lines=15):
    """The last `lines` lines of the server's log."""
    try:
        with open(path, errors="replace") as f:
            return f.readlines()[-lines:]
    except OSError:
        return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--minutes", type=float, default=5, help="how long to hold them")
    parser.add_argument("--smoke", action="store_true",
                        help="2,000 connections held for 20 s (CI)")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--workers", type=int, default=2, help="server workers")
    parser.add_argument("--heartbeat", type=float, default=5, help="heartbeat_interval, seconds")
    parser.add_argument("--drain-timeout", type=float, default=10, help="seconds")
    parser.add_argument("--echo-fraction", type=float, default=0.05,
                        help="connections that echo a message every second")
    parser.add_argument("--sources", type=int, default=8,
                        help="client source addresses 127.0.0.2..127.0.0.(1+N)")
    parser.add_argument("--per-process", type=int, default=9500,
                        help="connections per client process")
    parser.add_argument("--ramp-limit", type=float, default=120,
                        help="seconds allowed for opening the connections")
    parser.add_argument("--wait-limit", type=float, default=60,
                        help="minutes to wait while another benchmark runs")
    # A client process of this script (internal).
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return
    if args.smoke:
        args.connections, args.minutes = 2000, 20 / 60
    args.hold = args.minutes * 60
    if not 1 <= args.sources <= 250:
        sys.exit("--sources is 1..250")
    binary = ringstream_path(args.build)
    if not os.path.exists(binary):
        release = " --release" if args.build == "release" else ""
        sys.exit(f"{binary} is missing (cargo build{release} --bins)")
    wait_for_quiet(args.wait_limit)

    command = "python3 benches/soak.py " + " ".join(sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    info["revision"] = revision(binary)
    r = asyncio.run(conduct(args, binary))
    failed = verdicts(r, args)
    print(report(r, args, command.strip(), info, when, failed), end="")
    if failed:
        log("FAILED: " + "; ".join(failed))
        log(f"the server's log ({r['server_log']}) ends with:")
        for line in server_log_tail(r["server_log"]):
            print("  " + line.rstrip(), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
