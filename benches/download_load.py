#!/usr/bin/env python3
"""File download benchmark: ringstream's files route against nginx (sendfile on).

Servers run on core 0 (one worker / one process), the load generator (`ringstream bench
download`) on core 1. The files are written by `ringstream bench make-file` (each 8-byte word
holds its own offset) into --files, and reused while their sizes match. Each round starts every
server in turn (interleaved) and runs every workload against it; the table gives medians over
the rounds of GiB/s, of the server's CPU seconds per GiB sent, of how busy the server's and the
load generator's cores were, and each server's ratio to nginx. Every response's status and
length are checked and its body compared with the pattern (one word per 4 KiB page). Every
process is stopped by PID.

    cargo build --release --bins
    benches/peers/install.sh nginx      # Debian's nginx(-light)
    python3 benches/download_load.py --rounds 3 --seconds 10

Read the core columns before the rates: the figure is the server's only while the server's
core is the busy one. On loopback the kernel's TCP work is charged to whichever core handles
the ACKs, so the client's core carries part of the server's transfer cost.

A server that is not installed, or does not start, is skipped with one line. `--smoke` (tiny
files, one round of 1 s, `--build debug` in CI) keeps the script from rotting.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import cell, free_port, median, start_on_port, start_printing, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "benches", "peers")
BIG, SMALL = "big.bin", "small.bin"
GIB, MIB = 1 << 30, 1 << 20
# nginx's limit_rate of the capped workload ("100m" is 100 MiB/s), per connection.
CAP = 100 * MIB


def ringstream_path(build):
    return os.path.join(ROOT, "target", build, "ringstream")


def nginx_path():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# Each server: how to start it and under which paths it serves the files plainly and capped
# (None: that workload is skipped for it).
SERVERS = {
    "nginx": {
        "start": "nginx",
        "files": "/files/",
        "capped": "/capped/",
    },
    # ringstream's files route (a config file with /files/ and /capped/, the latter with
    # rate_limit_bandwidth = CAP); "options" are extra keys of both files routes.
    "ringstream": {
        "start": "ringstream",
        "files": "/files/",
        "capped": "/capped/",
        "options": "",
    },
    # The other send paths: an io_uring read into a buffer, then a copying send or
    # IORING_OP_SEND_ZC (the data-path comparison of BENCHMARKS.md; --only picks).
    "ringstream send_zc": {
        "start": "ringstream",
        "files": "/files/",
        "capped": "/capped/",
        "options": 'send = "zerocopy"',
    },
    "ringstream copy": {
        "start": "ringstream",
        "files": "/files/",
        "capped": "/capped/",
        "options": 'send = "copy"',
    },
}

# (label, file, path key, connections, --rate-check); {size} is the file's size.
WORKLOADS = [
    ("{size} file, 1 client", BIG, "files", 1, None),
    ("{size} file, 64 clients", BIG, "files", 64, None),
    ("{size} file, 8 clients capped at 100 MiB/s each", BIG, "capped", 8, CAP),
    ("{size} file, 64 clients", SMALL, "files", 64, None),
]


def size_label(size):
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}" if size % scale == 0 else f"{size / scale:.1f} {unit}"
    return f"{size} B"




def make_files(bench, directory, sizes):
    """Writes the pattern files that are missing or of another size."""
    os.makedirs(directory, exist_ok=True)
    for name, size in sizes.items():
        path = os.path.join(directory, name)
        if os.path.exists(path) and os.path.getsize(path) == size:
            continue
        subprocess.run([bench, "bench", "make-file", "--path", path, "--size", str(size)],
                       check=True, stdout=subprocess.DEVNULL)




def start_nginx(files, run_dir):
    """nginx on core 0 with the template's config; returns it and its address."""
    port = free_port()
    with open(os.path.join(PEERS, "nginx.conf.template")) as template:
        conf = template.read()
    for key, value in {"port": port, "files": files, "run": run_dir,
                       "limit_rate": CAP}.items():
        conf = conf.replace("{" + key + "}", str(value))
    conf_path = os.path.join(run_dir, "nginx.conf")
    with open(conf_path, "w") as out:
        out.write(conf)
    return start_on_port([nginx_path(), "-p", run_dir, "-e", os.path.join(run_dir, "error.log"),
                          "-c", conf_path], port)


def start_ringstream(bench, files, options, run_dir):
    """ringstream on core 0, one worker, serving `files` at /files/ and, capped at CAP per
    connection, at /capped/; returns it and the address it printed."""
    config = os.path.join(run_dir, "ringstream.toml")
    with open(config, "w") as f:
        f.write(f"""listen = "127.0.0.1:0"
workers = 1

[[routes]]
path = "/files/"
kind = "files"
root = "{files}"
{options}

[[routes]]
path = "/capped/"
kind = "files"
root = "{files}"
{options}
[routes.limits]
rate_limit_bandwidth = {CAP}
""")
    return start_printing([bench, "serve", "--config", config, "--log-level", "warn"])




def run(bench, addr, path, name, size, connections, rate_check, pid, args):
    """One load run; its JSON line."""
    argv = ["taskset", "-c", "1", bench, "bench", "download",
            "--url", f"http://{addr}{path}{name}", "--connections", str(connections),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            "--expect-size", str(size), "--check-pattern", "pages",
            "--server-pid", str(pid), "--json"]
    if rate_check:
        argv += ["--rate-check", str(rate_check)]
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=args.seconds + args.warmup + 30)
    if out.returncode != 0:
        return None, (out.stderr or out.stdout).strip()
    return json.loads(out.stdout), None






def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--only", action="append", help="substring of server names to run")
    parser.add_argument("--workload", action="append",
                        help="substring of workload labels to run (e.g. '1 client')")
    parser.add_argument("--files", default=os.path.join(tempfile.gettempdir(),
                                                        "ringstream-download-files"),
                        help="where the pattern files are written and reused")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny files, one round of 1 s, to check the script works")
    args = parser.parse_args()
    sizes = {BIG: GIB, SMALL: 64 * 1024}
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 1, 0.3
        sizes = {BIG: 8 * MIB + 3, SMALL: 4096 + 5}
    bench = ringstream_path(args.build)
    if not os.path.exists(bench):
        release = " --release" if args.build == "release" else ""
        sys.exit(f"{bench} is missing (cargo build{release} --bins)")
    files = os.path.abspath(args.files)
    if args.smoke:
        files = os.path.join(files, "smoke")
    make_files(bench, files, sizes)
    workloads = [(label.format(size=size_label(sizes[file])), file, *rest)
                 for label, file, *rest in WORKLOADS]
    workloads = [w for w in workloads
                 if not args.workload or any(s in w[0] for s in args.workload)]

    servers = {}
    for name, server in SERVERS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        if server["start"] == "nginx" and not os.path.exists(nginx_path()):
            print("skipping nginx: not installed (benches/peers/install.sh nginx)",
                  file=sys.stderr)
            continue
        servers[name] = server

    results = {}
    run_dir = tempfile.mkdtemp(prefix="ringstream-nginx-")
    try:
        for round_ in range(args.rounds):
            for name, server in list(servers.items()):
                if server["start"] == "nginx":
                    process, addr = start_nginx(files, run_dir)
                else:
                    process, addr = start_ringstream(bench, files, server["options"], run_dir)
                if process is None:
                    print(f"skipping {name}: it did not start", file=sys.stderr)
                    del servers[name]
                    continue
                try:
                    for label, file, key, connections, rate_check in workloads:
                        if server[key] is None:
                            continue
                        result, error = run(bench, addr, server[key], file, sizes[file],
                                            connections, rate_check, process.pid, args)
                        if error:
                            sys.exit(f"{name} / {label}: {error}")
                        results.setdefault((label, name), []).append(result)
                        ratio = (f", {result['rate_ratio']}× the cap per connection"
                                 if "rate_ratio" in result else "")
                        print(f"round {round_ + 1}: {label}: {name}: "
                              f"{result['gib_per_sec']} GiB/s, "
                              f"{result['server_cpu_s_per_gib']} s server CPU/GiB, "
                              f"server core {result['server_core_busy_pct']}%, "
                              f"bench core {result['client_core_busy_pct']}%, "
                              f"bench process {result['client_cpu_pct']}%{ratio}",
                              file=sys.stderr)
                finally:
                    stop(process)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    print("| workload | server | GiB/s | server CPU s/GiB | GiB/s vs nginx | "
          "CPU/GiB vs nginx | server core busy | bench core busy | bench process CPU | "
          "per-connection rate / cap |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, *_ in workloads:
        base = results.get((label, "nginx"))
        base_rate = median(base, "gib_per_sec") if base else None
        base_cpu = median(base, "server_cpu_s_per_gib") if base else None
        for name in SERVERS:
            runs = results.get((label, name))
            if not runs:
                continue
            rate = median(runs, "gib_per_sec")
            cpu = median(runs, "server_cpu_s_per_gib")
            rate_vs = rate / base_rate if rate and base_rate else None
            cpu_vs = cpu / base_cpu if cpu and base_cpu else None
            print(f"| {label} | {name} | {cell(rate, '.3f')} | {cell(cpu, '.4f')} | "
                  f"{cell(rate_vs, '.2f', '×')} | {cell(cpu_vs, '.2f', '×')} | "
                  f"{cell(median(runs, 'server_core_busy_pct'), '.0f', '%')} | "
                  f"{cell(median(runs, 'client_core_busy_pct'), '.0f', '%')} | "
                  f"{cell(median(runs, 'client_cpu_pct'), '.0f', '%')} | "
                  f"{cell(median(runs, 'rate_ratio'), '.3f', '×')} |")


if __name__ == "__main__":
    main()
