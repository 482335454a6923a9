"""The main job: ChamNet's Fig. 1 on this machine, measure → predict → search → export → measure again.

1. **Sweep** every operator any architecture of the (reduced) space contains on
   the device, into ``lut.parquet`` (the harness's resumable sweep).
2. **Accuracy predictor**: ChamNet's Algorithm 1 over a Sobol pool, each sample
   really trained on the data set (``observations.parquet``; trainings already
   there are reused), the fitted GP saved as ``accuracy_predictor.json``.
3. **Search**: EES under the latency budget (and a few budgets around it, for
   the frontier), latency from the LUT, accuracy from the GP.
4. **Export and check**: each chosen architecture is trained (reused when it
   was), exported with its trained weights to ONNX, and measured end to end on
   the device; the report sets predicted latency against measured latency and
   predicted accuracy against trained accuracy, and says whether the winner
   meets its budget, or by how much it does not.

Everything lives in one output folder, and every step is cached there: a run
killed at any point resumes from what was finished (measured operators,
trained networks, measured exports).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.atomic import write_text_atomically
from harness.contention import ContentionReport, summarize
from harness.errors import ChameleonError
from harness.progress_lines import Tracker, track
from optimizer.progress import ProgressContext

# The budgets of the frontier, as fractions of the main budget (the main one is 1).
FRONTIER_FRACTIONS: tuple[float, ...] = (0.6, 0.8, 1.0, 1.25)
# The default budget is the predicted latency of this baseline: the search then has to beat
# a uniform-width network of the same speed.
DEFAULT_BUDGET_BASELINE = "uniform-mid-48"


class PipelineError(ChameleonError):
    """A main-job setting that cannot work (an unknown baseline, a budget no architecture meets...)."""


@dataclass(frozen=True)
class PipelineConfig:
    out: Path
    device: str = "xeon"
    space: str = "chamnet-mobile-mini"
    data: str = "digits"
    latency_ms: float | None = None  # None: the predicted latency of DEFAULT_BUDGET_BASELINE
    trainings: int = 24  # Algorithm 1's budget of trained samples
    initial: int = 8
    per_round: int = 4  # p = q = per_round
    pool: int = 2048  # ChamNet's k
    epochs: int | None = None  # None: the trainer's default
    workers: int | None = None  # None: one per core
    cluster: str | None = None  # train on this Ray cluster ("local" or the head's HOST:PORT); None: local processes
    calibration: int = 20  # random networks measured end to end to fit the LUT sum's NetworkCorrection (0: none)
    seed: int = 0
    generations: int = 100


@dataclass
class Outcome:
    """One chosen architecture, checked."""

    budget_ms: float
    genes: list[int]
    macs: int
    predicted_latency_ms: float
    plain_latency_ms: float  # the LUT sum before the network correction
    measured_latency_ms: float
    measured_p10_ms: float
    measured_p90_ms: float
    predicted_accuracy: float
    trained_accuracy: float
    onnx: str
    trained_weights: bool

    @property
    def latency_error(self) -> float:
        return self.predicted_latency_ms / self.measured_latency_ms - 1.0

    @property
    def over_budget(self) -> float:
        """How far the measured latency is over the budget (≤ 0: within it)."""
        return self.measured_latency_ms / self.budget_ms - 1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_error"] = self.latency_error
        data["over_budget"] = self.over_budget
        data["within_budget"] = self.over_budget <= 0
        return data


@dataclass
class PipelineResult:
    config: dict[str, Any]
    device: str
    device_model: str
    lut: str
    lut_rows: int
    observations: str
    trained_samples: int
    predictor_loo_rmse: float
    correction: dict[str, Any]
    budget_ms: float
    budget_source: str
    reference: dict[str, Any]
    outcomes: list[Outcome]
    frontier_png: str = ""
    steps_s: dict[str, float] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    # Whether the host was quiet while each step measured (harness.contention.summarize): trusted, reason, phases.
    contention: dict[str, Any] = field(default_factory=dict)
    # Why the accuracy predictor may not tell networks apart (optimizer.search.defaults.predictor_warnings).
    predictor_warnings: list[str] = field(default_factory=list)

    @property
    def winner(self) -> Outcome:
        return next(o for o in self.outcomes if o.budget_ms == self.budget_ms)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = [o.to_json() for o in self.outcomes]
        data["winner"] = self.winner.to_json()
        return data


# ------------------------------------------------------------------ the job
def run_pipeline(config: PipelineConfig, console: Any = None) -> PipelineResult:
    """Run (or resume) the main job into ``config.out``; ``console`` (rich, stderr) shows steps and progress.

    The run folder is checked before anything starts (a file, an unwritable folder: one line) and held
    under its lock, ``OUT/run.lock``, for the whole run: its caches (the LUT's parts, the observations,
    ``network_timings.json``) are read, extended and rewritten, and a second run into the same folder
    would lose what the first adds.  That second run is refused at once, naming the lock.
    """
    from harness.atomic import exclusive_lock
    from harness.output_paths import prepare_output_folder

    out = prepare_output_folder(config.out, "--out")
    with exclusive_lock(out / "run", "another optimize pipeline is running in this folder"):
        # In a log, the job's steps get a line at least every 20 s even where nothing reports progress
        # (a GP fit, the search, the exports); on a terminal the steps' bars show it.
        with track("optimize pipeline", console, bar=False) as job:
            return _run_pipeline(config, console, job)


def _run_pipeline(config: PipelineConfig, console: Any, job: Tracker) -> PipelineResult:
    from harness.profiles import load_profile
    from harness.sweep import run_sweep
    from optimizer.accuracy.predictors import build_accuracy_predictor
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
    from optimizer.search.defaults import predictor_warnings, remember_predictor
    from optimizer.search.frontier import baseline_points, load_latency, search_budgets
    from optimizer.spaces import get_space
    from optimizer.training.trainer import TorchTrainer
    from optimizer.training.settings import TrainingSettings

    out = Path(config.out)
    space = get_space(config.space)
    profile = load_profile(config.device)
    settings = TrainingSettings() if config.epochs is None else TrainingSettings(epochs=config.epochs)
    # The data set is loaded (and checked) before anything is measured.
    trainer = TorchTrainer(space, config.data, settings, observations=out / "observations.parquet",
                           workers=config.workers, checkpoints=out / "checkpoints", progress=console is not None,
                           cluster=config.cluster)
    out.mkdir(parents=True, exist_ok=True)
    say = _Say(console, job)
    steps: dict[str, float] = {}
    reused: dict[str, int] = {}
    contention: dict[str, ContentionReport] = {}  # per measuring step

    # 1. every operator of the space, on the device; then the LUT sum calibrated on whole networks
    started = time.monotonic()
    plan = space_plan(space)
    say.step(1, "sweep", f"sweep {len(plan.signatures)} operators of {space.name} on {profile.name} → {out / 'lut.parquet'}")
    with say.progress("sweep") as on_progress:
        sweep = run_sweep(profile, plan, out / "lut.parquet", on_progress=on_progress)
    if sweep.interrupted:
        raise KeyboardInterrupt
    reused["operators"] = sweep.already_measured
    if sweep.contention is not None:
        contention["sweep"] = sweep.contention
    say.done(f"{sweep.measured} measured, {sweep.already_measured} already there ({sweep.wall_s:.0f} s)")
    plain_latency = load_latency(out / "lut.parquet", space, interpolate=False)
    correction = None
    if config.calibration:
        correction = calibrate(space, profile, out, config.calibration, config.seed, say, reused, contention)
    latency = plain_latency if correction is None else LatencyPredictor(
        LutLatencyModel.from_file(out / "lut.parquet", correction), space)
    steps["sweep"] = time.monotonic() - started

    # 2. Algorithm 1 with real trainings
    started = time.monotonic()
    say.step(2, "accuracy predictor", f"accuracy predictor: Algorithm 1, {config.trainings} networks trained on {config.data} "
                f"({settings.epochs} epochs each)")
    pool = space.sobol_pool(config.pool, config.seed)
    predictor, history = build_accuracy_predictor(
        pool, trainer, space.low, space.high, initial=min(config.initial, config.trainings),
        p=config.per_round, q=config.per_round, budget=config.trainings, flops=space.macs_many,
        random_state=config.seed, gp_params={"n_restarts_optimizer": 0})
    predictor.save(out / "accuracy_predictor.json")
    remember_predictor(predictor, space.name)  # the space's predictor for `optimize --lut` on any device's LUT
    warnings = predictor_warnings(predictor, space)
    reused["trainings"] = trainer.n_reused
    loo_rmse = float(np.sqrt(predictor.loo_mse()))
    say.done(f"GP on {len(predictor.y_train_)} trained networks, leave-one-out RMSE {loo_rmse:.4f}")
    steps["predictor"] = time.monotonic() - started

    # 3. the search
    started = time.monotonic()
    baselines = space.baselines()
    if config.latency_ms is None:
        if DEFAULT_BUDGET_BASELINE not in baselines:
            raise PipelineError(f"space {space.name} has no baseline {DEFAULT_BUDGET_BASELINE}; give --latency")
        budget = float(latency.predict(baselines[DEFAULT_BUDGET_BASELINE][None]).latency_ms[0])
        budget_source = f"predicted latency of {DEFAULT_BUDGET_BASELINE}"
    else:
        budget, budget_source = float(config.latency_ms), "given"
    budgets = sorted({budget * f for f in FRONTIER_FRACTIONS} | {budget})
    say.step(3, "search", f"EES under {budget:.3f} ms ({budget_source}) and {len(budgets) - 1} budgets around it")
    choices = search_budgets(space, latency, predictor, budgets, seed=config.seed, generations=config.generations)
    steps["search"] = time.monotonic() - started

    # 4. train, export and measure the choices (and the reference baseline)
    started = time.monotonic()
    reference_name = DEFAULT_BUDGET_BASELINE if DEFAULT_BUDGET_BASELINE in baselines else next(iter(baselines), None)
    X = np.array([c.genes for c in choices] + ([baselines[reference_name]] if reference_name else []))
    say.step(4, "check", f"train the {len(choices)} chosen networks"
                + (f" and {reference_name}" if reference_name else "") + ", export them to ONNX, measure them end to end")
    trained = trainer.train(X)
    exports = [_export(space, x, trainer, out / "networks" / f"{_arch_name(space, x)}.onnx") for x in X]
    timings = measure_exports(profile, [path for path, _ in exports], out / "network_timings.json", say, reused, "networks",
                              contention)
    predicted_latency = latency.predict(X).latency_ms
    plain_ms = plain_latency.predict(X).latency_ms
    predicted_accuracy = np.asarray(predictor.predict(X), dtype=np.float64)
    outcomes = []
    for i, choice in enumerate(choices):
        timing = timings[str(exports[i][0])]
        outcomes.append(Outcome(
            budget_ms=choice.budget_ms, genes=[int(v) for v in choice.genes], macs=int(choice.macs),
            predicted_latency_ms=float(predicted_latency[i]), plain_latency_ms=float(plain_ms[i]), measured_latency_ms=timing["median_us"] / 1000,
            measured_p10_ms=timing["p10_us"] / 1000, measured_p90_ms=timing["p90_us"] / 1000,
            predicted_accuracy=float(predicted_accuracy[i]), trained_accuracy=float(trained[i]),
            onnx=str(exports[i][0]), trained_weights=exports[i][1]))
    reference: dict[str, Any] = {}
    if reference_name:
        j = len(choices)
        timing = timings[str(exports[j][0])]
        reference = {"name": reference_name, "genes": [int(v) for v in X[j]],
                     "predicted_latency_ms": float(predicted_latency[j]), "measured_latency_ms": timing["median_us"] / 1000,
                     "predicted_accuracy": float(predicted_accuracy[j]), "trained_accuracy": float(trained[j])}
    steps["check"] = time.monotonic() - started

    result = PipelineResult(
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        device=profile.name, device_model=sweep.device_model, lut=str(out / "lut.parquet"), lut_rows=sweep.rows_in_lut,
        observations=str(out / "observations.parquet"), trained_samples=int(len(predictor.y_train_)),
        predictor_loo_rmse=loo_rmse, correction=correction.to_json() if correction else {}, budget_ms=budget, budget_source=budget_source, reference=reference,
        outcomes=outcomes, steps_s=steps, reused=reused, contention=summarize(contention), predictor_warnings=warnings)
    observed = _observations(out / "observations.parquet", space)
    result.frontier_png = str(plot_pipeline_frontier(
        result, baseline_points(space, latency, predictor), observed, latency, out / "frontier.png",
        f"{space.name} on {profile.name} ({sweep.device_model})"))
    write_text_atomically(out / "result.json", json.dumps(result.to_json(), indent=2, default=float) + "\n")
    return result


def space_plan(space: Any) -> Any:
    """A sweep plan holding every operator of the space (the LUT the space's predictor needs)."""
    from harness.plans import Plan

    return Plan(name=f"{space.name}-all", description=f"every operator of {space.name}",
                source=Path(f"<{space.name}>"), signatures=tuple(space.all_signatures()))


def calibrate(space: Any, profile: Any, out: Path, count: int, seed: int, say: "_Say", reused: dict[str, int],
              contention: dict[str, ContentionReport] | None = None) -> Any:
    """Fit the LUT sum's :class:`NetworkCorrection` on ``count`` random networks measured end to end (cached).

    The calibration networks are drawn with their own seed, apart from
    anything the search will pick, and exported with the builder's seeded
    weights (weights do not change a CPU's latency; shapes do).
    """
    from optimizer.latency.lut_model import LutLatencyModel, NetworkCorrection

    X = space.random(count, np.random.default_rng([seed, 7919]))
    folder = out / "calibration"
    paths = []
    for x in X:
        path = folder / f"{_arch_name(space, x)}.onnx"
        if not path.exists():
            space.export_onnx(x, path)
        paths.append(path)
    timings = measure_exports(profile, paths, out / "network_timings.json", say, reused, "calibration_networks",
                              contention)
    lut = LutLatencyModel.from_file(out / "lut.parquet")
    estimates = [lut.estimate(space.signatures(x)) for x in X]
    correction = NetworkCorrection.fit(estimates, [timings[str(p)]["median_us"] for p in paths],
                                       device=lut.device, lut=str(out / "lut.parquet"))
    write_text_atomically(out / "network_correction.json", json.dumps(correction.to_json(), indent=2) + "\n")
    plain_mape = float(np.mean([abs(e.plain_us / timings[str(p)]["median_us"] - 1) for e, p in zip(estimates, paths)]))
    say.done(f"LUT sum calibrated on {count} networks: mean error {plain_mape:.1%} plain → "
             f"{correction.calibration_mape:.1%} corrected (scale {correction.scale:.3f}, "
             f"{correction.boundary_us:.2f} µs per unit boundary)")
    return correction


def measure_exports(profile: Any, paths: Sequence[Path], cache: Path, say: "_Say", reused: dict[str, int], what: str,
                    contention: dict[str, ContentionReport] | None = None,
                    lut: Path | None = None) -> dict[str, dict[str, float]]:
    """End-to-end timings of ONNX files, cached by file content (a re-run measures only new exports).

    ``contention[what]`` gets how busy the host was while they were timed; the networks are held to the host
    state of the run's LUT (``lut``, by default ``lut.parquet`` beside ``cache``)."""
    from harness.contention import ContentionProbe
    from harness.host_speed import lut_baseline
    from harness.lut import store as lut_store
    from harness.networks.timing import measure_networks

    known: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    digests = {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    todo = [Path(p) for p in paths if digests[str(p)] not in known]
    if todo:
        probe = ContentionProbe.for_profile(profile)
        with say.progress("measure networks") as on_progress:
            # Held to the host state the LUT's rows were measured in (harness.host_speed), when it keeps one.
            baseline = lut_baseline(lut_store.read_lut(cache.parent / "lut.parquet" if lut is None else lut))
            timings = measure_networks(profile, todo, progress=on_progress, probe=probe, baseline_us=baseline)
        if contention is not None:
            contention[what] = probe.report()
        for path, timing in zip(todo, timings):
            known[digests[str(path)]] = {"median_us": timing.median_us, "p10_us": timing.p10_us,
                                         "p90_us": timing.p90_us, "runs": timing.runs, "path": str(path)}
        write_text_atomically(cache, json.dumps(known, indent=2) + "\n")
    reused[what] = len(paths) - len(todo)
    say.done(f"{len(todo)} networks measured, {len(paths) - len(todo)} already measured")
    return {str(p): known[digests[str(p)]] for p in paths}


def _export(space: Any, x: np.ndarray, trainer: Any, path: Path) -> tuple[Path, bool]:
    """The trained network's ONNX export (its checkpoint), or the untrained one when no checkpoint was kept."""
    from optimizer.training.checkpoints import load_trained_network

    net = (load_trained_network(space, x, trainer.checkpoints, trainer.settings, trainer.dataset.dataset_id)
           if trainer.checkpoints else None)
    if net is None:
        return space.export_onnx(x, path), False
    if not path.exists():
        net.export_onnx(path)
    return path, True


def _arch_name(space: Any, x: np.ndarray) -> str:
    digest = hashlib.sha256(np.asarray(x, dtype=np.int64).tobytes()).hexdigest()[:10]
    return f"{space.name}-r{int(space.resolution(x))}-{int(space.macs(x) / 1e3)}kmacs-{digest}"


def _observations(path: Path, space: Any) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    if not path.exists():
        return np.zeros((0, space.dim), dtype=np.int64), np.zeros(0)
    table = pq.read_table(path)
    X = np.column_stack([table.column(g).to_numpy() for g in space.gene_names]).astype(np.int64)
    return X, table.column("accuracy").to_numpy().astype(np.float64)


def plot_pipeline_frontier(result: PipelineResult, baselines: list[dict[str, Any]], observed: tuple[np.ndarray, np.ndarray],
                           latency: Any, path: Path, title: str) -> Path:
    """Accuracy against latency: trained samples, baselines (predicted), and the chosen networks as measured."""
    from harness.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    X, acc = observed
    if len(X):
        ax.scatter(latency.predict(X).latency_ms, acc, s=14, color="tab:blue", alpha=0.5,
                   label="Algorithm 1 samples (LUT latency, trained accuracy)")
    ax.scatter([b["latency_ms"] for b in baselines], [b["accuracy"] for b in baselines], s=18, marker="s",
               color="tab:orange", alpha=0.7, label="uniform-width baselines (LUT latency, predicted accuracy)")
    ref = result.reference
    if ref:  # the reference as the table gives it: measured and trained, not the predicted square above
        ax.scatter([ref["measured_latency_ms"]], [ref["trained_accuracy"]], s=60, marker="D", color="tab:red", zorder=5,
                   label=f"{ref['name']} (measured latency, trained accuracy)")
    chosen = sorted(result.outcomes, key=lambda o: o.budget_ms)
    ax.plot([o.predicted_latency_ms for o in chosen], [o.predicted_accuracy for o in chosen], ls="--", marker="*",
            ms=9, color="grey", label="EES choices (predicted)")
    ax.plot([o.measured_latency_ms for o in chosen], [o.trained_accuracy for o in chosen], marker="*", ms=13,
            color="black", label="EES choices (measured latency, trained accuracy)")
    for o in chosen:
        ax.axvline(o.budget_ms, color="red" if np.isclose(o.budget_ms, result.budget_ms) else "grey",
                   lw=0.8 if np.isclose(o.budget_ms, result.budget_ms) else 0.5, ls=":")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


class _Say:
    """Step headers and progress (bars on a terminal, lines in a log) on a rich console (stderr); silent without one.

    ``job``: the whole job's :func:`harness.progress_lines.track`, relabelled with each step so that a log's
    heartbeat lines say which step is running."""

    def __init__(self, console: Any, job: Tracker | None = None) -> None:
        self.console, self.job = console, job or Tracker()

    def step(self, number: int, name: str, text: str) -> None:
        """Step ``number`` of 4 begins: its header, and ``name`` (short) for the log's progress lines."""
        self.job.relabel(f"{number}/4 {name}")
        if self.console is not None:
            self.console.print(f"[bold cyan]{number}/4[/] {text}", soft_wrap=True)  # a log's lines are not wrapped

    def done(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"    [green]✓[/] {text}", soft_wrap=True)

    def progress(self, label: str) -> ProgressContext:
        return ProgressContext(self.console, label)
