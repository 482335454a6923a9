"""Harness benchmark: is an ExecuTorch LUT as reproducible as the ONNX Runtime LUT?  Both, side by side, in one run.

In one process, with every model and program of the plan built first (so no
sweep pays for building), the plan is swept twice on each device, the sweeps
alternating (ORT, ExecuTorch, ORT, ExecuTorch) so both meet the same drift of
the host.  Each device's second sweep is held to the host-speed baseline of its
first, as a re-measure of that LUT would be.  Reported per device: the share of
signatures whose two medians agree within ±5% (goal ≥ 90%) and ±10%, the median
ratio, seconds per signature; and, per signature, ExecuTorch's median over
ONNX Runtime's (which runtime is faster for which op).

Usage:  python benchmarks/executorch_stability.py [--plan smoke] [--devices xeon,xeon-executorch]
            [--out-dir benchmarks/results] [--json]
Writes ``executorch_stability.json`` and ``executorch_stability.png`` into the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness_stability import _compare, _plot, _sweep_figures  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--devices", default="xeon,xeon-executorch", help="comma-separated profiles, swept alternately")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    args = parser.parse_args()
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]

    work = Path(tempfile.mkdtemp(prefix="chameleon-executorch-stability-"))
    os.environ.setdefault("CHAMELEON_CACHE", str(work / "cache"))

    from harness.host_speed import REFERENCE_SIGNATURE, lut_baseline
    from harness.lut import store as lut_store
    from harness.models import onnx_models, pte_models
    from harness.plans import load_plan
    from harness.profiles import load_profile
    from harness.sweep import run_sweep, signatures_for_device

    plan = load_plan(args.plan)
    profiles = [load_profile(d) for d in devices]
    build_s: dict[str, float] = {}
    for profile in profiles:  # build every model first: no sweep pays for it
        signatures, _ = signatures_for_device(plan, profile)
        started = time.monotonic()
        for signature in [*signatures, REFERENCE_SIGNATURE]:
            if profile.runtime.name == "executorch":
                backend = "xnnpack" if profile.runtime.delegate == "xnnpack" else "portable"
                pte_models.model_file(signature, seed=0, backend=backend)
            else:
                onnx_models.model_file(signature, seed=0)
        build_s[profile.name] = time.monotonic() - started
        print(f"{profile.name}: {len(signatures)} models ready in {build_s[profile.name]:.1f} s", file=sys.stderr)

    sweeps: dict[str, dict[str, Any]] = {}
    for run in (1, 2):
        for profile in profiles:
            first = sweeps.get(f"{profile.name}-1")
            baseline = None if first is None else lut_baseline(first["table"])
            result = run_sweep(profile, plan, work / f"{profile.name}-{run}.parquet", reference_baseline_us=baseline)
            sweeps[f"{profile.name}-{run}"] = {"result": result, "table": lut_store.read_lut(result.out)}
            print(f"{profile.name} run {run}: {result.measured} signatures, {result.wall_s:.1f} s wall, "
                  f"{result.timed_s:.1f} s timed; {result.contention.reason}", file=sys.stderr)

    report: dict[str, Any] = {"plan": plan.name, "tolerance": args.tolerance, "goal": 0.90, "devices": {}}
    pairs = []
    for profile in profiles:
        one, two = sweeps[f"{profile.name}-1"], sweeps[f"{profile.name}-2"]
        identity = one["table"].slice(0, 1).to_pylist()[0]
        entry = {"runtime": identity["runtime"], "runtime_version": identity["runtime_version"],
                 "provider": identity["provider"], "model_build_s": build_s[profile.name],
                 "quiet": _compare(one["table"], two["table"], args.tolerance),
                 "sweeps": {f"run-{r}": _sweep_figures(sweeps[f"{profile.name}-{r}"]["result"]) for r in (1, 2)}}
        report["devices"][profile.name] = entry
        pairs.append((f"{profile.name}: run 1 vs run 2", one["table"], two["table"], entry["quiet"]))
    if len(profiles) == 2:
        report["second_over_first"] = _ratios(sweeps[f"{profiles[0].name}-1"]["table"],
                                              sweeps[f"{profiles[1].name}-1"]["table"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "executorch_stability.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    _plot(pairs, args.tolerance, args.out_dir / "executorch_stability.png")
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    for name, entry in report["devices"].items():
        q = entry["quiet"]
        per_signature = np.mean([s["wall_s_per_signature"] for s in entry["sweeps"].values()])
        print(f"{name:16s} ({entry['runtime']} {entry['runtime_version']}, {entry['provider']}): "
              f"{q['share_within_tolerance']:.1%} within ±{args.tolerance:.0%}, {q['share_within_10pct']:.1%} within ±10%, "
              f"median ratio {q['median_ratio']:.3f}, {per_signature * 1000:.0f} ms/signature, "
              f"models built in {entry['model_build_s']:.0f} s")
    if "second_over_first" in report:
        r = report["second_over_first"]
        print(f"{devices[1]} / {devices[0]} median, per signature: fp32 {r['fp32_median']:.2f}x, int8 {r['int8_median']:.2f}x")
    print(f"wrote {args.out_dir / 'executorch_stability.json'} and {args.out_dir / 'executorch_stability.png'}")
    return 0


def _ratios(first, second) -> dict[str, Any]:
    """Per signature, the second LUT's median over the first's; their median by dtype."""
    a = {r["signature"]: r for r in first.to_pylist()}
    b = {r["signature"]: r for r in second.to_pylist()}
    rows = [{"signature": k, "dtype": a[k]["dtype"], "ratio": b[k]["median_us"] / a[k]["median_us"]}
            for k in sorted(a.keys() & b.keys())]
    by_dtype = {d: [r["ratio"] for r in rows if r["dtype"] == d] for d in ("fp32", "int8")}
    return {**{f"{d}_median": float(np.median(v)) if v else None for d, v in by_dtype.items()}, "per_signature": rows}


if __name__ == "__main__":
    sys.exit(main())
