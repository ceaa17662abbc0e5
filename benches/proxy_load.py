#!/usr/bin/env python3
"""The proxy route under load: ringstream in front of an app, against nginx and a bare relay;
FastAPI on uvicorn directly and behind ringstream; and both under slowloris.

Three tables, each of interleaved rounds (A B C A B C ...) with medians:

1. `GET /api/hello` through a proxy to a fast upstream (ringstream serving `static_text`, one
   worker on core 1), the proxy on core 0, the load generator on core 1 beside the upstream:
   ringstream's proxy route, the same with a per-client request rate on (the accounting runs,
   nothing is refused), the same with a cold pool (`pool_size = 0`: every request opens its
   upstream connection, what a connection costs when a worker's pool is cold; the share of
   requests that reused a pooled connection is read from /stats for every ringstream row),
   nginx (`proxy_pass` to an `upstream` block with `keepalive 64`, one
   process) and `examples/raw_relay.rs` (one upstream connection per client connection, bytes
   copied both ways, no HTTP: the floor). Closed loop with wrk (50 connections), and a fixed
   offered rate with oha (`-q`, latency corrected for coordinated omission) when oha is
   installed (`cargo install oha`); without it that workload is left out with one line.
2. FastAPI (`benches/peers/fastapi_hello.py` on uvicorn, one process) directly; directly with
   the forwarding fields ringstream's proxy adds sent by wrk (what the app pays for them);
   behind ringstream's proxy route with a per-client request rate on (`exempt = []`, 600,000
   a minute: the accounting runs, nothing is refused); and behind nginx. uvicorn has core 1
   to itself; wrk and the proxy in front share core 0: the app is the bottleneck and gets the
   same whole core in every setup.
3. Those with and without a proxy under slowloris: `benches/slowloris.py` holds 1,000
   connections (each from its own loopback address, a request head that never ends, a byte
   every 3 s, reopened when the server closes it) while wrk measures as in table 2.

uvicorn runs with a soft open-file limit of 1,024 (--app-nofile), what a systemd service gets
unless its unit raises it; table 3 also runs it alone with this script's own limit.

Server CPU is utime + stime from /proc/PID/stat before and after each measured run; core busy
is from /proc/stat; a run beside more than --max-foreign cores of other processes' load
(another build on the machine) is taken again, up to --retries times. Loopback only; every
process this script starts is stopped by PID; every run is bounded in time.

    python3 benches/proxy_load.py                         # about 15 minutes
    python3 benches/proxy_load.py --smoke --build debug   # seconds per row (CI)

Needs wrk and nginx (`apt-get install wrk`, `benches/peers/install.sh nginx python`), and
`cargo build --release --bins --examples` (or the debug build with --build debug).
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import PEERS, ROOT, cell, free_port, interleave, markdown, median, skip, stop, \
    wait_for_port

TICKS = os.sysconf("SC_CLK_TCK")
UVICORN = os.path.join(PEERS, ".env", "bin", "uvicorn")
SLOWLORIS = os.path.join(ROOT, "benches", "slowloris.py")
PATH = "/api/hello"
BODY = b"hello"


# ---------------------------------------------------------------------------------------------
# Processes


class Group:
    """Processes started together and stopped together (by PID); `pid` is the first's, the
    one whose CPU time is the server's, and `pids` names each."""

    def __init__(self, named):
        self.named = named
        self.pid = next(iter(named.values())).pid
        self.pids = {name: p.pid for name, p in named.items()}

    def send_signal(self, sig):
        for process in self.named.values():
            if process.poll() is None:
                process.send_signal(sig)

    def wait(self):
        for process in self.named.values():
            process.wait()

    def poll(self):
        codes = [p.poll() for p in self.named.values()]
        return next((c for c in codes if c is not None), None)


def launch(argv, core, printing, nofile=None):
    """Starts `argv` on `core` (with a soft open-file limit of `nofile` if given). A `printing`
    server's first line is `listening on ADDR`: returns (process, ADDR) or (None, None); any
    other is returned as (process, None)."""
    def limit():
        if nofile:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    process = subprocess.Popen(["taskset", "-c", str(core), *argv],
                               stdout=subprocess.PIPE if printing else subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=True, preexec_fn=limit)
    if not printing:
        return process, None
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        stop(process)
        return None, None
    return process, line.removeprefix("listening on ")


def pinned(core, argv):
    return ["taskset", "-c", str(core), *argv]


def launch_on_port(argv, core, port, nofile=None):
    """Starts `argv` (told to listen on `port`) on `core`; (process, addr) or (None, None)."""
    process, _ = launch(argv, core, printing=False, nofile=nofile)
    if wait_for_port(process, port):
        return process, f"127.0.0.1:{port}"
    stop(process)
    return None, None


def get_once(addr):
    """One `GET /api/hello`: None when it answers 200 `hello`, else what went wrong."""
    host, port = addr.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", PATH)
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except OSError as e:
        return f"GET {PATH}: {e}"
    if response.status != 200 or body != BODY:
        return f"GET {PATH}: {response.status} {body[:60]!r}"
    return None


def checked(start_one):
    """`start_one` whose server must answer one GET correctly, or is stopped and skipped."""
    def start():
        process, addr = start_one()
        if process is None:
            return None, None
        problem = get_once(addr)
        if problem:
            skip(start_one.__name__, problem)
            stop(process)
            return None, None
        return process, addr
    start.__name__ = start_one.__name__
    return start


def frozen(build, run_dir):
    """Copies of the build's ringstream and raw_relay in `run_dir`, so that a rebuild in the
    work tree during the run does not change the binaries under test; {copy: original}."""
    copies = {}
    for name in ("ringstream", os.path.join("examples", "raw_relay")):
        original = os.path.join(ROOT, "target", build, name)
        if os.access(original, os.X_OK):
            copy = os.path.join(run_dir, os.path.basename(name))
            shutil.copy2(original, copy)
            copies[copy] = os.path.relpath(original, ROOT)
    return copies


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------------------------
# Configurations

UPSTREAM_TOML = """listen = "127.0.0.1:0"
workers = 1

[[routes]]
path = "/"
kind = "static_text"
body = "hello"
"""


def proxy_toml(upstream, rate_limit=None, pool_size=None):
    """ringstream with one proxy route to `upstream` (and /stats, for the pool's counts);
    with `rate_limit` (requests per client per minute) loopback is not exempt, so every
    request goes through the client's budget (and every connection through its count); with
    `pool_size` the route keeps that many idle upstream connections (0: a new one for every
    request)."""
    top = 'listen = "127.0.0.1:0"\nworkers = 1\n'
    limits = ""
    if rate_limit:
        # Room for a run's connections beside the last run's, whose count ends only once
        # their proxied exchanges have.
        top += "\n[limits]\nexempt = []\nmax_concurrent_connections = 256\n"
        limits = f"\n[routes.limits]\nrate_limit_requests = {rate_limit}\nburst = 0\n"
    pool = "" if pool_size is None else f"pool_size = {pool_size}\n"
    return (f'{top}\n[[routes]]\npath = "/stats"\nkind = "stats"\n\n[[routes]]\n'
            f'path = "/api/"\nkind = "proxy"\nupstreams = ["{upstream}"]\n{pool}{limits}')


def pool_counts(addr):
    """(upstream connections opened, idle ones reused) of a ringstream proxy, from /stats."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/stats")
    proxy = json.loads(conn.getresponse().read())["proxy"]
    conn.close()
    return proxy["upstream_connects"], proxy["upstream_reuses"]


# What every nginx peer shares: one process in the foreground holding all of nginx's CPU
# time (no master, no workers), its files in the run directory, no access log. The
# `http` block is left open for the peer's own lines.
NGINX_HEAD = """daemon off;
master_process off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
"""

NGINX_CONF = """# The nginx peer of benches/proxy_load.py: proxying /api/ to one upstream over pooled
# HTTP/1.1 keep-alive connections, setting the forwarding headers ringstream's proxy sets.
""" + NGINX_HEAD + """
    # The load generator keeps its connections for the whole run (nginx closes one after
    # 1000 requests by default, client side and upstream side).
    keepalive_requests 1000000;

    upstream app {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
"""


def launch_ringstream(binary, config, name, commands):
    """ringstream serving `config` on core 0, its command kept in `commands[name]`."""
    argv = [binary, "serve", "--config", config, "--log-level", "warn"]
    commands[name] = pinned(0, argv)
    return launch(argv, 0, printing=True)


def launch_nginx(run_dir, prefix, upstream, commands):
    """nginx proxying /api/ to `upstream` on core 0, in a directory of its own under
    `run_dir`; its command kept in `commands["nginx"]`."""
    port = free_port()
    run = os.path.join(run_dir, f"{prefix}-{port}")
    os.makedirs(run, exist_ok=True)
    conf = write(run, "nginx.conf", NGINX_CONF.format(run=run, port=port, upstream=upstream))
    argv = [nginx_binary(), "-p", run, "-e", os.path.join(run, "error.log"), "-c", conf]
    commands["nginx"] = pinned(0, argv)
    return launch_on_port(argv, 0, port)


def nginx_binary():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                     else None)


def uvicorn_argv(port):
    return [UVICORN, "--app-dir", PEERS, "fastapi_hello:app", "--host", "127.0.0.1", "--port",
            str(port), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
            "--no-access-log"]


# ---------------------------------------------------------------------------------------------
# Measuring


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def core_times():
    """{core: (process seconds, all busy seconds)} from /proc/stat: process time is user +
    nice + system (what processes are charged), busy adds irq, softirq and steal."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                times[int(m.group(1))] = ((v[0] + v[1] + v[2]) / TICKS,
                                          (sum(v[:8]) - v[3] - v[4]) / TICKS)
    return times


def children_cpu():
    """CPU seconds of this script's children that have been waited for (the load generator's
    runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Window:
    """A measured run: CPU time of the named server processes (per request), of `others`
    (the upstream, the slowloris client: in cores), of the load generator, each core's busy
    time, and the foreign load: process time on the machine that none of these account for
    (another user's build, say)."""

    def __init__(self, pids, others=None):
        self.pids, self.others = pids, others or {}
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.other_cpu = {name: cpu_seconds(pid) for name, pid in self.others.items()}
        self.children = children_cpu()
        self.cores = core_times()
        self.t = time.monotonic()

    def close(self, requests, into):
        wall = time.monotonic() - self.t
        ours = 0.0
        for name, pid in self.pids.items():
            used = cpu_seconds(pid) - self.cpu[name]
            ours += used
            into[f"{name}_cpu_us_per_req"] = used / requests * 1e6 if requests else None
        for name, pid in self.others.items():
            used = cpu_seconds(pid) - self.other_cpu[name]
            ours += used
            into[f"{name}_cores"] = used / wall
        load = children_cpu() - self.children
        into["loadgen_cpu_us_per_req"] = load / requests * 1e6 if requests else None
        cores = core_times()
        processes = 0.0
        for core, (process, busy) in cores.items():
            before = self.cores.get(core, (process, busy))
            into[f"core{core}_busy"] = (busy - before[1]) / wall
            processes += process - before[0]
        into["foreign_cores"] = max(0.0, processes - ours - load) / wall
        return into


UNITS = {"us": 1, "ms": 1e3, "s": 1e6}


def wrk(url, core, seconds, connections, timeout=10, headers=()):
    """One run of wrk (with `headers` added to each request): its figures, or raises
    RuntimeError with what went wrong."""
    extra = [a for h in headers for a in ("-H", h)]
    argv = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--timeout", f"{timeout}s", "--latency", *extra, url]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk gave no answer within {seconds + 30} s")
    if out.returncode != 0:
        raise RuntimeError(f"wrk: {(out.stderr or out.stdout).strip()[:200]}")
    text = out.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    result = {"requests": requests, "requests_per_sec": requests / seconds,
              "command": " ".join(argv)}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        result[f"p{pct}_us"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        text)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    result["socket_errors"] = sum(int(x) for x in sockets.groups()) if sockets else 0
    result["socket_error_detail"] = sockets.group(0) if sockets else ""
    result["errors"] = result["non_2xx"] + result["socket_errors"]
    return result


def oha(url, core, seconds, connections, rate):
    """One run of oha at a fixed offered rate: its figures, or raises RuntimeError."""
    argv = ["taskset", "-c", str(core), oha_binary(), "-z", f"{seconds}s", "-c",
            str(connections), "-q", str(rate), "--latency-correction", "--no-tui",
            "--output-format", "json", url]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"oha gave no answer within {seconds + 30} s")
    if out.returncode != 0:
        raise RuntimeError(f"oha: {(out.stderr or out.stdout).strip()[:200]}")
    data = json.loads(out.stdout)
    codes = {int(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    ok = codes.get(200, 0)
    # Requests still in flight when the duration ends are counted as "aborted due to
    # deadline": not failures of the server.
    failures = {k: v for k, v in data.get("errorDistribution", {}).items()
                if "deadline" not in k}
    errors = sum(failures.values())
    percentiles = data.get("latencyPercentiles", {})
    return {"requests": sum(codes.values()), "requests_per_sec": sum(codes.values()) / seconds,
            "p50_us": percentiles.get("p50", 0) * 1e6 if percentiles.get("p50") else None,
            "p99_us": percentiles.get("p99", 0) * 1e6 if percentiles.get("p99") else None,
            "non_2xx": sum(codes.values()) - ok, "socket_errors": errors,
            "socket_error_detail": json.dumps(failures),
            "errors": sum(codes.values()) - ok + errors, "command": " ".join(argv)}


def oha_binary():
    return shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")


def has_oha():
    return os.access(oha_binary(), os.X_OK)


# ---------------------------------------------------------------------------------------------
# Table 1: a proxy in front of a fast upstream


def table1_servers(args, run_dir, upstream):
    binary, relay = args.binary, args.relay
    plain = write(run_dir, "proxy.toml", proxy_toml(upstream))
    limited = write(run_dir, "proxy-rate.toml", proxy_toml(upstream, rate_limit=60_000_000))
    cold = write(run_dir, "proxy-cold.toml", proxy_toml(upstream, pool_size=0))
    commands = {}

    def ringstream(name, config):
        def start():
            return launch_ringstream(binary, config, name, commands)
        start.__name__ = name
        return start

    def nginx():
        return launch_nginx(run_dir, "nginx", upstream, commands)

    def relay_floor():
        argv = [relay, "127.0.0.1:0", upstream]
        commands["raw relay (floor)"] = pinned(0, argv)
        return launch(argv, 0, printing=True)

    servers = {name: ringstream(name, config) for name, config in [
        ("ringstream proxy", plain),
        ("ringstream proxy + per-client rate", limited),
        (COLD, cold),
    ]}
    if nginx_binary():
        servers["nginx"] = nginx
    else:
        skip("nginx", "not installed (benches/peers/install.sh nginx)")
    if os.access(relay, os.X_OK):
        servers["raw relay (floor)"] = relay_floor
    else:
        skip("raw relay", f"examples/raw_relay is not built (cargo build --examples)")
    servers = {name: start for name, start in servers.items()
               if not args.server or any(wanted in name for wanted in args.server)}
    return {name: checked(start) for name, start in servers.items()}, commands


def run_table1(args, run_dir):
    binary = args.binary
    upstream_conf = write(run_dir, "upstream.toml", UPSTREAM_TOML)
    upstream_argv = [binary, "serve", "--config", upstream_conf, "--log-level", "warn"]
    up, upstream = launch(upstream_argv, 1, printing=True)
    if up is None:
        sys.exit("the upstream (ringstream static_text on core 1) did not start")
    try:
        servers, commands = table1_servers(args, run_dir, upstream)
        workloads = [(f"GET, {args.connections} conns (wrk)", ("wrk", None))]
        if has_oha():
            workloads.append((f"GET, {args.rate:,} req/s offered (oha)", ("oha", args.rate)))
        else:
            skip("the fixed-rate workload", "oha is not installed (cargo install oha)")
        workloads = [w for w in workloads
                     if not args.workload or any(s in w[0] for s in args.workload)]

        def run_one(name, addr, pid, spec):
            tool, rate = spec
            url = f"http://{addr}{PATH}"

            def measure():
                wrk(url, 1, args.warmup_s, args.connections)
                pooled = name.startswith("ringstream")
                before = pool_counts(addr) if pooled else None
                window = Window({"server": pid}, others={"upstream": up.pid})
                if tool == "wrk":
                    result = wrk(url, 1, args.seconds, args.connections)
                else:
                    result = oha(url, 1, args.seconds, args.connections, rate)
                result = window.close(result["requests"], result)
                if pooled:
                    connects, reuses = (b - a for a, b in zip(before, pool_counts(addr)))
                    result["upstream_connects"], result["upstream_reuses"] = connects, reuses
                return result

            try:
                return quiet(args, name, measure), None
            except RuntimeError as e:
                return None, str(e)

        outcome = interleave(args.rounds, servers, workloads, run_one, describe)
    finally:
        stop(up)
    commands["upstream"] = pinned(1, upstream_argv)
    return outcome, workloads, list(servers), commands


def quiet(args, name, measure):
    """`measure()` again (up to --retries times, --pause seconds apart) while more than
    --max-foreign cores of foreign load ran beside it; the last result, with its retries."""
    for attempt in range(args.retries + 1):
        result = measure()
        result["retries"] = attempt
        if result["foreign_cores"] <= args.max_foreign or attempt == args.retries:
            return result
        print(f"{name}: {result['foreign_cores']:.2f} cores of foreign load beside the run; "
              f"again in {args.pause:.0f} s", file=sys.stderr)
        time.sleep(args.pause)
    return result


def describe(r):
    cpu = r.get("server_cpu_us_per_req")
    text = f"{r['requests_per_sec']:,.0f} req/s"
    if cpu is not None:
        text += f", {cpu:.2f} µs server CPU/req"
    if r.get("p50_us") is not None:
        text += f", p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs"
    if r.get("errors"):
        text += f", {r['errors']} errors ({r['non_2xx']} non-2xx; {r['socket_error_detail']})"
    for key in ("proxy_cpu_us_per_req", "uvicorn_cpu_us_per_req"):
        if r.get(key) is not None:
            text += f", {key.split('_')[0]} {r[key]:.1f} µs/req"
    if "slowloris" in r:
        s = r["slowloris"]
        text += (f", slowloris {s.get('open_at_start')} open at start, "
                 f"{s.get('closed_by_server')} closed by the server")
    return text + f", foreign load {r['foreign_cores']:.2f} cores"


def foreign_line(outcome, labels):
    """One sentence on the foreign load beside the runs of `labels`."""
    runs = [r for (label, _), rs in outcome.results.items() if label in labels for r in rs]
    if not runs:
        return ""
    loads = sorted(r["foreign_cores"] for r in runs)
    again = sum(r["retries"] for r in runs)
    return (f"Foreign load (process CPU time on the machine outside this script's processes) "
            f"beside the {len(runs)} measured runs: median {median(runs, 'foreign_cores'):.2f} "
            f"cores, largest {loads[-1]:.2f}; {again} run(s) taken again for it.\n")


def table1_markdown(outcome, workloads, names):
    headers = ["workload", "server", "requests/s", "server CPU µs/request", "rounds' range",
               "CPU/request vs nginx", "CPU/request vs relay", "p50 / p99 µs", "errors",
               "core 0 busy (proxy)", "core 1 busy (upstream + load)",
               "upstream connections reused"]
    rows = []
    for label, _ in workloads:
        med = {n: outcome.results.get((label, n), []) for n in names}
        base_nginx = median(med.get("nginx", []), "server_cpu_us_per_req")
        base_relay = median(med.get("raw relay (floor)", []), "server_cpu_us_per_req")
        for name in names:
            if (label, name) in outcome.errors:
                rows.append([label, name, f"failed: {outcome.errors[(label, name)]}"]
                            + ["–"] * (len(headers) - 3))
                continue
            runs = med[name]
            if not runs:
                continue
            cpu = median(runs, "server_cpu_us_per_req")
            cpus = [r["server_cpu_us_per_req"] for r in runs]
            rows.append([label, name, cell(median(runs, "requests_per_sec"), ",.0f"),
                         cell(cpu, ".2f"), f"{min(cpus):.1f}–{max(cpus):.1f}",
                         cell(cpu / base_nginx if cpu and base_nginx else None, ".2f", "×"),
                         cell(cpu / base_relay if cpu and base_relay else None, ".2f", "×"),
                         latency(runs), str(sum(r["errors"] for r in runs)),
                         cell(percent(median(runs, "core0_busy")), ".0f", "%"),
                         cell(percent(median(runs, "core1_busy")), ".0f", "%"),
                         reuse_rate(runs)])
    return markdown(headers, rows)


def reuse_rate(runs):
    """The share of proxied requests that went out on a pooled upstream connection, over
    every run (ringstream only: "–" for the others)."""
    connects = sum(r.get("upstream_connects", 0) for r in runs)
    reuses = sum(r.get("upstream_reuses", 0) for r in runs)
    if not connects + reuses:
        return "–"
    return f"{100 * reuses / (connects + reuses):.2f}%"


def latency(runs):
    return f"{cell(median(runs, 'p50_us'), '.0f')} / {cell(median(runs, 'p99_us'), '.0f')}"


def percent(x):
    return None if x is None else x * 100


# ---------------------------------------------------------------------------------------------
# Tables 2 and 3: FastAPI directly and behind ringstream, with and without slowloris

COLD = "ringstream proxy, cold pool (pool_size = 0)"
DIRECT = "uvicorn + FastAPI, direct"
HEADERS = "uvicorn + FastAPI, direct, with the proxy's forwarding headers"
BEHIND = "ringstream proxy (per-client rate on) → uvicorn + FastAPI"
NGINX = "nginx → uvicorn + FastAPI"
APP_SETUPS = [DIRECT, HEADERS, BEHIND, NGINX]
# Filled in with this machine's own soft open-file limit.
WIDE = "uvicorn + FastAPI, direct, {:,} open files"
# The fields ringstream's proxy adds to a request (X-Request-Id is random per request there),
# sent by wrk itself in the HEADERS row: what the app pays for them, without a proxy.
FORWARDED = ["X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http",
             "X-Forwarded-Host: 127.0.0.1:8080",
             'Forwarded: for=127.0.0.1;proto=http;host="127.0.0.1:8080"',
             "X-Request-Id: 9ee6b41a30044c9c21ae6791afedb171"]


def app_servers(args, run_dir):
    """The setups of tables 2 and 3: uvicorn on core 1, alone or behind a proxy on core 0.
    Returns the start functions, {pid: Group} of the started ones, and their commands."""
    groups = {}
    commands = {}

    def uvicorn(nofile):
        port = free_port()
        argv = uvicorn_argv(port)
        commands["uvicorn"] = ["prlimit", f"--nofile={args.app_nofile}:", *pinned(1, argv)]
        return launch_on_port(argv, 1, port, nofile=nofile)

    def with_app(front, nofile=args.app_nofile):
        """Starts uvicorn, then `front(upstream)` (a proxy's (process, addr)), if any."""
        def start():
            app, addr = uvicorn(nofile)
            if app is None:
                return None, None
            named = {"uvicorn": app}
            if front:
                proxy, addr = front(addr)
                if proxy is None:
                    stop(app)
                    return None, None
                named = {"proxy": proxy, "uvicorn": app}
            group = Group(named)
            groups[group.pid] = group
            return group, addr
        return start

    def ringstream(upstream):
        conf = write(run_dir, "proxy-app.toml", proxy_toml(upstream, rate_limit=args.app_rate))
        return launch_ringstream(args.binary, conf, "ringstream", commands)

    def nginx(upstream):
        return launch_nginx(run_dir, "nginx-app", upstream, commands)

    setups = {DIRECT: with_app(None), HEADERS: with_app(None), BEHIND: with_app(ringstream)}
    if nginx_binary():
        setups[NGINX] = with_app(nginx)
    own = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if own != args.app_nofile:
        setups[WIDE.format(own)] = with_app(None, nofile=None)
    for name, start in setups.items():
        start.__name__ = name
    return {name: checked(start) for name, start in setups.items()}, groups, commands


def slowloris_start(addr, args):
    bound = args.ramp_limit + args.settle + args.warmup_s + args.seconds + 30
    argv = ["taskset", "-c", "0", sys.executable, SLOWLORIS, addr, "--connections",
            str(args.slowloris), "--interval", str(args.interval), "--seconds", str(bound),
            "--ramp-limit", str(args.ramp_limit)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    line = process.stdout.readline().strip()
    opened = int(line.split()[1]) if line.startswith("open ") else None
    return process, opened, " ".join(argv)


def slowloris_stop(process):
    """Asks the slowloris client to stop (SIGTERM) and returns its summary; SIGKILL if it
    does not stop within 15 s."""
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        stop(process)
        return {}
    lines = [l for l in out.strip().splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_app_tables(args, run_dir):
    servers, groups, commands = app_servers(args, run_dir)
    plain = f"GET /api/hello, {args.connections} conns (wrk)"
    attacked = f"the same under {args.slowloris:,} slowloris connections"
    workloads = [(plain, "plain"), (attacked, "slowloris")]

    def run_one(name, addr, pid, spec):
        group = groups[pid]
        url = f"http://{addr}{PATH}"
        if name == HEADERS and spec == "slowloris":
            return None, None

        def measure():
            if spec != "slowloris":
                headers = FORWARDED if name == HEADERS else []
                wrk(url, 0, args.warmup_s, args.connections, headers=headers)
                window = Window(group.pids)
                result = wrk(url, 0, args.seconds, args.connections, headers=headers)
                return window.close(result["requests"], result)
            loris, opened, command = slowloris_start(addr, args)
            try:
                time.sleep(args.settle)
                wrk(url, 0, args.warmup_s, args.connections)
                window = Window(group.pids, others={"slowloris": loris.pid})
                result = wrk(url, 0, args.seconds, args.connections)
                result = window.close(result["requests"], result)
                result["slowloris"] = slowloris_stop(loris)
            finally:
                if loris.poll() is None:
                    stop(loris)
            result["slowloris"]["open_at_start"] = opened
            result["slowloris_open_at_start"] = opened
            result["slowloris_command"] = command
            return result

        try:
            return quiet(args, name, measure), None
        except RuntimeError as e:
            return None, str(e)

    outcome = interleave(args.rounds, servers, workloads, run_one, describe)
    return outcome, workloads, commands


def paired_ratio(runs, base_runs, key="requests_per_sec"):
    """The median over rounds of this round's `key` over the base's in the same round (the
    rounds interleave, so a slow spell of the machine hits both); the ratio of the medians
    when a round is missing."""
    if runs and len(runs) == len(base_runs):
        return statistics.median(r[key] / b[key] for r, b in zip(runs, base_runs) if b[key])
    top, bottom = median(runs, key), median(base_runs, key)
    return top / bottom if top is not None and bottom else None


def failed_row(outcome, label, name, width):
    if (label, name) in outcome.errors:
        return [name, f"failed: {outcome.errors[(label, name)]}"] + ["–"] * (width - 2)
    return None


def table2_markdown(outcome, label):
    headers = ["setup", "requests/s", "vs direct", "p50 / p99 µs", "uvicorn CPU µs/request",
               "proxy CPU µs/request", "core 0 busy (wrk + proxy)", "core 1 busy (app)",
               "errors"]
    direct = outcome.results.get((label, DIRECT), [])
    rows = []
    for name in APP_SETUPS:
        failed = failed_row(outcome, label, name, len(headers))
        runs = outcome.results.get((label, name), [])
        if failed or not runs:
            rows += [failed] if failed else []
            continue
        rows.append([name, cell(median(runs, "requests_per_sec"), ",.0f"),
                     cell(paired_ratio(runs, direct), ".3f", "×"),
                     latency(runs), cell(median(runs, "uvicorn_cpu_us_per_req"), ".1f"),
                     cell(median(runs, "proxy_cpu_us_per_req"), ".1f"),
                     cell(percent(median(runs, "core0_busy")), ".0f", "%"),
                     cell(percent(median(runs, "core1_busy")), ".0f", "%"),
                     str(sum(r["errors"] for r in runs))])
    return markdown(headers, rows)


def table3_markdown(outcome, plain, attacked):
    headers = ["setup", "requests/s without", "requests/s under slowloris", "kept",
               "vs direct without", "p50 / p99 µs under slowloris", "errors under slowloris",
               "slowloris open at start", "slowloris closed by the server",
               "slowloris client CPU (cores)"]
    direct = outcome.results.get((plain, DIRECT), [])
    rows = []
    for name in attacked_setups(outcome):
        failed = failed_row(outcome, attacked, name, len(headers))
        runs = outcome.results.get((attacked, name), [])
        if failed or not runs:
            rows += [failed] if failed else []
            continue
        before = outcome.results.get((plain, name), [])
        closed = median([r["slowloris"] for r in runs if r.get("slowloris")],
                        "closed_by_server")
        rows.append([name, cell(median(before, "requests_per_sec"), ",.0f"),
                     cell(median(runs, "requests_per_sec"), ",.0f"),
                     cell(paired_ratio(runs, before), ".3f", "×"),
                     cell(paired_ratio(runs, direct), ".3f", "×"),
                     latency(runs), str(sum(r["errors"] for r in runs)),
                     cell(median(runs, "slowloris_open_at_start"), ",.0f"), cell(closed, ",.0f"),
                     cell(median(runs, "slowloris_cores"), ".2f")])
    return markdown(headers, rows)


def attacked_setups(outcome):
    """The setups of table 3: uvicorn alone at its two open-file limits, then the proxies."""
    wide = sorted({name for _, name in outcome.results if name.endswith(" open files")})
    return [DIRECT, *wide, BEHIND, NGINX]


# ---------------------------------------------------------------------------------------------


def versions():
    found = []
    if nginx_binary():
        out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True)
        found.append(out.stderr.strip().removeprefix("nginx version: "))
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    found.append(out.stdout.split(" [")[0].strip() or "wrk")
    if has_oha():
        out = subprocess.run([oha_binary(), "--version"], capture_output=True, text=True)
        found.append(out.stdout.strip())
    if os.access(UVICORN, os.X_OK):
        out = subprocess.run([os.path.join(PEERS, ".env", "bin", "python"), "-c",
                              "import uvicorn, fastapi; print('uvicorn', uvicorn.__version__,"
                              " 'fastapi', fastapi.__version__)"], capture_output=True,
                             text=True)
        found.append(out.stdout.strip())
    return "; ".join(found)


def machine_line(build):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    return (f"`benches/proxy_load.py` on {now:%Y-%m-%d %H:%M} UTC: {cpu}, {os.cpu_count()} "
            f"cores, Linux {platform.release()}; ringstream {commit} ({build} build). "
            f"{versions()}.")


def print_commands(title, commands, shown=None):
    """The commands, with `shown` ({path: as shown}) replacing temporary paths."""
    print(f"\n{title}:\n\n```sh")
    for name, argv in commands.items():
        line = " ".join(argv)
        for path, as_shown in (shown or {}).items():
            line = line.replace(path, as_shown)
        print(f"# {name}\n{line}")
    print("```")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8, help="measured seconds per run")
    parser.add_argument("--warmup", dest="warmup_s", type=int, default=1)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=int, default=10000,
                        help="offered requests/s of the fixed-rate workload (oha)")
    parser.add_argument("--app-nofile", type=int, default=1024,
                        help="uvicorn's soft open-file limit (1,024: a systemd service's "
                             "default); one more setup of table 3 runs it with this script's")
    parser.add_argument("--app-rate", type=int, default=600000,
                        help="rate_limit_requests (per client per minute) in front of the app")
    parser.add_argument("--slowloris", type=int, default=1000, help="slowloris connections")
    parser.add_argument("--interval", type=float, default=3.0,
                        help="seconds between a slowloris connection's bytes")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds the slowloris connections trickle before the load starts")
    parser.add_argument("--ramp-limit", type=float, default=20.0,
                        help="seconds allowed for opening the slowloris connections")
    parser.add_argument("--table", action="append", choices=["proxy", "app"],
                        help="only these tables (proxy: table 1; app: tables 2 and 3)")
    parser.add_argument("--workload", action="append",
                        help="substring of table 1's workload labels to run")
    parser.add_argument("--server", action="append",
                        help="substring of table 1's server names to run")
    parser.add_argument("--max-foreign", type=float, default=0.1,
                        help="cores of foreign load (processes this script did not start) "
                             "past which a run is taken again")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--pause", type=float, default=10.0,
                        help="seconds before a run is taken again")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="one round of 1 s runs, 100 slowloris connections (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.warmup_s = 1, 1, 1
        args.slowloris, args.settle, args.rate = 100, 1.0, 2000
    tables = args.table or ["proxy", "app"]
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (apt-get install {tool})")
    binary = os.path.join(ROOT, "target", args.build, "ringstream")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not built (cargo build --{args.build} --bins --examples)")
    per_run = args.warmup_s + args.seconds + 1
    estimate = 0
    if "proxy" in tables:
        estimate += args.rounds * 4 * (1 + (1 + has_oha()) * per_run)
    if "app" in tables:
        estimate += args.rounds * (4 * 2.5 + 7 * per_run + 3 * (args.settle + 3))
    print(f"about {estimate / 60:.0f} minutes", file=sys.stderr)

    machine = machine_line(args.build)
    print(machine)
    print(f"\n{args.rounds} interleaved rounds of {args.seconds} s measured after "
          f"{args.warmup_s} s of warm-up, medians; errors are summed over the rounds.")
    dump = {"machine": machine}
    with tempfile.TemporaryDirectory() as run_dir:
        copies = frozen(args.build, run_dir)
        args.binary = os.path.join(run_dir, "ringstream")
        args.relay = os.path.join(run_dir, "raw_relay")
        shown = {**copies, run_dir: "$RUN", sys.executable: "python3", ROOT + "/": ""}
        if "proxy" in tables:
            outcome, workloads, names, commands = run_table1(args, run_dir)
            dump["proxy"] = as_json(outcome)
            print("\n### A proxy in front of a fast upstream\n")
            print("Proxy on core 0; upstream (ringstream `static_text`, one worker) and load "
                  "generator on core 1. Server CPU is the proxy's.\n")
            print(table1_markdown(outcome, workloads, names))
            print(foreign_line(outcome, [label for label, _ in workloads]))
            print_commands("Servers", commands, shown)
            loads = {label: outcome.results[(label, names[0])][0]["command"]
                     for label, _ in workloads if outcome.results.get((label, names[0]))}
            print_commands("Load (the first server's; the others differ by address)",
                           {label: [c] for label, c in loads.items()}, shown)
        if "app" in tables:
            if not os.access(UVICORN, os.X_OK):
                skip("the FastAPI tables", "uvicorn is not installed "
                     "(benches/peers/install.sh python)")
            else:
                outcome, workloads, commands = run_app_tables(args, run_dir)
                dump["app"] = as_json(outcome)
                (plain, _), (attacked, _) = workloads
                print("\n### FastAPI directly and behind ringstream\n")
                print(f"uvicorn (one process, soft open-file limit {args.app_nofile:,}: what "
                      f"a systemd service gets by default) alone on core 1; wrk, and the proxy "
                      f"in front when there is one, on core 0. `vs direct` and `kept` are "
                      f"medians of each round's ratio.\n")
                print(table2_markdown(outcome, plain))
                print(f"\n### Under {args.slowloris:,} slowloris connections\n")
                print(table3_markdown(outcome, plain, attacked))
                print(foreign_line(outcome, [plain, attacked]))
                print_commands("Servers", commands, shown)
                runs = [r for key, rs in outcome.results.items() for r in rs
                        if key[0] == attacked]
                load = {plain: [wrk_command(outcome, plain)]}
                if runs:
                    load["slowloris"] = [runs[0]["slowloris_command"]]
                print_commands("Load", load, shown)
                for name in attacked_setups(outcome):
                    summaries = [r["slowloris"] for r in outcome.results.get((attacked, name),
                                                                             [])]
                    if summaries:
                        print(f"\nslowloris against {name}, last round: "
                              f"{json.dumps(summaries[-1])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dump, f, indent=1)


def as_json(outcome):
    """Every run and error of an Outcome, as JSON-ready lists."""
    return {"runs": [{"workload": label, "server": name, "runs": runs}
                     for (label, name), runs in outcome.results.items()],
            "errors": [{"workload": label, "server": name, "error": error}
                       for (label, name), error in outcome.errors.items()]}


def wrk_command(outcome, label):
    for (l, _), runs in outcome.results.items():
        if l == label and runs:
            return runs[0]["command"]
    return "–"


if __name__ == "__main__":
    main()
