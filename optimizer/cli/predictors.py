"""`optimize build-predictor` and `optimize estimate`: the accuracy/energy predictor and a network's LUT latency.

``build-predictor`` runs Algorithm 1 (:mod:`optimizer.accuracy.builders`) over an observations file or,
with ``--data``, over trainings it runs itself; ``estimate`` sums a network's LUT entries
(:class:`optimizer.latency.lut_model.LutLatencyModel`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.options import SEED_MAX
from harness.cli.common import emit_json, sigterm_as_ctrl_c, stdout
from harness.errors import ChameleonError, InvalidSignature, OutputNotWritable


def build_predictor(
    observations: Optional[Path] = typer.Option(None, "--observations", help="Parquet/CSV: one column per gene + the target. With --data: where trainings are appended (default: next to --out)."),
    data: Optional[str] = typer.Option(None, "--data", help="Train for real on this data set: 'digits', 'mnist-5k', 'glyphs' (built in) or an ImageFolder-style folder (one sub-folder per class)."),
    space_name: str = typer.Option("chamnet-mobile", "--space", help="The search space whose architectures are trained or observed."),
    target: str = typer.Option("accuracy", "--target", help="accuracy (Algorithm 1) or energy_mj (exploration only; not with --data)."),
    out: Path = typer.Option(..., "--out", help="Where to save the predictor (JSON)."),
    budget: int = typer.Option(240, "--budget", min=2, max=100_000, help="Samples Algorithm 1 may train (ChamNet: 240)."),
    initial: int = typer.Option(40, "--initial", min=2, max=100_000, help="Architectures trained before the first GP fit."),
    p: int = typer.Option(20, "--p", min=0, max=10_000, help="Exploration samples per round (largest predictive std)."),
    q: int = typer.Option(20, "--q", min=0, max=10_000, help="Exploitation samples per round (largest predicted accuracy / MACs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=10_000, help="Training epochs per architecture (with --data; default: TrainingSettings')."),
    resolution_scale: float = typer.Option(1.0, "--resolution-scale", min=0.01, max=1.0, help="Train each network at this fraction of its resolution (with --data): a proxy recipe for spaces too costly to train here at full size."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Parallel training processes (with --data; default: the cores)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS", help="With --data: train on a Ray cluster instead of local processes: 'local' (an embedded Ray on this machine) or the head's HOST:PORT (run this on a host of the cluster; trainings go to hosts with training slots)."),
    pool_size: int = typer.Option(2048, "--pool", min=2, max=1_000_000, help="Sobol pool of candidate architectures (with --data; ChamNet: 2048)."),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", help="Folder keeping every trained network's weights (with --data)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the pool, the initial subset and the GP fits."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Algorithm 1 over an observations file, or (--data) over trainings it runs; saves the fitted GP (not a pickle)."""
    from optimizer.spaces import get_space

    space = get_space(space_name)
    if data is None:
        from optimizer.accuracy.builders import build_from_observations

        if observations is None:
            raise ChameleonError("build-predictor needs --observations (a file of results) or --data (train for real)")
        if cluster is not None:
            raise ChameleonError("--cluster trains networks: it needs --data")
        predictor, history = build_from_observations(observations, space, target=target, budget=budget, seed=seed,
                                                     initial=initial, p=p, q=q)
        predictor.save(out)
        report = {"out": str(out), "space": space.name, "target": target, "samples": int(len(predictor.y_train_)),
                  "loo_mse": float(predictor.loo_mse()), "rounds": len(history.rounds), "stop_reason": history.stop_reason,
                  "cached_as": _remember(predictor, space.name, target)}
        if as_json:
            emit_json(report)
        else:
            stdout.print(f"{out}: GP {target} predictor from {report['samples']} samples in {report['rounds']} rounds, "
                         f"LOO MSE {report['loo_mse']:.3g}")
        return
    _build_predictor_by_training(space, data, observations, out, target, budget, initial, p, q, epochs, workers,
                                 pool_size, checkpoints, seed, as_json, resolution_scale, cluster)


def _build_predictor_by_training(space, data, observations, out, target, budget, initial, p, q, epochs, workers,
                                 pool_size, checkpoints, seed, as_json, resolution_scale=1.0, cluster=None) -> None:
    from dataclasses import asdict, replace

    from harness.cli.common import stderr
    from optimizer.training.algorithm1 import build_predictor_by_training
    from optimizer.training.settings import TrainingSettings

    if target != "accuracy":
        raise ChameleonError(f"--data trains networks for accuracy; --target {target} needs --observations")
    if p + q < 1:
        raise ChameleonError("--p and --q: a round needs at least one sample (p + q >= 1)")
    if cluster is not None and workers is not None:
        raise ChameleonError("--workers and --cluster: give one (a cluster's training slots say how many train at once)")
    observations = observations or out.with_name(f"{out.stem}-observations.parquet")
    try:  # hours of training must not end in an unwritable --out
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise OutputNotWritable(f"{out.parent}: cannot create the output folder ({problem.strerror or problem})") from None
    settings = replace(TrainingSettings(), resolution_scale=resolution_scale)
    if epochs is not None:
        settings = replace(settings, epochs=epochs)

    def on_round(record, predictor) -> None:
        stderr.print(f"round {record.round}: {record.n_samples} trained, LOO MSE {record.loo_mse:.3g}", soft_wrap=True)

    # Ctrl-C or SIGTERM: the workers are stopped, finished trainings kept.
    with sigterm_as_ctrl_c(f"interrupted: finished trainings are kept in {observations}; run the same command again "
                           f"to go on"):
        predictor, history, trainer = build_predictor_by_training(
            space, data, observations, settings=settings, pool_size=pool_size, initial=initial, p=p, q=q,
            budget=budget, seed=seed, workers=workers, checkpoints=checkpoints, cluster=cluster, on_round=on_round)
    predictor.save(out)
    cached_as = _remember(predictor, space.name, "accuracy")
    best = int(predictor.y_train_.argmax())
    report = {
        "out": str(out), "space": space.name, "target": "accuracy", "data": str(data),
        "dataset_id": trainer.dataset.dataset_id, "observations": str(observations),
        "checkpoints": None if checkpoints is None else str(checkpoints),
        "settings": asdict(settings), "settings_id": settings.settings_id, "code_version": trainer.code_version,
        "cluster": trainer.cluster, "pool": pool_size, "samples": int(len(predictor.y_train_)), "trained": trainer.n_trained,
        "reused": trainer.n_reused, "train_seconds": float(sum(r.train_seconds for r in trainer.results)),
        "loo_mse": float(predictor.loo_mse()), "stop_reason": history.stop_reason,
        "rounds": [{"round": r.round, "samples": r.n_samples, "loo_mse": r.loo_mse} for r in history.rounds],
        "best_observed": {"genes": dict(zip(space.gene_names, map(int, predictor.X_train_[best]))),
                          "accuracy": float(predictor.y_train_[best])},
        "cached_as": cached_as,
    }
    if as_json:
        emit_json(report)
    else:
        stdout.print(f"{out}: GP accuracy predictor from {report['samples']} networks trained on {report['dataset_id']} "
                     f"({report['trained']} trained now, {report['reused']} reused from {observations}) in "
                     f"{len(history.rounds)} rounds, LOO MSE {report['loo_mse']:.3g}; best observed accuracy "
                     f"{report['best_observed']['accuracy']:.4f}")


def _remember(predictor, space_name: str, target: str) -> Optional[str]:
    """An accuracy predictor also becomes the space's predictor in the cache, where `optimize --lut` finds it."""
    if target != "accuracy":
        return None
    from optimizer.search.defaults import remember_predictor

    path = remember_predictor(predictor, space_name)
    return None if path is None else str(path)


def estimate(
    lut: Path = typer.Option(..., "--lut", help="The device's LUT (Parquet)."),
    signatures: Path = typer.Argument(..., help="Text file: one operator signature per line (# comments allowed)."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A network correction of this LUT (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Estimate a network's latency as the sum of its operators' LUT entries (overhead counted once)."""
    from harness.signature import parse_signature
    from harness.textfiles import UnreadableText, read_utf8

    try:
        lines = read_utf8(signatures).splitlines()
    except UnreadableText as problem:
        raise ChameleonError(f"{signatures}: cannot read the signature list ({problem.reason})") from None
    ops = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                ops.append(parse_signature(text))
            except InvalidSignature as problem:
                raise InvalidSignature(f"{signatures}:{number}: {problem}") from None
    if not ops:
        raise ChameleonError(f"{signatures}: no signatures")
    from optimizer.latency.lut_model import LutLatencyModel, NetworkCorrection

    from harness.host_speed import host_report
    from harness.lut import store as lut_store

    table = lut_store.read_lut(lut)
    model = LutLatencyModel.from_table(table, str(lut), None if correction is None else NetworkCorrection.load(correction))
    result = model.estimate(ops)
    host = host_report(table)  # how quiet and steady the host was, and at which reference speed the sum holds
    if as_json:
        emit_json({"lut": str(lut), **result.__dict__, "host": host.to_json()})
    else:
        corrected = "" if correction is None else f", {result.plain_us / 1000:.3f} ms before the network correction"
        stdout.print(f"{result.operators} operators: {result.latency_us / 1000:.3f} ms "
                  f"(sum of entries {result.operator_sum_us / 1000:.3f} ms, overhead {result.overhead_us:.1f} µs counted once"
                  f"{corrected})")
        stdout.print(f"LUT host: {host.line()}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app (top-level commands, in this order)."""
    app.command("build-predictor")(build_predictor)
    app.command()(estimate)
