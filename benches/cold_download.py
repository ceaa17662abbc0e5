#!/usr/bin/env python3
"""Cold download benchmark: does a download of a file that is not in the page cache stall the
server's worker?

The file lives on a FUSE mount (`benches/peers/slow_fuse.c`, compiled with `cc` on first use)
that mirrors a sparse backing file in target/cold-download/ and sleeps --delay-us in every read,
as a slow disk would. Each server runs with one worker (one process) on core 0 and serves the
mount at /files/ and `GET /health`. Before each run the page cache is dropped (slow_fuse also
opens files without keep_cache, so each open starts cold). Then, on core 1, one client
downloads the file at full speed over HTTP/1.1 and discards it (starting over on the same
connection if it finishes), while this script sends `GET /health` on one keep-alive connection
at --probe-rate, each probe's latency timed from its scheduled send time. A worker that blocks
in a read of the file holds the probes back: their p99 and max show it.

The table gives, per server, the medians over the rounds of the probes' p50, p99 and max, the
download's MiB/s during the window and the server's CPU seconds (utime + stime of the process,
io_uring and thread-pool workers included) per GiB sent. Every response's status and length
are checked. Every process is stopped by PID and the mount is always taken down.

    cargo build --release --bin ringstream
    benches/peers/install.sh nginx      # Debian's nginx(-light)
    sudo python3 benches/cold_download.py --rounds 3 --seconds 10

Root is needed for the FUSE mount and for /proc/sys/vm/drop_caches. A server that does not
start (nginx not installed, a `send` value the binary does not know) is reported as
"unavailable". `--smoke` (64 MiB, one round of 2 s, `--build debug`) keeps the script from
rotting.
"""

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from benchlib import (NGINX_TEMP_PATHS, PEERS, ROOT, cell, free_port, interleave, markdown,
                      matching, ringstream_path, rows_of, skip, start_on_port, start_printing,
                      stop)

WORK = os.path.join(ROOT, "target", "cold-download")
FUSE_SOURCE = os.path.join(PEERS, "slow_fuse.c")
SLOW_FUSE = os.path.join(ROOT, "target", "slow_fuse")
FUSE_OPTIONS = "ro,allow_other,max_read=131072"
FILE = "big.bin"
GIB, MIB = 1 << 30, 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")
HEALTH = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
DOWNLOAD = f"GET /files/{FILE} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()

# Each server: which program, and its files route's extra setting (ringstream's `send` key,
# or directives of nginx's location).
SERVERS = {
    "ringstream sendfile": ("ringstream", 'send = "sendfile"'),
    "ringstream copy": ("ringstream", 'send = "copy"'),
    "ringstream auto": ("ringstream", 'send = "auto"'),
    # The probes alone, with no download: what this machine gives any server (a VM's steal
    # time shows here).
    "no download (ringstream)": ("ringstream", 'send = "auto"'),
    # The same, while dd reads the cold file on the server's core: what the cold reads cost
    # the machine when no server takes part.
    "dd reads the file on core 0 (ringstream idle)": ("ringstream", 'send = "auto"'),
    "nginx sendfile": ("nginx", ""),
    # With aio threads (and sendfile on) nginx hands its file work to its thread pool.
    "nginx aio threads": ("nginx", "aio threads;"),
}

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location = /health {{ return 200 "ok"; }}
        location /files/ {{ alias {mount}/; {extra} }}
    }}
}}
"""

RINGSTREAM_CONF = """listen = "127.0.0.1:0"
workers = 1

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/files/"
kind = "files"
root = "{mount}"
{extra}
"""


def parse_size(text):
    """Bytes of "2G", "64MiB", "1048576" (binary units)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": MIB, "G": GIB}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def size_label(size):
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:g} MiB"


def read_response(sock, buf):
    """Reads a response head from `sock` (after the bytes already in `buf`); returns its status,
    Content-Length and the body bytes that came with it."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a response head")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith(b"content-length:")), None)
    return int(lines[0].split(b" ", 2)[1]), length, rest


def client(addr, start_at, seconds, size):
    """The download client (run by this script on core 1): from `start_at` (epoch seconds) for
    `seconds`, downloads /files/FILE again and again on one connection, checking each status
    and length; prints bytes received, seconds and whole downloads."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    view = memoryview(bytearray(MIB))
    received = completed = 0
    error = None
    try:
        while time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            sock.sendall(DOWNLOAD)
            status, length, rest = read_response(sock, bytearray())
            if status != 200 or length != size:
                raise ValueError(f"status {status}, Content-Length {length} (want 200, {size})")
            got = len(rest)
            received += got
            while got < length and time.time() < deadline:
                sock.settimeout(max(0.001, deadline - time.time()))
                n = sock.recv_into(view, min(len(view), length - got))
                if n == 0:
                    raise ConnectionError(f"closed after {got} of {length} body bytes")
                got += n
                received += n
            completed += got == length
    except (TimeoutError, socket.timeout):
        pass
    except (OSError, ValueError) as e:
        error = str(e)
    elapsed = min(time.time(), deadline) - start_at
    print(f"{received} {elapsed} {completed} {error or ''}", flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def drop_caches():
    """Writes back and drops the page cache; whether it could."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_one(addr, pid, size, seconds, rate, reader=None):
    """One cold run against the server at `addr` (process `pid`): (result, None) or (None,
    error). With `size` 0 nothing is downloaded; with `reader` (an argv) that program reads
    the file during the window instead of the server."""
    if not drop_caches():
        return None, "cannot write /proc/sys/vm/drop_caches (run as root)"
    host, port = addr.rsplit(":", 1)
    probe = socket.create_connection((host, int(port)), timeout=seconds + 30)
    download = None
    try:
        probe.sendall(HEALTH)  # the connection is open and /health answers before the window
        if read_response(probe, bytearray())[0] != 200:
            return None, "GET /health did not answer 200"
        start_at = time.time() + 0.3
        if reader:
            download = subprocess.Popen(reader, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        elif size:
            download = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, os.path.abspath(__file__), "--client",
                 addr, repr(start_at), str(seconds), str(size)], stdout=subprocess.PIPE,
                text=True)
        latencies = []
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before = cpu_seconds(pid)
        for i in range(int(rate * seconds)):
            due = start_at + i / rate
            time.sleep(max(0.0, due - time.time()))
            probe.sendall(HEALTH)
            status, length, body = read_response(probe, bytearray())
            while len(body) < (length or 0):
                more = probe.recv(4096)
                if not more:
                    return None, "the probe connection was closed"
                body += more
            if status != 200:
                return None, f"GET /health answered {status}"
            latencies.append((time.time() - due) * 1000)
        time.sleep(max(0.0, start_at + seconds - time.time()))
        cpu = cpu_seconds(pid) - cpu_before
        if reader or not size:  # the probes' floor on this machine: the server sends nothing
            return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                    "max_ms": max(latencies), "mib_per_s": 0.0, "cpu_s_per_gib": None,
                    "downloads": 0, "probes": len(latencies)}, None
        out, _ = download.communicate(timeout=30)
        received, elapsed, completed, error = (out.strip().split(" ", 3) + [""])[:4]
        if download.returncode or error:
            return None, f"download: {error or 'exit status %d' % download.returncode}"
        received, elapsed = int(received), float(elapsed)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return None, f"{type(e).__name__}: {e}"
    finally:
        probe.close()
        if download and download.poll() is None:
            stop(download)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies), "mib_per_s": received / MIB / elapsed,
            "cpu_s_per_gib": cpu / (received / GIB) if received else None,
            "downloads": int(completed), "probes": len(latencies)}, None


def dd_reader(mountpoint, seconds):
    """dd reading the cold file on core 0 for the window, 64 KiB at a time."""
    return ["timeout", str(seconds + 0.3), "taskset", "-c", "0", "dd",
            f"if={os.path.join(mountpoint, FILE)}", "of=/dev/null", "bs=64k"]


def describe(r):
    return (f"probes p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms;"
            f" {r['mib_per_s']:.1f} MiB/s, {cell(r['cpu_s_per_gib'], '.3f')} s CPU/GiB, "
            f"{r['downloads']} whole downloads")


def compile_slow_fuse():
    """Builds slow_fuse beside the build directories when its source is newer (or it is
    missing)."""
    if (os.path.exists(SLOW_FUSE)
            and os.path.getmtime(SLOW_FUSE) >= os.path.getmtime(FUSE_SOURCE)):
        return
    flags = subprocess.run(["pkg-config", "fuse3", "--cflags", "--libs"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-O2", "-o", SLOW_FUSE, FUSE_SOURCE, *flags], check=True)


def unmount(mountpoint):
    if os.path.ismount(mountpoint):
        if subprocess.run(["fusermount3", "-u", mountpoint]).returncode != 0:
            subprocess.run(["umount", "-l", mountpoint])


def mount(backing, mountpoint, delay_us, log):
    """slow_fuse over `backing` at `mountpoint` (its own session, so that Ctrl-C leaves the
    unmount to us), on core 1; returns it and its command."""
    unmount(mountpoint)  # left over by a run that was killed
    argv = ["taskset", "-c", "1", SLOW_FUSE, backing, mountpoint, "--delay-us", str(delay_us),
            "-f", "-o", FUSE_OPTIONS]
    fuse = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    for _ in range(100):
        if os.path.ismount(mountpoint):
            return fuse, argv
        if fuse.poll() is not None:
            break
        time.sleep(0.05)
    stop(fuse)
    sys.exit(f"slow_fuse did not mount {mountpoint} (see {log.name})")


def read_ahead_kb(mountpoint):
    dev = os.stat(mountpoint).st_dev
    try:
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb") as f:
            return f.read().strip()
    except OSError:
        return "?"


def start_server(name, binary, mountpoint, run_dir, commands):
    """Server `name` on core 0 with its config written to `run_dir`; notes its command."""
    program, extra = SERVERS[name]
    config = os.path.join(run_dir, name.replace(" ", "-"))
    if program == "nginx":
        port = free_port()
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", run_dir, "-e",
                os.path.join(run_dir, "error.log"), "-c", config + ".conf"]
        with open(argv[-1], "w") as f:
            f.write(NGINX_CONF.format(run=run_dir, port=port, mount=mountpoint, extra=extra,
                                    temp_paths=NGINX_TEMP_PATHS.format(run=run_dir)))
        commands[name] = "taskset -c 0 " + " ".join(argv)
        return start_on_port(argv, port)
    argv = [binary, "serve", "--config", config + ".toml", "--log-level", "warn"]
    with open(argv[3], "w") as f:
        f.write(RINGSTREAM_CONF.format(mount=mountpoint, extra=extra))
    commands[name] = "taskset -c 0 " + " ".join(argv)
    return start_printing(argv)


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        return client(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per run")
    parser.add_argument("--size", default="2G", help="the file's size (2G, 512M, bytes)")
    parser.add_argument("--delay-us", type=int, default=2000, help="sleep in every FUSE read")
    parser.add_argument("--probe-rate", type=float, default=50, help="GET /health per second")
    parser.add_argument("--only", action="append", help="substring of server names to run")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="64 MiB, one round of 2 s, debug build: to check the script works")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the probes, beside the download and the FUSE daemon
    if args.smoke:
        args.size, args.seconds, args.rounds, args.build = "64M", 2, 1, "debug"
    size = parse_size(args.size)
    binary = ringstream_path(args.build)
    names = matching(SERVERS, args.only)
    if any(SERVERS[n][0] == "ringstream" for n in names) and not os.path.exists(binary):
        sys.exit(f"{binary} is missing (cargo build --bin ringstream"
                 f"{' --release' if args.build == 'release' else ''})")
    compile_slow_fuse()
    backing, mountpoint, run_dir = (os.path.join(WORK, d) for d in ("backing", "mnt", "run"))
    for d in (backing, mountpoint, run_dir):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(backing, FILE), "ab") as f:
        f.truncate(size)  # sparse: reading it costs no disk, only slow_fuse's delay
    os.sched_setaffinity(0, {1})  # the probes, beside the download client
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    commands = {}
    log = open(os.path.join(WORK, "slow_fuse.log"), "w")
    fuse, fuse_argv = mount(backing, mountpoint, args.delay_us, log)
    try:
        ra = read_ahead_kb(mountpoint)
        print(f"slow_fuse mounted at {mountpoint}, {args.delay_us} µs per read, "
              f"{FUSE_OPTIONS}, read_ahead_kb {ra}", file=sys.stderr)
        label = f"{size_label(size)}, {args.delay_us} µs/read"
        starters = {n: (lambda n=n: start_server(n, binary, mountpoint, run_dir, commands))
                    for n in names}
        outcome = interleave(args.rounds, starters, [(label, None)],
                             lambda n, addr, pid, _s: run_one(
                                 addr, pid, 0 if n.startswith("no download") else size,
                                 args.seconds, args.probe_rate,
                                 dd_reader(mountpoint, args.seconds) if n.startswith("dd")
                                 else None), describe)
    finally:
        unmount(mountpoint)
        try:
            fuse.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop(fuse)
    headers = ["workload", "server", "probe p50 ms", "probe p99 ms", "probe max ms",
               "download MiB/s", "server CPU s/GiB"]
    rows = rows_of(outcome, label, names, len(headers), lambda _n, m: [
        cell(m.get("p50_ms"), ".2f"), cell(m.get("p99_ms"), ".2f"), cell(m.get("max_ms"), ".1f"),
        cell(m.get("mib_per_s"), ".1f"), cell(m.get("cpu_s_per_gib"), ".3f")])
    rows += [[label, n, "unavailable (did not start)"] + ["–"] * (len(headers) - 3)
             for n in outcome.not_started]
    report = markdown(headers, rows) + (
        f"\nMedians of {args.rounds} round(s) of {args.seconds:g} s; probes at "
        f"{args.probe_rate:g}/s timed from their scheduled send; FUSE read_ahead_kb {ra}.\n\n"
        "Commands:\n\n    " + " ".join(fuse_argv) + "\n    sync; echo 3 > "
        "/proc/sys/vm/drop_caches   # before each run\n" + "".join(
            f"    {commands[n]}   # {n}\n" for n in names if n in commands) +
        f"    taskset -c 1 {sys.executable} {os.path.abspath(__file__)} --client ADDR "
        f"START_EPOCH {args.seconds:g} {size}   # the download\n")
    print(report, end="")
    with open(os.path.join(WORK, "results.md"), "w") as f:
        f.write(report)
    if outcome.errors:
        sys.exit(f"{len(outcome.errors)} runs failed")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
