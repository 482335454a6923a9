"""Layer-wise resource tables for NetAdapt: what a network costs, from what each of its units costs.

NetAdapt (§3.4) estimates a simplified network's latency as the sum of
layer-wise look-up-table entries, each measured on the device for the layer's
input and output channel counts.  Our LUT already is such a table: one row per
operator signature, and a signature spells the unit's channel counts.  So a
layer-wise table here is the device's LUT, extended with the channel counts
the pruning visits, on the profile's channel step:

* :class:`LatencyTable` sums LUT entries (minus the per-model overhead, with
  the device's :class:`~optimizer.latency.lut_model.NetworkCorrection` when given)
  and, given a device profile, **measures** the entries it lacks through the
  harness (a sweep of exactly those signatures, appended to the LUT, atomic
  and resumable like any sweep);
* without a device (``profile=None``) a missing entry is **interpolated**
  between measured channel counts of the same layer (linear in MACs between
  the nearest measured entries below and above it) and flagged: every
  estimate says which of its units were interpolated;
* :class:`EnergyTable` sums per-operator energy from an energy-results file
  (``bench energy``), interpolated and flagged the same way (energy is not
  measured on demand: a Monsoon session needs a person at the bench);
* :class:`MacsCount` counts multiply-accumulates (NetAdapt's ablation, Table 1).

Every model has ``estimate(units) -> ResourceEstimate`` and
``ensure(unit_lists)`` (measure what is missing, where it can).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.errors import ChameleonError
from harness.signature import IDENTITY, OpSignature, parse_signature

RESOURCES = ("latency", "energy", "macs")


class MissingEntries(ChameleonError):
    """A unit the table has no entry for and nothing to interpolate it from."""


@dataclass(frozen=True)
class ResourceEstimate:
    value: float  # in the model's unit (ms, mJ, MMACs)
    interpolated: tuple[str, ...] = ()  # signature keys of units whose entry was interpolated


def channel_family(sig: OpSignature) -> tuple:
    """Everything about a unit but its channel counts: entries of one family differ only in channels."""
    expands = sig.mid_channels not in (0, sig.c_in)
    return (sig.kind, sig.n, sig.h, sig.w, sig.kernel, sig.stride, sig.padding, sig.activation, sig.dtype,
            expands, sig.has_residual, sig.groups if sig.groups not in (sig.c_in,) else -1)


def interpolate_by_channels(sig: OpSignature, entries: Sequence[tuple[OpSignature, float]]) -> float | None:
    """``sig``'s value from measured entries of its channel family: linear in MACs between the nearest below and above.

    Beyond the measured range, the line through the two nearest entries on
    that side (never below half the nearest value); with one entry, that
    value scaled by MACs.  None when the family has no entry.
    """
    family = channel_family(sig)
    points = sorted({(float(max(s.macs, 1)), v) for s, v in entries if channel_family(s) == family})
    if not points:
        return None
    x = float(max(sig.macs, 1))
    if len(points) == 1:
        return points[0][1] * x / points[0][0]
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    if xs[0] <= x <= xs[-1]:
        return float(np.interp(x, xs, ys))
    (x0, y0), (x1, y1) = ((xs[0], ys[0]), (xs[1], ys[1])) if x < xs[0] else ((xs[-2], ys[-2]), (xs[-1], ys[-1]))
    nearest = y0 if x < xs[0] else y1
    line = y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 != x0 else nearest
    return float(max(line, nearest / 2))


class _EntryTable:
    """Per-signature values with channel interpolation; subclasses say where values come from."""

    resource = ""
    unit = ""

    def __init__(self, values: dict[str, float], source: str) -> None:
        self.values = values
        self.source = source
        self._parsed: list[tuple[OpSignature, float]] | None = None
        self.interpolated_keys: set[str] = set()

    def _entries(self) -> list[tuple[OpSignature, float]]:
        if self._parsed is None:
            self._parsed = [(parse_signature(k), v) for k, v in self.values.items()]
        return self._parsed

    def unit_value(self, sig: OpSignature) -> tuple[float, bool]:
        value = self.values.get(sig.key)
        if value is not None:
            return value, False
        guess = interpolate_by_channels(sig, self._entries())
        if guess is None:
            raise MissingEntries(f"{self.source}: no entry for {sig.key} and no entry of the same layer at other "
                                 f"channel counts to interpolate from")
        self.interpolated_keys.add(sig.key)
        return guess, True

    def _reload(self, values: dict[str, float]) -> None:
        self.values = values
        self._parsed = None


class LatencyTable(_EntryTable):
    """Network latency (ms) from a device's LUT: Σ unit entries − (k − 1)·overhead, corrected when a correction is given.

    ``profile`` (a :class:`~harness.profiles.DeviceProfile` of the LUT's
    device) makes :meth:`ensure` measure missing entries; without it they are
    interpolated and flagged.
    """

    resource = "latency"
    unit = "ms"

    def __init__(self, lut: str | Path, correction: Any = None, profile: Any = None,
                 on_progress: Callable[..., None] | None = None) -> None:
        from optimizer.latency.lut_model import LutLatencyModel

        self.lut_path = Path(lut)
        model = LutLatencyModel.from_file(self.lut_path, correction)
        super().__init__(dict(model.median_us), str(self.lut_path))
        self.overhead_us = model.overhead_us
        self.device = model.device
        self.correction = correction
        self.profile = profile
        self.on_progress = on_progress
        self.measured = 0  # entries this object measured

    def ensure(self, unit_lists: Iterable[Sequence[OpSignature]]) -> int:
        """Measure, on the profile's device, every unit of ``unit_lists`` the LUT lacks; how many were measured."""
        if self.profile is None:
            return 0
        from harness.plans import Plan
        from harness.sweep import run_sweep
        from optimizer.latency.lut_model import LutLatencyModel

        missing: dict[str, OpSignature] = {}
        for units in unit_lists:
            for sig in units:
                if sig.key not in self.values:
                    missing.setdefault(sig.key, sig)
        if not missing:
            return 0
        plan = Plan(name="netadapt-layers", description="channel counts visited by NetAdapt",
                    source=Path("<netadapt>"), signatures=tuple(missing.values()))
        result = run_sweep(self.profile, plan, self.lut_path, on_progress=self.on_progress)
        if result.interrupted:
            raise KeyboardInterrupt
        self._reload(dict(LutLatencyModel.from_file(self.lut_path).median_us))
        self.measured += result.measured
        return result.measured

    def estimate(self, units: Sequence[OpSignature]) -> ResourceEstimate:
        from optimizer.latency.lut_model import LutLatencyModel

        values, flagged = {}, []
        for sig in units:
            value, guessed = self.unit_value(sig)
            values[sig.key] = value
            if guessed:
                flagged.append(sig.key)
        model = LutLatencyModel(values, self.overhead_us, self.source, correction=self.correction)
        return ResourceEstimate(model.estimate(units).latency_us / 1000.0, tuple(dict.fromkeys(flagged)))


class EnergyTable(_EntryTable):
    """Network energy (mJ per inference) as the sum of per-operator entries of an energy-results file."""

    resource = "energy"
    unit = "mJ"

    def __init__(self, results: str | Path) -> None:
        from harness.energy.store import read_results

        table = read_results(Path(results))
        rows = table.to_pylist()
        values = {r["signature"]: float(r["energy_per_run_mj"]) for r in rows
                  if r.get("entry") == "operator" and r.get("signature") and r.get("energy_per_run_mj") is not None}
        if not values:
            raise MissingEntries(f"{results}: no per-operator energy entries (entry = operator)")
        self.overhead_mj = next((v for k, v in values.items() if parse_signature(k).kind == IDENTITY), 0.0)
        super().__init__(values, str(results))

    def ensure(self, unit_lists: Iterable[Sequence[OpSignature]]) -> int:
        return 0

    def estimate(self, units: Sequence[OpSignature]) -> ResourceEstimate:
        total, flagged = 0.0, []
        for sig in units:
            value, guessed = self.unit_value(sig)
            total += value
            if guessed:
                flagged.append(sig.key)
        total -= max(len(units) - 1, 0) * self.overhead_mj
        return ResourceEstimate(total, tuple(dict.fromkeys(flagged)))


@dataclass
class MacsCount:
    """Millions of multiply-accumulates: exact, nothing to measure."""

    resource: str = "macs"
    unit: str = "MMACs"
    source: str = "MACs"
    interpolated_keys: set[str] = field(default_factory=set)

    def ensure(self, unit_lists: Iterable[Sequence[OpSignature]]) -> int:
        return 0

    def estimate(self, units: Sequence[OpSignature]) -> ResourceEstimate:
        return ResourceEstimate(sum(s.macs for s in units) / 1e6)


def layer_grid(units: Sequence[OpSignature], step: int) -> list[OpSignature]:
    """NetAdapt's layer-wise tables for a network, ahead of time: every unit at every channel count on the step grid.

    For each channel group (:class:`~optimizer.netadapt.pruning.ChannelStructure`),
    every count ``step, 2·step, ...`` below the current one that keeps the
    network's structure, with the other groups as they are; each resize
    changes the group's own units and the units that read it (a layer's
    filters and the next layer's inputs).  Counts that combine two pruned
    groups are not in it: a run measures them when it meets them, or, offline,
    interpolates them between these (flagged).
    """
    from optimizer.netadapt.pruning import ChannelStructure

    structure = ChannelStructure(units)
    seen: dict[str, OpSignature] = {s.key: s for s in units}
    for group in structure.groups:
        for channels in range((group.channels - 1) // step * step, 0, -step):
            if not structure.allowed(group.index, channels):
                continue
            resized = structure.resized({group.index: channels})
            for u in group.units:
                seen.setdefault(resized[u].key, resized[u])
    return list(seen.values())
