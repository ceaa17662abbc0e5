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
    python3 benches/download_load.py --base OLD/ringstream --only "ringstream" --only nginx

Read the core columns before the rates: the figure is the server's only while the server's
core is the busy one. On loopback the kernel's TCP work is charged to whichever core handles
the ACKs, so the client's core carries part of the server's transfer cost.

A server that is not installed, or does not start, is skipped with one line. `--smoke` (tiny
files, one round of 1 s, `--build debug`) keeps the script from rotting; `benches/peers/run.py`
runs these tables beside the other workloads.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import (PEERS, add_round_options, base_medians, bench, cell, chart_of, free_port,
                      interleave, markdown, matching, ratio, ringstream_path, rows_of, skip,
                      slug, start_on_port, start_printing)

BIG, MID, SMALL = "big.bin", "mid.bin", "small.bin"
GIB, MIB = 1 << 30, 1 << 20
# nginx's limit_rate of the capped workload ("100m" is 100 MiB/s), per connection.
CAP = 100 * MIB


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
    # sendfile on the worker for every piece, cached or not (the default, "auto", sends
    # cached pieces so and the others by sendfile on the runtime's blocking pool).
    "ringstream sendfile": {
        "start": "ringstream",
        "files": "/files/",
        "capped": "/capped/",
        "options": 'send = "sendfile"',
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

# The files' sizes: for the measurement, and tiny ones (not page multiples) for the smoke.
# The capped workload sends a 256 MiB file: it runs longest, and the machines this project is
# measured on keep about 2 GB of page cache, from which pages of a 1 GiB file were dropped
# while it ran, so that both servers read some pieces from the disk (files not in the cache
# are measured on their own by cold_download.py).
SIZES = {BIG: GIB, MID: 256 * MIB, SMALL: 64 * 1024}
SMOKE_SIZES = {BIG: 8 * MIB + 3, MID: 4 * MIB + 1, SMALL: 4096 + 5}

# (label, file, path key, connections, --rate-check); {size} is the file's size.
WORKLOADS = [
    ("{size} file, 1 client", BIG, "files", 1, None),
    ("{size} file, 64 clients", BIG, "files", 64, None),
    ("{size} file, 8 clients capped at 100 MiB/s each", MID, "capped", 8, CAP),
    ("{size} file, 64 clients", SMALL, "files", 64, None),
]


def size_label(size):
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}" if size % scale == 0 else f"{size / scale:.1f} {unit}"
    return f"{size} B"


def make_files(binary, directory, sizes):
    """Writes the pattern files that are missing or of another size."""
    os.makedirs(directory, exist_ok=True)
    for name, size in sizes.items():
        path = os.path.join(directory, name)
        if os.path.exists(path) and os.path.getsize(path) == size:
            continue
        subprocess.run([binary, "bench", "make-file", "--path", path, "--size", str(size)],
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


def start_ringstream(binary, files, options, run_dir):
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
    return start_printing([binary, "serve", "--config", config, "--log-level", "warn"])


def server_command(name, binary):
    """How server `name` is started, for the results (the run directory is temporary)."""
    if SERVERS[name]["start"] == "nginx":
        return (f"{nginx_path()} -p RUN -e RUN/error.log -c RUN/nginx.conf  "
                "# benches/peers/nginx.conf.template filled in")
    options = SERVERS[name]["options"]
    return (f"{binary} serve --config RUN/ringstream.toml --log-level warn  "
            f"# /files/ and /capped/ files routes{', ' + options if options else ''}")


def workloads_for(sizes, wanted=None):
    """WORKLOADS with their labels filled in for the files' `sizes`, those of `wanted` (label
    substrings) only if given, as (label, spec) pairs."""
    labelled = [(label.format(size=size_label(sizes[file])), (file, *rest))
                for label, file, *rest in WORKLOADS]
    return matching(labelled, wanted, key=lambda w: w[0])


def available(names, skip):
    """The servers of `names` that can run, nginx only where it is installed; `skip(name,
    why)` otherwise."""
    if "nginx" in names and not os.path.exists(nginx_path()):
        skip("nginx", "not installed (benches/peers/install.sh nginx)")
        names = [n for n in names if n != "nginx"]
    return names


def collect(binary, names, workloads, files, sizes, rounds, seconds, warmup):
    """Interleaved rounds of `workloads` against the servers of `names` serving the pattern
    files of `files`; see benchlib.interleave."""
    run_dir = tempfile.mkdtemp(prefix="ringstream-download-")

    def starter(name):
        if SERVERS[name]["start"] == "nginx":
            return lambda: start_nginx(files, run_dir)
        chosen = SERVERS[name].get("binary", binary)
        return lambda: start_ringstream(chosen, files, SERVERS[name]["options"], run_dir)

    def run_one(name, addr, pid, spec):
        file, key, connections, rate_check = spec
        path = SERVERS[name][key]
        if path is None:
            return None, None
        load = ["download", "--url", f"http://{addr}{path}{file}", "--connections",
                str(connections), "--expect-size", str(sizes[file]), "--check-pattern", "pages"]
        if rate_check:
            load += ["--rate-check", str(rate_check)]
        warm(os.path.join(files, file))
        return bench(binary, load, seconds, warmup, pid)

    try:
        return interleave(rounds, {name: starter(name) for name in names}, workloads, run_one,
                          describe)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def warm(path):
    """Reads `path` so that its pages are in the page cache when a workload starts."""
    with open(path, "rb") as f:
        while f.read(8 * MIB):
            pass


def describe(result):
    capped = (f", {result['rate_ratio']}× the cap per connection"
              if "rate_ratio" in result else "")
    return (f"{result['gib_per_sec']} GiB/s, {result['server_cpu_s_per_gib']} s server CPU/GiB, "
            f"server core {result['server_core_busy_pct']}%, "
            f"bench core {result['client_core_busy_pct']}%, "
            f"bench process {result['client_cpu_pct']}%{capped}")


def table(outcome, workloads, names, base="nginx"):
    """The Markdown table's headers and rows, with each server's ratios to `base`."""
    headers = ["workload", "server", "GiB/s", "server CPU s/GiB", f"GiB/s vs {base}",
               f"CPU/GiB vs {base}", "server core busy", "bench core busy",
               "bench process CPU", "per-connection rate / cap"]
    rows = []
    for label, _ in workloads:
        b = base_medians(outcome, label, base)

        def row(_name, m):
            rate, cpu = m.get("gib_per_sec"), m.get("server_cpu_s_per_gib")
            return [cell(rate, ".3f"), cell(cpu, ".4f"),
                    cell(ratio(rate, b.get("gib_per_sec")), ".2f", "×"),
                    cell(ratio(cpu, b.get("server_cpu_s_per_gib")), ".2f", "×"),
                    cell(m.get("server_core_busy_pct"), ".0f", "%"),
                    cell(m.get("client_core_busy_pct"), ".0f", "%"),
                    cell(m.get("client_cpu_pct"), ".0f", "%"),
                    cell(m.get("rate_ratio"), ".3f", "×")]

        rows += rows_of(outcome, label, names, len(headers), row)
    return headers, rows


def charts(outcome, workloads, names, directory):
    """One SVG per workload: the server CPU seconds per GiB sent; their (label, path)."""
    drawn = [chart_of(outcome, label, names, "server_cpu_s_per_gib", directory,
                      f"download-{slug(label)}",
                      f"download, {label}: server CPU s per GiB (lower is better)", ".3f")
             for label, _ in workloads]
    return [d for d in drawn if d]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_round_options(parser, seconds=10)
    parser.add_argument("--files", default=os.path.join(tempfile.gettempdir(),
                                                        "ringstream-download-files"),
                        help="where the pattern files are written and reused")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny files, one round of 1 s, to check the script works")
    parser.add_argument("--base", help="another ringstream binary, measured beside with the "
                        "default send path as \"ringstream (base binary)\" (an A/B)")
    args = parser.parse_args()
    if args.base:
        SERVERS["ringstream (base binary)"] = {**SERVERS["ringstream"], "binary": args.base}
    sizes = SMOKE_SIZES if args.smoke else SIZES
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 1, 0.3
    binary = ringstream_path(args.build)
    if not os.path.exists(binary):
        release = " --release" if args.build == "release" else ""
        sys.exit(f"{binary} is missing (cargo build{release} --bins)")
    files = os.path.abspath(args.files)
    if args.smoke:
        files = os.path.join(files, "smoke")
    make_files(binary, files, sizes)
    workloads = workloads_for(sizes, args.workload)
    names = available(matching(SERVERS, args.only), skip)
    outcome = collect(binary, names, workloads, files, sizes, args.rounds, args.seconds,
                      args.warmup)
    print(markdown(*table(outcome, workloads, names)), end="")
    if outcome.errors:
        sys.exit(f"{len(outcome.errors)} workloads failed")


if __name__ == "__main__":
    main()
