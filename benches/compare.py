#!/usr/bin/env python3
"""Compare swarm-init with tini, dumb-init and catatonit (and `fetch` with curl).

    python3 benches/compare.py --swarm-init BIN --child BENCHCHILD [--quick]

Normally started by benches/run.sh, which installs the peers and builds both
binaries. Runs as root: every init is PID 1 of its own PID namespace. Prints a
Markdown table and the JSON document, and writes the JSON to --out.

Workloads (see workloads.py and download.py): idle wakeups and memory, signal
forwarding latency, start overhead, stop time, reaping an orphan storm, and the
bot-zip download. Each interleaves the inits in rounds.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import download
import report
import workloads
from pid1 import BenchError, Init

MIB = 1024 * 1024

# How much of each workload a run does. A full run takes a few minutes.
MODES = {
    "full": {
        "idle_rounds": 3,
        "idle_seconds": 5,
        "signal_rounds": 10,
        "signals_per_round": 500,
        "signal_warmup": 20,
        "start_runs": 500,
        "stop_rounds": 100,
        "reap_rounds": 5,
        "orphans": 3000,
        "download": [("64MiB", 64 * MIB, 9), ("5MiB", 5 * MIB, 21)],
    },
    "quick": {
        "idle_rounds": 1,
        "idle_seconds": 5,
        "signal_rounds": 2,
        "signals_per_round": 100,
        "signal_warmup": 10,
        "start_runs": 20,
        "stop_rounds": 4,
        "reap_rounds": 1,
        "orphans": 3000,
        "download": [("64MiB", 64 * MIB, 1), ("5MiB", 5 * MIB, 2)],
    },
}
WORKLOADS = ["idle", "signal", "start", "stop", "reap", "download"]


def peers():
    """The inits compared with swarm-init, as Debian installs them. tini-static
    is what Docker's `--init` ships (as docker-init); catatonit is Podman's."""
    return [
        Init("tini", ("tini", "--")),
        Init("tini-static", ("tini-static", "--")),
        Init("dumb-init", ("dumb-init",)),
        Init("catatonit", ("catatonit", "--")),
    ]


def variants(specs):
    """--variant NAME=BIN -> Init("swarm-init:NAME", (BIN, "--"))."""
    found = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.access(path, os.X_OK):
            sys.exit(f"compare.py: --variant {spec!r}: expected NAME=BIN with BIN executable")
        found.append(Init(f"{report.SUBJECT}:{name}", (os.path.abspath(path), "--")))
    return found


def evict_page_cache(inits):
    """Drops the page cache of every init's executable, so each is read back
    by exec's readahead, as in a freshly started container. A binary that
    was just written (cargo, install, cp) sits in the cache in the large
    folios of the write path, and a page fault maps a whole folio: PID 1's
    RSS would then depend on how the file was last written, not on the init."""
    for init in inits:
        path = shutil.which(init.prefix[0])
        if path is None:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # only clean pages can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs' time spent busy over `seconds` (from /proc/stat):
    how much else the machine is doing before the run starts."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return idle, sum(fields)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(swarm_init, inits):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {"swarm-init": _output([swarm_init, "--version"])}
    for init in inits:
        package = "tini" if init.name.startswith("tini") else init.name
        versions[init.name] = _output(["dpkg-query", "-W", "-f", "${Version}", package]) or "?"
    versions["curl"] = _output(["curl", "--version"]).split("\n")[0]
    return {
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "kernel": platform.release(),
            "cpu": cpu,
            "python": platform.python_version(),
        },
        "versions": versions,
        "git_revision": _output(
            [
                "git",
                "-C",
                os.path.dirname(os.path.abspath(__file__)),
                "rev-parse",
                "--short",
                "HEAD",
            ]
        ),
    }


def run_all(args, config, inits):
    """Runs the selected workloads; returns the raw samples by workload."""
    raw = {}
    child = args.child
    selected = set(args.only or WORKLOADS) - set(args.skip or [])
    if "idle" in selected:
        raw["idle_and_memory"] = workloads.idle_and_memory(
            inits, child, config["idle_rounds"], config["idle_seconds"], log
        )
    # Latency chains (signal, stop) run on one CPU: see workloads.signal_latency.
    cpu = None if args.no_pin else max(os.sched_getaffinity(0))
    if "signal" in selected:
        raw["signal_latency"] = workloads.signal_latency(
            inits,
            child,
            config["signal_rounds"],
            config["signals_per_round"],
            config["signal_warmup"],
            log,
            cpu=cpu,
        )
    if "start" in selected:
        raw["start_overhead"] = workloads.start_overhead(
            inits, Init("none", ()), config["start_runs"], log
        )
    if "stop" in selected:
        raw["stop_time"] = workloads.stop_time(inits, child, config["stop_rounds"], log, cpu=cpu)
    if "reap" in selected:
        raw["reaping"] = workloads.reaping(
            inits, child, config["reap_rounds"], config["orphans"], log
        )
    if "download" in selected:
        raw["download"] = download.fetch_vs_curl(
            args.swarm_init,
            child,
            os.path.dirname(os.path.abspath(args.out)),
            config["download"],
            log,
        )
    return raw


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--swarm-init", required=True, help="the (static, release) swarm-init binary"
    )
    parser.add_argument("--child", required=True, help="benchchild, built from benches/child.c")
    parser.add_argument(
        "--out", default="target/bench/results.json", help="where to write the JSON"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few rounds, about a minute"
    )
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, help="run only these workloads")
    parser.add_argument("--skip", nargs="+", choices=WORKLOADS, help="leave these workloads out")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the signal and stop workloads to one CPU",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BIN",
        help="also measure another swarm-init build (e.g. other profile settings) as column "
        "swarm-init:NAME; variants are never counted as peers",
    )
    args = parser.parse_args()

    if os.geteuid() != 0:
        sys.exit("compare.py: run as root: each init needs its own PID namespace (unshare --pid)")
    args.swarm_init = os.path.abspath(args.swarm_init)
    args.child = os.path.abspath(args.child)
    for path in (args.swarm_init, args.child):
        if not os.access(path, os.X_OK):
            sys.exit(
                f"compare.py: {path} is not an executable file; "
                "build it first (benches/run.sh does)"
            )
    missing = [i.prefix[0] for i in peers() if shutil.which(i.prefix[0]) is None]
    if missing:
        sys.exit(
            f"compare.py: {', '.join(missing)} not found; "
            "apt-get install -y tini dumb-init catatonit"
        )

    mode = "quick" if args.quick else "full"
    config = MODES[mode]
    inits = [Init(report.SUBJECT, (args.swarm_init, "--")), *variants(args.variant), *peers()]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "pinned_cpu": None if args.no_pin else max(os.sched_getaffinity(0)),
        **machine_info(args.swarm_init, peers()),
    }
    evict_page_cache(inits)
    started = time.monotonic()
    meta["cpu_busy_before"] = cpu_busy()
    try:
        raw = run_all(args, config, inits)
    except BenchError as err:
        sys.exit(f"compare.py: {err}")
    meta["duration_s"] = round(time.monotonic() - started, 1)

    figures = report.summarize(raw)
    checks = report.evaluate(figures)
    document = {**meta, "config": config, "figures": figures, "targets": checks, "raw": raw}
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    summary = {k: v for k, v in document.items() if k != "raw"}
    print(report.markdown(figures, checks, [i.name for i in inits], meta))
    print("```json")
    print(json.dumps(summary, indent=1))
    print("```")
    log(f"done in {meta['duration_s']} s; full JSON with raw samples: {args.out}")
    missed = [c["figure"] for c in checks if c["passed"] is False]
    if missed:
        log(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
