#!/usr/bin/env python3
"""A bounded slowloris client for `benches/proxy_load.py`: holds --connections connections to a
loopback server, each sending a request head that never ends, one byte every --interval
seconds. A connection the server closes is opened again (after --reopen seconds), so the count
stays up the way an attacker keeps it up. Each connection comes from its own loopback address
(127.1.0.1, 127.1.0.2, ...), so per-client connection caps do not come into it: only how the
server treats an unfinished head does.

Prints `open N` on stdout once every connection has been tried (N of them open), and one JSON
summary line when it stops: after --seconds, on SIGTERM or SIGINT, whichever comes first.
Loopback targets only.

    python3 benches/slowloris.py 127.0.0.1:8000 --connections 1000 --interval 3 --seconds 60
"""

import argparse
import asyncio
import ipaddress
import json
import random
import signal
import sys
import time

HEAD = b"GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Slow: "


def source(i):
    """The loopback address connection `i` comes from: 127.1.0.1 upwards, skipping .0 and
    .255 last octets."""
    return str(ipaddress.IPv4Address("127.1.0.0") + (i // 254) * 256 + i % 254 + 1)


class Counts:
    def __init__(self):
        self.open = 0
        self.most_open = 0
        self.opened = 0
        self.connect_errors = 0
        self.closed_by_server = 0
        self.answered = {}  # first line of what the server sent -> count
        self.bytes_sent = 0

    def summary(self):
        return {"open_at_end": self.open, "most_open": self.most_open, "opened": self.opened,
                "connect_errors": self.connect_errors,
                "closed_by_server": self.closed_by_server, "answered": self.answered,
                "bytes_sent": self.bytes_sent}


async def one(i, host, port, args, counts, stop, first_try):
    """Connection `i`, opened again whenever the server closes it, until `stop`."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(source(i), 0)), 5)
        except (OSError, asyncio.TimeoutError):
            counts.connect_errors += 1
            if not first_try.done():
                first_try.set_result(None)
            await sleep_or_stop(stop, args.reopen)
            continue
        counts.opened += 1
        counts.open += 1
        counts.most_open = max(counts.most_open, counts.open)
        if not first_try.done():
            first_try.set_result(None)
        try:
            writer.write(HEAD)
            counts.bytes_sent += len(HEAD)
            await trickle(reader, writer, args, counts, stop)
        except OSError:
            pass
        finally:
            counts.open -= 1
            writer.transport.abort()
        if not stop.is_set():
            counts.closed_by_server += 1
            await sleep_or_stop(stop, args.reopen)


async def trickle(reader, writer, args, counts, stop):
    """Sends a byte every interval (the first after a random part of one, so that the
    connections do not beat together) until the server answers or closes, or `stop`."""
    answer = asyncio.ensure_future(reader.read(256))
    stopped = asyncio.ensure_future(stop.wait())
    delay = random.uniform(0, args.interval)
    while not stop.is_set():
        await asyncio.wait({answer, stopped}, timeout=delay,
                           return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            break
        if answer.done():
            stopped.cancel()
            data = answer.result()
            if data:
                line = data.split(b"\r\n", 1)[0].decode("latin-1")[:40]
                counts.answered[line] = counts.answered.get(line, 0) + 1
            return
        writer.write(b"a")
        counts.bytes_sent += 1
        await writer.drain()
        delay = args.interval
    answer.cancel()
    stopped.cancel()


async def sleep_or_stop(stop, seconds):
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def main_async(args):
    host, port = args.target.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("slowloris.py: loopback targets only")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.seconds, stop.set)
    counts = Counts()
    tries = [loop.create_future() for _ in range(args.connections)]
    tasks = []
    for i in range(args.connections):
        tasks.append(asyncio.ensure_future(one(i, host, int(port), args, counts, stop,
                                               tries[i])))
        if i % 100 == 99:
            await asyncio.sleep(0.01)  # no SYN burst past the listen backlog
    await asyncio.wait(tries, timeout=args.ramp_limit)
    print(f"open {counts.open}", flush=True)
    await stop.wait()
    started_stopping = time.monotonic()
    await asyncio.wait(tasks, timeout=5)
    for task in tasks:
        task.cancel()
    summary = counts.summary()
    summary["stop_seconds"] = round(time.monotonic() - started_stopping, 3)
    print(json.dumps(summary), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="IP:PORT on loopback")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between bytes")
    parser.add_argument("--reopen", type=float, default=0.5,
                        help="seconds before a connection the server closed is opened again")
    parser.add_argument("--seconds", type=float, default=60, help="when it stops by itself")
    parser.add_argument("--ramp-limit", type=float, default=20,
                        help="seconds allowed for the first try of every connection")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
