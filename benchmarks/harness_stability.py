"""Harness benchmark: does a LUT reproduce?  The same plan measured twice, quiet and under load, two methods side by side.

In one process, on the xeon profile, with the plan's models built first (so
no sweep pays for building them):

(a) **quiet stability**: each method (``adaptive``, the profile's; ``previous``,
    the fixed floor it replaced, see ``benchmarks/measurement_methods.py``)
    sweeps the plan twice, the sweeps alternating (adaptive, previous,
    adaptive, previous), so both meet the same drift; reported: the share of
    signatures whose two medians agree within ±5% (goal ≥ 90%) and ±10%, the
    median ratio (a uniform shift of the host's speed shows here), and each
    sweep's wall time, timed time and seconds per signature;
(b) **under load** (``--load N``): the benchmark starts N busy processes
    (``--load-kind spin``: pure CPU loops, which take turns with the measuring
    thread on its core; ``memory``: loops streaming 64 MB, which also fill the
    shared cache and memory bus), sweeps once more with each method, and
    compares each with its own quiet LUT (goal ≥ 90% within ±5%; the previous
    method read 52% with load 5-20).

The adaptive method holds every batch to the host's fast state, read by a
reference kernel (``harness.host_speed``); its loaded sweep is held to the
baseline of its quiet LUT, as a resumed sweep is to its LUT's.

Usage:  python benchmarks/harness_stability.py [--plan smoke] [--device xeon] [--load 2] [--load-kind spin|memory]
            [--methods adaptive,previous] [--out-dir benchmarks/results] [--json]
Writes ``stability.json`` and ``stability.png`` (run 1 against run 2, and loaded against quiet) into the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measurement_methods import METHODS  # noqa: E402

SPIN = "while True: pass"
MEMORY = "import numpy as np\na = np.ones(1 << 23); b = np.empty_like(a)\nwhile True: np.multiply(a, 1.0001, out=b)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--device", default="xeon")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--methods", default="adaptive,previous", help="comma-separated: adaptive, previous")
    parser.add_argument("--load", type=int, default=0, help="busy processes to start for the loaded sweeps (0: none)")
    parser.add_argument("--load-kind", choices=["spin", "memory"], default="spin")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}")

    work = Path(tempfile.mkdtemp(prefix="chameleon-stability-"))
    os.environ["CHAMELEON_CACHE"] = str(work / "cache")

    from harness.lut import store as lut_store
    from harness.models import onnx_models
    from harness.plans import load_plan
    from harness.profiles import load_profile
    from harness.sweep import run_sweep, signatures_for_device
    from harness.host_speed import REFERENCE_SIGNATURE, lut_baseline

    profile = load_profile(args.device)
    plan = load_plan(args.plan)
    signatures, _ = signatures_for_device(plan, profile)
    for signature in [*signatures, REFERENCE_SIGNATURE]:  # build every model first: no sweep pays for it
        onnx_models.model_file(signature, seed=0)

    sweeps: dict[str, Any] = {}

    def sweep(name: str, method: str) -> None:
        # Held to the first quiet LUT's baseline, as a re-measure of that LUT would be
        first = sweeps.get(f"{method}-quiet-1")
        baseline = None if first is None else lut_baseline(first["table"])
        result = run_sweep(profile, plan, work / f"{name}.parquet", settings=METHODS[method](profile.measurement),
                           reference_baseline_us=baseline)
        sweeps[name] = {"method": method, "result": result, "table": lut_store.read_lut(result.out)}
        print(f"{name}: {result.measured} signatures, {result.wall_s:.2f} s wall, {result.timed_s:.2f} s timed; "
              f"{result.contention.reason}", file=sys.stderr)

    for run in (1, 2):
        for method in methods:
            sweep(f"{method}-quiet-{run}", method)
    if args.load:
        code = SPIN if args.load_kind == "spin" else MEMORY
        busy = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(args.load)]
        try:
            time.sleep(1.0)
            for method in methods:
                sweep(f"{method}-loaded", method)
        finally:
            for process in busy:
                process.kill()
                process.wait()

    report: dict[str, Any] = {"plan": plan.name, "device": profile.name, "signatures": len(signatures),
                              "tolerance": args.tolerance, "goal": 0.90, "methods": {}}
    pairs = []
    for method in methods:
        quiet1, quiet2 = sweeps[f"{method}-quiet-1"], sweeps[f"{method}-quiet-2"]
        entry = {"quiet": _compare(quiet1["table"], quiet2["table"], args.tolerance),
                 "sweeps": {name: _sweep_figures(s["result"]) for name, s in sweeps.items() if s["method"] == method}}
        pairs.append((f"{method}: quiet run 1 vs run 2", quiet1["table"], quiet2["table"], entry["quiet"]))
        if args.load:
            entry["loaded"] = _compare(quiet1["table"], sweeps[f"{method}-loaded"]["table"], args.tolerance)
            entry["loaded"]["load"] = {"processes": args.load, "kind": args.load_kind}
            pairs.append((f"{method}: loaded vs quiet", quiet1["table"], sweeps[f"{method}-loaded"]["table"],
                          entry["loaded"]))
        report["methods"][method] = entry
    if {"adaptive", "previous"} <= set(methods):
        per_signature = {m: np.mean([report["methods"][m]["sweeps"][f"{m}-quiet-{r}"]["wall_s_per_signature"]
                                     for r in (1, 2)]) for m in ("adaptive", "previous")}
        report["seconds_per_signature_ratio_previous_over_adaptive"] = float(per_signature["previous"] /
                                                                               per_signature["adaptive"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "stability.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    _plot(pairs, args.tolerance, args.out_dir / "stability.png")
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        for method, entry in report["methods"].items():
            for label in ("quiet", "loaded"):
                if label in entry:
                    e = entry[label]
                    print(f"{method:9s} {label:6s}: {e['share_within_tolerance']:.1%} within ±{args.tolerance:.0%}, "
                          f"{e['share_within_10pct']:.1%} within ±10%, median ratio {e['median_ratio']:.3f}")
            for name, figures in entry["sweeps"].items():
                print(f"          {name}: {figures['wall_s']:.1f} s wall, {figures['timed_s']:.1f} s timed, "
                      f"{figures['wall_s_per_signature'] * 1000:.0f} ms/signature; {figures['host']}")
        if "seconds_per_signature_ratio_previous_over_adaptive" in report:
            print(f"seconds per signature, previous / adaptive: "
                  f"{report['seconds_per_signature_ratio_previous_over_adaptive']:.2f}×")
        print(f"wrote {args.out_dir / 'stability.json'} and {args.out_dir / 'stability.png'}")
    return 0


def _compare(first, second, tolerance: float) -> dict[str, Any]:
    """Agreement of two LUTs of one plan."""
    a_map = dict(zip(first.column("signature").to_pylist(), first.column("median_us").to_pylist()))
    b_map = dict(zip(second.column("signature").to_pylist(), second.column("median_us").to_pylist()))
    keys = sorted(a_map.keys() & b_map.keys())
    a = np.array([a_map[k] for k in keys])
    b = np.array([b_map[k] for k in keys])
    relative = np.abs(a - b) / ((a + b) / 2)
    return {
        "signatures": len(keys),
        "share_within_tolerance": float(np.mean(relative <= tolerance)),
        "share_within_10pct": float(np.mean(relative <= 0.10)),
        "median_relative_difference": float(np.median(relative)),
        "median_ratio": float(np.median(b / a)),
        "worst": sorted(({"signature": k, "first_us": float(x), "second_us": float(y)} for k, x, y, r in
                         zip(keys, a, b, relative) if r > tolerance), key=lambda d: -abs(d["second_us"] / d["first_us"] - 1))[:10],
        "a": a.tolist(), "b": b.tolist(),
    }


def _sweep_figures(result) -> dict[str, Any]:
    from harness.host_speed import host_report
    from harness.lut import store as lut_store

    host = host_report(lut_store.read_lut(result.out))
    return {"signatures": result.measured, "wall_s": result.wall_s, "timed_s": result.timed_s,
            "wall_s_per_signature": result.wall_s / max(result.measured, 1),
            "contention": result.contention.to_json(), "host": host.line(), "host_figures": host.to_json()}


def _plot(pairs, tolerance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4.6), squeeze=False)
    for ax, (title, _first, _second, figures) in zip(axes[0], pairs):
        a, b = np.array(figures["a"]), np.array(figures["b"])
        lo, hi = min(a.min(), b.min()) * 0.8, max(a.max(), b.max()) * 1.25
        line = np.geomspace(lo, hi, 50)
        ax.plot(line, line, color="black", lw=0.8)
        ax.fill_between(line, line * (1 - tolerance), line * (1 + tolerance), color="green", alpha=0.15,
                        label=f"±{tolerance:.0%}")
        ax.scatter(a, b, s=12)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("first median (µs)")
        ax.set_ylabel("second median (µs)")
        ax.set_title(f"{title}\n{figures['share_within_tolerance']:.0%} within ±{tolerance:.0%}", fontsize=9)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
