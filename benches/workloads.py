"""The PID-1 workloads. Each runs every init in rounds (A B C D, A B C D, ...),
so drift of the machine over the run hits all inits alike, and returns raw
samples per init name; report.py turns them into figures.

The supervised program is benchchild (child.c), which tells the harness over a
FIFO when it is ready, so no workload starts on a guess.
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

from pid1 import (
    UNSHARE,
    BenchError,
    Fifo,
    Namespace,
    kib,
    pin_to,
    pinned,
    process_state,
    read_children,
    smaps_rollup,
    status_fields,
)


def _ready(fifo):
    if fifo.read(1, timeout=10) != b"r":
        raise BenchError("the child's ready byte was not 'r'")


def idle_and_memory(inits, child, rounds, seconds, log):
    """Context switches of PID 1 over `seconds` while its child sleeps, and its
    memory while supervising. All inits of a round idle side by side through the
    same window (idle processes do not disturb each other), which keeps the
    run short without giving any init a different machine."""
    samples = {init.name: [] for init in inits}
    for round_no in range(rounds):
        log(f"idle + memory: round {round_no + 1}/{rounds} ({seconds} s)")
        fifos, namespaces = [], []
        try:
            for init in inits:
                fifo = Fifo()
                fifos.append(fifo)
                ns = Namespace(init, [child, "serve", fifo.path]).__enter__()
                namespaces.append(ns)
                _ready(fifo)
            time.sleep(0.2)  # let start-up work (log flushes, page faults) finish
            before = {ns.init.name: _ctxt_switches(ns.pid) for ns in namespaces}
            time.sleep(seconds)
            for ns in namespaces:
                status = status_fields(ns.pid)
                samples[ns.init.name].append(
                    {
                        "wakeups": _ctxt_switches(ns.pid) - before[ns.init.name],
                        "vm_rss_kib": kib(status["VmRSS"]),
                        "vm_hwm_kib": kib(status["VmHWM"]),
                        **smaps_rollup(ns.pid),
                    }
                )
        finally:
            for ns in namespaces:
                ns.close()
            for fifo in fifos:
                fifo.close()
    return samples


def _ctxt_switches(pid):
    status = status_fields(pid)
    return int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])


def signal_latency(inits, child, rounds, per_round, warmup, log, cpu=None):
    """Nanoseconds from kill(PID 1, SIGHUP) until the child's handler answers.

    In each round every init supervises its own child at the same time, and
    benchchild's `ping` (the timing loop, in C) signals them in turn, A B C D
    A B C D ..., so a burst of load elsewhere hits all inits alike. The first
    `warmup` signals per init and round are dropped (cold caches, pages not
    yet faulted in). With `cpu`, the pinger, every init and every child share
    that one CPU, so each signal is the same chain of wakeups for every init
    instead of a toss-up between same-CPU and cross-CPU wakeups."""
    samples = {init.name: {"ns": [], "lost": 0} for init in inits}
    for round_no in range(rounds):
        log(f"signal latency: round {round_no + 1}/{rounds}")
        with ExitStack() as stack:
            targets = []
            for init in inits:
                fifo = stack.enter_context(Fifo())
                ns = stack.enter_context(Namespace(init, [child, "serve", fifo.path], cpu=cpu))
                _ready(fifo)
                targets.append((init.name, ns.pid, fifo.fd))
            argv = [child, "ping", str(warmup + per_round)]
            for _, pid, fd in targets:
                argv += [str(pid), str(fd)]
            out = subprocess.run(
                argv,
                pass_fds=[fd for _, _, fd in targets],
                capture_output=True,
                text=True,
                check=True,
                preexec_fn=None if cpu is None else pin_to(cpu),
            ).stdout.splitlines()
        # Each line is "INDEX NS" or "INDEX lost", round-robin over targets.
        for line_no, line in enumerate(out):
            index, value = line.split()
            if line_no // len(targets) < warmup:
                continue
            sample = samples[targets[int(index)][0]]
            if value == "lost":
                sample["lost"] += 1
            else:
                sample["ns"].append(int(value))
    return samples


def start_overhead(inits, baseline, runs, log, warmup=5):
    """Wall time of `unshare ... -- INIT -- /bin/true`, and of `unshare ... --
    /bin/true` alone (the baseline), in seconds; runs interleave all of them.
    The first `warmup` rounds are not counted (page cache, dentries)."""
    true = shutil.which("true") or "/bin/true"
    unshare = shutil.which(UNSHARE[0])
    commands = [(i.name, [unshare, *UNSHARE[1:], *i.argv([true])]) for i in [baseline, *inits]]
    env = dict(os.environ)
    samples = {name: [] for name, _ in commands}
    log(f"start overhead: {runs} rounds of {len(commands)} commands")
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
    try:
        for round_no in range(warmup + runs):
            for name, argv in commands:
                start = time.perf_counter()
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
                _, status = os.waitpid(pid, 0)
                elapsed = time.perf_counter() - start
                if os.waitstatus_to_exitcode(status) != 0:
                    raise BenchError(f"{' '.join(argv)} exited with status {status}")
                if round_no >= warmup:
                    samples[name].append(elapsed)
    finally:
        os.close(devnull)
    return samples


def stop_time(inits, child, rounds, log, cpu=None):
    """Seconds from SIGTERM to PID 1 (what `docker stop` sends) until PID 1 has
    exited; the child keeps SIGTERM's default action, so it obeys at once.
    The exit is seen through a pidfd, not through unshare's exit. With `cpu`,
    the harness, the init and its child share that CPU while timing."""
    samples = {init.name: [] for init in inits}
    log(f"stop time: {rounds} rounds")
    for _ in range(rounds):
        for init in inits:
            with Fifo() as fifo, Namespace(init, [child, "serve", fifo.path], cpu=cpu) as ns:
                _ready(fifo)
                pidfd = os.pidfd_open(ns.pid)
                try:
                    with pinned(cpu):
                        start = time.perf_counter()
                        ns.signal(signal.SIGTERM)
                        exited, _, _ = select.select([pidfd], [], [], 15)
                        elapsed = time.perf_counter() - start
                finally:
                    os.close(pidfd)
                samples[init.name].append(elapsed if exited else None)
    return samples


def reaping(inits, child, rounds, orphans, log, timeout=10.0):
    """After a storm of `orphans` orphans that all exit together: seconds until
    PID 1 has no child left but the main child, and zombies still left after
    `timeout` (0 when it finished)."""
    samples = {init.name: [] for init in inits}
    for round_no in range(rounds):
        log(f"reaping {orphans} orphans: round {round_no + 1}/{rounds}")
        for init in inits:
            with Fifo() as fifo, Namespace(init, [child, "storm", fifo.path, str(orphans)]) as ns:
                _ready(fifo)
                main = ns.main_child()
                ns.signal(signal.SIGHUP)  # forwarded to the child: start the storm
                reply = fifo.read(9, timeout=60)
                if reply[:1] != b"g":
                    raise BenchError("the storm child did not report its release time")
                released = int.from_bytes(reply[1:], sys.byteorder)
                samples[init.name].append(_wait_reaped(ns.pid, main, released, timeout))
    return samples


def _wait_reaped(pid1, main, released_ns, timeout):
    deadline = released_ns + int(timeout * 1e9)
    while True:
        others = [p for p in read_children(pid1) if p != main]
        now = time.monotonic_ns()
        if not others:
            return {"seconds": (now - released_ns) / 1e9, "zombies_left": 0}
        if now > deadline:
            zombies = sum(1 for p in others if process_state(p) == "Z")
            return {"seconds": None, "zombies_left": zombies}
        time.sleep(0.0005)
