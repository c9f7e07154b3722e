"""The download workload: `swarm-init fetch` against `curl -sSL -o` on the same zip.

Test zips are realistic zipapps (a `__main__.py` at the root, Python-like source
that deflates about 4:1, and incompressible binary entries), deterministic for a
given size and cached under the output directory. A local server (fileserver.py)
answers `/NAME/bot_code` with a redirect to the versioned URL, like Swarming.
Each client runs under `benchchild rusage`, a small C parent that times it and
reads its peak RSS from wait4 (ru_maxrss); see child.c for why not Python.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile

from pid1 import BenchError

MIB = 1024 * 1024
MAIN_PY = b'''"""Benchmark stand-in for the Swarming bot."""
import sys

if __name__ == "__main__":
    print("bot", sys.argv[1:])
'''
WORDS = (
    "self value result request task bot state config server path name data "
    "logging os sys json time error retry timeout payload dimensions swarming "
    "isolate cache dirs file handle process signal lock manifest"
).split()


def _python_like_source(rng, size):
    """About `size` bytes of varied, Python-looking text (deflates ~4:1)."""
    lines = []
    total = 0
    while total < size:
        a, b, c = rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS)
        n = rng.randrange(1 << 30)
        line = rng.choice(
            (
                f"    {a}_{b} = {c}.get_{a}({b}, {n:#x})\n",
                f"def {a}_{n % 9973}({b}, {c}=None):\n",
                f"        if {a} is not None and {b}_{c} > {n % 1000}:\n",
                f"    # {a} {b} {c}: {n}\n",
                f"        return {{'{a}': {b}, '{c}': {n}}}\n",
            )
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def make_zipapp(path, size, seed=5):
    """Writes a zipapp of about `size` bytes to path (cached: kept if present)."""
    if os.path.exists(path):
        return
    rng = random.Random(seed)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", MAIN_PY)
        # A quarter of the archive is source code, the rest binary blobs
        # (shared objects, images, nested archives) that do not compress.
        index = 0
        while _written(zf) < size // 4:
            zf.writestr(f"bot_code/module_{index:04d}.py", _python_like_source(rng, 256 * 1024))
            index += 1
        index = 0
        while _written(zf) < size - 64 * 1024:
            chunk = min(4 * MIB, size - _written(zf) - 32 * 1024)
            zf.writestr(
                f"bot_code/third_party/blob_{index:04d}.bin", rng.randbytes(max(chunk, 1024))
            )
            index += 1
    os.replace(tmp, path)


def _written(zf):
    return zf.fp.tell()


class FileServer:
    """fileserver.py in its own process, so it never shares the harness's GIL."""

    def __init__(self, root):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fileserver.py")
        self.proc = subprocess.Popen(
            [sys.executable, script, root], stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise BenchError("the local file server did not start (see its error above)")
        self.port = int(line)

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}/bot_code"

    def close(self):
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_measured(child, argv, env, stdout_path, stderr_path):
    """Runs argv under `benchchild rusage`; returns (wall s, peak RSS KiB, exit code)."""
    result = stdout_path + ".rusage"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    pid = os.posix_spawn(child, [child, "rusage", result, *argv], env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"benchchild rusage failed: {_read(stderr_path)[-2000:]}")
    wall_ns, max_rss_kib, code = (int(x) for x in _read(result).split())
    return wall_ns / 1e9, max_rss_kib, code


def _read(path):
    with open(path, errors="replace") as f:
        return f.read().strip()


def fetch_vs_curl(swarm_init, child, out_dir, sizes_and_rounds, log):
    """For each (label, size, rounds): interleaved fetch/curl runs on one zip.

    Returns {label: {"zip_bytes": n, "fetch_stdout": text,
    "runs": {"swarm-init fetch": [...], "curl": [...]}}}, each run a dict with
    wall_s and max_rss_kib.
    """
    zip_dir = os.path.join(out_dir, "zips")
    os.makedirs(zip_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dl-", dir=out_dir)  # on disk, like /b/
    curl = shutil.which("curl")
    if curl is None:
        raise BenchError("curl not found; install it (apt-get install -y curl)")
    results = {}
    try:
        with FileServer(zip_dir) as server:
            for label, size, rounds in sizes_and_rounds:
                name = f"bot-{size // MIB}MiB.zip"
                log(f"download {label}: preparing {name}")
                make_zipapp(os.path.join(zip_dir, name), size)
                url = server.url(name)
                clients = {
                    "swarm-init fetch": _fetch_client(swarm_init, url, work),
                    "curl": (
                        [curl, "-sSL", "-o", os.path.join(work, "swarming_bot.zip"), url],
                        None,
                    ),
                }
                # Warm-up: page cache, server threads, first-connection costs.
                run_measured(
                    child,
                    [curl, "-sSL", "-o", os.devnull, url],
                    dict(os.environ),
                    os.devnull,
                    os.devnull,
                )
                runs = {client: [] for client in clients}
                out, err = os.path.join(out_dir, "dl.out"), os.path.join(out_dir, "dl.err")
                fetch_said = ""
                for _ in range(rounds):
                    for client, (argv, env) in clients.items():
                        _empty(work)
                        wall, rss, code = run_measured(
                            child, argv, env or dict(os.environ), out, err
                        )
                        if code != 0:
                            raise BenchError(
                                f"{client} exited with {code} on {url}: {_read(err)[-2000:]}"
                            )
                        runs[client].append({"wall_s": wall, "max_rss_kib": rss})
                        if client == "swarm-init fetch":
                            fetch_said = _read(out)
                results[label] = {
                    "zip_bytes": os.path.getsize(os.path.join(zip_dir, name)),
                    "fetch_stdout": fetch_said,
                    "runs": runs,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _fetch_client(swarm_init, url, work):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SWARM_URL": url,
        "SWARM_DIR": work,
        # fetch chowns SWARM_DIR to the bot user; chrome-bot may not exist here.
        "SWARM_BOT_USER": "nobody",
    }
    return [swarm_init, "fetch"], env


def _empty(directory):
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
