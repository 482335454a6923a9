"""NetAdapt (Yang et al., ECCV 2018, Algorithm 1): progressive, measurement-guided filter pruning.

Starting from a trained network and a resource budget, each iteration i

1. tightens the constraint: ``Con = Res_i − ΔR_i`` with ``ΔR_i = ΔR_0 · decay^i``
   (the paper: 0.5 ms decaying by 0.96 for the small MobileNetV1, the initial
   reduction scaled with the initial network's latency otherwise; we default
   to 4% of the initial network's resource, about the paper's ratio, decay 0.96);
2. for every channel group (:mod:`optimizer.netadapt.pruning`: one layer's filters, a
   block's expansion, or a residual stage in lockstep) proposes the **largest**
   channel count on the device's channel step that meets ``Con``, the network
   resource estimated from the layer-wise table (:mod:`optimizer.latency.layer_tables`;
   the entries a count needs are measured on the device first, when one is
   given), with the next layers' inputs shrunk alike;
3. keeps each proposal's largest-L2-norm filters, short-term fine-tunes it
   (a fixed number of mini-batches) on the training images minus a per-class
   hold-out, and measures it on that hold-out;
4. carries the most accurate proposal over.

When the estimate meets the budget the network is long-term fine-tuned on the
whole training set (ours: for each requested budget, the first iteration that
meets it).  Every iteration's network is saved (checkpoint + ONNX export with
its weights), its accuracy on the data set's held-out split recorded, and —
for latency on a device — measured end to end, so the run is a frontier and
each estimate is checked against the device.

The run lives in one folder (``netadapt.json`` + ``iterations/`` +
``finals/``): every finished iteration, every finished proposal inside an
unfinished iteration and every long-term fine-tune is on disk, and the same
command resumes after a kill.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_atomically, write_text_atomically
from harness.errors import ChameleonError
from harness.signature import OpSignature, parse_signature

NETWORK_FORMAT = "chameleon-network"
STATE_KIND = "chameleon-netadapt-run"
STATE_VERSION = 1


class NetAdaptError(ChameleonError):
    """A NetAdapt setting or input that cannot work (a budget above the start, a run folder of another run...)."""


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class NetAdaptSettings:
    """How NetAdapt runs; everything but the budgets is part of a run's identity (a resumed run must match)."""

    resource: str = "latency"  # latency (ms) | energy (mJ) | macs (MMACs)
    initial_reduction: float | None = None  # ΔR_0 in the resource's unit; None: initial_fraction of the start
    # NetAdapt's 0.5 ms for the small MobileNetV1 is about 4% of its latency; with decay 0.96 the schedule can
    # remove ΔR_0 / (1 − decay) = all of it in the limit, half of it in 17 iterations.
    initial_fraction: float = 0.04
    decay: float = 0.96  # NetAdapt §4.1
    channel_step: int = 8  # the device profile's step: channel counts are multiples of it
    short_term_steps: int = 40  # mini-batches of the short-term fine-tune (NetAdapt: 10k-40k on ImageNet)
    short_term_lr: float = 0.01  # constant (the paper's short-term rate is 10x below the long-term one)
    long_term_epochs: int = 5
    long_term_lr: float = 0.05  # cosine to 0
    batch_size: int = 64
    selection_per_class: int = 20  # training images per class held back to pick proposals (§4.1 holds 10 per class)
    max_iterations: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.resource not in ("latency", "energy", "macs"):
            problems.append(f"resource must be latency, energy or macs (got {self.resource!r})")
        if self.initial_reduction is not None and not (self.initial_reduction > 0):
            problems.append(f"initial reduction must be > 0 (got {self.initial_reduction!r})")
        if not (0 < self.initial_fraction < 1):
            problems.append(f"initial fraction must be in (0, 1) (got {self.initial_fraction!r})")
        if not (0 < self.decay <= 1):
            problems.append(f"decay must be in (0, 1] (got {self.decay!r})")
        for name in ("channel_step", "short_term_steps", "long_term_epochs", "selection_per_class", "max_iterations"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                problems.append(f"{name.replace('_', ' ')} must be an integer >= 1 (got {getattr(self, name)!r})")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            problems.append(f"batch size must be an integer >= 2 (got {self.batch_size!r})")
        for name in ("short_term_lr", "long_term_lr"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                problems.append(f"{name.replace('_', ' ')} must be > 0 (got {getattr(self, name)!r})")
        if problems:
            raise NetAdaptError("netadapt settings: " + "; ".join(problems))

    def reduction(self, iteration: int, start: float) -> float:
        """ΔR_i: how much iteration ``i`` tightens the constraint."""
        first = self.initial_reduction if self.initial_reduction is not None else self.initial_fraction * start
        return first * self.decay ** iteration

    def short_term(self) -> Any:
        from optimizer.training.settings import TrainingSettings

        return TrainingSettings(epochs=1, batch_size=self.batch_size, lr=self.short_term_lr, seed=self.seed)

    def long_term(self) -> Any:
        from optimizer.training.settings import TrainingSettings

        return TrainingSettings(epochs=self.long_term_epochs, batch_size=self.batch_size, lr=self.long_term_lr,
                                seed=self.seed)


RESOURCE_UNITS = {"latency": "ms", "energy": "mJ", "macs": "MMACs"}
# A batch of end-to-end measurements is repeated when its reference network is further than this from its first figure.
REFERENCE_TOLERANCE = 0.04
REFERENCE_ATTEMPTS = 3
REFERENCES = 3
REFERENCE_PAUSE_S = 20.0
# A measured iteration becomes a budget's final only this far under the budget: the final (the same architecture,
# fine-tuned) is measured again, and two quiet measurements of one file differ by up to about 1% here.
MEASURED_MARGIN = 0.02


def parse_budget(text: str, resource: str) -> tuple[float, bool]:
    """``"5ms"``, ``"30mJ"``, ``"12MMACs"``, a plain number (the resource's unit) or ``"60%"`` (of the start).

    Returns (value, relative): relative values are fractions of the initial network's resource.
    """
    raw = str(text).strip()
    unit = RESOURCE_UNITS[resource]
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(%|ms|mj|mmacs|m)?", raw.lower())
    if not match:
        raise NetAdaptError(f"budget {raw!r}: expected a number with {unit} or %, e.g. 5{unit} or 60%")
    value, suffix = float(match.group(1)), match.group(2)
    if suffix == "%":
        if not 0 < value < 100:
            raise NetAdaptError(f"budget {raw!r}: a percentage of the initial network must be in (0, 100)")
        return value / 100.0, True
    expected = {"latency": ("ms",), "energy": ("mj",), "macs": ("mmacs", "m")}[resource]
    if suffix is not None and suffix not in expected:
        raise NetAdaptError(f"budget {raw!r}: the resource is {resource}, give it in {unit}")
    if value <= 0:
        raise NetAdaptError(f"budget {raw!r} must be > 0")
    return value, False


# ------------------------------------------------------------------ network files
def save_network(path: Path, net: Any, **meta: Any) -> Path:
    """A network checkpoint that needs no search space: its unit signatures, weights and metadata."""
    import torch

    document = {"format": NETWORK_FORMAT, "version": 1, "units": [s.key for s in net.signatures],
                "state_dict": net.state_dict(), "meta": json.dumps(meta, default=float)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(document, tmp))
    return path


def load_network(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A trained network from a checkpoint of the trainer (space + genes) or of NetAdapt (units); (net, meta).

    ``meta`` holds at least ``settings`` (the training settings as JSON,
    when known) and ``dataset_id``.
    """
    import torch

    from optimizer.training.torch_networks import Network, build_torch_network
    from optimizer.training.settings import CHECKPOINT_FORMAT, InvalidCheckpoint

    path = Path(path)
    if not path.is_file():
        raise InvalidCheckpoint(f"{path}: no such checkpoint file")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise InvalidCheckpoint(f"{path}: cannot read a network checkpoint ({type(problem).__name__})") from None
    if not isinstance(document, dict) or "state_dict" not in document:
        raise InvalidCheckpoint(f"{path}: not a chameleon network checkpoint")
    try:
        if document.get("format") == CHECKPOINT_FORMAT:
            from optimizer.spaces import get_space

            space = get_space(document["space"])
            net = build_torch_network(space, document["genes"])
            meta = {"space": space.name, "genes": list(document["genes"]), "settings": document.get("settings"),
                    "dataset_id": document.get("dataset_id"), "accuracy": document.get("accuracy")}
        elif document.get("format") == NETWORK_FORMAT:
            net = Network([parse_signature(k) for k in document["units"]])
            meta = json.loads(document.get("meta") or "{}")
        else:
            raise InvalidCheckpoint(f"{path}: not a chameleon network checkpoint (format {document.get('format')!r})")
        net.load_state_dict(document["state_dict"])
    except InvalidCheckpoint:
        raise
    except ChameleonError as problem:
        raise InvalidCheckpoint(f"{path}: {problem}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as problem:
        raise InvalidCheckpoint(f"{path}: the checkpoint does not describe a network ({str(problem).splitlines()[0]})") from None
    return net.eval(), meta


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------ data splits
def data_splits(dataset: Any, resolution: int, selection_per_class: int) -> dict[str, tuple[Any, np.ndarray]]:
    """Tensors at the network's resolution: ``fine_tune`` (training images minus the selection hold-out),
    ``selection`` (the hold-out NetAdapt picks proposals on), ``train`` (all training images, for the
    long-term fine-tune and for training baselines) and ``test`` (the data set's held-out split)."""
    from optimizer.training.datasets import held_out_split
    from optimizer.training.loop import _resized

    images, labels = dataset.train()
    keep, held = held_out_split(labels, dataset.classes, selection_per_class, f"{dataset.name} (NetAdapt's selection hold-out)")
    test_images, test_labels = dataset.held_out()
    return {"fine_tune": (_resized(images[keep], resolution), labels[keep]),
            "selection": (_resized(images[held], resolution), labels[held]),
            "train": (_resized(images, resolution), labels),
            "test": (_resized(test_images, resolution), test_labels)}


# ------------------------------------------------------------------ training jobs (in parallel)
@dataclass(frozen=True)
class TrainJob:
    """One training of a network given by its units: fine-tune from ``state`` or train from scratch (``state=None``)."""

    name: str
    units: tuple[str, ...]
    state: dict | None
    settings: Any  # TrainingSettings
    train_on: str  # a split of data_splits
    evaluate_on: tuple[str, ...]
    selection_per_class: int
    steps: int | None = None  # None: settings.epochs passes
    schedule: str = "cosine"


@dataclass
class JobResult:
    name: str
    accuracy: dict[str, float]
    state: dict
    final_loss: float
    seconds: float


def run_job(job: TrainJob, dataset: Any) -> JobResult:
    """Train one job in this process (one thread, deterministic)."""
    import torch

    from optimizer.training.torch_networks import Network
    from optimizer.training.loop import _deterministic, fit_network, network_accuracy

    started = time.perf_counter()
    units = [parse_signature(k) for k in job.units]
    with _deterministic(threads=1):
        torch.manual_seed(job.settings.seed)
        net = Network(units)
        if job.state is not None:
            net.load_state_dict(job.state)
        splits = data_splits(dataset, units[0].h, job.selection_per_class)
        images, labels = splits[job.train_on]
        loss = fit_network(net, images, torch.from_numpy(labels), job.settings, steps=job.steps, schedule=job.schedule)
        accuracy = {split: float(network_accuracy(net, *splits[split])) for split in job.evaluate_on}
    return JobResult(job.name, accuracy, {k: v.detach().clone() for k, v in net.state_dict().items()}, loss,
                     time.perf_counter() - started)


def _worker_job(job: TrainJob) -> JobResult:
    from optimizer.training.workers import worker_dataset

    return run_job(job, worker_dataset())


def run_jobs(jobs: Sequence[TrainJob], dataset: Any, workers: int) -> Iterator[JobResult]:
    """Run jobs in ``workers`` spawned processes (inline for one), yielding results as they finish.

    A failing job is one :class:`~optimizer.training.settings.TrainingFailed` line;
    the jobs in flight are stopped (the same discipline as the trainer).
    """
    from optimizer.training.settings import TrainingFailed
    from optimizer.training.workers import _first_line, run_in_workers

    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            try:
                result = run_job(job, dataset)
            except ChameleonError:
                raise
            except Exception as problem:
                raise TrainingFailed(f"training {job.name} failed: {_first_line(problem)}") from None
            yield result
        return
    for _, result in run_in_workers([(_worker_job, (job,)) for job in jobs], dataset, workers, lambda i: jobs[i].name):
        yield result


# ------------------------------------------------------------------ records
@dataclass(kw_only=True)
class EndToEnd:
    """A network's end-to-end measurement on the device, beside its ``estimate`` (ms; None where not measured)."""

    measured_ms: float | None = None
    measured_p10_ms: float | None = None
    measured_p90_ms: float | None = None
    reference_drift: float | None = None  # how far the reference networks were off in the batch it was measured in

    @property
    def latency_error(self) -> float | None:
        """(estimate − measured) / measured, for latency measured on a device."""
        if self.measured_ms is None:
            return None
        return self.estimate / self.measured_ms - 1  # type: ignore[attr-defined]

    def take(self, timing: dict[str, float]) -> None:
        """Record a timing of :meth:`NetAdaptRun._measure_files` (µs) as this network's measurement."""
        self.measured_ms = timing["median_us"] / 1000
        self.measured_p10_ms = timing["p10_us"] / 1000
        self.measured_p90_ms = timing["p90_us"] / 1000
        self.reference_drift = timing.get("reference_drift")


@dataclass
class Iteration(EndToEnd):
    """One network of the run: the start (index 0) or the winner of iteration ``index``."""

    index: int
    units: list[str]
    channels: list[int]  # every group's count
    estimate: float  # the resource, from the layer-wise table
    interpolated: list[str]  # units whose entry was interpolated, not measured
    constraint: float | None  # Con of the iteration (None for the start)
    reduction: float | None
    group: str | None  # the group pruned, e.g. "width: units 5-6"
    from_channels: int | None
    to_channels: int | None
    proposals: int
    selection_accuracy: float | None  # on the hold-out that picked it
    test_accuracy: float  # on the data set's held-out split
    macs: int
    checkpoint: str
    onnx: str
    seconds: float = 0.0


@dataclass
class Final(EndToEnd):
    """A network long-term fine-tuned for one budget (or a width-multiplier baseline trained alike)."""

    name: str
    budget: float | None
    iteration: int | None
    units: list[str]
    estimate: float
    interpolated: list[str]
    test_accuracy: float
    macs: int
    checkpoint: str
    onnx: str
    within_budget: bool | None = None
    multiplier: float | None = None
    seconds: float = 0.0


@dataclass
class NetAdaptResult:
    out: str
    resource: str
    unit: str
    start: float
    budgets: list[float]
    iterations: list[Iteration]
    finals: list[Final]
    baselines: list[Final]
    comparisons: list[dict[str, Any]]
    correction: dict[str, Any]
    table: str
    device: str | None
    entries_measured: int
    stopped: str
    frontier_png: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        def entry(record: Any) -> dict[str, Any]:
            data = asdict(record)
            data["latency_error"] = record.latency_error
            return data

        return {"out": self.out, "resource": self.resource, "unit": self.unit, "start": self.start, "budgets": self.budgets,
                "iterations": [entry(i) for i in self.iterations], "finals": [entry(f) for f in self.finals],
                "baselines": [entry(b) for b in self.baselines], "comparisons": self.comparisons,
                "correction": self.correction, "table": self.table, "device": self.device,
                "entries_measured": self.entries_measured, "stopped": self.stopped,
                "frontier_png": self.frontier_png, "seconds": self.seconds}


# ------------------------------------------------------------------ the run
@dataclass
class NetAdaptRun:
    """Everything one NetAdapt run needs; :meth:`run` runs or resumes it in ``out``.

    ``table`` is the resource model (:mod:`optimizer.latency.layer_tables`);
    ``profile`` (a device profile, or None) measures whole networks end to end
    (latency only) and, through the table, missing layer entries;
    ``baselines`` are width multipliers trained from scratch with the
    original network's training plus the long-term fine-tune's epochs.
    """

    model: Path
    out: Path
    budgets: Sequence[str | float]
    table: Any
    data: Any  # an ImageDataset
    settings: NetAdaptSettings = field(default_factory=NetAdaptSettings)
    profile: Any = None
    baselines: Sequence[float] = (0.25, 0.5, 0.75, 1.0)
    calibration: int = 16  # random prunings measured end to end to fit the network correction (latency, with a device)
    workers: int = 1
    console: Any = None  # rich console for steps and progress (stderr), or None

    def run(self) -> NetAdaptResult:
        from optimizer.netadapt.pruning import ChannelStructure

        started = time.monotonic()
        out = Path(self.out)
        net0, meta = load_network(self.model)
        if net0.signatures[-1].c_out < self.data.n_classes:
            raise NetAdaptError(f"{self.model}: {net0.signatures[-1].c_out} outputs, but {self.data.name} has "
                                f"{self.data.n_classes} classes")
        if meta.get("dataset_id") and meta["dataset_id"] != self.data.dataset_id:
            raise NetAdaptError(f"{self.model} was trained on another data set ({meta['dataset_id']}) than "
                                f"{self.data.name} ({self.data.dataset_id})")
        structure0 = ChannelStructure(net0.signatures)
        # Budgets are checked against the table's estimate before anything is written or measured (the
        # network correction fitted below moves it by a few percent at most; checked again after it).
        from optimizer.latency.layer_tables import MissingEntries

        try:
            self._check_budgets(self._estimate(net0.signatures).value)
        except MissingEntries:
            pass  # the start network's entries are measured below, then the budgets checked
        out.mkdir(parents=True, exist_ok=True)
        state = self._state(meta)
        self._say(f"[bold]NetAdapt[/] {self.model} → {out} ({self.settings.resource}, table {getattr(self.table, 'source', '')})")

        self.table.ensure([net0.signatures])
        correction = self._calibrate(net0, state)  # latency on a device, without a given correction
        start_estimate = self._estimate(net0.signatures)
        budgets = self._check_budgets(start_estimate.value)
        target = min(budgets)

        iterations = [Iteration(**i) for i in state["iterations"]]
        if not iterations:
            iterations.append(self._record_start(net0, structure0, start_estimate))
            self._save_state(state, iterations)

        # Algorithm 1's loop runs on the table's estimates; then every network is measured end to end in one
        # interleaved batch (a slow period of this shared machine then hits all alike).  Where the last network
        # is not MEASURED_MARGIN under the budget as measured, the loop goes on: the final network (measured again
        # after its fine-tune) must meet the budget on the device.
        net = self._load_iteration(iterations[-1])
        stopped = "budget met"
        while True:
            while not _meets(iterations[-1], target):
                i = len(iterations) - 1
                if i >= self.settings.max_iterations:
                    stopped = f"stopped after {i} iterations (max_iterations)"
                    break
                record = self._iteration(net, iterations[-1], start_estimate.value)
                if record is None:
                    stopped = f"no group can meet the constraint at iteration {i + 1}"
                    self._say(f"[yellow]{stopped}[/]")
                    break
                iterations.append(record)
                self._save_state(state, iterations)
                net = self._load_iteration(record)
            if not self._measure_iterations(iterations, state) or stopped != "budget met":
                break
            self._save_state(state, iterations)
            if _meets(iterations[-1], target):
                break
            self._say(f"    the last network measures {iterations[-1].measured_ms:.4g} ms, not "
                      f"{MEASURED_MARGIN:.0%} under the {target:.4g} ms budget: going on")

        finals = self._finals(iterations, budgets, state)
        baselines = self._baselines(net0, structure0, meta, state)
        self._measure_finals(finals + baselines, state)
        self._save_state(state, iterations, finals, baselines)
        comparisons = compare_with_baselines(finals, baselines)
        result = NetAdaptResult(
            out=str(out), resource=self.settings.resource, unit=self.unit, start=start_estimate.value, budgets=budgets,
            iterations=iterations, finals=finals, baselines=baselines, comparisons=comparisons,
            correction={} if correction is None else correction.to_json(), table=str(getattr(self.table, "source", "")),
            device=None if self.profile is None else self.profile.name,
            entries_measured=int(getattr(self.table, "measured", 0)), stopped=stopped)
        result.frontier_png = str(plot_netadapt(result, out / "frontier.png"))
        result.seconds = time.monotonic() - started
        write_text_atomically(out / "result.json", json.dumps(result.to_json(), indent=2, default=float) + "\n")
        return result

    # ---- identity and state
    @property
    def unit(self) -> str:
        return RESOURCE_UNITS[self.settings.resource]

    def _identity(self, meta: dict[str, Any]) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings.pop("max_iterations")  # a stopping rule: a run may be resumed with a higher one
        return {"model": file_digest(Path(self.model)), "dataset_id": self.data.dataset_id, "settings": settings,
                "table": str(getattr(self.table, "source", "")),
                "device": None if self.profile is None else self.profile.name}

    def _state(self, meta: dict[str, Any]) -> dict[str, Any]:
        path = Path(self.out) / "netadapt.json"
        identity = self._identity(meta)
        if path.exists():
            try:
                state = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise NetAdaptError(f"{path}: cannot read the run's state; move it away to start over") from None
            if not isinstance(state, dict) or state.get("kind") != STATE_KIND or state.get("version") != STATE_VERSION:
                raise NetAdaptError(f"{path}: not a version-{STATE_VERSION} NetAdapt run")
            differs = [k for k in identity if state.get("identity", {}).get(k) != identity[k]]
            if differs:
                raise NetAdaptError(f"{self.out} holds a NetAdapt run with another {', '.join(differs)}; "
                                    f"give another --out to start a new run")
            self._say(f"resuming: {len(state.get('iterations', []))} networks on record")
            return state
        return {"kind": STATE_KIND, "version": STATE_VERSION, "identity": identity, "model_meta": meta,
                "iterations": [], "finals": {}, "baselines": {}, "timings": {}}

    def _save_state(self, state: dict[str, Any], iterations: Sequence[Iteration], finals: Sequence[Final] = (),
                    baselines: Sequence[Final] = ()) -> None:
        state["iterations"] = [asdict(i) for i in iterations]
        for f in finals:
            state["finals"][str(f.iteration)] = asdict(f)
        for b in baselines:
            state["baselines"][f"{b.multiplier:g}"] = asdict(b)
        write_text_atomically(Path(self.out) / "netadapt.json", json.dumps(state, indent=2, default=float) + "\n")

    # ---- estimates and budgets
    def _estimate(self, units: Sequence[OpSignature]) -> Any:
        return self.table.estimate(units)

    def _budgets(self, start: float) -> list[float]:
        values = []
        for budget in self.budgets:
            if isinstance(budget, (int, float)):
                values.append(float(budget))
                continue
            value, relative = parse_budget(str(budget), self.settings.resource)
            values.append(value * start if relative else value)
        if not values:
            raise NetAdaptError("give at least one budget")
        return sorted(set(values), reverse=True)

    def _check_budgets(self, start: float) -> list[float]:
        budgets = self._budgets(start)
        if min(budgets) >= start:
            raise NetAdaptError(f"every budget ({', '.join(f'{b:.4g}' for b in budgets)} {self.unit}) is at or above "
                                f"the initial network's {start:.4g} {self.unit}: nothing to adapt")
        first = self.settings.reduction(0, start)
        reachable = math.inf if self.settings.decay == 1 else first / (1 - self.settings.decay)
        if start - min(budgets) >= reachable:
            raise NetAdaptError(f"the reduction schedule (ΔR_0 {first:.4g} {self.unit}, decay {self.settings.decay:g}) "
                                f"removes less than {reachable:.4g} {self.unit} in all, the tightest budget needs "
                                f"{start - min(budgets):.4g}: raise the initial reduction or the decay")
        return budgets

    def _calibrate(self, net0: Any, state: dict[str, Any]) -> Any:
        """Fit the LUT sum's network correction on random prunings of the start network, measured end to end."""
        from optimizer.latency.lut_model import LutLatencyModel, NetworkCorrection
        from optimizer.netadapt.pruning import ChannelStructure

        table = self.table
        if self.settings.resource != "latency" or self.profile is None or not self.calibration:
            return getattr(table, "correction", None)
        if getattr(table, "correction", None) is not None:
            return table.correction
        path = Path(self.out) / "network_correction.json"
        if path.exists():
            table.correction = NetworkCorrection.load(path)
            return table.correction
        from harness.models.onnx_models import build_network

        structure = ChannelStructure(net0.signatures)
        rng = np.random.default_rng([self.settings.seed, 4099])
        networks = [list(net0.signatures)]
        while len(networks) < self.calibration:
            sizes = {}
            for g in structure.groups:
                options = [c for c in _grid_below(g.channels, self.settings.channel_step, include_current=True)
                           if structure.allowed(g.index, c)]
                sizes[g.index] = int(rng.choice(options)) if options else g.channels
            try:
                networks.append(structure.resized(sizes))
            except ChameleonError:
                continue
        self._say(f"calibrating the LUT sum on {len(networks)} prunings of the start network (measured end to end)")
        with self._progress("layer entries") as on_progress:
            table.on_progress = on_progress
            table.ensure(networks)
            table.on_progress = None
        folder = Path(self.out) / "calibration"
        paths = []
        for k, units in enumerate(networks):
            p = folder / f"calibration-{k:02d}.onnx"
            if not p.exists():
                folder.mkdir(parents=True, exist_ok=True)
                data = build_network(units, seed=k).SerializeToString()
                write_atomically(p, lambda tmp, data=data: tmp.write_bytes(data))
            paths.append(p)
        timings = self._measure_files(paths, state)
        plain = LutLatencyModel(table.values, table.overhead_us, table.source)
        estimates = [plain.estimate(units) for units in networks]
        correction = NetworkCorrection.fit(estimates, [timings[str(p)]["median_us"] for p in paths],
                                           device=table.device, lut=str(table.source))
        write_text_atomically(path, json.dumps(correction.to_json(), indent=2) + "\n")
        plain_error = float(np.mean([abs(e.plain_us / timings[str(p)]["median_us"] - 1) for e, p in zip(estimates, paths)]))
        self._say(f"    LUT sum: mean error {plain_error:.1%} plain → {correction.calibration_mape:.1%} corrected")
        table.correction = correction
        return correction

    # ---- one iteration
    def _record_start(self, net0: Any, structure: Any, estimate: Any) -> Iteration:
        from optimizer.training.loop import _deterministic, network_accuracy

        folder = Path(self.out) / "iterations"
        checkpoint = save_network(folder / "iter-000.pt", net0, iteration=0, dataset_id=self.data.dataset_id)
        onnx = net0.export_onnx(folder / "iter-000.onnx")
        splits = data_splits(self.data, net0.signatures[0].h, self.settings.selection_per_class)
        with _deterministic():
            selection = network_accuracy(net0, *splits["selection"])
            test = network_accuracy(net0, *splits["test"])
        return Iteration(index=0, units=[s.key for s in net0.signatures], channels=list(structure.sizes()),
                         estimate=estimate.value, interpolated=list(estimate.interpolated), constraint=None,
                         reduction=None, group=None, from_channels=None, to_channels=None, proposals=0,
                         selection_accuracy=selection, test_accuracy=test,
                         macs=int(sum(s.macs for s in net0.signatures)), checkpoint=str(checkpoint), onnx=str(onnx))

    def _load_iteration(self, record: Iteration) -> Any:
        net, _ = load_network(record.checkpoint)
        return net

    def _iteration(self, net: Any, previous: Iteration, start: float) -> Iteration | None:
        """Lines 4-9 of Algorithm 1: propose per group, fine-tune, keep the most accurate."""
        from optimizer.netadapt.pruning import ChannelStructure

        began = time.monotonic()
        i = previous.index
        structure = ChannelStructure(net.signatures)
        reduction = self.settings.reduction(i, start)
        constraint = previous.estimate - reduction
        proposals = self._choose_counts(structure, constraint)
        self._say(f"iteration {i + 1}: {previous.estimate:.4g} → ≤ {constraint:.4g} {self.unit} "
                  f"(ΔR {reduction:.3g}); {len(proposals)} proposals")
        if not proposals:
            return None
        folder = Path(self.out) / "iterations" / f"iter-{i + 1:03d}-proposals"
        short = self.settings.short_term()
        jobs, done = [], {}
        for group, channels, estimate in proposals:
            name = f"g{group:02d}-{channels}"
            path = folder / f"{name}.pt"
            if path.exists():
                try:
                    done[name] = load_network(path)
                    continue
                except ChameleonError:
                    path.unlink()
            pruned = structure.prune(net, {group: channels})
            jobs.append(TrainJob(
                name=name, units=tuple(s.key for s in pruned.signatures),
                state={k: v.detach().clone() for k, v in pruned.state_dict().items()},
                settings=replace(short, seed=_seed(self.settings.seed, i + 1, group)),
                train_on="fine_tune", evaluate_on=("selection", "test"),
                selection_per_class=self.settings.selection_per_class,
                steps=self.settings.short_term_steps, schedule="constant"))
        with self._progress(f"iteration {i + 1}: short-term fine-tunes") as on_progress:
            on_progress(len(done), len(proposals))
            for result in run_jobs(jobs, self.data, self.workers):
                from optimizer.training.torch_networks import Network

                units = [parse_signature(k) for k in next(j for j in jobs if j.name == result.name).units]
                pruned = Network(units)
                pruned.load_state_dict(result.state)
                save_network(folder / f"{result.name}.pt", pruned, **result.accuracy)
                done[result.name] = (pruned.eval(), dict(result.accuracy))
                on_progress(len(done), len(proposals))
        # Pick highest accuracy on the selection hold-out; ties go to the smaller resource, then the group order.
        scored = []
        for group, channels, estimate in proposals:
            net_k, accuracy = done[f"g{group:02d}-{channels}"]
            scored.append((-accuracy["selection"], estimate.value, group, channels, estimate, net_k, accuracy))
        scored.sort(key=lambda s: s[:4])
        _, _, group, channels, estimate, chosen, accuracy = scored[0]
        chosen_structure = ChannelStructure(chosen.signatures)
        folder_out = Path(self.out) / "iterations"
        checkpoint = save_network(folder_out / f"iter-{i + 1:03d}.pt", chosen, iteration=i + 1,
                                  dataset_id=self.data.dataset_id, **accuracy)
        onnx = chosen.export_onnx(folder_out / f"iter-{i + 1:03d}.onnx")
        record = Iteration(
            index=i + 1, units=[s.key for s in chosen.signatures], channels=list(chosen_structure.sizes()),
            estimate=estimate.value, interpolated=list(estimate.interpolated), constraint=constraint, reduction=reduction,
            group=structure.groups[group].name, from_channels=structure.groups[group].channels, to_channels=channels,
            proposals=len(proposals), selection_accuracy=accuracy["selection"], test_accuracy=accuracy["test"],
            macs=int(sum(s.macs for s in chosen.signatures)), checkpoint=str(checkpoint), onnx=str(onnx),
            seconds=time.monotonic() - began)
        shutil.rmtree(folder, ignore_errors=True)
        self._say(f"    kept {record.group}: {record.from_channels} → {record.to_channels} channels, "
                  f"{record.estimate:.4g} {self.unit}, hold-out accuracy {record.selection_accuracy:.3f}")
        return record

    def _choose_counts(self, structure: Any, constraint: float) -> list[tuple[int, int, Any]]:
        """ChooseNumFilters for every group: the largest count on the step grid whose network meets ``constraint``.

        Counts are tried level by level (every group one step further down at
        a time) so the table measures each level's missing entries in one
        sweep.
        """
        step = self.settings.channel_step
        candidates = {g.index: [c for c in _grid_below(g.channels, step) if structure.allowed(g.index, c)]
                      for g in structure.groups}
        pending = {g: 0 for g, counts in candidates.items() if counts}
        chosen: list[tuple[int, int, Any]] = []
        while pending:
            level = {g: candidates[g][k] for g, k in pending.items()}
            networks = {g: structure.resized({g: c}) for g, c in level.items()}
            with self._progress("layer entries") as on_progress:
                self.table.on_progress = on_progress if hasattr(self.table, "on_progress") else None
                self.table.ensure(networks.values())
                if hasattr(self.table, "on_progress"):
                    self.table.on_progress = None
            for g, units in networks.items():
                estimate = self._estimate(units)
                if estimate.value <= constraint:
                    chosen.append((g, level[g], estimate))
                    del pending[g]
                elif pending[g] + 1 < len(candidates[g]):
                    pending[g] += 1
                else:
                    del pending[g]  # even its smallest count does not meet the constraint
        return sorted(chosen)

    # ---- long-term fine-tunes and baselines
    def _finals(self, iterations: Sequence[Iteration], budgets: Sequence[float], state: dict[str, Any]) -> list[Final]:
        chosen: dict[int, list[float]] = {}
        for budget in budgets:
            first = next((it for it in iterations if _meets(it, budget)), None)
            if first is None:
                self._say(f"[yellow]budget {budget:.4g} {self.unit}: no iteration reached it[/]")
                continue
            chosen.setdefault(first.index, []).append(budget)
        finals: list[Final] = []
        jobs = []
        for index, for_budgets in chosen.items():
            known = state["finals"].get(str(index))
            record = iterations[index]
            if known and Path(known["checkpoint"]).exists():
                final = Final(**known)
                final.budget = min(for_budgets)
                finals.append(final)
                continue
            jobs.append((index, min(for_budgets), self.long_term_job(f"final-iter-{index:03d}", record)))
        if jobs:
            self._say(f"long-term fine-tune of {len(jobs)} network(s) ({self.settings.long_term_epochs} epochs each)")
            own = {job.name: {"iteration": index, "budget": budget} for index, budget, job in jobs}
            finals += self._train_records([job for _, _, job in jobs], "finals", "long-term fine-tunes", own)
        return sorted(finals, key=lambda f: f.iteration or 0)

    def long_term_job(self, name: str, record: Iteration, seed: int | None = None) -> TrainJob:
        """The long-term fine-tune of an iteration's network: all training images, scored on the test split."""
        net, _ = load_network(record.checkpoint)
        settings = self.settings.long_term()
        return TrainJob(name=name, units=tuple(record.units),
                        state={k: v.detach().clone() for k, v in net.state_dict().items()},
                        settings=settings if seed is None else replace(settings, seed=seed), train_on="train",
                        evaluate_on=("test",), selection_per_class=self.settings.selection_per_class)

    def baseline_settings(self, meta: dict[str, Any]) -> Any:
        """The baselines' training: the start network's (from its checkpoint), for its epochs plus the long-term
        fine-tune's, so that a baseline trains as long as an adapted network did in all."""
        from optimizer.training.settings import TrainingSettings

        try:
            original = TrainingSettings(**json.loads(meta["settings"])) if meta.get("settings") else TrainingSettings()
        except (TypeError, ValueError, ChameleonError):
            original = TrainingSettings()
        return replace(original, epochs=original.epochs + self.settings.long_term_epochs)

    def baseline_job(self, name: str, units: Sequence[str], settings: Any) -> TrainJob:
        """A width-multiplier baseline trained from scratch: all training images, scored on the test split."""
        return TrainJob(name=name, units=tuple(units), state=None, settings=settings, train_on="train",
                        evaluate_on=("test",), selection_per_class=self.settings.selection_per_class)

    def _train_records(self, jobs: Sequence[TrainJob], folder: str, label: str,
                       own: dict[str, dict[str, Any]]) -> list[Final]:
        """Train ``jobs`` in the workers; save each network (checkpoint and ONNX export) in ``folder``, estimate it,
        and record it as a Final, kept in the run's state as soon as it is trained.  ``own``: each job's own fields
        (a final's iteration and budget, a baseline's multiplier)."""
        from optimizer.training.torch_networks import Network

        by_name = {job.name: job for job in jobs}
        records: list[Final] = []
        with self._progress(label) as on_progress:
            on_progress(0, len(jobs))
            for result in run_jobs(jobs, self.data, self.workers):
                job, fields = by_name[result.name], own[result.name]
                units = [parse_signature(k) for k in job.units]
                net = Network(units)
                net.load_state_dict(result.state)
                checkpoint = save_network(Path(self.out) / folder / f"{result.name}.pt", net,
                                          dataset_id=self.data.dataset_id,
                                          **({"multiplier": fields["multiplier"]} if "multiplier" in fields else {}),
                                          **result.accuracy)
                onnx = net.export_onnx(Path(self.out) / folder / f"{result.name}.onnx")
                estimate = self._estimate(units)
                record = Final(name=result.name, budget=fields.get("budget"), iteration=fields.get("iteration"),
                               units=list(job.units), estimate=estimate.value, interpolated=list(estimate.interpolated),
                               test_accuracy=result.accuracy["test"], macs=int(sum(s.macs for s in units)),
                               checkpoint=str(checkpoint), onnx=str(onnx), multiplier=fields.get("multiplier"),
                               seconds=result.seconds)
                records.append(record)
                self._save_partial(record)
                on_progress(len(records), len(jobs))
        return records

    def _save_partial(self, final: Final) -> None:
        path = Path(self.out) / "netadapt.json"
        state = json.loads(path.read_text())
        if final.multiplier is None:
            state["finals"][str(final.iteration)] = asdict(final)
        else:
            state["baselines"][f"{final.multiplier:g}"] = asdict(final)
        write_text_atomically(path, json.dumps(state, indent=2, default=float) + "\n")

    def _baselines(self, net0: Any, structure: Any, meta: dict[str, Any], state: dict[str, Any]) -> list[Final]:
        if not self.baselines:
            return []
        settings = self.baseline_settings(meta)
        baselines, jobs = [], []
        for alpha in sorted(set(float(a) for a in self.baselines)):
            known = state["baselines"].get(f"{alpha:g}")
            if known and Path(known["checkpoint"]).exists():
                baselines.append(Final(**known))
                continue
            units = width_multiplier(structure, alpha, self.settings.channel_step)
            jobs.append((alpha, self.baseline_job(f"multiplier-{alpha:g}", [s.key for s in units], settings)))
        if jobs:
            self.table.ensure([[parse_signature(k) for k in job.units] for _, job in jobs])
            self._say(f"width-multiplier baselines {', '.join(f'{a:g}' for a, _ in jobs)}: trained from scratch, "
                      f"{settings.epochs} epochs (the original's {settings.epochs - self.settings.long_term_epochs} + the long-term fine-tune's "
                      f"{self.settings.long_term_epochs})")
            own = {job.name: {"multiplier": alpha} for alpha, job in jobs}
            baselines += self._train_records([job for _, job in jobs], "baselines", "baselines", own)
        return sorted(baselines, key=lambda b: b.multiplier or 0)

    # ---- end-to-end measurement
    def _measure_iterations(self, iterations: Sequence[Iteration], state: dict[str, Any]) -> bool:
        """Measure the iterations not measured yet, end to end, in one batch; False when there is no device."""
        if self.profile is None or self.settings.resource != "latency":
            return False
        todo = [it for it in iterations if it.measured_ms is None]
        if not todo:
            return True
        self._say(f"measuring {len(todo)} network(s) end to end on {self.profile.name}")
        timings = self._measure_files([Path(it.onnx) for it in todo], state)
        for it in todo:
            it.take(timings[it.onnx])
            self._say(f"    iteration {it.index}: measured {it.measured_ms:.4g} ms against {it.estimate:.4g} ms "
                      f"estimated ({it.latency_error:+.1%})")
        return True

    def _measure_finals(self, records: Sequence[Final], state: dict[str, Any]) -> None:
        """Measure the networks not measured yet (one batch), then judge each final against its budget:
        as measured on a device, else as estimated."""
        on_device = self.profile is not None and self.settings.resource == "latency"
        todo = [r for r in records if r.measured_ms is None] if on_device else []
        if todo:
            timings = self._measure_files([Path(r.onnx) for r in todo], state)
            for r in todo:
                r.take(timings[r.onnx])
        for record in records:
            if record.budget is not None:
                record.within_budget = (record.measured_ms if on_device else record.estimate) <= record.budget

    def _measure_files(self, paths: Sequence[Path], state: dict[str, Any]) -> dict[str, dict[str, float]]:
        """End-to-end timings of ONNX files on the profile's device, cached in the state by file content.

        This machine's speed comes and goes in bursts (other tenants; see
        the README): a batch measured in a slow period reads 20-40% slow
        against a LUT measured in a quiet one.  So every batch also measures
        references (the first calibration networks, the start network's
        architecture among them), and a batch
        whose references are more than ``REFERENCE_TOLERANCE`` off their first
        figures (median ratio) is measured again after a pause (up to
        ``REFERENCE_ATTEMPTS`` times), keeping the batch closest to them; the
        drift of the batch kept is recorded with every figure.
        """
        known = state.setdefault("timings", {})
        digests = {str(p): file_digest(p) for p in paths}
        todo = list(dict.fromkeys(Path(p) for p in paths if digests[str(p)] not in known))
        if todo:
            timings, drift = self.measure_side_by_side(todo, state)
            for path, timing in zip(todo, timings):
                known[digests[str(path)]] = {"median_us": timing.median_us, "p10_us": timing.p10_us,
                                             "p90_us": timing.p90_us, "runs": timing.runs, "reference_drift": drift}
            path = Path(self.out) / "netadapt.json"
            if path.exists():  # keep the timings on disk with what is already recorded
                on_disk = json.loads(path.read_text())
                on_disk.setdefault("timings", {}).update(known)
                on_disk["references"] = state.get("references")
                write_text_atomically(path, json.dumps(on_disk, indent=2, default=float) + "\n")
        return {str(p): known[digests[str(p)]] for p in paths}

    def measure_side_by_side(self, paths: Sequence[Path], state: dict[str, Any]) -> tuple[list[Any], float]:
        """Measure ONNX files in one interleaved batch with the run's reference networks; (timings, drift).

        The drift is the median ratio of the references' medians now to their
        first figures, minus one.  The first batch of a run (the calibration
        networks) sets the references: its first ``REFERENCES`` files.
        """
        from harness.networks.timing import measure_networks

        references = [r for r in state.get("references") or [] if Path(r["path"]).exists()]
        if not references:  # a run folder from before references were kept: its calibration networks' first figures
            known = state.get("timings", {})
            for path in sorted((Path(self.out) / "calibration").glob("calibration-*.onnx"))[:REFERENCES]:
                timing = known.get(file_digest(path))
                if timing:
                    references.append({"path": str(path), "median_us": timing["median_us"]})
            state["references"] = references or None
        extra = [Path(r["path"]) for r in references]
        best: tuple[float, list[Any]] | None = None
        for attempt in range(REFERENCE_ATTEMPTS):
            with self._progress("measure networks") as on_progress:
                timings = measure_networks(self.profile, list(paths) + extra, progress=on_progress)
            ratios = [t.median_us / r["median_us"] for t, r in zip(timings[len(paths):], references)]
            drift = float(np.median(ratios)) - 1 if ratios else 0.0
            if best is None or abs(drift) < abs(best[0]):
                best = (drift, timings[:len(paths)])
            if abs(drift) <= REFERENCE_TOLERANCE:
                break
            if attempt + 1 < REFERENCE_ATTEMPTS:
                self._say(f"    [yellow]the reference networks measure {drift:+.0%} off their first figures "
                          f"(a slow period of this machine?): measuring again in {REFERENCE_PAUSE_S:.0f} s[/]")
                time.sleep(REFERENCE_PAUSE_S)
        drift, timings = best
        if abs(drift) > REFERENCE_TOLERANCE:
            self._say(f"    [yellow]kept the batch whose references are {drift:+.0%} off: these figures are suspect[/]")
        if not references:
            state["references"] = [{"path": str(p), "median_us": t.median_us}
                                   for p, t in zip(paths[:REFERENCES], timings[:REFERENCES])]
        return timings, drift

    # ---- console
    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    def _progress(self, label: str) -> Any:
        from optimizer.progress import ProgressContext

        # A bar in a log file is noise: only on a terminal.
        return ProgressContext(self.console if self.console is not None and self.console.is_terminal else None, label)


# ------------------------------------------------------------------ helpers
def _meets(record: Iteration, budget: float) -> bool:
    """Whether an iteration can be a budget's final: its estimate within the budget and, once measured,
    its measurement ``MEASURED_MARGIN`` under it (the final is measured again after its fine-tune)."""
    if record.measured_ms is None:
        return record.estimate <= budget
    return record.estimate <= budget and record.measured_ms <= budget * (1 - MEASURED_MARGIN)


def _grid_below(channels: int, step: int, include_current: bool = False) -> list[int]:
    """Counts on the step grid below ``channels``, largest first (``channels`` itself first if asked)."""
    below = [c for c in range((channels - 1) // step * step, 0, -step)]
    return ([channels] if include_current else []) + below


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:4], "little")


def width_multiplier(structure: Any, alpha: float, step: int) -> list[OpSignature]:
    """The start network with every channel group scaled by ``alpha`` (rounded to the step, at least one step).

    A group whose scaled count would change a block's structure takes the
    nearest allowed count on the grid.
    """
    if not 0 < alpha <= 1:
        raise NetAdaptError(f"width multiplier {alpha!r} must be in (0, 1]")
    sizes: dict[int, int] = {}
    for g in structure.groups:
        if alpha == 1:
            sizes[g.index] = g.channels
            continue
        target = max(step, int(round(alpha * g.channels / step)) * step)
        target = min(target, g.channels)
        options = sorted(_grid_below(g.channels, step, include_current=True), key=lambda c: (abs(c - target), c))
        sizes[g.index] = next((c for c in options if structure.allowed(g.index, c)), g.channels)
    # The groups were checked one at a time; together they must also keep every block's structure.
    for _ in range(len(structure.groups)):
        try:
            return structure.resized(sizes)
        except ChameleonError:
            for g in structure.groups:  # nudge groups up one step until the combination is valid
                if sizes[g.index] < g.channels:
                    sizes[g.index] = min(g.channels, sizes[g.index] + step)
                    break
    return structure.resized(sizes)


def compare_with_baselines(finals: Sequence[Final], baselines: Sequence[Final]) -> list[dict[str, Any]]:
    """Each adapted network against the width-multiplier frontier: accuracy at equal latency, latency at equal accuracy.

    Latency is the measured one where there is one (else the estimate).  The
    baselines' accuracy at the adapted network's latency is interpolated
    linearly between the two baselines around it; the baselines' latency at
    the adapted network's accuracy, between the two around it on their
    best-so-far accuracy curve.  Outside the baselines' range: None.
    """
    def latency(r: Final) -> float:
        return r.measured_ms if r.measured_ms is not None else r.estimate

    points = sorted((latency(b), b.test_accuracy) for b in baselines)
    out = []
    for f in finals:
        lat, acc = latency(f), f.test_accuracy
        row: dict[str, Any] = {"final": f.name, "budget": f.budget, "latency": lat, "accuracy": acc,
                               "baseline_accuracy_at_latency": None, "accuracy_gain": None,
                               "baseline_latency_at_accuracy": None, "speedup": None}
        if len(points) >= 2 and points[0][0] <= lat <= points[-1][0]:
            base_acc = float(np.interp(lat, [p[0] for p in points], [p[1] for p in points]))
            row["baseline_accuracy_at_latency"] = base_acc
            row["accuracy_gain"] = acc - base_acc
        # latency the multipliers need to reach this accuracy (monotone envelope: best accuracy so far)
        envelope = []
        best = -1.0
        for lat_b, acc_b in points:
            if acc_b > best:
                envelope.append((lat_b, acc_b))
                best = acc_b
        if len(envelope) >= 2 and envelope[0][1] <= acc <= envelope[-1][1]:
            base_lat = float(np.interp(acc, [p[1] for p in envelope], [p[0] for p in envelope]))
            row["baseline_latency_at_accuracy"] = base_lat
            row["speedup"] = base_lat / lat
        elif envelope and acc > envelope[-1][1]:
            row["speedup"] = None  # more accurate than every baseline: no equal-accuracy baseline exists
            row["more_accurate_than_all_baselines"] = True
        out.append(row)
    return out


def plot_netadapt(result: NetAdaptResult, path: Path) -> Path:
    """The run's frontier: every iteration (short-term), the long-term fine-tuned finals and the multipliers."""
    from harness.plots import _pyplot, save_figure

    fig, ax = _pyplot().subplots(figsize=(8, 5.2))
    measured = any(i.measured_ms is not None for i in result.iterations)
    label = f"measured latency ({result.unit})" if measured else f"estimated {result.resource} ({result.unit})"

    def x(record: Any) -> float:
        return record.measured_ms if record.measured_ms is not None else record.estimate

    its = result.iterations
    ax.plot([x(i) for i in its], [i.test_accuracy for i in its], "o-", color="tab:blue", alpha=0.45, markersize=3,
            label="NetAdapt iterations (short-term fine-tuned)")
    if result.finals:
        ax.plot([x(f) for f in result.finals], [f.test_accuracy for f in result.finals], "*", color="tab:blue",
                markersize=12, label="NetAdapt, long-term fine-tuned")
    if result.baselines:
        ax.plot([x(b) for b in result.baselines], [b.test_accuracy for b in result.baselines], "s--", color="tab:orange",
                label="width multipliers (trained from scratch)")
        for b in result.baselines:
            ax.annotate(f"{b.multiplier:g}x", (x(b), b.test_accuracy), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color="tab:orange")
    for budget in result.budgets:
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (held-out split)")
    ax.set_title(f"NetAdapt on {result.device or result.resource}: {len(its) - 1} iterations")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)
