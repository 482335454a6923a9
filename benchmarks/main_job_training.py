"""How long does the main job's training take, before and after issue 17?  Side by side, in one run.

``optimize pipeline`` spends about half its wall time training networks
(Algorithm 1's 48, on digits).  This benchmark trains the same K networks as
the main job does (its first Algorithm 1 round: seed 0, pool 2048, the
default :class:`TrainingSettings`, one worker process per core, each
network on one thread) with the training code of before (a copy of the
``optimizer/training`` package, ``--before``), with the current code in the
layout of before (``after_old_layout``: every change that keeps results bit
for bit, alone) and with the current code as it runs (``after``), alternately
(A B C C B A ...): the machine's speed drifts by ~20 % within minutes, so only
a comparison within one run means something.

Each run is a fresh process that trains the K networks through a
:class:`~optimizer.training.trainer.TorchTrainer` (a fresh observations file,
its own worker pool, as a round of the main job does).  Reported per run: the
wall time of the round (worker start-up included), the workers' CPU time
(user and system), each network's ``train_seconds`` and accuracy.  The
summary gives each variant's ratios to ``before`` of the summed wall and CPU
times and of each network's training time, and each network's accuracy
difference (``after`` trains in channels-last layout, so accuracies move as a
change of seed moves them; ``after_old_layout`` must match ``before`` exactly).

**Accuracy over a whole main job** (``--retrain FILE``).  The 48 networks of
an earlier main job (the first 48 rows of its ``observations.parquet``) are
trained again with the current code, and, with ``--seed-reference``, with
seed 1 too: how far a change of code moves each accuracy, set against how far
a change of seed does; and the GP accuracy predictor fitted on each set of
accuracies (leave-one-out RMSE, rank correlation of its leave-one-out
predictions with the trained accuracies).

Usage:  python benchmarks/main_job_training.py --before DIR [--k 8] [--repeats 2] [--json]
        python benchmarks/main_job_training.py --retrain OLD_RUN/observations.parquet [--seed-reference]
where DIR holds the old package as ``DIR/optimizer/training/``, e.g. the code
before issue 17 out of git: ``mkdir /tmp/before && git archive 221693b
optimizer/training | tar -x -C /tmp/before``.  Without ``--before`` only the current code is timed.
Updates its part of benchmarks/results/main_job_training.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The main job's defaults (``optimize pipeline``): Algorithm 1's first round is ``INITIAL`` networks of the pool.
SPACE, POOL, INITIAL, SEED = "chamnet-mobile-mini", 2048, 16, 0
#: Set in a run's environment: the folder whose ``optimizer/training`` replaces the current package.  Read at
#: import, so that the pool's spawned workers (which import this script as their main module) use it too.
TRAINING_FROM = "CHAMELEON_TRAINING_FROM"


def _use_training_from(folder: str) -> None:
    """Make ``optimizer.training`` (and its modules) the copy under ``folder``; the rest of the repository stays."""
    import importlib.util

    import optimizer

    package = Path(folder) / "optimizer" / "training"
    spec = importlib.util.spec_from_file_location("optimizer.training", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["optimizer.training"] = module
    spec.loader.exec_module(module)
    optimizer.training = module


#: Set in a run's environment: the memory layout the current code trains in (``contiguous_format``: PyTorch's
#: default, the layout of before, whose results it reproduces bit for bit).
TRAINING_LAYOUT = "CHAMELEON_TRAINING_LAYOUT"

if os.environ.get(TRAINING_FROM):
    _use_training_from(os.environ[TRAINING_FROM])
if os.environ.get(TRAINING_LAYOUT):
    import optimizer.training.loop

    optimizer.training.loop._LAYOUT = os.environ[TRAINING_LAYOUT]


def main_job_networks(k: int) -> np.ndarray:
    """The first ``k`` networks the main job trains: Algorithm 1's initial subset of its Sobol pool."""
    from optimizer.accuracy.predictors import build_accuracy_predictor
    from optimizer.accuracy.trainer_protocol import FunctionTrainer
    from optimizer.spaces import get_space

    space = get_space(SPACE)
    asked: list[np.ndarray] = []

    def record(X: np.ndarray) -> np.ndarray:
        asked.append(np.array(X))
        return np.linspace(0.9, 1.0, len(X))

    build_accuracy_predictor(space.sobol_pool(POOL, SEED), FunctionTrainer(record), space.low, space.high,
                             initial=INITIAL, p=1, q=1, budget=INITIAL, flops=space.macs_many, random_state=SEED,
                             gp_params={"n_restarts_optimizer": 0})
    return asked[0][:k].astype(np.int64)


# ----------------------------------------------------------------------------- one run (a child process)
def child(genes: list[list[int]], workers: int, seed: int = SEED) -> dict[str, Any]:
    """Train ``genes`` as a round of the main job does; wall time, the workers' CPU time, every result."""
    from optimizer.training.settings import TrainingSettings, code_version
    from optimizer.training.trainer import TorchTrainer

    with tempfile.TemporaryDirectory() as folder:
        trainer = TorchTrainer(SPACE, "digits", TrainingSettings(seed=seed), Path(folder) / "observations.parquet",
                               workers=workers, progress=False)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        trainer.train(np.array(genes))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool is joined: its workers are counted
    by_genes = {tuple(r.genes): r for r in trainer.results}
    results = [by_genes[tuple(g)] for g in genes]
    return {"wall_s": wall, "cpu_user_s": after.ru_utime - before.ru_utime, "cpu_sys_s": after.ru_stime - before.ru_stime,
            "code_version": code_version(), "train_seconds": [r.train_seconds for r in results],
            "accuracy": [r.accuracy for r in results], "final_loss": [r.final_loss for r in results]}


def run(variant: str, before: str | None, genes: np.ndarray, workers: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in (TRAINING_FROM, TRAINING_LAYOUT)}
    if variant == "before":
        env[TRAINING_FROM] = str(before)
    elif variant == "after_old_layout":
        env[TRAINING_LAYOUT] = "contiguous_format"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(genes.tolist()),
               "--workers", str(workers)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {variant} run failed:\n{out.stderr[-3000:]}")
    return {"variant": variant, **json.loads(out.stdout.strip().splitlines()[-1])}


# ----------------------------------------------------------------------------- a whole main job's accuracies
def retrain(observations: Path, limit: int, seed_reference: bool, workers: int) -> dict[str, Any]:
    """The first ``limit`` networks of an earlier main job trained again: accuracies and the GP fitted on them."""
    import pyarrow.parquet as pq
    from scipy.stats import spearmanr

    from optimizer.accuracy.predictors import GPPredictor
    from optimizer.spaces import get_space

    space = get_space(SPACE)
    table = pq.read_table(observations)
    X = np.column_stack([table.column(g).to_numpy() for g in space.gene_names]).astype(np.int64)[:limit]
    accuracies = {"recorded": table.column("accuracy").to_numpy().astype(np.float64)[:limit]}
    code = sorted(set(table.column("code_version").to_pylist()[:limit]))
    started = time.perf_counter()
    accuracies["now"] = np.array(child(X.tolist(), workers)["accuracy"])
    if seed_reference:
        accuracies["now_seed_1"] = np.array(child(X.tolist(), workers, seed=1)["accuracy"])
    wall = time.perf_counter() - started

    def moved(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        d = b - a
        return {"mean": float(d.mean()), "mean_abs": float(np.abs(d).mean()), "max_abs": float(np.abs(d).max()),
                "std": float(d.std()), "identical": int((d == 0).sum()), "spearman": float(spearmanr(a, b)[0])}

    predictors = {}
    for name, y in accuracies.items():
        gp = GPPredictor(space.low, space.high, random_state=SEED, n_restarts_optimizer=0).fit(X, y)
        loo = y - gp.loo_residuals()
        predictors[name] = {"loo_rmse": float(np.sqrt(gp.loo_mse())), "loo_spearman": float(spearmanr(loo, y)[0])}
    document: dict[str, Any] = {
        "observations": str(observations), "recorded_code_version": code, "networks": len(X), "wall_s": wall,
        "mean_accuracy": {name: float(y.mean()) for name, y in accuracies.items()},
        "code_change": moved(accuracies["recorded"], accuracies["now"]),
        "predictor": predictors,
        "per_network": [{"genes": [int(v) for v in x], **{name: float(y[i]) for name, y in accuracies.items()}}
                        for i, x in enumerate(X)],
    }
    if seed_reference:
        document["seed_change"] = moved(accuracies["now"], accuracies["now_seed_1"])
    return document


# ----------------------------------------------------------------------------- the comparison
#: The variants, in the order of a forward pass: the old package; the current code in the old layout (every change
#: that keeps results, alone); the current code as it runs.
VARIANTS = ("before", "after_old_layout", "after")


def summarize(genes: np.ndarray, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: times and accuracies; against ``before``: time ratios and each network's accuracy difference."""
    from optimizer.spaces import get_space

    space = get_space(SPACE)
    by_variant = {v: [r for r in runs if r["variant"] == v] for v in VARIANTS if any(r["variant"] == v for r in runs)}
    cpu = lambda rs: float(sum(r["cpu_user_s"] + r["cpu_sys_s"] for r in rs))  # noqa: E731
    per: dict[str, Any] = {}
    for v, mine in by_variant.items():
        per[v] = {
            "runs": len(mine), "code_version": mine[0]["code_version"],
            "wall_s": [r["wall_s"] for r in mine],
            "cpu_s": [r["cpu_user_s"] + r["cpu_sys_s"] for r in mine],
            "cpu_sys_s": [r["cpu_sys_s"] for r in mine],
            "train_seconds_sum": [float(np.sum(r["train_seconds"])) for r in mine],
            "train_seconds": [float(x) for x in np.mean([r["train_seconds"] for r in mine], axis=0)],
            "accuracy": mine[0]["accuracy"],
            # Training is deterministic: every run of a variant must give the same accuracies, bit for bit.
            "repeatable": all(r["accuracy"] == mine[0]["accuracy"] and r["final_loss"] == mine[0]["final_loss"]
                              for r in mine),
        }
    summary: dict[str, Any] = {"variants": per}
    if "before" in by_variant:
        b = by_variant["before"]
        acc_b = np.array(per["before"]["accuracy"])
        seconds_b = np.array(per["before"]["train_seconds"])
        for v, mine in by_variant.items():
            if v == "before":
                continue
            acc = np.array(per[v]["accuracy"])
            per[v]["over_before"] = {
                "wall": float(sum(r["wall_s"] for r in mine) / sum(r["wall_s"] for r in b)),
                "cpu": cpu(mine) / cpu(b),
                "train_seconds": float(np.sum(per[v]["train_seconds"]) / seconds_b.sum()),
                "per_network_train_seconds": [float(x) for x in np.array(per[v]["train_seconds"]) / seconds_b],
                "accuracy_identical": bool((acc == acc_b).all()),
                "final_loss_identical": mine[0]["final_loss"] == b[0]["final_loss"],
                "accuracy_difference": [float(x) for x in acc - acc_b],
                "accuracy_difference_mean": float(np.mean(acc - acc_b)),
                "accuracy_difference_max_abs": float(np.max(np.abs(acc - acc_b))),
            }
    summary["networks"] = [{"genes": dict(zip(space.gene_names, map(int, g))), "resolution": int(space.resolution(g)),
                            "mmacs": float(space.macs(g)) / 1e6} for g in genes]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="folder holding the old training package as optimizer/training/")
    parser.add_argument("--k", type=int, default=8, help="networks (the main job's first K)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, alternated")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the cores, as the main job)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "main_job_training.json")
    parser.add_argument("--json", action="store_true", help="print the result document on stdout")
    parser.add_argument("--retrain", type=Path, help="an earlier main job's observations.parquet: train its networks again")
    parser.add_argument("--limit", type=int, default=48, help="with --retrain: its first LIMIT rows (Algorithm 1's)")
    parser.add_argument("--seed-reference", action="store_true", help="with --retrain: train them with seed 1 too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from optimizer.training.workers import available_cores

    workers = args.workers or available_cores()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child), workers)))
        return
    document = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.retrain is not None:
        document["retrain"] = retrain(args.retrain, args.limit, args.seed_reference, workers)
        _write(document, args)
        moved = document["retrain"]["code_change"]
        print(f"{document['retrain']['networks']} networks trained again: accuracy now - recorded: mean "
              f"{moved['mean']:+.4f}, mean |.| {moved['mean_abs']:.4f}, max |.| {moved['max_abs']:.3f}; wrote {args.out}")
        return
    if args.before and not (Path(args.before) / "optimizer" / "training" / "__init__.py").is_file():
        raise SystemExit(f"--before {args.before}: no optimizer/training/__init__.py there")
    genes = main_job_networks(args.k)
    variants = VARIANTS if args.before else VARIANTS[1:]
    runs = []
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:  # A B C C B A: drift cancels
            runs.append(run(variant, args.before, genes, workers))
            print(f"run {len(runs)}: {variant}: {runs[-1]['wall_s']:.1f} s wall, "
                  f"{runs[-1]['cpu_user_s'] + runs[-1]['cpu_sys_s']:.1f} s CPU "
                  f"({runs[-1]['cpu_sys_s']:.1f} s system)", file=sys.stderr, flush=True)
    kept = document.get("retrain")  # the other part of the file stays
    document = {
        "benchmark": "main_job_training", "space": SPACE, "data": "digits", "k": args.k, "repeats": args.repeats,
        "workers": workers, "seed": SEED, "pool": POOL, "before": args.before,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "cores_available": available_cores(),
                    "note": "shared machine; compare variants within this run only"},
        "runs": runs, **summarize(genes, runs),
    }
    if kept is not None:
        document["retrain"] = kept
    _write(document, args)
    if not args.json:
        for name, figures in document["variants"].items():
            if "over_before" in figures:
                o = figures["over_before"]
                print(f"{name} / before: wall {o['wall']:.3f}, CPU {o['cpu']:.3f}, training time {o['train_seconds']:.3f}; "
                      f"accuracy - before: mean {o['accuracy_difference_mean']:+.4f}, max |.| "
                      f"{o['accuracy_difference_max_abs']:.3f} (identical: {o['accuracy_identical']})")
        print(f"wrote {args.out}")


def _write(document: dict[str, Any], args: argparse.Namespace) -> None:
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
