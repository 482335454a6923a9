"""``optimize dnas``: FBNet's search on a device's LUT, then the networks it finds trained, exported and measured.

1. **Search**: one supernet search per β (α fixed, FBNet's 0.2: under Adam α only scales θ's
   gradient, β sets the weight of latency), each in its run folder ``OUT/searches/a{α}-b{β}``,
   side by side in worker processes (one thread each), resumable.
2. **Sample and score**: each search's argmax architecture and ``samples`` draws from its P_θ, priced
   by the LUT model and scored with the shared weights on the search's θ split
   (:mod:`optimizer.dnas.selection`).
3. **Pick per budget**: each search's most probable candidate within the budget is trained from
   scratch on w's split and scored on θ's; the best whose untrained export measures
   ``MEASURED_MARGIN`` under the budget end to end is the pick, and its search's β the one chosen
   for that budget (on the search's own validation split, never on the test images).
4. **Check**: each pick trained from scratch with the trainer of the main job (same settings as any
   other network), exported with its weights, measured end to end with the main job's path
   (:func:`optimizer.pipeline.measure_exports`): predicted against measured latency, and whether it
   is within its budget.

Everything is cached in ``OUT``: a killed run resumes (searches from their last epoch, trainings and
measurements from what finished).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.atomic import write_text_atomically
from harness.errors import ChameleonError
from optimizer.dnas.latency import LayerLatencyTable
from optimizer.dnas.search import DnasError, DnasSettings, SearchOutcome, run_search
from optimizer.dnas.selection import (ScoredCandidate, candidates_of, order_for_budget, pick, representatives,
                                      score_candidates, validation_view)
from optimizer.progress import ProgressContext

#: β of the searches when none is given: FBNet's (0.6), and two stronger pulls toward fast networks.
DEFAULT_BETAS: tuple[float, ...] = (0.6, 2.0, 5.0)


@dataclass(frozen=True)
class DnasJob:
    """What ``optimize dnas`` runs: the LUT and space, the budgets, the searches' α and β, the final training."""

    lut: Path
    out: Path
    budgets_ms: tuple[float, ...]
    space: str = "fbnet-mini"
    data: str = "digits"
    betas: tuple[float, ...] = DEFAULT_BETAS
    alpha: float = 0.2
    search: DnasSettings = DnasSettings()
    samples: int = 8  # draws from each P_θ (FBNet: 6), beside its argmax
    training: Any = None  # TrainingSettings of the final networks (None: the trainer's defaults, seeded by ``seed``)
    correction: Path | None = None  # None: network_correction.json beside the LUT, when there is one
    interpolate: bool = False
    device: str | None = None  # the profile that measures (None: the LUT's device)
    measure: bool = True
    workers: int | None = None
    seed: int = 0


@dataclass
class DnasFinal:
    """A budget's network, trained from scratch and measured."""

    budget_ms: float
    genes: list[int]
    blocks: list[str]
    search: str
    alpha: float
    beta: float
    validation_accuracy: float | None  # shared weights, θ split
    trained_validation_accuracy: float | None  # trained from scratch on w's split, scored on θ's
    predicted_latency_ms: float
    plain_latency_ms: float
    macs: int
    untrained_measured_ms: float | None  # the export measured while picking
    measured_latency_ms: float | None = None
    measured_p10_ms: float | None = None
    measured_p90_ms: float | None = None
    trained_accuracy: float | None = None  # on the data set's held-out split
    onnx: str = ""

    @property
    def within_budget(self) -> bool | None:
        return None if self.measured_latency_ms is None else self.measured_latency_ms <= self.budget_ms

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["within_budget"] = self.within_budget
        data["latency_error"] = (None if self.measured_latency_ms is None
                                 else self.predicted_latency_ms / self.measured_latency_ms - 1)
        return data


@dataclass
class DnasResult:
    space: str
    lut: str
    device: str
    data: str
    dataset_id: str
    seed: int
    network_correction: str | None
    budgets_ms: list[float]
    searches: list[dict[str, Any]]
    candidates: list[ScoredCandidate]
    finals: list[DnasFinal]
    unmet_budgets: list[dict[str, Any]] = field(default_factory=list)
    tried: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per budget: the candidates measured
    search_cpu_seconds: float = 0.0  # the supernet searches, the scoring of their samples, the validation trainings
    validation_cpu_seconds: float = 0.0  # of which the representatives' trainings (one thread each)
    steps_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = [c.to_json() for c in self.candidates]
        data["finals"] = [f.to_json() for f in self.finals]
        return data


def run_dnas(job: DnasJob, console: Any = None) -> DnasResult:
    """Run (or resume) ``optimize dnas`` into ``job.out`` (held under ``OUT/run.lock``); ``console`` shows progress."""
    from harness.atomic import exclusive_lock
    from harness.output_paths import prepare_output_folder

    out = prepare_output_folder(job.out, "--out")
    with exclusive_lock(out / "run", "another optimize dnas is running in this folder"):
        return _run(replace(job, out=out), console)


def _run(job: DnasJob, console: Any) -> DnasResult:
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel, NetworkCorrection
    from optimizer.spaces import get_space
    from optimizer.training.datasets import load_dataset
    from optimizer.training.settings import TrainingSettings, check_dataset_fits

    say = _Say(console)
    space = get_space(job.space)
    correction_path = job.correction
    if correction_path is None and (Path(job.lut).parent / "network_correction.json").is_file():
        correction_path = Path(job.lut).parent / "network_correction.json"  # as `optimize --lut` finds it
    lut = LutLatencyModel.from_file(job.lut, None if correction_path is None else NetworkCorrection.load(correction_path))
    plain_lut = LutLatencyModel(lut.median_us, lut.overhead_us, lut.source, lut.device)
    table = LayerLatencyTable.from_lut(space, lut, job.interpolate)
    latency = LatencyPredictor(lut, space, interpolate=job.interpolate)
    plain = LatencyPredictor(plain_lut, space, interpolate=job.interpolate)
    dataset = load_dataset(job.data)
    check_dataset_fits(space, dataset)
    profile = _profile(job, lut) if job.measure else None
    if not job.betas:
        raise DnasError("no β to search with")
    steps: dict[str, float] = {}

    # 1. the supernet searches
    started = time.monotonic()
    settings = [replace(job.search, alpha=job.alpha, beta=float(b), seed=job.seed) for b in job.betas]
    folders = [Path(job.out) / "searches" / f"a{job.alpha:g}-b{b:g}" for b in job.betas]
    say.line(f"[bold cyan]1/4[/] {len(settings)} supernet searches of {space.name} on {dataset.name} "
             f"(β = {', '.join(f'{b:g}' for b in job.betas)}, α = {job.alpha:g}, {job.search.epochs} epochs each)")
    outcomes = run_searches(space, table, dataset, settings, folders, job.workers, console)
    steps["search"] = time.monotonic() - started

    # 2. sample and score
    started = time.monotonic()
    candidates: list[ScoredCandidate] = []
    score_cpu = 0.0
    for k, (outcome, s, folder) in enumerate(zip(outcomes, settings, folders)):
        drawn = candidates_of(outcome.theta, job.samples, np.random.default_rng([job.seed, k, 101]))
        X = np.array([g for g, _, _ in drawn])
        scores, cpu = score_candidates(space, dataset, str(folder / "checkpoint.pt"), X, s.theta_fraction)
        score_cpu += cpu
        predicted = latency.predict(X).latency_ms
        for (genes, is_argmax, logp), acc, ms in zip(drawn, scores, predicted):
            candidates.append(ScoredCandidate(genes=genes.tolist(), blocks=space.blocks(genes), search=folder.name,
                                              alpha=s.alpha, beta=s.beta, argmax=is_argmax, log_probability=logp,
                                              predicted_latency_ms=float(ms), validation_accuracy=acc,
                                              macs=int(space.macs(genes))))
    say.done(f"{len(candidates)} candidates sampled and scored on the searches' θ split")
    steps["sample"] = time.monotonic() - started

    # 3. a pick per budget: the searches' representatives trained on w's split, scored on θ's
    started = time.monotonic()
    say.line(f"[bold cyan]2/4[/] a network per budget ({', '.join(f'{b:g}' for b in job.budgets_ms)} ms)"
             + (f", measured end to end on {profile.name}" if profile else ""))
    final_settings = job.training or TrainingSettings(seed=job.seed)
    validation_cpu = _validate(job, space, dataset, candidates, final_settings, say)
    measurer = _Measurer(space, profile, Path(job.out), Path(job.lut), say) if profile else None
    picks, unmet, tried = [], [], {}
    for budget in sorted(job.budgets_ms):
        chosen, measured, log = pick(order_for_budget(candidates, budget), budget,
                                     None if measurer is None else measurer.measure)
        tried[f"{budget:g}"] = log
        if chosen is None:
            unmet.append({"budget_ms": budget, "reason": "no candidate within the budget by the LUT" if not log else
                          f"none of the {len(log)} best candidates within it by the LUT measured "
                          f"{_margin():.0%} under it"})
            continue
        picks.append((budget, chosen, measured))
    steps["pick"] = time.monotonic() - started

    # 4. train from scratch, export, measure
    started = time.monotonic()
    finals = _finals(job, space, dataset, picks, latency, plain, measurer, say, final_settings)
    steps["check"] = time.monotonic() - started
    result = DnasResult(space=space.name, lut=str(job.lut), device=lut.device, data=job.data,
                        dataset_id=dataset.dataset_id, seed=job.seed,
                        network_correction=None if correction_path is None else str(correction_path),
                        budgets_ms=sorted(job.budgets_ms), searches=[_summary(o) for o in outcomes],
                        candidates=candidates, finals=finals, unmet_budgets=unmet, tried=tried,
                        search_cpu_seconds=sum(o.cpu_seconds for o in outcomes) + score_cpu + validation_cpu,
                        validation_cpu_seconds=validation_cpu, steps_s=steps)
    write_text_atomically(Path(job.out) / "result.json", json.dumps(result.to_json(), indent=2, default=float) + "\n")
    return result


def _validate(job: DnasJob, space: Any, dataset: Any, candidates: list[ScoredCandidate], settings: Any,
              say: "_Say") -> float:
    """Train every budget's representatives on w's split and score them on θ's (cached, resumable); their CPU seconds.

    The cost is the trainings' own time (``train_seconds``: one thread each), read back from the
    observations file, so that a resumed run still counts the trainings an earlier run did.
    """
    from optimizer.training.observations import read_observations
    from optimizer.training.trainer import TorchTrainer

    reps = {tuple(c.genes): c for b in job.budgets_ms for c in representatives(candidates, b)}
    if not reps:
        return 0.0
    folder = Path(job.out) / "validation"
    view = validation_view(dataset, job.search.theta_fraction)
    say.line(f"    training the {len(reps)} searches' representatives on w's split, scored on θ's")
    trainer = TorchTrainer(space, view, settings, observations=folder / "observations.parquet", workers=job.workers,
                           progress=say.console is not None)
    accuracy = trainer.train(np.array(list(reps)))
    by_genes = dict(zip(reps, accuracy.tolist()))
    for c in candidates:
        c.trained_validation_accuracy = by_genes.get(tuple(c.genes))
    table = read_observations(folder / "observations.parquet", space)
    return 0.0 if table is None else float(sum(table.column("train_seconds").to_pylist()))


def _margin() -> float:
    from optimizer.netadapt.records import MEASURED_MARGIN

    return MEASURED_MARGIN


def _summary(outcome: SearchOutcome) -> dict[str, Any]:
    last = outcome.history[-1]
    return {"folder": outcome.out, "alpha": outcome.settings["alpha"], "beta": outcome.settings["beta"],
            "cpu_seconds": outcome.cpu_seconds, "wall_seconds": outcome.wall_seconds, "epochs": len(outcome.history),
            "resumed_at_epoch": outcome.resumed_at_epoch, "argmax": outcome.argmax.tolist(),
            "expected_latency_us": last.expected_latency_us, "argmax_latency_us": last.argmax_latency_us,
            "entropy": last.entropy, "theta_accuracy": last.theta_accuracy, "theta": outcome.theta}


def _profile(job: DnasJob, lut: Any) -> Any:
    from harness.profiles import load_profile

    name = job.device or lut.device
    if not name or "," in name:
        raise DnasError(f"{job.lut}: cannot tell which device to measure on (device_id {name!r}); "
                        f"give --device or --no-measure")
    profile = load_profile(name)
    if profile.transport.type != "local":
        raise DnasError(f"device {name} is reached over {profile.transport.type}; optimize dnas measures whole networks "
                        f"on local devices only: use --no-measure with its LUT")
    return profile


# ------------------------------------------------------------------ the searches, side by side
def _search_in_worker(space_name: str, table: LayerLatencyTable, settings: DnasSettings, out: str) -> SearchOutcome:
    from optimizer.spaces import get_space
    from optimizer.training.workers import worker_dataset

    return run_search(get_space(space_name), table, worker_dataset(), settings, out)


def run_searches(space: Any, table: LayerLatencyTable, dataset: Any, settings: Sequence[DnasSettings],
                 folders: Sequence[Path], workers: int | None, console: Any = None) -> list[SearchOutcome]:
    """Run (or resume) one search per settings, in up to ``workers`` processes; a bar counts their epochs."""
    from optimizer.training.workers import available_cores

    total = sum(s.epochs for s in settings)
    workers = min(len(settings), available_cores() if workers is None else int(workers))
    with ProgressContext(console, "supernet epochs") as on_progress:
        if workers <= 1:
            outcomes = []
            for s, folder in zip(settings, folders):
                before = sum(o.settings["epochs"] for o in outcomes)
                outcomes.append(run_search(space, table, dataset, s, folder,
                                           on_epoch=lambda r, n, before=before: on_progress(before + r.epoch + 1, total)))
            return outcomes
        return _in_pool(space, table, dataset, settings, folders, workers, on_progress, total)


def _in_pool(space: Any, table: LayerLatencyTable, dataset: Any, settings: Sequence[DnasSettings],
             folders: Sequence[Path], workers: int, on_progress: Any, total: int) -> list[SearchOutcome]:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from optimizer.training.settings import TrainingFailed
    from optimizer.training.workers import _first_line, _worker_pool

    results: list[SearchOutcome | None] = [None] * len(settings)
    with _worker_pool(dataset, workers) as pool:
        futures = {pool.submit(_search_in_worker, space.name, table, s, str(f)): i
                   for i, (s, f) in enumerate(zip(settings, folders))}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for future in done:
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    raise TrainingFailed(f"a search worker died (killed, or out of memory?) while searching in "
                                         f"{folders[i]}; finished epochs are kept there") from None
                except ChameleonError as problem:
                    raise problem from None
                except Exception as problem:
                    raise TrainingFailed(f"the search in {folders[i]} failed: {_first_line(problem)}") from None
            on_progress(sum(_epochs_done(f) for f in folders), total)
    return [r for r in results if r is not None]


def _epochs_done(folder: Path) -> int:
    try:
        return int(json.loads((folder / "state.json").read_text()).get("epochs_done", 0))
    except (OSError, ValueError, AttributeError):
        return 0


# ------------------------------------------------------------------ measuring and the final networks
class _Say:
    """Step lines and progress bars on a rich console (stderr); silent without one (the pipeline's contract)."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    def done(self, text: str) -> None:
        self.line(f"    [green]✓[/] {text}")

    def progress(self, label: str) -> ProgressContext:
        return ProgressContext(self.console, label)


class _Measurer:
    """Untrained and trained exports timed end to end, cached by content in ``OUT/network_timings.json``."""

    def __init__(self, space: Any, profile: Any, out: Path, lut: Path, say: _Say) -> None:
        self.space, self.profile, self.out, self.lut, self.say = space, profile, out, lut, say
        self.reused: dict[str, int] = {}

    def files(self, paths: Sequence[Path], what: str) -> dict[str, dict[str, float]]:
        from optimizer.pipeline import measure_exports

        return measure_exports(self.profile, paths, self.out / "network_timings.json", self.say, self.reused, what,
                               lut=self.lut)

    def measure(self, candidates: Sequence[ScoredCandidate]) -> list[float]:
        from optimizer.pipeline import _arch_name

        paths = []
        for c in candidates:
            path = self.out / "candidates" / f"{_arch_name(self.space, np.asarray(c.genes))}.onnx"
            if not path.exists():
                self.space.export_onnx(c.genes, path)
            paths.append(path)
        timings = self.files(paths, "candidates")
        return [timings[str(p)]["median_us"] / 1000 for p in paths]


def _finals(job: DnasJob, space: Any, dataset: Any, picks: list[tuple[float, ScoredCandidate, float | None]],
            latency: Any, plain: Any, measurer: _Measurer | None, say: _Say, settings: Any) -> list[DnasFinal]:
    from optimizer.pipeline import _arch_name, _export
    from optimizer.training.trainer import TorchTrainer

    if not picks:
        return []
    X = np.array([c.genes for _, c, _ in picks])
    say.line(f"[bold cyan]3/4[/] train the {len(picks)} picks from scratch on {dataset.name} ({settings.epochs} epochs)")
    trainer = TorchTrainer(space, dataset, settings, observations=Path(job.out) / "finals" / "observations.parquet",
                           workers=job.workers, checkpoints=Path(job.out) / "finals" / "checkpoints",
                           progress=say.console is not None)
    accuracy = trainer.train(X)
    exports = [_export(space, x, trainer, Path(job.out) / "networks" / f"{_arch_name(space, x)}.onnx")[0] for x in X]
    timings = {}
    if measurer is not None:
        say.line(f"[bold cyan]4/4[/] measure the trained exports end to end")
        timings = measurer.files(exports, "finals")
    predicted, plain_ms = latency.predict(X).latency_ms, plain.predict(X).latency_ms
    finals = []
    for k, (budget, c, untrained) in enumerate(picks):
        timing = timings.get(str(exports[k]))
        finals.append(DnasFinal(
            budget_ms=budget, genes=c.genes, blocks=c.blocks, search=c.search, alpha=c.alpha, beta=c.beta,
            validation_accuracy=c.validation_accuracy, trained_validation_accuracy=c.trained_validation_accuracy,
            predicted_latency_ms=float(predicted[k]),
            plain_latency_ms=float(plain_ms[k]), macs=c.macs, untrained_measured_ms=untrained,
            measured_latency_ms=None if timing is None else timing["median_us"] / 1000,
            measured_p10_ms=None if timing is None else timing["p10_us"] / 1000,
            measured_p90_ms=None if timing is None else timing["p90_us"] / 1000,
            trained_accuracy=float(accuracy[k]), onnx=str(exports[k])))
    return finals
