#!/usr/bin/env python3
"""Peer benchmarks: ringstream beside the servers users would pick instead, in one run.

Installs the peers (benches/peers/install.sh: uvicorn, Starlette, FastAPI and BustAPI from
PyPI, Bun from npm, nginx from Debian's packages), builds ringstream and the Rust peers
(tokio-tungstenite, fastwebsockets), and runs every table of the comparison:

- WebSocket handshakes (64 workers) and echo of 32 B, 512 B and 16 KiB messages on 100 and
  500 connections, with the raw-TCP echo server as the ceiling (benches/ws_load.py);
- broadcast of 64 B messages to 1,000 subscribers of one topic, against Bun's pub/sub
  (benches/broadcast_load.py);
- downloads of a 1 GiB file, and of a 256 MiB one under a cap, against nginx
  (benches/download_load.py);
- server memory per idle WebSocket with 10,000 connections open, for every WebSocket server
  (benches/idle_memory.py; opening is bounded in time, and a slower server reports how many
  connections it reached).

Each server runs on core 0 (one worker / one thread), the load generator `ringstream bench` on
core 1. Contenders are interleaved in each of --rounds rounds; the tables give medians of the
rate, of the server's CPU time per operation (utime + stime of its process from
/proc/PID/stat) and their ratios to ringstream. A peer that fails to install or to start is
skipped with one line. Writes benches/peers/results.md (tables, commands, date, machine),
benches/peers/results.json and one SVG bar chart per workload into benches/charts/. Every
process is stopped by PID. The estimated duration is printed first (about 20 minutes on two
cores with the defaults).

    benches/peers/run.py                          # the whole comparison
    benches/peers/run.py --table ws --only Bun    # one table, ringstream and one peer
    benches/peers/run.py --smoke --build debug    # seconds per table (CI): into target/peers-smoke
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import benchlib  # noqa: E402  (benches/ is put on the path above)
import broadcast_load  # noqa: E402
import download_load  # noqa: E402
import idle_memory  # noqa: E402
import ws_load  # noqa: E402

ROOT = benchlib.ROOT
TABLES = ["ws", "broadcast", "download", "idle"]
# The peers' install groups of install.sh, and where each puts its programs.
INSTALL_GROUPS = {"python": os.path.join(HERE, ".env"), "bun": os.path.join(HERE, "node_modules"),
                  "nginx": None}
# WebSocket servers of ws_load.py that are not peers: the handler API's variant of ringstream.
NOT_PEERS = {"ringstream handler"}
# The servers every table keeps whatever --only says: ringstream and the raw-TCP ceiling.
ALWAYS = {"ringstream", ws_load.CEILING}
# Seconds a run costs beyond its warm-up and measurement (the client's start, connections,
# the end of the run), and a server's start.
RUN_OVERHEAD, START = 0.3, 1.0
# The broadcast load's message size and the publisher's window (as in BENCHMARKS.md).
BROADCAST_SIZE, BROADCAST_WINDOW = 64, 64


class Plan:
    """What one invocation runs: the servers and workloads of every table, and its timing."""

    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.rounds, self.seconds, self.warmup = args.rounds, args.seconds, args.warmup
        self.connections, self.settle, self.time_limit = (args.connections, 2.0,
                                                          args.idle_time_limit)
        self.subscribers = 1000
        self.sizes = download_load.SIZES
        self.ws_workloads = list(ws_load.WORKLOADS)
        self.download_workloads = download_load.workloads_for(self.sizes, ["GiB file", "capped"])
        self.ws_names = [n for n in ws_load.SERVERS if n not in NOT_PEERS]
        self.download_names = ["ringstream", "nginx"]
        if args.smoke:
            self.rounds, self.seconds, self.warmup = 1, 0.5, 0.2
            self.connections, self.settle, self.time_limit = 200, 0.3, 10.0
            self.subscribers = 100
            self.sizes = download_load.SMOKE_SIZES
            self.ws_workloads = [w for w in self.ws_workloads
                                 if w[0] in ("handshakes, 64 workers", "echo 32 B, 100 conns")]
            self.download_workloads = download_load.workloads_for(self.sizes, ["1 client",
                                                                               "MiB file, 64"])
            self.ws_names = ["ringstream", "tokio-tungstenite", ws_load.CEILING]
        if args.only:
            self.ws_names = benchlib.matching(self.ws_names, args.only, keep=ALWAYS)
            self.download_names = benchlib.matching(self.download_names, args.only, keep=ALWAYS)
        self.tables = args.table or TABLES
        self.out = args.out or (os.path.join(ROOT, "target", "peers-smoke") if args.smoke
                                else HERE)
        self.charts = args.charts or (os.path.join(self.out, "charts") if args.smoke
                                      else os.path.join(ROOT, "benches", "charts"))

    def estimate(self):
        """Seconds the run should take, from the counts of runs and servers."""
        run = self.seconds + self.warmup + RUN_OVERHEAD
        total = 0.0
        if "ws" in self.tables:
            echo_rows = sum(1 for _, w in self.ws_workloads if w[0] == "echo")
            runs = sum((1 if n == ws_load.HANDSHAKE_FLOOR else echo_rows) if n in ws_load.RAW
                       else len(self.ws_workloads)
                       for n in self.ws_names)
            total += self.rounds * (runs * run + len(self.ws_names) * START)
        if "broadcast" in self.tables:
            total += self.rounds * 2 * (run + START + 1)
        if "download" in self.tables:
            total += self.rounds * len(self.download_names) * (
                len(self.download_workloads) * run + START)
        if "idle" in self.tables:
            peers = [n for n in self.ws_names if n not in ws_load.RAW]
            opening = min(self.time_limit, self.connections / 1000)
            total += len(peers) * (opening + self.settle + START + 1)
        return total


class Skips:
    """The servers left out and why: each said once on stderr and kept for the results."""

    def __init__(self, failed_installs):
        self.failed_installs = failed_installs
        self.lines = {}

    def __call__(self, name, why):
        for group, reason in self.failed_installs.items():
            where = INSTALL_GROUPS[group]
            if (where and where in " ".join(ws_load.SERVERS.get(name, []))) or group == name:
                why = f"benches/peers/install.sh {group} failed ({reason})"
        if name not in self.lines:
            self.lines[name] = why
            benchlib.skip(name, why)


def install(groups):
    """Runs install.sh for each group; returns the versions it printed and {group: why} for
    the groups that failed."""
    versions, failed = [], {}
    for group in groups:
        out = subprocess.run(["bash", os.path.join(HERE, "install.sh"), group],
                             capture_output=True, text=True)
        lines = (out.stdout + out.stderr).strip().splitlines()
        if out.returncode == 0:
            versions += [line.removeprefix("peers: ") for line in lines
                         if line.startswith("peers: ")]
        else:
            failed[group] = lines[-1] if lines else f"exit status {out.returncode}"
    return versions, failed


def build(profile):
    """Builds ringstream and the Rust example peers into target/ (where the scripts look for
    them); exits if that fails."""
    argv = ["cargo", "build", "--locked", "--bins", "--examples"]
    if profile == "release":
        argv.append("--release")
    print(f"building: {' '.join(argv)}", file=sys.stderr)
    env = {**os.environ, "CARGO_TARGET_DIR": os.path.join(ROOT, "target")}
    if subprocess.run(argv, cwd=ROOT, env=env).returncode != 0:
        sys.exit("the build failed")


def machine():
    """The machine's description: CPU model, cores, memory, kernel."""
    model, memory = "unknown CPU", ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), model)
    with open("/proc/meminfo") as f:
        kib = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), 0)
        memory = f"{kib / (1 << 20):.0f} GiB"
    return {"cpu": model, "cores": os.cpu_count(), "memory": memory,
            "kernel": f"{platform.system()} {platform.release()}"}


def commit():
    """The checked-out commit, short."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def ws_table(plan, skips):
    """The WebSocket handshake and echo table, with the raw-TCP ceiling."""
    servers = ws_load.available(plan.ws_names, plan.args.build, skips)
    outcome = ws_load.collect(servers, plan.ws_workloads, plan.args.build, plan.rounds,
                              plan.seconds, plan.warmup)
    charts = ws_load.charts(outcome, plan.ws_workloads, servers, plan.charts)
    return section("WebSocket handshakes and echo", outcome, servers,
                   ws_load.table(outcome, plan.ws_workloads, servers), charts, plan.ws_workloads)


def broadcast_table(plan, skips):
    """The broadcast table: one topic, BROADCAST_SIZE-byte messages, a window of
    BROADCAST_WINDOW."""
    binary = benchlib.ringstream_path(plan.args.build)
    argvs = broadcast_load.servers(binary, skips)
    argvs = {n: argvs[n] for n in benchlib.matching(argvs, plan.args.only, keep=ALWAYS)}
    outcome = broadcast_load.collect(binary, argvs, plan.rounds, plan.seconds, plan.warmup,
                                     plan.subscribers, BROADCAST_SIZE, BROADCAST_WINDOW)
    workload = broadcast_load.label(plan.subscribers, BROADCAST_SIZE, BROADCAST_WINDOW)
    drawn = broadcast_load.chart(outcome, workload, argvs, plan.charts)
    return section("Broadcast", outcome, argvs, broadcast_load.table(outcome, workload, argvs),
                   [drawn] if drawn else [], [(workload, None)])


def download_table(plan, skips):
    """The file download table (the pattern files are written once and reused)."""
    binary = benchlib.ringstream_path(plan.args.build)
    files = os.path.join(tempfile.gettempdir(), "ringstream-download-files")
    if plan.smoke:
        files = os.path.join(files, "smoke")
    download_load.make_files(binary, files, plan.sizes)
    names = download_load.available(plan.download_names, skips)
    outcome = download_load.collect(binary, names, plan.download_workloads, files, plan.sizes,
                                    plan.rounds, plan.seconds, plan.warmup)
    charts = download_load.charts(outcome, plan.download_workloads, names, plan.charts)
    rows = download_load.table(outcome, plan.download_workloads, names, base="ringstream")
    servers = {n: download_load.server_command(n, binary) for n in names}
    return section("File downloads", outcome, servers, rows, charts, plan.download_workloads)


def idle_table(plan, skips):
    """The idle-memory table of every WebSocket server."""
    names = [n for n in ws_load.available(plan.ws_names, plan.args.build, skips)
             if n not in ws_load.RAW]
    results, not_started = idle_memory.collect(names, plan.args.build, plan.connections,
                                               plan.settle, plan.time_limit)
    drawn = idle_memory.chart(results, plan.charts)
    return {"title": f"Idle connections: server memory per open WebSocket "
                     f"({plan.connections:,} connections)",
            "table": idle_memory.table(results), "charts": [("idle", drawn)] if drawn else [],
            "servers": {n: relative(r["command"]) for n, r in results.items()},
            "loads": {}, "note": f"{plan.connections:,} connections upgraded on /ws/echo by "
                                 "benches/idle_memory.py (on core 1) and left idle for "
                                 f"{plan.settle:g} s; RSS from `/proc/PID/status`.",
            "errors": [], "not_started": not_started, "runs": results}


def section(title, outcome, servers, table, charts, workloads):
    """One table's part of the results: its Markdown, charts, commands and raw runs."""
    loads = {}
    for label, _ in workloads:
        runs = outcome.results.get((label, "ringstream"), [])
        if runs:
            loads[label] = relative(runs[0]["command"])
    return {"title": title, "table": table, "charts": charts,
            "servers": {n: relative(a if isinstance(a, str) else " ".join(a))
                        for n, a in servers.items()},
            "loads": loads, "note": "", "errors": [name for (_, name) in outcome.errors],
            "not_started": outcome.not_started,
            "runs": {f"{label} / {name}": runs for (label, name), runs in outcome.results.items()}}


def relative(command):
    """`command` with the project's paths relative to its root."""
    return command.replace(ROOT + os.sep, "")


def results_markdown(plan, sections, meta):
    """results.md: the header, each table with its charts and commands, and what was
    skipped."""
    m = meta["machine"]
    lines = ["# ringstream beside its peers", "",
             f"`{meta['command']}` on {meta['date']}: {m['cpu']}, {m['cores']} cores, "
             f"{m['memory']}, {m['kernel']}; ringstream {meta['commit']} ({plan.args.build} "
             "build).", ""]
    if meta["peers"]:
        lines += ["Peers: " + "; ".join(meta["peers"]) + ".", ""]
    lines += [f"Each server on core 0 (one worker / one thread), the load generator "
              f"`ringstream bench` on core 1; {plan.rounds} interleaved round(s) of "
              f"{plan.seconds:g} s measured after {plan.warmup:g} s of warm-up, medians. Server "
              "CPU is utime + stime of the server's process from `/proc/PID/stat` over the "
              "measured seconds. Every echo, delivery and download is verified by the load "
              "generator. Ratios are to ringstream in the same run.", ""]
    out_dir = os.path.abspath(plan.out)
    for s in sections:
        lines += [f"## {s['title']}", "", benchlib.markdown(*s["table"])]
        for label, path in s["charts"]:
            lines.append(f"![{label}]({os.path.relpath(path, out_dir)})")
        lines += ["", "Servers:", "", "```sh"]
        lines += [f"{name}: {argv}" for name, argv in s["servers"].items()]
        lines += ["```", ""]
        if s["loads"]:
            lines += ["Load generator (ringstream's runs; the other servers' differ by address "
                      "and PID only):", "", "```sh"]
            lines += [f"# {label}\n{command}" for label, command in s["loads"].items()]
            lines += ["```", ""]
        if s["note"]:
            lines += [s["note"], ""]
    if meta["skipped"]:
        lines += ["## Left out", ""]
        lines += [f"- {name}: {why}" for name, why in meta["skipped"].items()]
        lines.append("")
    return "\n".join(lines)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=10000,
                        help="idle WebSocket connections per server")
    parser.add_argument("--idle-time-limit", type=float, default=30,
                        help="seconds a server is given to accept the idle connections")
    parser.add_argument("--table", action="append", choices=TABLES,
                        help="run only these tables (default: all)")
    parser.add_argument("--only", action="append",
                        help="substring of peer names to run beside ringstream")
    parser.add_argument("--build", choices=["release", "debug"], default="release")
    parser.add_argument("--no-build", action="store_true", help="use the build that is there")
    parser.add_argument("--no-install", action="store_true",
                        help="use the peers that are installed")
    parser.add_argument("--out", help="where results.md and results.json go "
                                      "(default: benches/peers; target/peers-smoke with --smoke)")
    parser.add_argument("--charts", help="where the SVG charts go "
                                         "(default: benches/charts; OUT/charts with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="ringstream and tokio-tungstenite (Bun and nginx where installed), "
                             "one short round of two workloads per table, nothing installed")
    return parser.parse_args()


def main():
    args = parse_args()
    plan = Plan(args)
    print(f"estimated duration: about {plan.estimate() / 60:.1f} min (tables: "
          f"{', '.join(plan.tables)}; {plan.rounds} round(s) of {plan.seconds:g} s + "
          f"{plan.warmup:g} s warm-up per run; builds and installs not counted)",
          file=sys.stderr)
    started = time.monotonic()
    versions, failed = ([], {}) if args.no_install or args.smoke else install(INSTALL_GROUPS)
    if not args.no_build:
        build(args.build)
    if not os.path.exists(benchlib.ringstream_path(args.build)):
        sys.exit(f"{benchlib.ringstream_path(args.build)} is missing")
    skips = Skips(failed)
    if "idle" in plan.tables:
        idle_memory.raise_open_files(plan.connections)
    runners = {"ws": ws_table, "broadcast": broadcast_table, "download": download_table,
               "idle": idle_table}
    sections = [runners[t](plan, skips) for t in TABLES if t in plan.tables]
    for s in sections:
        for name in s["not_started"]:
            skips.lines.setdefault(name, f"it did not start ({s['title']})")
    meta = {"command": shlex.join(["benches/peers/run.py", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "commit": commit(), "peers": versions,
            "skipped": skips.lines,
            "seconds_taken": round(time.monotonic() - started)}
    os.makedirs(plan.out, exist_ok=True)
    with open(os.path.join(plan.out, "results.md"), "w") as out:
        out.write(results_markdown(plan, sections, meta))
    with open(os.path.join(plan.out, "results.json"), "w") as out:
        json.dump({**meta, "tables": sections}, out, indent=1, default=str)
    for s in sections:
        print(f"\n## {s['title']}\n\n{benchlib.markdown(*s['table'])}", end="")
    print(f"\n{os.path.join(plan.out, 'results.md')} written in {meta['seconds_taken']} s",
          file=sys.stderr)
    # A peer may fail; ringstream may not, and in a smoke run no server may give a wrong answer.
    failures = [f"{s['title']}: {name}" for s in sections
                for name in s["errors"] + s["not_started"]
                if name == "ringstream" or (args.smoke and name in s["errors"])]
    if failures:
        sys.exit("failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
