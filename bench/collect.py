"""The `make bench` driver (issue 8), a first cut: runs each system's bench command in
alternation (A B A B ...), collects the JSON lines they print, and writes
bench/results.md (one table), bench/results.json (every raw sample) and, when matplotlib
is importable, bench/results.png (grouped bars of the ratio to the best peer).

A bench command follows bench/PROTOCOL.md: it prints one JSON object per line per
measured run, e.g.
    {"workload": "spawn", "system": "rayon", "ours": false, "unit": "ns/job",
     "value": 154.1, "lower_is_better": true}
Lines that are not JSON objects with these keys are passed through to the terminal.

Usage: python3 bench/collect.py [--quick] [--runs N] CMD [CMD ...]
Each CMD is one shell command that runs a bench program; the driver runs `runs` rounds,
each running every CMD once in turn with BENCH_RUNS=1 (each program warms up and
alternates its own systems inside), so programs and systems alternate A B A B ...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

KEYS = {"workload", "system", "unit", "value", "ours", "lower_is_better"}


def run_once(cmd: str, quick: bool) -> list[dict]:
    env = dict(os.environ, BENCH_QUICK="1" if quick else "0", BENCH_RUNS="1")
    proc = subprocess.run(cmd, shell=True, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: `{cmd}` exited {proc.returncode}")
    samples = []
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            print(line)
            continue
        if isinstance(obj, dict) and KEYS <= obj.keys():
            samples.append(obj)
        else:
            print(line)
    if not samples:
        sys.exit(f"bench: `{cmd}` printed no samples")
    return samples


def summarise(samples: list[dict]) -> list[dict]:
    """One row per (workload, system): median, min, max, runs, and the ratio of the
    median to the best peer's median (peers: rows with `ours` false) in the workload."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in samples:
        groups[(s["workload"], s["system"])].append(s)
    rows = []
    for (workload, system), runs in groups.items():
        values = [r["value"] for r in runs]
        rows.append({
            "workload": workload,
            "system": system,
            "ours": bool(runs[0]["ours"]),
            "unit": runs[0]["unit"],
            "lower_is_better": bool(runs[0]["lower_is_better"]),
            "detail": runs[-1].get("detail", ""),
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": len(values),
        })
    by_workload: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_workload[row["workload"]].append(row)
    for group in by_workload.values():
        lower = group[0]["lower_is_better"]
        peers = [r["median"] for r in group if not r["ours"]]
        best = (min(peers) if lower else max(peers)) if peers else None
        for row in group:
            # "Times the best peer": above 1 is worse than the best peer, below 1 better,
            # whichever way the unit points.
            if best is None or best == 0 or row["median"] == 0:
                row["ratio"] = None
            else:
                row["ratio"] = row["median"] / best if lower else best / row["median"]
    order = {w: i for i, w in enumerate(dict.fromkeys(s["workload"] for s in samples))}
    return sorted(rows, key=lambda r: (order[r["workload"]], not r["ours"],
                                       r["ratio"] if r["ratio"] is not None else 0))


def fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def markdown(rows: list[dict]) -> str:
    out = ["| workload | system | median | min–max | unit | vs best peer | note |",
           "|---|---|---:|---:|---|---:|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "–"
        name = f"**{r['system']}**" if r["ours"] else r["system"]
        out.append(f"| {r['workload']} | {name} | {fmt(r['median'])} | "
                   f"{fmt(r['min'])}–{fmt(r['max'])} | {r['unit']}"
                   f"{'' if r['lower_is_better'] else ' (higher is better)'} | {ratio} | "
                   f"{r['detail']} |")
    return "\n".join(out) + "\n"


def chart(rows: list[dict], path: Path, title: str) -> bool:
    """Small multiples: one panel per workload, one horizontal bar per system, its ratio
    to the best peer (log scale: 1 is the best peer, left of it is better). jobrunner's
    bars are the dark ones."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed: no chart (make bench installs it in "
              "target/py-venv)", file=sys.stderr)
        return False
    workloads = list(dict.fromkeys(r["workload"] for r in rows if r["ratio"] is not None))
    if not workloads:
        return False
    cols = 3
    nrows = (len(workloads) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(15, 1.0 + 1.9 * nrows), squeeze=False)
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    lo, hi = min(ratios + [1.0]) / 1.4, max(ratios + [1.0]) * 1.4
    for ax, workload in zip(axes.flat, workloads):
        group = [r for r in rows if r["workload"] == workload and r["ratio"] is not None]
        names = [r["system"] for r in group]
        values = [r["ratio"] for r in group]
        colours = ["#1f4e79" if r["ours"] else "#a6bddb" for r in group]
        ax.barh(range(len(group)), values, color=colours)
        ax.set_yticks(range(len(group)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 4, 10, 25, 50, 100) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        ax.minorticks_off()
        ax.axvline(1.0, color="black", linewidth=0.6)
        unit = group[0]["unit"]
        ax.set_title(f"{workload} ({unit})", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for i, r in enumerate(group):
            ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center", fontsize=6)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine() -> dict:
    """What the figures were measured on."""
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True,
                                        capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="bench")
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()
    info = machine()
    info["load average before"] = load_average()
    started = time.monotonic()
    samples: list[dict] = []
    for round_ in range(args.runs):
        for cmd in args.commands:
            print(f"\nbench: round {round_ + 1}/{args.runs}: {cmd}", file=sys.stderr,
                  flush=True)
            for s in run_once(cmd, args.quick):
                s["round"] = round_
                samples.append(s)
    info["load average after"] = load_average()
    info["minutes"] = round((time.monotonic() - started) / 60, 1)
    info["rounds"] = args.runs
    info["quick"] = args.quick
    rows = summarise(samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"Measured {info['date']} on {info.get('cpu', 'unknown CPU')} "
              f"({info['cpus']} CPUs), commit {info.get('commit', '?')}, "
              f"{args.runs} rounds{' (QUICK sizes)' if args.quick else ''} in "
              f"{info['minutes']} min; load average {info['load average before']} before, "
              f"{info['load average after']} after. Median over the rounds; ratio = "
              f"median / the best peer's median (above 1: slower than the best peer).\n\n")
    table = markdown(rows)
    (out / "results.md").write_text(header + table)
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "samples": samples, "rows": rows}, indent=1) + "\n")
    chart(rows, out / "results.png",
          f"jobrunner vs peers, ratio to the best peer (log scale; dark: jobrunner), "
          f"{info['date']}, {info['cpus']} CPUs")
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
