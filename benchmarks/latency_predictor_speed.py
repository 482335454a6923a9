"""Latency predictor throughput: architectures of chamnet-mobile priced per second from a LUT, before and after issue 17.

Prices 100,000 random architectures three times: with empty caches (every
distinct unit looked up once), again (all cached), and a fresh 100,000 (mostly
cached units, as in a search); then EES's batch size, 84 architectures a call,
over 200 batches of that fresh set (cached).  The LUT is a synthetic one over
every chamnet-mobile signature (the lookup cost does not depend on the values,
and no unit is interpolated).  Each figure is taken for the current predictor
and for the one before issue 17 (``LegacyLatencyPredictor`` of
``benchmarks/ees_speed.py``), alternately in the same run (legacy, current,
current, legacy: the machine's speed drifts within minutes), and the medians
compared.  Goal: ≥ 100,000 architectures/s at 100,000.

Usage:  python benchmarks/latency_predictor_speed.py [--n 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 84
BATCHES = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="fresh predictors of each kind, alternately")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    from ees_speed import LegacyLatencyPredictor
    from harness.plans import load_plan
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile")
    lut = LutLatencyModel({s.key: 5.0 + 0.3 * s.macs / 1000 for s in load_plan("chamnet-mobile").signatures}, 5.0, "synthetic", "synthetic")
    kinds = {"legacy": LegacyLatencyPredictor, "current": LatencyPredictor}
    first, fresh = space.random(args.n, np.random.default_rng(0)), space.random(args.n, np.random.default_rng(1))
    batches = [fresh[i * BATCH:(i + 1) * BATCH] for i in range(min(BATCHES, args.n // BATCH))]
    rates: dict[str, dict[str, list[float]]] = {kind: {} for kind in kinds}
    latencies: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for kind in (list(kinds) if r % 2 == 0 else list(kinds)[::-1]):
            predictor = kinds[kind](lut, space)
            for label, X in (("cold caches", first), ("same architectures again", first), ("new architectures, warm caches", fresh)):
                start = time.perf_counter()
                latencies[kind] = predictor.predict(X).latency_ms
                rates[kind].setdefault(label, []).append(args.n / (time.perf_counter() - start))
            start = time.perf_counter()
            for batch in batches:
                predictor.predict(batch)
            rates[kind].setdefault(f"batches of {BATCH}, warm caches", []).append(len(batches) * BATCH / (time.perf_counter() - start))
    figures = {kind: {label: float(np.median(v)) for label, v in by_label.items()} for kind, by_label in rates.items()}
    report = {
        "architectures": args.n,
        "per_second": figures["current"],
        "legacy_per_second": figures["legacy"],
        "current_over_legacy": {label: figures["current"][label] / figures["legacy"][label] for label in figures["current"]},
        "identical_latencies": bool(np.array_equal(latencies["legacy"], latencies["current"])),
        "rounds": args.rounds,
        "goal_per_second": 100_000,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    (args.out_dir / "latency_predictor_speed.json").write_text(text)
    if args.json:
        sys.stdout.write(text)
    else:
        for label, rate in figures["current"].items():
            print(f"{label}: {rate:,.0f} architectures/s (legacy {figures['legacy'][label]:,.0f}/s, "
                  f"{report['current_over_legacy'][label]:.1f}x)")
        print(f"identical latencies: {report['identical_latencies']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
