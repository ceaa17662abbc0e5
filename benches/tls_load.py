#!/usr/bin/env python3
"""TLS benchmark: ringstream's `[tls]` against nginx's `ssl`, with the same certificate.

The script makes an ECDSA P-256 certificate with `openssl` and starts each server on core 0
(ringstream: one worker, `serve --config FILE`; nginx: one process, no master, the config
below), everything on loopback:

- handshakes: `openssl s_time -new` on core 1 for `--seconds` (a full handshake per
  connection, no resumption, TLS 1.3 with X25519 as OpenSSL 3 offers it, then a close);
  server CPU per handshake is the server's utime + stime over the run divided by the
  handshakes s_time completed;
- download: `curl` on core 1 fetching a file of random bytes (`--file-mib`, 256 MiB)
  `--downloads` times over https on one connection; server CPU per GiB sent;
- wss echo: `benches/wss_echo_client.py` on core 1, `--echo-connections` (100) WebSockets
  over TLS each with one 32-byte message in flight; server CPU per message over the run
  (read when every connection is open, and at the end). ringstream echoes itself; nginx
  terminates TLS and proxies to a plain ringstream echo beside it on core 0 (the `echo
  backend`): nginx's CPU is its own, TLS and relaying only, with the backend's beside it;
- memory: `--connections` connections that send a TLS record header and stall mid-handshake;
  then, on a server started anew, as many that finish their handshake and one keep-alive
  request and stay idle; server RSS growth per connection (VmRSS from /proc).

Rounds are interleaved (each server started anew each round), the tables give medians, every
process is stopped by PID and every run is bounded in time.

    cargo build --release && benches/peers/install.sh nginx
    python3 benches/tls_load.py --rounds 3

`--smoke` (one short round, few connections, `--build debug`) keeps the script from rotting.
"""

import argparse
import os
import platform
import re
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, markdown, ringstream_path, start_on_port, start_printing, stop

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /health {{ return 200 "ok"; }}
        location /files/ {{ alias {files}/; }}
        location /ws/echo {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 300s;
        }}
    }}
}}
"""

RINGSTREAM_CONF = """listen = "127.0.0.1:0"
workers = 1

[limits]
header_timeout = "300s"
keepalive_timeout = "300s"
heartbeat_interval = "300s"
max_connections = 20000
exempt = ["127.0.0.0/8"]

[tls]
cert = "{cert}"
key = "{key}"

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/files/"
kind = "files"
root = "{files}"

[[routes]]
path = "/ws/echo"
kind = "echo"
"""

# The plain echo nginx proxies the wss echo to.
BACKEND_CONF = """listen = "127.0.0.1:0"
workers = 1

[limits]
heartbeat_interval = "300s"
exempt = ["127.0.0.0/8"]

[[routes]]
path = "/ws/echo"
kind = "echo"
"""



def make_certificate(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def start_server(name, binary, directory, cert, key, files, backend):
    """Starts `name` on core 0: (process, address) or (None, None). nginx proxies its echo
    location to `backend` (a closed port for the parts that do not use it)."""
    run = os.path.join(directory, name)
    os.makedirs(run, exist_ok=True)
    if name == "nginx":
        port = free_port()
        conf = os.path.join(run, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(run=run, port=port, cert=cert, key=key, files=files,
                                      backend=backend))
        return start_on_port([shutil.which("nginx") or "/usr/sbin/nginx", "-p", run, "-e",
                              os.path.join(run, "error.log"), "-c", conf], port)
    conf = os.path.join(run, "ringstream.toml")
    with open(conf, "w") as f:
        f.write(RINGSTREAM_CONF.format(cert=cert, key=key, files=files))
    return start_printing([binary, "serve", "--config", conf, "--log-level", "warn"])


def start_backend(binary, directory):
    """The plain ringstream echo nginx proxies to, on core 0: (process, address)."""
    conf = os.path.join(directory, "backend.toml")
    with open(conf, "w") as f:
        f.write(BACKEND_CONF)
    process, addr = start_printing([binary, "serve", "--config", conf, "--log-level", "warn"])
    if process is None:
        sys.exit("the echo backend did not start")
    return process, addr


def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def handshakes(process, addr, seconds):
    """Server CPU µs per handshake and handshakes per second, from `openssl s_time -new`."""
    before, start = cpu_seconds(process.pid), time.monotonic()
    out = subprocess.run(["taskset", "-c", "1", "openssl", "s_time", "-connect", addr, "-new",
                          "-time", str(max(1, round(seconds)))], capture_output=True, text=True,
                         timeout=seconds + 30)
    elapsed = time.monotonic() - start
    used = cpu_seconds(process.pid) - before
    found = re.search(r"(\d+) connections in [\d.]+ real seconds", out.stdout)
    if not found:
        return None
    count = int(found.group(1))
    return {"cpu_us": used * 1e6 / max(count, 1), "per_sec": count / elapsed}


def download(process, addr, downloads, file_size):
    """Server CPU seconds per GiB sent over https, and GiB/s."""
    url = f"https://{addr}/files/big.bin"
    before, start = cpu_seconds(process.pid), time.monotonic()
    out = subprocess.run(["taskset", "-c", "1", "curl", "-sk", "--fail",
                          *sum([[url, "-o", "/dev/null"] for _ in range(downloads)], []),
                          "-w", "%{size_download}\n"],
                         capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    used = cpu_seconds(process.pid) - before
    sent = sum(int(n) for n in out.stdout.split())
    if out.returncode != 0 or sent != file_size * downloads:
        return None
    gib = sent / 2**30
    return {"cpu_s_per_gib": used / gib, "gib_per_sec": gib / elapsed}


def wss_echo(process, addr, connections, seconds, backend=None):
    """Server CPU µs per 32-byte wss echo (and the backend's, behind nginx), and messages/s."""
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wss_echo_client.py")
    load = subprocess.Popen(["taskset", "-c", "1", sys.executable, client, addr, "/ws/echo",
                             str(connections), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        if load.stdout.readline().strip() != "connected":
            return None
        before, start = cpu_seconds(process.pid), time.monotonic()
        backend_before = backend and cpu_seconds(backend.pid)
        last = load.stdout.readline().split()
        elapsed = time.monotonic() - start
        used = cpu_seconds(process.pid) - before
        backend_used = backend and cpu_seconds(backend.pid) - backend_before
        load.wait(timeout=30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    if load.returncode != 0 or len(last) != 2 or last[0] != "messages":
        return None
    count = max(int(last[1]), 1)
    result = {"cpu_us": used * 1e6 / count, "per_sec": count / elapsed}
    if backend:
        result["backend_cpu_us"] = backend_used * 1e6 / count
    return result


def stalled_handshakes(process, addr, count):
    """Server RSS growth per connection that sent a record header and stalls mid-handshake."""
    host, port = addr.rsplit(":", 1)
    base = rss_bytes(process.pid)
    stalled = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"\x16\x03\x01\x00\xc8")
        stalled.append(s)
    time.sleep(1)
    grown = (rss_bytes(process.pid) - base) / count
    for s in stalled:
        s.close()
    return grown


def idle_connections(process, addr, count):
    """Server RSS growth per https connection idle after its handshake and one request."""
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    base = rss_bytes(process.pid)
    idle = []
    for _ in range(count):
        s = context.wrap_socket(socket.create_connection((host, int(port))),
                                server_hostname="localhost")
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.recv(4096)
        idle.append(s)
    time.sleep(1)
    grown = (rss_bytes(process.pid) - base) / count
    for s in idle:
        s.close()
    return grown


def machine_line(build):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                            text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    return (f"`benches/tls_load.py` on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: "
            f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}; ringstream {commit} "
            f"({build} build); {nginx.replace('nginx version: ', '')}; {openssl}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--downloads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--echo-connections", type=int, default=100)
    parser.add_argument("--file-mib", type=int, default=256, help="size of the downloaded file")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.downloads, args.connections = 1, 1, 1, 50
        args.echo_connections = 10
        args.build, args.file_mib = "debug", 8
    missing = [tool for tool in ("openssl", "curl") if not shutil.which(tool)]
    if missing:
        print(f"skipping the TLS benchmark: {', '.join(missing)} not installed", file=sys.stderr)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = ringstream_path(args.build)
    names = ["ringstream"] + (["nginx"] if shutil.which("nginx") or
                              os.path.exists("/usr/sbin/nginx") else [])
    if "nginx" not in names:
        print("skipping nginx: not installed (benches/peers/install.sh nginx)", file=sys.stderr)
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as directory:
        cert, key = make_certificate(directory)
        files = os.path.join(directory, "files")
        os.makedirs(files)
        # Data, not a sparse file: reading holes costs the kernel zeroing, not copying.
        with open(os.path.join(files, "big.bin"), "wb") as f:
            for _ in range(args.file_mib):
                f.write(os.urandom(2**20))
        for round_index in range(args.rounds):
            for name in names:
                # A fresh server for each part: memory a part freed is not always given back
                # to the system, and would hide the next part's growth.
                parts = {
                    "handshake": lambda p, a: handshakes(p, a, args.seconds),
                    "download": lambda p, a: download(p, a, args.downloads,
                                                      args.file_mib * 2**20),
                    "wss": lambda p, a: wss_echo(p, a, args.echo_connections, args.seconds,
                                                 backend),
                    "memory": lambda p, a: {
                        "stalled_handshake_b": stalled_handshakes(p, a, args.connections)},
                    "idle": lambda p, a: {"idle_https_b": idle_connections(p, a, args.connections)},
                }
                run = {}
                for part, measure in parts.items():
                    backend, backend_addr = None, "127.0.0.1:9"
                    if name == "nginx" and part == "wss":
                        backend, backend_addr = start_backend(binary, directory)
                    process, addr = start_server(name, binary, directory, cert, key, files,
                                                 backend_addr)
                    if process is None:
                        sys.exit(f"{name} did not start")
                    try:
                        run[part] = measure(process, addr)
                    finally:
                        stop(process)
                        if backend:
                            stop(backend)
                print(f"round {round_index + 1} {name}: {run}", file=sys.stderr)
                results[name].append(run)
    rows = []
    for name in names:
        runs = results[name]

        def pick(part, key):
            values = [r[part][key] for r in runs if r[part] is not None]
            return statistics.median(values) if values else None

        def fmt(value, spec):
            return "–" if value is None else format(value, spec)

        rows.append([name, fmt(pick("handshake", "cpu_us"), ".0f"),
                     fmt(pick("handshake", "per_sec"), ",.0f"),
                     fmt(pick("download", "cpu_s_per_gib"), ".3f"),
                     fmt(pick("download", "gib_per_sec"), ".2f"),
                     fmt(pick("wss", "cpu_us"), ".2f")
                     + (f" (+{fmt(pick('wss', 'backend_cpu_us'), '.2f')} echo backend)"
                        if name == "nginx" else ""),
                     fmt(pick("wss", "per_sec"), ",.0f"),
                     fmt(pick("memory", "stalled_handshake_b"), ",.0f"),
                     fmt(pick("idle", "idle_https_b"), ",.0f")])
    print(machine_line(args.build))
    print()
    print(markdown(["server", "CPU µs per handshake", "handshakes/s", "CPU s per GiB (https)",
                    "GiB/s", "CPU µs per 32 B wss echo", "wss echoes/s",
                    "RSS B per stalled handshake", "RSS B per idle https connection"],
                   rows))


if __name__ == "__main__":
    main()
