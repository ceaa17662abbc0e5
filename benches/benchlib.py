"""What the load-benchmark scripts share: the build's paths, starting a pinned server and
learning its address, one run of the load generator, interleaved rounds, stopping servers by
PID, medians, Markdown tables and SVG bar charts."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "benches", "peers")
RELEASE = os.path.join(ROOT, "target", "release")


# The temporary directories an unprivileged nginx writes beside its run directory (`{run}`),
# for the http blocks of the scripts' nginx configurations.
NGINX_TEMP_PATHS = """    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
"""


def ringstream_path(build="release"):
    """The `ringstream` binary of a cargo build (release or debug)."""
    return os.path.join(ROOT, "target", build, "ringstream")


def with_build(argv, build):
    """`argv` with the release build's paths pointing at `build` (release or debug)."""
    target = os.path.join(ROOT, "target", build)
    return [a.replace(RELEASE, target) if a.startswith(RELEASE) else a for a in argv]


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


def start(argv):
    """Starts a server on core 0; returns it and its address, or (None, None). A server whose
    command holds `{port}` is given a free port and waited for; any other prints its address."""
    if "{port}" in argv:
        port = free_port()
        return start_on_port([a.replace("{port}", str(port)) for a in argv], port)
    return start_printing(argv)


def add_round_options(parser, seconds):
    """The options of the interleaved load scripts: rounds, measured seconds (`seconds` by
    default), warm-up, the build, and which servers (`--only`) and workloads (`--workload`)."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=seconds, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--only", action="append", help="substring of server names to run")
    parser.add_argument("--workload", action="append",
                        help="substring of workload labels to run (e.g. \"500 conns\")")
    parser.add_argument("--build", choices=["release", "debug"], default="release")


def matching(items, wanted, key=lambda item: item, keep=()):
    """The items whose `key` contains one of the substrings `wanted` (every item when there
    are none), in order; names in `keep` always."""
    return [i for i in items
            if key(i) in keep or not wanted or any(w in key(i) for w in wanted)]


def skip(name, why):
    """Says on stderr that server `name` is left out, and why."""
    print(f"skipping {name}: {why}", file=sys.stderr)


def stop(process):
    """Kills a server this script started, by its PID, and reaps it."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def bench(binary, mode_args, seconds, warmup, pid, timeout=30):
    """One run of `ringstream bench MODE_ARGS` on core 1 against the server of `pid`: its JSON
    line and no error, or None and the error. The command is in the result as `command`."""
    argv = ["taskset", "-c", "1", binary, "bench", *mode_args, "--seconds", str(seconds),
            "--warmup", str(warmup), "--server-pid", str(pid), "--json"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=seconds + warmup + timeout)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {seconds + warmup + timeout:.0f} s"
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return None, "; ".join(lines[-2:]) or f"exit status {out.returncode}"
    result = json.loads(out.stdout)
    result["command"] = " ".join(argv)
    return result, None


class Outcome(NamedTuple):
    """What interleaved rounds measured: {(label, name): [result, ...]}, {(label, name):
    error} (a failed workload is not run again), and the servers that did not start."""
    results: dict
    errors: dict
    not_started: list


def interleave(rounds, servers, workloads, run_one, describe):
    """Runs every workload against every server, round after round: each round starts each
    server in turn (on core 0), runs all the workloads against it and stops it.

    `servers` maps names to a function that starts one and returns (process, address) or
    (None, None); `workloads` is a list of (label, spec); `run_one(name, addr, pid, spec)`
    returns (result, error), with (None, None) where the workload does not apply to that
    server; `describe(result)` is the progress line's figures. A server that does not start is
    dropped with one line. Returns an Outcome.
    """
    servers = dict(servers)
    outcome = Outcome({}, {}, [])
    for round_ in range(rounds):
        for name, start_one in list(servers.items()):
            process, addr = start_one()
            if process is None:
                skip(name, "it did not start")
                outcome.not_started.append(name)
                del servers[name]
                continue
            try:
                for label, spec in workloads:
                    if (label, name) in outcome.errors:
                        continue
                    result, error = run_one(name, addr, process.pid, spec)
                    if error:
                        outcome.errors[(label, name)] = error
                        print(f"round {round_ + 1}: {label}: {name}: FAILED: {error}",
                              file=sys.stderr)
                    elif result is not None:
                        outcome.results.setdefault((label, name), []).append(result)
                        print(f"round {round_ + 1}: {label}: {name}: {describe(result)}",
                              file=sys.stderr)
            finally:
                stop(process)
    return outcome


def rows_of(outcome, label, names, width, row):
    """The table rows of workload `label`: `row(name, medians)` for each server of `names`
    that has results, and a "failed" row (padded to `width` cells) for each that failed."""
    rows = []
    for name in names:
        if (label, name) in outcome.errors:
            rows.append([label, name, f"failed: {outcome.errors[(label, name)]}"]
                        + ["–"] * (width - 3))
        elif (label, name) in outcome.results:
            rows.append([label, name, *row(name, medians(outcome.results[(label, name)]))])
    return rows


def base_medians(outcome, label, name="ringstream"):
    """The medians of server `name` on workload `label` (empty if it has none)."""
    return medians(outcome.results.get((label, name), []))


def chart_of(outcome, label, names, key, directory, file, title, fmt=".2f"):
    """Writes the chart of `key`'s median for each server of `names` on workload `label`;
    returns (label, path), or None when there is nothing to draw."""
    rows = [(name, medians(outcome.results[(label, name)]).get(key))
            for name in names if (label, name) in outcome.results]
    path = write_chart(directory, file, title, rows, fmt)
    return (label, path) if path else None


def median(runs, key):
    """The median of `key` over the runs that have it, or None."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def medians(runs):
    """The median of every numeric key of the runs."""
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
    return {k: median(runs, k) for k in keys}


def ratio(value, base):
    """`value / base`, or None when either is missing."""
    return value / base if value is not None and base else None


def cell(value, fmt, suffix=""):
    """A table cell: `value` formatted, or an en dash when there is none."""
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def markdown(headers, rows):
    """A Markdown table; columns after the first two are right-aligned."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def slug(text):
    """A file name made of `text`'s letters and digits."""
    kept = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in kept.split("-") if part)


def escape(text):
    """`text` safe inside SVG or HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_chart(title, rows, fmt=".2f"):
    """A horizontal bar chart of (name, value) rows, ringstream's bar in colour."""
    width, bar_left, row_h = 640, 200, 26
    height = 40 + row_h * len(rows)
    top = max(value for _, value in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="13">',
             f'<text x="10" y="20" font-weight="bold">{escape(title)}</text>']
    for i, (name, value) in enumerate(rows):
        y = 32 + i * row_h
        w = max(1, int((width - bar_left - 90) * value / top))
        color = "#d9480f" if name == "ringstream" else "#868e96"
        parts.append(f'<text x="10" y="{y + 15}">{escape(name)}</text>')
        parts.append(f'<rect x="{bar_left}" y="{y}" width="{w}" height="{row_h - 6}" '
                     f'fill="{color}"/>')
        parts.append(f'<text x="{bar_left + w + 6}" y="{y + 15}">{value:{fmt}}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_chart(directory, name, title, rows, fmt=".2f"):
    """Writes `svg_chart(title, rows)` to DIRECTORY/NAME.svg (rows without a value are left
    out); returns its path, or None when no row has a value."""
    rows = [(n, v) for n, v in rows if v is not None]
    if not rows:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.svg")
    with open(path, "w") as out:
        out.write(svg_chart(title, rows, fmt))
    return path
