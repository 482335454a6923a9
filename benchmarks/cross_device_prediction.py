"""Cross-device prediction, leave one device out: each device predicted from the others from K of its measurements.

    python benchmarks/cross_device_prediction.py [--k 5 10 20 50] [--draws 10] [--json]

For each table (the shared NAS-Bench-201 and FBNet tables of 13 devices, and
our ChamNet-Mobile table of this machine's configurations in the 80-100 MMAC
band) and each device as the target, the others are the references; per draw
(seeded) the K architectures of :func:`reference_set` are "measured" on the
target (its column's values there), and every method predicts the target on
the remaining architectures, scored by SRCC against its column:

- ``predictor``: :class:`CrossDevicePredictor`, its model chosen on the K samples;
- ``best proxy``: the reference ranking the K samples best, raw;
- ``OneProxy``: that proxy adapted (OneProxy §4), its penalty by leave-one-out on the samples;
- ``MACs`` (our space only): the architectures' multiply-accumulates.

Every choice uses the K samples alone.  Reported per table and K: mean and
worst device (mean over draws), and which device is worst.  The tables'
ceiling is reported beside: the SRCC of a per-choice additive model fitted on
half of the target's own column and scored on the other half (phones that
time in whole milliseconds cap what any predictor can reach).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "latency-tables"
TABLES = {
    "nasbench201": (SHARED / "nasbench201-15625.csv", None),
    "fbnet": (SHARED / "fbnet-5000.csv", None),
    "chamnet-mobile-80-100MMAC": (ROOT / "benchmarks" / "results" / "cross_device-chamnet-mobile-macs80-100.parquet",
                                  "chamnet-mobile"),
}


def ceiling(table, device: str) -> float:
    from optimizer.crossdevice.monotonicity import spearman
    from optimizer.crossdevice.proxy_adaptation import one_hot

    D, _ = one_hot(table.encoding)
    X = np.hstack([D, np.ones((len(D), 1))])
    y = table.latency(device)
    order = np.random.default_rng(0).permutation(len(y))
    half, rest = order[: len(y) // 2], order[len(y) // 2:]
    coef = np.linalg.lstsq(X[half], y[half], rcond=None)[0]
    return spearman(X[rest] @ coef, y[rest])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cross_device_prediction.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from optimizer.crossdevice.device_prediction import CrossDevicePredictor, reference_set
    from optimizer.crossdevice.monotonicity import spearman
    from optimizer.latency.architecture_tables import read_latency_table
    from optimizer.spaces import get_space

    console = Console(stderr=True)
    started = time.monotonic()
    report: dict = {"draws": args.draws, "k": args.k, "tables": {}}
    for name in args.tables:
        path, space_name = TABLES[name]
        table = read_latency_table(path)
        devices = table.devices
        macs = None
        if space_name:
            space = get_space(space_name)
            genes = np.column_stack([np.asarray(table.encoding[c]) for c in table.encoding]).astype(np.int64)
            macs = space.macs_many(genes).astype(float)
        per_k: dict = {}
        scores: dict[int, dict[str, dict[str, list[float]]]] = {k: {} for k in args.k}
        chosen: dict[int, dict[str, int]] = {k: {} for k in args.k}
        for target in devices:
            refs = [d for d in devices if d != target]
            y_all = table.latency(target)
            predictor = CrossDevicePredictor(table, refs)
            oneproxy = CrossDevicePredictor(table, refs, methods=("adapted proxy",))
            for k in args.k:
                for draw in range(args.draws):
                    rows = reference_set(table, refs, k, seed=draw)
                    rest = np.setdiff1d(np.flatnonzero(np.isfinite(y_all)), rows)
                    y = y_all[rows]
                    predictor.fit(rows, y)
                    chosen[k][predictor.method_] = chosen[k].get(predictor.method_, 0) + 1
                    oneproxy._cache = predictor._cache  # the same references: one encoding and denoising
                    oneproxy.fit(rows, y)
                    raw = table.latency(predictor.proxy_)
                    row = {"predictor": spearman(predictor.predict()[rest], y_all[rest]),
                           "best proxy": spearman(raw[rest], y_all[rest]),
                           "OneProxy": spearman(oneproxy.predict()[rest], y_all[rest])}
                    if macs is not None:
                        row["MACs"] = spearman(macs[rest], y_all[rest])
                    for method, value in row.items():
                        scores[k].setdefault(method, {}).setdefault(target, []).append(value)
        for k in args.k:
            summary = {}
            for method, by_device in scores[k].items():
                means = {d: float(np.mean(v)) for d, v in by_device.items()}
                worst = min(means, key=means.get)
                summary[method] = {"mean": float(np.mean(list(means.values()))), "worst": means[worst],
                                   "worst_device": worst, "per_device": means}
            per_k[str(k)] = {"methods": summary, "predictor_chose": chosen[k]}
            console.print(f"{name} K={k}: " + ", ".join(f"{m} {s['mean']:.3f} (worst {s['worst']:.3f})" for m, s in summary.items()))
        ceilings = {d: ceiling(table, d) for d in devices}
        report["tables"][name] = {"source": str(path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT.parent) else str(path),
                                  "devices": devices, "architectures": len(table), "by_k": per_k,
                                  "ceiling": {"mean": float(np.mean(list(ceilings.values()))), "per_device": ceilings}}
    report["wall_s"] = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return 0
    for name, data in report["tables"].items():
        out = Table(title=f"{name}: leave one device out, mean (worst) SRCC over {args.draws} draws; "
                          f"ceiling {data['ceiling']['mean']:.3f}")
        out.add_column("K", justify="right")
        methods = list(next(iter(data["by_k"].values()))["methods"])
        for m in methods:
            out.add_column(m, justify="right")
        for k, entry in data["by_k"].items():
            out.add_row(k, *(f"{entry['methods'][m]['mean']:.3f} ({entry['methods'][m]['worst']:.3f})" for m in methods))
        Console().print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
