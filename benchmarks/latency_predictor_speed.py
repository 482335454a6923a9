"""Latency predictor throughput: architectures of chamnet-mobile priced per second from a LUT.

Prices 100,000 random architectures three times in one run: with empty unit
caches (every distinct unit looked up once), again (all cached), and a fresh
100,000 (mostly cached units, as in a search).  The LUT is a synthetic one over
every chamnet-mobile signature (the lookup cost does not depend on the values).
Goal: ≥ 100,000 architectures/s.

Usage:  python benchmarks/latency_predictor_speed.py [--n 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from harness.plans import load_plan
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile")
    lut = LutLatencyModel({s.key: 5.0 + 0.3 * s.macs / 1000 for s in load_plan("chamnet-mobile").signatures}, 5.0, "synthetic", "synthetic")
    predictor = LatencyPredictor(lut, space)
    figures = {}
    for label, seed in (("cold caches", 0), ("same architectures again", 0), ("new architectures, warm caches", 1)):
        X = space.random(args.n, np.random.default_rng(seed))
        start = time.perf_counter()
        predictor.predict(X)
        figures[label] = args.n / (time.perf_counter() - start)
    report = {"architectures": args.n, "per_second": figures, "goal_per_second": 100_000}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "latency_predictor_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for label, rate in figures.items():
            print(f"{label}: {rate:,.0f} architectures/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
