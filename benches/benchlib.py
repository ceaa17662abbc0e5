"""What the load-benchmark scripts share: starting a pinned server and learning its address,
stopping it by PID, and medians for the tables."""

import signal
import socket
import statistics
import subprocess
import time


def free_port():
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(process, port, tries=200):
    """Whether `process` accepts connections on `port` before it exits (about 10 s)."""
    for _ in range(tries):
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_on_port(argv, port):
    """Starts `argv` (a server told to listen on `port`) on core 0; returns it and its
    address, or (None, None) if it never listens."""
    process = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if wait_for_port(process, port):
        return process, f"127.0.0.1:{port}"
    stop(process)
    return None, None


def start_printing(argv):
    """Starts `argv` (a server whose first line on stdout is `listening on ADDR`, as
    ringstream's) on core 0; returns it and ADDR, or (None, None)."""
    process = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        stop(process)
        return None, None
    return process, line.removeprefix("listening on ")


def stop(process):
    """Kills a server this script started, by its PID, and reaps it."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def median(runs, key):
    """The median of `key` over the runs that have it, or None."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def cell(value, fmt, suffix=""):
    """A table cell: `value` formatted, or an en dash when there is none."""
    return "–" if value is None else f"{value:{fmt}}{suffix}"
