"""Running an init as PID 1 of its own PID namespace and observing it from outside.

Every init is started as `unshare --pid --fork --kill-child --mount-proc -- INIT ...`,
so it is PID 1 of a fresh namespace and `--kill-child` ends the whole namespace if
anything goes wrong. Signals only ever go to the host pid of that namespace's PID 1,
found from unshare's children and checked against /proc/PID/status's NSpid line:
this machine's own PID 1 is never signalled.
"""

import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--"]


@dataclass(frozen=True)
class Init:
    """One init under test: its display name and the argv that precedes the child."""

    name: str
    prefix: tuple

    def argv(self, child):
        return [*self.prefix, *child]


def pin_to(cpu):
    """A preexec_fn that pins the new process (and so all it starts) to one CPU."""
    return lambda: os.sched_setaffinity(0, {cpu})


class pinned:
    """Context manager pinning the harness itself to one CPU for a while."""

    def __init__(self, cpu):
        self.cpu = cpu

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


class BenchError(RuntimeError):
    """A workload could not run; the message says why."""


def read_children(pid):
    """Pids of pid's children (zombies included), from its main thread's list."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def status_fields(pid):
    """/proc/PID/status as a dict of strings."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib(value):
    """'1234 kB' -> 1234."""
    return int(value.split()[0])


def smaps_rollup(pid):
    """Pss and private memory (KiB) of pid, from /proc/PID/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[key] = kib(value)
    return {
        "pss_kib": fields.get("Pss", 0),
        "private_kib": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def process_state(pid):
    """Single-letter state of pid ('Z' for a zombie), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rfind(")") + 2]


class Namespace:
    """An init running as PID 1 of its own PID namespace, supervising `child`.

    Use as a context manager: on exit the namespace is killed (SIGKILL to its
    PID 1 ends every process in it) and unshare is reaped.
    """

    def __init__(self, init, child, stderr=subprocess.DEVNULL, env=None, cpu=None):
        self.init = init
        self.proc = subprocess.Popen(
            UNSHARE + init.argv(child),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            preexec_fn=None if cpu is None else pin_to(cpu),
        )
        self.pid = None  # host pid of the namespace's PID 1

    def __enter__(self):
        try:
            self.pid = self._find_pid1()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _find_pid1(self, timeout=5.0):
        unshare_exe = os.readlink(f"/proc/{self.proc.pid}/exe")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in read_children(self.proc.pid):
                try:
                    nspid = status_fields(pid)["NSpid"].split()
                    exe = os.readlink(f"/proc/{pid}/exe")
                except (FileNotFoundError, ProcessLookupError, KeyError):
                    continue
                # Until it execs, the forked child is still unshare.
                if exe != unshare_exe and len(nspid) >= 2 and nspid[-1] == "1":
                    return pid
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.init.name}: unshare exited with {self.proc.returncode} "
                    "before PID 1 started (are we root? does `unshare --pid` work?)"
                )
            time.sleep(0.0002)
        raise BenchError(f"{self.init.name}: PID 1 of the namespace not found in {timeout} s")

    def signal(self, signo):
        if self.pid is None or self.pid <= 1:
            raise BenchError(f"refusing to signal pid {self.pid}")
        os.kill(self.pid, signo)

    def main_child(self):
        """Host pid of the init's first child (the supervised program)."""
        kids = read_children(self.pid)
        return kids[0] if kids else None

    def wait_exit(self, timeout):
        """Waits until PID 1 has exited; returns False on timeout."""
        fd = os.pidfd_open(self.pid)
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return bool(ready)
        finally:
            os.close(fd)

    def close(self):
        if self.proc.poll() is None:
            if self.pid is not None and self.pid > 1:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Fifo:
    """A named pipe the main child answers on; the harness holds the read end."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="swarm-bench-")
        self.path = os.path.join(self.dir.name, "answers")
        os.mkfifo(self.path)
        # Non-blocking open succeeds with no writer yet; the child opens later.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read(self, n, timeout=5.0):
        """Reads exactly n bytes or raises BenchError after timeout."""
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no answer from the child within {timeout} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, n - len(data))
                except BlockingIOError:
                    continue
                if not chunk:
                    # No writer (yet, or any more): poll again shortly.
                    time.sleep(0.0005)
                data += chunk
        return data

    def close(self):
        os.close(self.fd)
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
