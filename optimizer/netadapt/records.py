"""What a NetAdapt run records and how it is kept: the networks (:class:`Iteration`, :class:`Final`, with their
end-to-end measurement :class:`EndToEnd`), the :class:`NetAdaptResult`, when an iteration may be a budget's final
(:func:`meets_budget`), and the run folder's state file (``netadapt.json``: created, read back with its identity
checked, saved whole or one final or the timings at a time)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomically
from optimizer.netadapt.settings import NetAdaptError

STATE_FILE = "netadapt.json"
STATE_KIND = "chameleon-netadapt-run"
STATE_VERSION = 1
# A measured iteration becomes a budget's final only this far under the budget: the final (the same architecture,
# fine-tuned) is measured again, and two quiet measurements of one file differ by up to about 1% here.
MEASURED_MARGIN = 0.02


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
        """Record a timing of :meth:`~optimizer.netadapt.measure.EndToEndMeasurement._measure_files` (µs)
        as this network's measurement."""
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


def meets_budget(record: Iteration, budget: float) -> bool:
    """Whether an iteration can be a budget's final: its estimate within the budget and, once measured,
    its measurement ``MEASURED_MARGIN`` under it (the final is measured again after its fine-tune)."""
    if record.measured_ms is None:
        return record.estimate <= budget
    return record.estimate <= budget and record.measured_ms <= budget * (1 - MEASURED_MARGIN)


# ------------------------------------------------------------------ the run folder's state
def new_state(identity: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The state of a run not started yet."""
    return {"kind": STATE_KIND, "version": STATE_VERSION, "identity": identity, "model_meta": meta,
            "iterations": [], "finals": {}, "baselines": {}, "timings": {}}


def read_state(out: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The state on record in ``out`` (None when there is none); refused when it is another run's."""
    path = Path(out) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise NetAdaptError(f"{path}: cannot read the run's state; move it away to start over") from None
    if not isinstance(state, dict) or state.get("kind") != STATE_KIND or state.get("version") != STATE_VERSION:
        raise NetAdaptError(f"{path}: not a version-{STATE_VERSION} NetAdapt run")
    differs = [k for k in identity if state.get("identity", {}).get(k) != identity[k]]
    if differs:
        raise NetAdaptError(f"{out} holds a NetAdapt run with another {', '.join(differs)}; "
                            f"give another --out to start a new run")
    return state


def save_state(out: Path, state: dict[str, Any], iterations: Sequence[Iteration], finals: Sequence[Final] = (),
               baselines: Sequence[Final] = ()) -> None:
    state["iterations"] = [asdict(i) for i in iterations]
    for final in (*finals, *baselines):
        _record_final(state, final)
    _write_state(out, state)


def save_final(out: Path, final: Final) -> None:
    """Add one trained final or baseline to the state on disk, as soon as it is trained."""
    state = json.loads((Path(out) / STATE_FILE).read_text())
    _record_final(state, final)
    _write_state(out, state)


def save_timings(out: Path, timings: dict[str, Any], references: Any) -> None:
    """Keep end-to-end timings (by file digest) and the reference networks on disk with what is already recorded."""
    path = Path(out) / STATE_FILE
    if path.exists():
        on_disk = json.loads(path.read_text())
        on_disk.setdefault("timings", {}).update(timings)
        on_disk["references"] = references
        _write_state(out, on_disk)


def _record_final(state: dict[str, Any], final: Final) -> None:
    """A budget's final is keyed by its iteration, a width-multiplier baseline by its multiplier."""
    if final.multiplier is None:
        state["finals"][str(final.iteration)] = asdict(final)
    else:
        state["baselines"][f"{final.multiplier:g}"] = asdict(final)


def _write_state(out: Path, state: dict[str, Any]) -> None:
    write_text_atomically(Path(out) / STATE_FILE, json.dumps(state, indent=2, default=float) + "\n")
