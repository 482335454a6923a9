"""Harness benchmark: measurement stability and harness overhead on this machine.

Runs the smoke plan twice, back to back in one process, on the xeon profile:

(a) stability — the share of signatures whose two medians agree within ±5%
    (relative to their mean); goal ≥ 90% on a noisy 2-core machine;
(b) harness overhead — each sweep's wall time over the sum of the timed runs
    it contains (re-measured attempts included); goal ≤ 1.25.  The first sweep
    starts from an empty model cache (it builds every model), the second reuses
    it; both are reported.

Usage:  python benchmarks/harness_stability.py [--plan smoke] [--device xeon] [--out-dir benchmarks/results] [--json]
Writes ``stability.json`` and ``stability.png`` (run 1 against run 2) into the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--device", default="xeon")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chameleon-stability-"))
    os.environ["CHAMELEON_CACHE"] = str(work / "cache")  # cold model cache for the first sweep

    from harness.lut import store as lut_store
    from harness.plans import load_plan
    from harness.profiles import load_profile
    from harness.sweep import run_sweep

    profile = load_profile(args.device)
    plan = load_plan(args.plan)
    sweeps, tables = [], []
    for index in (1, 2):
        result = run_sweep(profile, plan, work / f"run{index}.parquet")
        sweeps.append(result)
        tables.append(lut_store.read_lut(result.out))
        print(f"run {index}: {result.measured} signatures, {result.wall_s:.2f} s wall, {result.timed_s:.2f} s timed", file=sys.stderr)

    first = dict(zip(tables[0].column("signature").to_pylist(), tables[0].column("median_us").to_pylist()))
    second = dict(zip(tables[1].column("signature").to_pylist(), tables[1].column("median_us").to_pylist()))
    keys = sorted(first.keys() & second.keys())
    a = np.array([first[k] for k in keys])
    b = np.array([second[k] for k in keys])
    relative = np.abs(a - b) / ((a + b) / 2)
    within = float(np.mean(relative <= args.tolerance))
    within10 = float(np.mean(relative <= 0.10))
    report = {
        "plan": plan.name,
        "device": profile.name,
        "device_model": sweeps[0].device_model,
        "signatures": len(keys),
        "stability": {
            "tolerance": args.tolerance,
            "share_within_tolerance": within,
            "share_within_10pct": within10,
            "median_relative_difference": float(np.median(relative)),
            "worst": sorted(({"signature": k, "run1_us": float(x), "run2_us": float(y)} for k, x, y, r in
                             zip(keys, a, b, relative) if r > args.tolerance), key=lambda d: d["signature"])[:20],
            "goal": 0.90,
        },
        "overhead": [
            {"run": i + 1, "model_cache": "cold" if i == 0 else "warm", "wall_s": s.wall_s, "timed_s": s.timed_s,
             "ratio": s.wall_s / s.timed_s, "goal": 1.25}
            for i, s in enumerate(sweeps)
        ],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "stability.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(a, b, args.tolerance, args.out_dir / "stability.png", within)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"stability: {within:.1%} of {len(keys)} signatures agree within ±{args.tolerance:.0%} "
              f"({within10:.1%} within ±10%); goal ≥ 90%")
        for entry in report["overhead"]:
            print(f"overhead, {entry['model_cache']} model cache: wall {entry['wall_s']:.2f} s / timed "
                  f"{entry['timed_s']:.2f} s = {entry['ratio']:.3f}; goal ≤ 1.25")
        print(f"wrote {args.out_dir / 'stability.json'} and {args.out_dir / 'stability.png'}")
    return 0


def _plot(a: np.ndarray, b: np.ndarray, tolerance: float, path: Path, within: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lo, hi = min(a.min(), b.min()) * 0.8, max(a.max(), b.max()) * 1.25
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, color="black", lw=0.8)
    ax.fill_between(line, line * (1 - tolerance), line * (1 + tolerance), color="green", alpha=0.15, label=f"±{tolerance:.0%}")
    ax.scatter(a, b, s=14)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("run 1 median (µs)")
    ax.set_ylabel("run 2 median (µs)")
    ax.set_title(f"Same plan measured twice: {within:.0%} within ±{tolerance:.0%}")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
