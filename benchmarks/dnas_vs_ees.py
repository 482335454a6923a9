"""FBNet's differentiable search against ChamNet's EES on one LUT, one space, one data set, the same seeds (issue 21).

1. **LUT**: every operator of ``fbnet-mini`` measured on ``--device`` (default the local ``xeon``
   profile) into ``WORK/lut.parquet``, and the LUT sum's network correction fitted on 20 random
   networks measured end to end (``WORK/network_correction.json``), as the main job does.  Both
   searches price latency with that corrected LUT.
2. **Budgets**: the 25th, 50th and 75th percentiles of the predicted latency of 1,024 random
   architectures (or ``--budgets``).
3. Per seed, **EES** (``optimize``'s way): Algorithm 1 trains ``--trainings`` networks of a Sobol pool
   for the GP accuracy predictor, then EES searches each budget; a pick whose untrained export
   measures over ``budget · (1 − MEASURED_MARGIN)`` is searched again under a budget tightened by
   the overshoot (up to 4 times), the same measured rule as DNAS's pick.
   **DNAS** (``optimize dnas``): one supernet search per β of ``--betas``, candidates sampled from
   each P_θ; per budget each search's most probable candidate within it is trained on w's split and
   scored on θ's, and the best is measured the same way.
4. Both methods' picks are **trained from scratch with the same trainer and settings** (``--train-epochs``,
   the seed), exported, and measured again **side by side in one interleaved batch** (every pick of
   every seed and method; the median of three such batches), which decides the table's measured
   latency and "within budget".

Search cost is CPU-seconds (``time.process_time`` of this process plus its finished children,
the training workers): EES = Algorithm 1's trainings, the GP fits and the EES runs; DNAS = the
supernet searches (each search's own process time, kept in its checkpoint across resumes), the
scoring of the samples and the representatives' validation trainings.  End-to-end measurements and the final trainings are the same work for both
and are reported apart.  Everything is cached in ``--work`` (default ``benchmarks/work/dnas_vs_ees``);
re-running resumes.  Results: ``--out-dir``/dnas_vs_ees.json and .png.

Usage:  python benchmarks/dnas_vs_ees.py [--seeds 0,1] [--data digits] [--betas 0.6,2,5] [--epochs 12]
            [--trainings 24] [--train-epochs 5] [--budgets 0.04,0.05,0.06] [--device xeon] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EES_RETRIES = 4


def cpu_now() -> float:
    """CPU seconds of this process and of its children that have finished (the worker pools, joined)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--betas", default="0.6,2,5")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of each supernet search")
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--trainings", type=int, default=24, help="Algorithm 1's trained networks (EES's predictor)")
    parser.add_argument("--initial", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--train-epochs", type=int, default=5, help="epochs of every trained network, both methods")
    parser.add_argument("--budgets", default=None, help="ms, comma-separated (default: quartiles of the space on the LUT)")
    parser.add_argument("--device", default="xeon")
    parser.add_argument("--calibration", type=int, default=20)
    parser.add_argument("--verify-batches", type=int, default=3, help="side-by-side batches of the final measurement")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "dnas_vs_ees")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rich.console import Console

    from harness.profiles import load_profile
    from harness.sweep import run_sweep
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel, NetworkCorrection
    from optimizer.pipeline import _Say, calibrate, space_plan
    from optimizer.spaces import get_space
    from optimizer.training.datasets import load_dataset
    from optimizer.training.settings import TrainingSettings

    console = Console(stderr=True)
    started = time.monotonic()
    space = get_space("fbnet-mini")
    profile = load_profile(args.device)
    data = load_dataset(args.data)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    say = _Say(console)
    seeds = [int(s) for s in args.seeds.split(",")]

    # 1. the LUT and its correction
    sweep = run_sweep(profile, space_plan(space), work / "lut.parquet")
    console.print(f"LUT: {sweep.rows_in_lut} rows ({sweep.measured} measured now) on {profile.name}")
    if (work / "network_correction.json").exists():
        correction = NetworkCorrection.load(work / "network_correction.json")
    else:
        correction = calibrate(space, profile, work, args.calibration, 0, say, {})
    lut = LutLatencyModel.from_file(work / "lut.parquet", correction)
    latency = LatencyPredictor(lut, space)
    plain = LatencyPredictor(LutLatencyModel.from_file(work / "lut.parquet"), space)

    # 2. budgets
    if args.budgets:
        budgets = sorted(float(b) for b in args.budgets.split(","))
    else:
        quartiles = np.quantile(latency.predict(space.random(1024, 0)).latency_ms, [0.25, 0.5, 0.75])
        budgets = sorted({float(f"{q:.4g}") for q in quartiles})
    console.print(f"budgets: {', '.join(f'{b:g}' for b in budgets)} ms (corrected LUT latency)")
    settings = {s: TrainingSettings(epochs=args.train_epochs, seed=s) for s in seeds}

    # 3. both searches per seed
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        ees = ees_seed(space, data, latency, budgets, settings[seed], seed, args, work / f"ees-s{seed}", profile, say)
        dnas = dnas_seed(space, data, budgets, settings[seed], seed, args, work, console)
        runs += [ees, dnas]

    # 4. every pick measured again, side by side
    from optimizer.pipeline import measure_exports

    picks = [p for r in runs for p in r["picks"] if p.get("onnx")]
    console.print(f"measuring the {len(picks)} trained picks again, side by side, {args.verify_batches} batches")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    batches = []
    for k in range(args.verify_batches):  # a burst of this shared machine that hits one batch does not decide a figure
        timings = measure_exports(profile, [Path(p["onnx"]) for p in picks], work / f"side_by_side-{stamp}-{k}.json",
                                  say, {}, "side by side", lut=work / "lut.parquet")
        batches.append([timings[p["onnx"]]["median_us"] / 1000 for p in picks])
    batches = np.array(batches)
    X = np.array([p["genes"] for p in picks]) if picks else np.zeros((0, space.dim), dtype=np.int64)
    plain_ms = plain.predict(X).latency_ms if len(X) else []
    for k, (p, pl) in enumerate(zip(picks, plain_ms)):
        p["measured_ms"] = float(np.median(batches[:, k]))
        p["measured_batches_ms"] = batches[:, k].tolist()
        p["plain_latency_ms"] = float(pl)
        p["within_budget"] = p["measured_ms"] <= p["budget_ms"]
        p["latency_error"] = p["predicted_ms"] / p["measured_ms"] - 1
    summary = summarize(runs, budgets)
    document = {"benchmark": "dnas_vs_ees", "space": space.name, "device": profile.name, "device_model": lut.device,
                "data": data.describe(), "seeds": seeds, "budgets_ms": budgets, "betas": args.betas,
                "supernet_epochs": args.epochs, "samples": args.samples, "algorithm1_trainings": args.trainings,
                "train_epochs": args.train_epochs, "correction": correction.to_json(), "runs": runs,
                "summary": summary, "wall_s": time.monotonic() - started}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    document["png"] = str(plot(runs, budgets, args.out_dir / "dnas_vs_ees.png", f"{space.name} on {profile.name}, "
                                                                                 f"{data.name}"))
    (args.out_dir / "dnas_vs_ees.json").write_text(json.dumps(document, indent=2, default=float) + "\n")
    if args.json:
        print(json.dumps(document, default=float))
    else:
        print(table(runs, summary))
    return 0


# ------------------------------------------------------------------ EES, optimize's way
def ees_seed(space: Any, data: Any, latency: Any, budgets: list[float], settings: Any, seed: int, args: Any,
             folder: Path, profile: Any, say: Any) -> dict[str, Any]:
    from optimizer.accuracy.predictors import build_accuracy_predictor
    from optimizer.netadapt.records import MEASURED_MARGIN
    from optimizer.pipeline import _arch_name, measure_exports
    from optimizer.search.frontier import search_budgets
    from optimizer.training.trainer import TorchTrainer

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "ees.json"
    if done.exists():  # a finished phase keeps the costs it measured (resumed trainings would cost ~0 again)
        record = json.loads(done.read_text())
        say.done(f"EES seed {seed}: from {done}")
        return record
    say.console.print(f"[bold]EES, seed {seed}[/]: Algorithm 1 with {args.trainings} trainings, then EES per budget")
    cpu0 = cpu_now()
    trainer = TorchTrainer(space, data, settings, observations=folder / "observations.parquet", workers=args.workers)
    predictor, history = build_accuracy_predictor(
        space.sobol_pool(2048, seed), trainer, space.low, space.high, initial=min(args.initial, args.trainings),
        p=args.per_round, q=args.per_round, budget=args.trainings, flops=space.macs_many, random_state=seed,
        gp_params={"n_restarts_optimizer": 0})
    predictor_cpu = cpu_now() - cpu0
    picks, search_cpu, tries = [], 0.0, []
    for budget in budgets:
        target = budget
        for attempt in range(EES_RETRIES):
            c0 = cpu_now()
            choice = search_budgets(space, latency, predictor, [target], seed=seed)[0]
            search_cpu += cpu_now() - c0
            path = folder / "candidates" / f"{_arch_name(space, choice.genes)}.onnx"
            if not path.exists():
                space.export_onnx(choice.genes, path)
            measured = measure_exports(profile, [path], folder / "network_timings.json", say, {}, "EES pick",
                                       lut=args.work / "lut.parquet")[str(path)]["median_us"] / 1000
            tries.append({"budget_ms": budget, "searched_under_ms": target, "genes": choice.genes.tolist(),
                          "predicted_ms": choice.latency_ms, "measured_ms": measured})
            if measured <= budget * (1 - MEASURED_MARGIN):
                break
            target = target * budget * (1 - MEASURED_MARGIN) / measured  # tightened by the overshoot
        picks.append({"method": "EES", "seed": seed, "budget_ms": budget, "genes": choice.genes.tolist(),
                      "blocks": space.blocks(choice.genes), "predicted_ms": float(choice.latency_ms),
                      "predicted_accuracy": float(choice.accuracy), "macs": int(choice.macs),
                      "untrained_measured_ms": measured,
                      "met_margin": bool(measured <= budget * (1 - MEASURED_MARGIN))})
    train_final(space, data, settings, picks, folder / "finals", args.workers)
    record = {"method": "EES", "seed": seed, "search_cpu_s": predictor_cpu + search_cpu, "predictor_cpu_s": predictor_cpu,
              "ees_cpu_s": search_cpu, "trained_for_predictor": int(len(predictor.y_train_)),
              "predictor_loo_rmse": float(np.sqrt(predictor.loo_mse())), "rounds": len(history.rounds),
              "tries": tries, "picks": picks}
    done.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return record


def train_final(space: Any, data: Any, settings: Any, picks: list[dict[str, Any]], folder: Path,
                workers: int | None) -> None:
    """Train picks from scratch (the trainer, the given settings), export them with their weights; fills accuracy, onnx."""
    from optimizer.pipeline import _arch_name, _export
    from optimizer.training.trainer import TorchTrainer

    if not picks:
        return
    trainer = TorchTrainer(space, data, settings, observations=folder / "observations.parquet", workers=workers,
                           checkpoints=folder / "checkpoints")
    X = np.array([p["genes"] for p in picks])
    c0 = cpu_now()
    accuracy = trainer.train(X)
    cpu = cpu_now() - c0
    for p, x, acc in zip(picks, X, accuracy):
        p["trained_accuracy"] = float(acc)
        p["onnx"] = str(_export(space, x, trainer, folder / "networks" / f"{_arch_name(space, x)}.onnx")[0])
        p["final_training_cpu_s"] = cpu / len(picks)


# ------------------------------------------------------------------ DNAS, optimize dnas's way
def dnas_seed(space: Any, data: Any, budgets: list[float], settings: Any, seed: int, args: Any, work: Path,
              console: Any) -> dict[str, Any]:
    from optimizer.dnas import DnasJob, DnasSettings, run_dnas

    console.print(f"[bold]DNAS, seed {seed}[/]: supernet searches at β = {args.betas}, {args.epochs} epochs each")
    job = DnasJob(lut=work / "lut.parquet", out=work / f"dnas-s{seed}", budgets_ms=tuple(budgets), space=space.name,
                  data=args.data, betas=tuple(float(b) for b in args.betas.split(",")),
                  search=DnasSettings(epochs=args.epochs, warmup_epochs=args.warmup_epochs), samples=args.samples, training=settings,
                  device=args.device, workers=args.workers, seed=seed)
    c0 = cpu_now()
    result = run_dnas(job, console=console)
    whole = cpu_now() - c0
    picks = [{"method": "DNAS", "seed": seed, "budget_ms": f.budget_ms, "genes": f.genes, "blocks": f.blocks,
              "predicted_ms": f.predicted_latency_ms, "validation_accuracy": f.validation_accuracy, "beta": f.beta,
              "trained_validation_accuracy": f.trained_validation_accuracy,
              "macs": f.macs, "untrained_measured_ms": f.untrained_measured_ms, "met_margin": True,
              "trained_accuracy": f.trained_accuracy, "onnx": f.onnx} for f in result.finals]
    return {"method": "DNAS", "seed": seed, "search_cpu_s": result.search_cpu_seconds,
            "validation_cpu_s": result.validation_cpu_seconds,
            "searches": [{k: s[k] for k in ("beta", "cpu_seconds", "wall_seconds", "expected_latency_us",
                                            "argmax_latency_us", "entropy", "theta_accuracy")} for s in result.searches],
            "unmet_budgets": result.unmet_budgets, "run_cpu_s_this_time": whole, "picks": picks}


# ------------------------------------------------------------------ report
def summarize(runs: list[dict[str, Any]], budgets: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in ("EES", "DNAS"):
        mine = [r for r in runs if r["method"] == method]
        picks = [p for r in mine for p in r["picks"]]
        out[method] = {
            "search_cpu_s_mean": float(np.mean([r["search_cpu_s"] for r in mine])),
            "search_cpu_s": [r["search_cpu_s"] for r in mine],
            "picks": len(picks), "expected_picks": len(mine) * len(budgets),
            "all_within_budget": all(p.get("within_budget", False) for p in picks),
            "per_budget": {f"{b:g}": {
                "accuracy_mean": _mean([p["trained_accuracy"] for p in picks if p["budget_ms"] == b]),
                "measured_ms_mean": _mean([p["measured_ms"] for p in picks if p["budget_ms"] == b]),
            } for b in budgets},
        }
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| budget ms | seed | method | measured ms | predicted ms | within | test accuracy | search CPU-s |",
             "|---:|---:|---|---:|---:|---|---:|---:|"]
    rows = sorted(((p, r) for r in runs for p in r["picks"]), key=lambda pr: (pr[0]["budget_ms"], pr[0]["seed"],
                                                                              pr[0]["method"]))
    for p, r in rows:
        lines.append(f"| {p['budget_ms']:g} | {p['seed']} | {p['method']} | {p['measured_ms']:.4f} | "
                     f"{p['predicted_ms']:.4f} | {'yes' if p['within_budget'] else 'NO'} | "
                     f"{p['trained_accuracy']:.3f} | {r['search_cpu_s']:.0f} |")
    for method, s in summary.items():
        lines.append(f"\n{method}: search {s['search_cpu_s_mean']:.0f} CPU-s per seed; {s['picks']}/{s['expected_picks']} "
                     f"budgets met; all within budget: {s['all_within_budget']}; accuracy per budget "
                     + ", ".join(f"{b}: {v['accuracy_mean']:.3f}" for b, v in s["per_budget"].items()
                                 if v["accuracy_mean"] is not None))
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], budgets: list[float], path: Path, title: str) -> Path:
    from harness.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    styles = {"EES": ("tab:blue", "o"), "DNAS": ("tab:red", "^")}
    for method, (colour, marker) in styles.items():
        picks = [p for r in runs if r["method"] == method for p in r["picks"]]
        ax.scatter([p["measured_ms"] for p in picks], [p["trained_accuracy"] for p in picks], color=colour,
                   marker=marker, s=46, alpha=0.8, label=f"{method} picks (all seeds)")
        for b in budgets:
            mine = [p for p in picks if p["budget_ms"] == b]
            if mine:
                ax.scatter([np.mean([p["measured_ms"] for p in mine])], [np.mean([p["trained_accuracy"] for p in mine])],
                           color=colour, marker=marker, s=160, edgecolor="black", zorder=5)
    for b in budgets:
        ax.axvline(b, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("measured latency (ms, side by side)")
    ax.set_ylabel("held-out accuracy (trained from scratch)")
    ax.set_title(title + " (large: mean per budget; dotted: budgets)", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    seeds = sorted({r["seed"] for r in runs})
    width = 0.38
    for k, method in enumerate(styles):
        costs = [next(r["search_cpu_s"] for r in runs if r["method"] == method and r["seed"] == s) for s in seeds]
        bx.bar(np.arange(len(seeds)) + (k - 0.5) * width, costs, width, color=styles[method][0], label=method)
    bx.set_xticks(np.arange(len(seeds)), [f"seed {s}" for s in seeds])
    bx.set_ylabel("search cost (CPU-s)")
    bx.set_title("search cost, all budgets", fontsize=8)
    bx.legend(fontsize=7)
    return save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
