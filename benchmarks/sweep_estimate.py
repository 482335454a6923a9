"""How long would a full sweep of a plan take on this machine?  Measure a random sample and extrapolate.

Sweeps a seeded random sample of the plan's signatures on the device, from an
empty model cache (so model generation is counted, as in a real first sweep),
and extrapolates the per-signature wall time to the whole plan, with a 95%
interval from the spread between the sample's groups.

Both measurement methods (``adaptive``, the profile's; ``previous``, the fixed
floor it replaced: ``benchmarks/measurement_methods.py``) sweep the same sample,
in the order A B B A, after the models are built once (their building time is
the same for both and added to each); reported per method: seconds per
signature, the full sweep extrapolated, and how its two sweeps agree.

Usage:  python benchmarks/sweep_estimate.py [--plan chamnet-mobile] [--device xeon] [--sample 240] [--seed 0]
            [--methods adaptive,previous] [--json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measurement_methods import METHODS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="chamnet-mobile")
    parser.add_argument("--device", default="xeon")
    parser.add_argument("--sample", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--methods", default="adaptive,previous", help="comma-separated: adaptive, previous")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chameleon-estimate-"))
    os.environ["CHAMELEON_CACHE"] = str(work / "cache")

    from harness.plans import Plan, count_by_kind, load_plan
    from harness.profiles import load_profile
    from harness.host_speed import host_report
    from harness.lut import store as lut_store
    from harness.sweep import OVERHEAD_SIGNATURE, run_sweep

    profile = load_profile(args.device)
    plan = load_plan(args.plan)
    wanted = [s for s in plan.signatures if s.dtype in profile.dtypes]
    sample = random.Random(args.seed).sample(wanted, min(args.sample, len(wanted)))
    sample_plan = Plan(name=f"{plan.name}-sample", description="random sample", source=plan.source, signatures=tuple(sample))

    # Building the models is the same work for both methods: timed once, from the empty cache.
    from harness.models import onnx_models
    from harness.host_speed import REFERENCE_SIGNATURE

    t0 = time.monotonic()
    for signature in [OVERHEAD_SIGNATURE, *sample, REFERENCE_SIGNATURE]:
        onnx_models.model_file(signature, seed=0)
    build_s = (time.monotonic() - t0) / (len(sample) + 2)

    # Each method sweeps the whole sample into its own LUT, in the order A B B A, so drift meets both alike.
    order = [m for m in METHODS if m in args.methods.split(",")]
    order = order + order[::-1]
    runs: dict[str, list[dict]] = {m: [] for m in order}
    for index, method in enumerate(order):
        marks: list[tuple[int, float]] = []

        def on_progress(done: int, total: int, signature: object) -> None:
            marks.append((done, time.monotonic()))
            print(f"\r{method}: {done}/{total}", end="", file=sys.stderr, flush=True)

        out = work / f"{method}-{index}.parquet"
        result = run_sweep(profile, sample_plan, out, settings=METHODS[method](profile.measurement), on_progress=on_progress)
        print(file=sys.stderr)
        # Per group: (signatures, seconds); the first mark is the start, the overhead probe rides in group 1.
        groups = [(d1 - d0, t1 - t0) for (d0, t0), (d1, t1) in zip(marks, marks[1:]) if d1 > d0]
        runs[method].append({"wall_s": result.wall_s, "timed_s": result.timed_s, "groups": groups,
                             "lut": lut_store.read_lut(out), "contention": result.contention.to_json()})
    total = len(wanted)
    methods_report = {}
    for method, taken in runs.items():
        groups = [g for run in taken for g in run["groups"]]
        # Seconds per signature over all signatures (a short last group weighs by its size, not as a whole group);
        # the interval from the spread of the full groups' rates.
        mean = sum(t for _, t in groups) / sum(n for n, _ in groups) + build_s
        full = [t / n for n, t in groups if n >= max(n for n, _ in groups) / 2]
        stderr = float(np.std(full, ddof=1) / np.sqrt(len(full))) if len(full) > 1 else 0.0
        first, second = taken[0]["lut"], taken[-1]["lut"]
        methods_report[method] = {
            "seconds_per_signature": mean,
            "measure_seconds_per_signature": mean - build_s,
            "estimated_full_sweep_h": mean * total / 3600,
            "estimated_full_sweep_h_95ci": [(mean - 1.96 * stderr) * total / 3600, (mean + 1.96 * stderr) * total / 3600],
            "sample_wall_s": [run["wall_s"] for run in taken],
            "sample_timed_s": [run["timed_s"] for run in taken],
            "repeat_agreement": _agreement(first, second),
            "host": host_report(second).line(),
            "contention": [run["contention"]["reason"] for run in taken],
        }
    report = {
        "plan": plan.name,
        "device": profile.name,
        "device_model": runs[order[0]][0]["lut"].column("device_model")[0].as_py(),
        "plan_signatures": len(plan.signatures),
        "signatures_for_device": total,
        "by_kind": count_by_kind(plan),
        "sample": len(sample),
        "model_build_seconds_per_signature": build_s,
        "methods": methods_report,
    }
    if {"adaptive", "previous"} <= set(methods_report):
        report["speedup_previous_over_adaptive"] = (methods_report["previous"]["seconds_per_signature"]
                                                    / methods_report["adaptive"]["seconds_per_signature"])
        report["adaptive_vs_previous"] = _agreement(runs["previous"][0]["lut"], runs["adaptive"][0]["lut"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"sweep_estimate-{plan.name}-{profile.name}.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        for method, figures in methods_report.items():
            low, high = figures["estimated_full_sweep_h_95ci"]
            agree = figures["repeat_agreement"]
            print(f"{method:9s}: {figures['seconds_per_signature']:.3f} s per signature (models {build_s:.3f} s) → "
                  f"full {plan.name} sweep of {total} ≈ {figures['estimated_full_sweep_h']:.2f} h (95%: {low:.2f}–{high:.2f} h); "
                  f"repeat within ±5%: {agree['share_within_5pct']:.0%}, ±10%: {agree['share_within_10pct']:.0%}")
        if "speedup_previous_over_adaptive" in report:
            both = report["adaptive_vs_previous"]
            print(f"previous / adaptive seconds per signature: {report['speedup_previous_over_adaptive']:.2f}×; "
                  f"the two methods' LUTs: median ratio {both['median_ratio']:.3f}, {both['share_within_5pct']:.0%} within ±5%")
    return 0


def _agreement(first, second) -> dict[str, float]:
    """How two LUTs of one sample agree."""
    a = dict(zip(first.column("signature").to_pylist(), first.column("median_us").to_pylist()))
    b = dict(zip(second.column("signature").to_pylist(), second.column("median_us").to_pylist()))
    ratio = np.array([b[k] / a[k] for k in a.keys() & b.keys() if a[k] > 0])
    return {"share_within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
            "share_within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)), "median_ratio": float(np.median(ratio))}


if __name__ == "__main__":
    sys.exit(main())
