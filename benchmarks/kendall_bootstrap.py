"""Bootstrap speed of the monotonicity report: Kendall's tau-b (and SRCC) over 1,000 resamples, vectorised vs per resample.

The acceptance case of issue 19: the public NAS-Bench-201 table (15,625 cells,
``../shared/data/latency-tables/nasbench201-15625.csv``), 4 devices (a GPU,
a server CPU, two phones, one of them in whole milliseconds: ties), so 6 pairs,
1,000 resamples each.  For each pair the resamples are drawn as
:func:`optimizer.crossdevice.monotonicity.pair_monotonicity` draws them (one
index for SRCC, then one for Kendall, seeded per pair) and computed:

- *new*: :func:`~optimizer.crossdevice.rank_correlation.bootstrap_kendall`
  (every resample at once: multiplicities, one weighted inversion count with a
  Fenwick tree of per-resample counts) and
  :func:`~optimizer.crossdevice.rank_correlation.spearman_of_resamples`;
- *old*: the implementation before issue 19, one ``scipy.stats.kendalltau``
  per resample (``kendall_of_resamples_scipy``) and every resample ranked by
  ``scipy.stats.rankdata`` (``spearman_of_resamples_ranked``), on the first
  ``--old-resamples`` of the same resamples (per-resample time × 1,000 when
  fewer than 1,000), old and new alternating pair by pair (the shared machine's
  speed drifts);

and the largest difference between the two on the resamples both computed.
Then the whole report, ``monotonicity(table, 4 devices, bootstrap=1000)``, is
timed once.  Goal: the Kendall bootstrap of the 6 pairs in ≤ 20 s.

Usage:  python benchmarks/kendall_bootstrap.py [--table CSV] [--devices a,b,c,d] [--bootstrap 1000]
            [--old-resamples 1000] [--out-dir benchmarks/results] [--json]
Writes ``kendall_bootstrap.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TABLE = REPO.parent / "shared" / "data" / "latency-tables" / "nasbench201-15625.csv"
DEVICES = "1080ti_1,silver_4114,pixel3,samsung_a50"
GOAL_S = 20.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--devices", default=DEVICES)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--old-resamples", type=int, default=1000,
                        help="resamples the old implementation computes per pair (extrapolated to --bootstrap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    from optimizer.crossdevice.monotonicity import monotonicity
    from optimizer.crossdevice.rank_correlation import (bootstrap_indices, bootstrap_kendall,
                                                        kendall_of_resamples_scipy, spearman_of_resamples,
                                                        spearman_of_resamples_ranked)
    from optimizer.latency.architecture_tables import read_latency_table

    devices = args.devices.split(",")
    table = read_latency_table(args.table, devices=devices)
    load_before = os.getloadavg()
    old_b = min(args.old_resamples, args.bootstrap)
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(devices), 2):
        keep = table.valid(a, b)
        x, y = table.latency(a)[keep], table.latency(b)[keep]
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, i, j]))
        srcc_index = bootstrap_indices(len(x), args.bootstrap, rng)
        kendall_index = bootstrap_indices(len(x), args.bootstrap, rng)
        timing: dict[str, float] = {}
        values: dict[str, np.ndarray] = {}
        runs = {
            "kendall_new": lambda: bootstrap_kendall(x, y, kendall_index),
            "kendall_old": lambda: kendall_of_resamples_scipy(x, y, kendall_index[:old_b]),
            "srcc_new": lambda: spearman_of_resamples(x, y, srcc_index),
            "srcc_old": lambda: spearman_of_resamples_ranked(x, y, srcc_index[:old_b]),
        }
        order = list(runs) if len(pairs) % 2 == 0 else ["kendall_old", "kendall_new", "srcc_old", "srcc_new"]
        for name in order:
            start = time.perf_counter()
            values[name] = runs[name]()
            timing[name] = time.perf_counter() - start
        scale = args.bootstrap / old_b
        pairs.append({
            "a": a, "b": b, "n": int(len(x)),
            "distinct_values": {a: int(len(np.unique(x))), b: int(len(np.unique(y)))},
            "kendall_new_s": timing["kendall_new"],
            "kendall_old_s": timing["kendall_old"] * scale,
            "srcc_new_s": timing["srcc_new"],
            "srcc_old_s": timing["srcc_old"] * scale,
            "kendall_max_abs_difference": float(np.nanmax(np.abs(values["kendall_new"][:old_b] - values["kendall_old"]))),
            "srcc_max_abs_difference": float(np.nanmax(np.abs(values["srcc_new"][:old_b] - values["srcc_old"]))),
        })
        print(f"{a}/{b}: kendall {timing['kendall_new']:.2f} s new, {pairs[-1]['kendall_old_s']:.2f} s old; "
              f"srcc {timing['srcc_new']:.2f} s new, {pairs[-1]['srcc_old_s']:.2f} s old", file=sys.stderr)

    start = time.perf_counter()
    report = monotonicity(table, devices, bootstrap=args.bootstrap, seed=args.seed)
    report_s = time.perf_counter() - start
    total = {k: sum(p[k] for p in pairs) for k in ("kendall_new_s", "kendall_old_s", "srcc_new_s", "srcc_old_s")}
    document = {
        "table": str(args.table.relative_to(REPO.parent) if args.table.resolve().is_relative_to(REPO.parent)
                     else args.table),
        "architectures": len(table), "devices": devices, "pairs": len(pairs), "bootstrap": args.bootstrap,
        "old_resamples_per_pair": old_b,
        "old_extrapolated": old_b < args.bootstrap,
        "kendall_bootstrap_s": {"new": total["kendall_new_s"], "old": total["kendall_old_s"],
                                "speedup": total["kendall_old_s"] / total["kendall_new_s"]},
        "srcc_bootstrap_s": {"new": total["srcc_new_s"], "old": total["srcc_old_s"],
                             "speedup": total["srcc_old_s"] / total["srcc_new_s"]},
        "whole_report_s": report_s,
        "goal_s": GOAL_S,
        "goal_met": total["kendall_new_s"] <= GOAL_S,
        "largest_difference": {"kendall": max(p["kendall_max_abs_difference"] for p in pairs),
                               "srcc": max(p["srcc_max_abs_difference"] for p in pairs)},
        "per_pair": pairs,
        "report_pairs": [{"a": p.a, "b": p.b, "srcc": p.srcc, "kendall": p.kendall,
                          "kendall_interval": [p.kendall_low, p.kendall_high]} for p in report.pairs],
        "conditions": {
            "cpus": os.cpu_count(), "nice": os.nice(0), "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": __import__("scipy").__version__,
            "note": "a machine shared with other jobs: figures are pessimistic",
        },
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "kendall_bootstrap.json").write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        k, s = document["kendall_bootstrap_s"], document["srcc_bootstrap_s"]
        print(f"{len(table)} architectures x {len(devices)} devices ({len(pairs)} pairs), {args.bootstrap} resamples: "
              f"Kendall bootstrap {k['new']:.1f} s (old {k['old']:.1f} s, x{k['speedup']:.1f}; goal <= {GOAL_S:g} s), "
              f"SRCC bootstrap {s['new']:.1f} s (old {s['old']:.1f} s, x{s['speedup']:.1f}); whole report "
              f"{report_s:.1f} s; largest difference from the old: Kendall "
              f"{document['largest_difference']['kendall']:.1e}, SRCC {document['largest_difference']['srcc']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
