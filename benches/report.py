"""From raw samples to figures, targets (issue 5) and the Markdown tables.

Every figure keeps its unit in its name (_kib, _us, _ms). Ratio targets
compare swarm-init with the best peer (the lowest value among the other inits)
on the same figure from the same run.
"""

SUBJECT = "swarm-init"


def percentile(values, q):
    """q-th percentile (0..100) with linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values):
    return percentile(values, 50)


def summarize(raw):
    """{figure: {init: value}} from the raw samples of compare.run_all."""
    figures = {}

    def put(figure, init, value):
        figures.setdefault(figure, {})[init] = value

    for init, rounds in raw.get("idle_and_memory", {}).items():
        put("idle_wakeups_5s_max", init, max(r["wakeups"] for r in rounds))
        put("idle_wakeups_5s_median", init, median([r["wakeups"] for r in rounds]))
        for key in ("vm_rss_kib", "vm_hwm_kib", "pss_kib", "private_kib"):
            put(key, init, median([r[key] for r in rounds]))
    for init, sig in raw.get("signal_latency", {}).items():
        put("signal_p50_us", init, percentile(sig["ns"], 50) / 1e3)
        put("signal_p99_us", init, percentile(sig["ns"], 99) / 1e3)
        # On a shared VM about 1% of signals meet interference from outside
        # (interrupts, the host): p99 sits at that edge, p98 below it.
        put("signal_p98_us", init, percentile(sig["ns"], 98) / 1e3)
        put("signals_lost", init, sig["lost"])
    start = raw.get("start_overhead", {})
    if start:
        base = median(start["none"])
        put("start_baseline_ms", "none", base * 1e3)
        for init, times in start.items():
            if init != "none":
                put("start_total_ms", init, median(times) * 1e3)
                put("start_overhead_ms", init, (median(times) - base) * 1e3)
                # Lower quartiles: less exposed to load from elsewhere.
                low = percentile(times, 25) - percentile(start["none"], 25)
                put("start_overhead_p25_ms", init, low * 1e3)
    for init, times in raw.get("stop_time", {}).items():
        done = [t for t in times if t is not None]
        complete = len(done) == len(times)
        put("stop_ms", init, median(done) * 1e3 if complete else None)
        put("stop_p25_ms", init, percentile(done, 25) * 1e3 if complete else None)
    for init, storms in raw.get("reaping", {}).items():
        times = [s["seconds"] for s in storms]
        put("reap_ms", init, median(times) * 1e3 if None not in times else None)
        put("zombies_left", init, max(s["zombies_left"] for s in storms))
    for label, dl in raw.get("download", {}).items():
        for client, runs in dl["runs"].items():
            put(f"download_{label}_wall_ms", client, median([r["wall_s"] for r in runs]) * 1e3)
            put(
                f"download_{label}_peak_rss_mib", client, max(r["max_rss_kib"] for r in runs) / 1024
            )
    return figures


def _is_peer(init):
    # "swarm-init:NAME" columns are other builds of swarm-init, not peers.
    return not init.startswith(SUBJECT) and init != "none"


def _best_peer(values):
    peers = [v for init, v in values.items() if _is_peer(init) and v is not None]
    return min(peers) if peers else None


def _ratio_check(values, factor):
    """swarm-init's value against factor x the best peer's."""
    mine, best = values.get(SUBJECT), _best_peer(values)
    if mine is None or best is None:
        return None, "n/a"
    if best <= 0:
        return mine <= best, f"best peer {best:.3g}"
    ratio = mine / best
    return ratio <= factor, f"{ratio:.2f}x best peer"


def evaluate(figures):
    """The targets of issue 5 as a list of dicts (figure, target, passed, detail)."""
    checks = []

    def check(figure, target, passed, detail=""):
        checks.append({"figure": figure, "target": target, "passed": passed, "detail": detail})

    f = figures
    if "idle_wakeups_5s_max" in f:
        wakeups = f["idle_wakeups_5s_max"].get(SUBJECT)
        check("idle_wakeups_5s_max", "0", wakeups == 0, f"{wakeups} in the worst round")
    if "vm_rss_kib" in f:
        rss = f["vm_rss_kib"].get(SUBJECT)
        cat = f["vm_rss_kib"].get("catatonit")
        aim = (
            "" if cat is None else (" (below catatonit)" if rss < cat else " (not below catatonit)")
        )
        check("vm_rss_kib", "<= 1024 KiB, aim < catatonit", rss <= 1024, f"{rss} KiB{aim}")
    for figure in ("signal_p50_us", "signal_p99_us", "start_overhead_ms", "stop_ms"):
        if figure in f:
            passed, detail = _ratio_check(f[figure], 1.1)
            check(figure, "<= 1.1x best peer", passed, detail)
    if "zombies_left" in f:
        left = f["zombies_left"].get(SUBJECT)
        check("zombies_left", "0", left == 0, f"{left}")
    key = "download_64MiB_wall_ms"
    if key in f:
        mine, curl = f[key].get("swarm-init fetch"), f[key].get("curl")
        check(key, "<= 1.25x curl", mine <= 1.25 * curl, f"{mine / curl:.2f}x curl")
    key = "download_64MiB_peak_rss_mib"
    if key in f:
        mine = f[key].get("swarm-init fetch")
        check(key, "<= 32 MiB", mine <= 32, f"{mine:.1f} MiB")
    return checks


# Rows of the PID-1 table: (figure, label, format).
PID1_ROWS = [
    ("idle_wakeups_5s_max", "idle wakeups in 5 s (worst round)", "{:.0f}"),
    ("vm_rss_kib", "PID 1 RSS, VmRSS (KiB) [compared]", "{:.0f}"),
    ("pss_kib", "PID 1 Pss (KiB)", "{:.0f}"),
    ("private_kib", "PID 1 Private_Clean+Dirty (KiB)", "{:.0f}"),
    ("signal_p50_us", "signal forward p50 (µs)", "{:.1f}"),
    ("signal_p99_us", "signal forward p99 (µs)", "{:.1f}"),
    ("start_total_ms", "start: `INIT -- /bin/true` (ms)", "{:.2f}"),
    ("start_overhead_ms", "start overhead vs `/bin/true` (ms)", "{:.2f}"),
    ("stop_ms", "stop: SIGTERM → PID 1 exited (ms)", "{:.2f}"),
    ("reap_ms", "reap 3000 orphans (ms)", "{:.1f}"),
    ("zombies_left", "zombies left", "{:.0f}"),
]
DOWNLOAD_ROWS = [
    ("download_64MiB_wall_ms", "64 MiB zip: wall (ms)", "{:.0f}"),
    ("download_64MiB_peak_rss_mib", "64 MiB zip: peak RSS (MiB)", "{:.1f}"),
    ("download_5MiB_wall_ms", "5 MiB zip: wall (ms)", "{:.1f}"),
    ("download_5MiB_peak_rss_mib", "5 MiB zip: peak RSS (MiB)", "{:.1f}"),
]


def _cell(value, fmt):
    return "—" if value is None else fmt.format(value)


def _table(rows, columns, figures, checks):
    by_figure = {c["figure"]: c for c in checks}
    header = ["figure", *columns, "target", "result"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure, label, fmt in rows:
        if figure not in figures:
            continue
        values = figures[figure]
        check = by_figure.get(figure)
        if check is None:
            target, result = "", ""
        else:
            verdict = (
                "n/a" if check["passed"] is None else ("pass" if check["passed"] else "**MISS**")
            )
            target, result = check["target"], f"{verdict} ({check['detail']})"
        cells = [_cell(values.get(col), fmt) for col in columns]
        lines.append("| " + " | ".join([label, *cells, target, result]) + " |")
    return "\n".join(lines)


def markdown(figures, checks, inits, meta):
    """The full Markdown report: a header line, the PID-1 table, the download table."""
    out = [
        f"Measured {meta['date']} on {meta['machine']['cpu']}, {meta['machine']['nproc']} CPUs, "
        f"Linux {meta['machine']['kernel']} ({meta['mode']} run, {meta['duration_s']:.0f} s, "
        f"CPUs {meta['cpu_busy_before']:.0%} busy with other work just before; "
        "medians unless noted).",
        "",
    ]
    if meta["cpu_busy_before"] > 0.2:
        out += [
            f"**Note:** the machine was busy ({meta['cpu_busy_before']:.0%} of its CPU time "
            "went to other work just before the run): load inflates every init's times and "
            "pulls ratios towards 1; rerun on a quiet machine before trusting close calls.",
            "",
        ]
    if any(f in figures for f, _, _ in PID1_ROWS):
        out += [_table(PID1_ROWS, inits, figures, checks), ""]
        if "start_baseline_ms" in figures:
            baseline = figures["start_baseline_ms"]["none"]
            out += [f"Baseline `unshare … -- /bin/true`: {baseline:.2f} ms.", ""]
    if any(f in figures for f, _, _ in DOWNLOAD_ROWS):
        out += [_table(DOWNLOAD_ROWS, ["swarm-init fetch", "curl"], figures, checks), ""]
    return "\n".join(out)
