"""How long would a full sweep of a plan take on this machine?  Measure a random sample and extrapolate.

Sweeps a seeded random sample of the plan's signatures on the device, from an
empty model cache (so model generation is counted, as in a real first sweep),
and extrapolates the per-signature wall time to the whole plan, with a 95%
interval from the spread between the sample's groups.

Usage:  python benchmarks/sweep_estimate.py [--plan chamnet-mobile] [--device xeon] [--sample 240] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="chamnet-mobile")
    parser.add_argument("--device", default="xeon")
    parser.add_argument("--sample", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chameleon-estimate-"))
    os.environ["CHAMELEON_CACHE"] = str(work / "cache")

    from harness.plans import Plan, count_by_kind, load_plan
    from harness.profiles import load_profile
    from harness.sweep import run_sweep

    profile = load_profile(args.device)
    plan = load_plan(args.plan)
    wanted = [s for s in plan.signatures if s.dtype in profile.dtypes]
    sample = random.Random(args.seed).sample(wanted, min(args.sample, len(wanted)))
    sample_plan = Plan(name=f"{plan.name}-sample", description="random sample", source=plan.source, signatures=tuple(sample))

    marks: list[tuple[int, float]] = []

    def on_progress(done: int, total: int, signature: object) -> None:
        marks.append((done, time.monotonic()))
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    result = run_sweep(profile, sample_plan, work / "sample.parquet", on_progress=on_progress)
    print(file=sys.stderr)
    # Per-signature wall time of each group (the first mark is the start; the overhead probe rides in group 1).
    per_op = [(t1 - t0) / (d1 - d0) for (d0, t0), (d1, t1) in zip(marks, marks[1:]) if d1 > d0]
    mean = float(np.mean(per_op))
    stderr = float(np.std(per_op, ddof=1) / np.sqrt(len(per_op))) if len(per_op) > 1 else float("nan")
    total = len(wanted)
    report = {
        "plan": plan.name,
        "device": profile.name,
        "device_model": result.device_model,
        "plan_signatures": len(plan.signatures),
        "signatures_for_device": total,
        "by_kind": count_by_kind(plan),
        "sample": len(sample),
        "sample_wall_s": result.wall_s,
        "sample_timed_s": result.timed_s,
        "seconds_per_signature": mean,
        "estimated_full_sweep_h": mean * total / 3600,
        "estimated_full_sweep_h_95ci": [(mean - 1.96 * stderr) * total / 3600, (mean + 1.96 * stderr) * total / 3600],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"sweep_estimate-{plan.name}-{profile.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        low, high = report["estimated_full_sweep_h_95ci"]
        print(f"{plan.name}: {total} signatures for {profile.name}; sample of {len(sample)} took {result.wall_s:.1f} s "
              f"({mean:.3f} s per signature) → full sweep ≈ {report['estimated_full_sweep_h']:.1f} h (95%: {low:.1f}–{high:.1f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
