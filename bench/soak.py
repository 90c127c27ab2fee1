"""The `make soak` report (issue 9): reads the JSON lines `benches/soak.rs` printed and
writes, in the output directory, soak.json (one JSON document: the machine, the run's
config, capacity, every interval and the summary, plus the RSS analysis), soak.md (the
summary) and, when matplotlib is importable, soak.png (throughput, RSS and p99 latency
over time, three small panels).

RSS verdict: the RSS of the first minute is not judged (the allocator's caches, the
job-block free lists, the spare threads' stacks and the latency histogram's pages settle
then; in a run shorter than four minutes, its first quarter instead). Over the rest, a
least-squares line through the RSS samples gives the growth rate; the run is "flat" when
that line rises by less than FLAT_BYTES over the judged window. 1 MiB: at the tens of
thousands of requests per second of this mix, a leak of one 64-byte block in every
1,000 requests adds several MiB in ten minutes, while the steady state's own swings
(malloc trimming, a spare thread's stack coming and going) stay within a few hundred KiB.

Usage: python3 bench/soak.py --out DIR [--commit HASH] [--load-before "L1 L5 L15"] SOAK.jsonl
(the date is when SOAK.jsonl was last written: the end of the run)
Exits non-zero if the run's summary says its accounting failed, or RSS is not flat.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import collect  # bench/collect.py, beside this script: machine()

FLAT_BYTES = 1 << 20
WARMUP_S = 60.0
# A shorter run (a smoke run) is reported but not judged: its RSS is still settling.
JUDGED_FROM_S = 120.0


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through (xs, ys)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def rss_analysis(intervals: list[dict], duration: float) -> dict:
    warmup = WARMUP_S if duration >= 4 * WARMUP_S else duration / 4
    judged = [i for i in intervals if i["t"] >= warmup] or intervals
    ts = [i["t"] for i in judged]
    rss = [i["rss_bytes"] for i in judged]
    slope, _ = least_squares(ts, rss) if len(judged) >= 2 else (0.0, 0.0)
    window = (ts[-1] - ts[0]) if len(ts) >= 2 else 0.0
    growth = slope * window
    return {
        "warmup_s": warmup,
        "start_bytes": rss[0],
        "end_bytes": rss[-1],
        "max_bytes": max(i["rss_bytes"] for i in intervals),
        "slope_bytes_per_min": slope * 60,
        "window_s": window,
        "fitted_growth_bytes": growth,
        "threshold_bytes": FLAT_BYTES,
        "flat": growth < FLAT_BYTES if duration >= JUDGED_FROM_S else None,
    }


def mib(b: float) -> str:
    return f"{b / (1 << 20):.2f} MiB"


def draw(intervals: list[dict], rss: dict, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not importable: no chart (make bench-venv installs it)", file=sys.stderr)
        return False
    t = [i["t"] / 60 for i in intervals]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    axes[0].plot(t, [i["throughput"] for i in intervals], color="tab:blue", lw=1)
    axes[0].set_ylabel("requests/s")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [i["rss_bytes"] / (1 << 20) for i in intervals], color="tab:green", lw=1)
    axes[1].axvline(rss["warmup_s"] / 60, color="grey", ls=":", lw=1)
    axes[1].set_ylabel("RSS (MiB)")
    lo = min(i["rss_bytes"] for i in intervals) / (1 << 20)
    hi = max(i["rss_bytes"] for i in intervals) / (1 << 20)
    axes[1].set_ylim(max(0, lo - 2), hi + 2)
    axes[2].plot(t, [i["p99_us"] / 1000 for i in intervals], color="tab:red", lw=1, label="p99")
    axes[2].plot(t, [i["p50_us"] / 1000 for i in intervals], color="tab:orange", lw=1, label="p50")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_yscale("log")
    axes[2].legend(loc="upper right", fontsize=8)
    axes[2].set_xlabel("minutes")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--commit", default="")
    parser.add_argument("--load-before", default="")
    parser.add_argument("jsonl")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = capacity = summary = None
    intervals: list[dict] = []
    for line in Path(args.jsonl).read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "config":
            config = obj
        elif kind == "capacity":
            capacity = obj
        elif kind == "interval":
            intervals.append(obj)
        elif kind == "summary":
            summary = obj
    if not (config and capacity and summary and intervals):
        print(f"soak: {args.jsonl} lacks a config, capacity, interval or summary line", file=sys.stderr)
        return 1

    machine = collect.machine()
    machine.update({
        # When the run ended (the JSON lines' last write), so that a re-render keeps it.
        "date": datetime.fromtimestamp(Path(args.jsonl).stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load average before": args.load_before or config["load_average"],
        "load average after": summary["load_average"],
    })
    if args.commit:
        machine["commit"] = args.commit
    commit, cpus = machine.get("commit", "unknown"), machine["cpus"]
    rss = rss_analysis(intervals, summary["duration_s"])
    (out / "soak.json").write_text(
        json.dumps(
            {"machine": machine, "config": config, "capacity": capacity, "rss": rss, "summary": summary, "intervals": intervals},
            indent=1,
        )
        + "\n"
    )

    minutes = summary["duration_s"] / 60
    title = (
        f"jobrunner soak: {minutes:g} min at {config['load']:g} x capacity, {config['threads']} workers\n"
        f"{machine['date']}, {commit}, load average {machine['load average before']} before"
    )
    drew = draw(intervals, rss, out / "soak.png", title)
    tp = [i["throughput"] for i in intervals]
    p99 = [i["p99_us"] for i in intervals]
    outcomes = summary["outcomes"]
    verdict = {True: "flat", False: "NOT flat", None: f"not judged (a run under {JUDGED_FROM_S:g} s)"}[rss["flat"]]
    lines = [
        "# Soak benchmark",
        "",
        f"Run of {machine['date']} at commit {commit}, {cpus} CPUs ({machine.get('cpu', 'unknown CPU')}), "
        f"{config['threads']} workers (the global pool, shared with the C ABI); load average "
        f"{machine['load average before']} before, {machine['load average after']} after (the soak itself "
        "uses up to its workers' share). Made by `make soak` (`benches/soak.rs`, `bench/soak.py`).",
        "",
        "| | |",
        "|---|---|",
        f"| duration | {summary['duration_s']:g} s (reports every {config['interval_s']:g} s) |",
        f"| capacity measured | {capacity['capacity_rps']:,.0f} requests/s (closed loop, {capacity['closed_loop_in_flight']} in flight, {config['capacity_s']:g} s) |",
        f"| target rate | {capacity['target_rps']:,.0f} requests/s ({config['load']:g} of capacity, open loop) |",
        f"| achieved rate | {summary['achieved_rps']:,.0f} requests/s; per interval {min(tp):,.0f} to {max(tp):,.0f} |",
        f"| requests | {summary['soak_requests']:,} in the soak ({summary['requests']:,} with the capacity phase); {summary['pool_jobs']:,} pool jobs |",
        f"| latency (intended submit → end) | p50 {summary['p50_us']:,.0f} µs, p99 {summary['p99_us']:,.0f} µs, p99.9 {summary['p999_us']:,.0f} µs, max {summary['max_us']:,.0f} µs |",
        f"| p99 per interval | {min(p99):,.0f} to {max(p99):,.0f} µs |",
        f"| RSS | start {mib(rss['start_bytes'])} (at {rss['warmup_s']:g} s), end {mib(rss['end_bytes'])}, max {mib(rss['max_bytes'])} |",
        f"| RSS slope after {rss['warmup_s']:g} s | {rss['slope_bytes_per_min'] / 1024:+,.1f} KiB/min: the fitted line moves {rss['fitted_growth_bytes'] / 1024:+,.0f} KiB over {rss['window_s'] / 60:.1f} min |",
        f"| RSS verdict | **{verdict}** (flat: the fitted line rises less than {mib(rss['threshold_bytes'])} over the judged window) |",
        f"| outcomes | {outcomes['succeeded']:,} succeeded, {outcomes['failed']:,} failed, {outcomes['panicked']:,} panicked, {outcomes['cancelled']:,} cancelled; every one the state its kind must end in |",
        f"| released | {summary['rust_values']:,} Rust values, {summary['c_args']:,} C arguments, {summary['c_results']:,} C results: each dropped or freed exactly once |",
        f"| ticker | {summary['ticks']:,} runs of a {config['tick_ms']} ms ticker |",
        f"| accounting | {'ok' if summary['ok'] else 'FAILED: ' + '; '.join(summary['problems'])} |",
        "",
        "The mix, per 100 requests: "
        + ", ".join(f"{name} {weight}" for name, weight in config["mix"].items())
        + f". A short job spins {config['spin_us']:g} µs. Latency percentiles are bucket upper bounds (at most 6.25% high).",
        "",
    ]
    if drew:
        lines += ["![throughput, RSS and p99 latency over time](soak.png)", ""]
    (out / "soak.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"soak: wrote {out}/soak.md, soak.json" + (", soak.png" if drew else ""), file=sys.stderr)
    if not summary["ok"]:
        print("soak: the run's accounting failed (see above)", file=sys.stderr)
        return 1
    if rss["flat"] is False:
        print(f"soak: RSS is not flat: {rss['fitted_growth_bytes'] / 1024:.0f} KiB over the judged window", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
