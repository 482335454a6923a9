"""A farm sweep: one plan measured on many device units at once, each LUT written by the driver.

The driver (this process) holds every LUT's lock and writer
(:class:`harness.lut.store.LutWriter`: parts, atomic folds, resumable); the
units' actors (:mod:`harness.farm.actor`) return rows and never write.  A
target is one LUT: one unit, or with ``shard`` every unit of a profile, which
then share the plan's signatures group by group (whichever unit is free takes
the next group).  Sharded units first measure a common calibration set; units
whose medians differ from the first unit's by more than ``tolerance`` are not
merged into one LUT (phones of one model differ).

Faults, as a lab meets them:

- a job that fails on its device (unreachable, too hot, a tool error) is put
  back and the unit is retried after a back-off, at most ``max_failures``
  times in a row, then marked failed (its LUT keeps what it has; a sharded
  target's other units take its share);
- a unit whose host left (its actor died with the node) is waited for up to
  ``host_wait_s``: Ray restarts the actor when the host announces the unit
  again, and the job is taken again;
- every row must carry the serial its unit first reported, and a LUT's rows
  one provenance (:data:`harness.lut.store.PROVENANCE_COLUMNS`): a phone
  swapped behind an address is refused, not mixed in;
- the driver killed at any moment leaves each LUT readable with every group
  it received; the same command resumes.
"""

from __future__ import annotations

import contextlib
import math
import re
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import LutFileError
from harness.farm.actor import device_actor
from harness.farm.cluster import AttachedDevice, FarmError
from harness.farm.status import farm_board
from harness.lut import store as lut_store
from harness.plans import Plan
from harness.profiles import DeviceProfile, check_fits_memory
from harness.signature import OpSignature
from harness.sweep import signatures_for_device

CALIBRATION_SIGNATURES = 8
AGREEMENT_TOLERANCE = 0.10
# What the board shows for an event (idle and busy come from Ray's resources): a failure stays until a sweep restarts it.
_BOARD_STATES = {"start": "ok", "failed": "failed", "left": "gone", "back": "ok", "done": "ok"}


@dataclass(frozen=True)
class FarmTarget:
    """One LUT to fill: a profile, the unit(s) that measure it, the file."""

    profile: DeviceProfile
    units: tuple[AttachedDevice, ...]
    out: Path

    @property
    def sharded(self) -> bool:
        return len(self.units) > 1


@dataclass(frozen=True)
class FarmEvent:
    """What the driver tells its display: a unit's progress or state change."""

    kind: str  # "start", "rows", "retry", "left", "back", "failed", "done"
    unit: AttachedDevice
    rows: int = 0  # rows this unit delivered so far
    total: int = 0  # signatures its target still lacked at the start
    message: str = ""


@dataclass
class UnitReport:
    device: AttachedDevice
    out: Path
    serial: str | None = None
    jobs: int = 0
    rows: int = 0
    busy_s: float = 0.0
    retries: int = 0
    left: int = 0  # times its host left mid-job
    state: str = "idle"  # idle, busy, retrying, gone, failed, done
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"device": str(self.device), "profile": self.device.profile, "unit": self.device.unit, "serial": self.serial,
                "out": str(self.out), "jobs": self.jobs, "rows": self.rows, "busy_s": self.busy_s, "retries": self.retries,
                "host_left": self.left, "state": self.state, "problem": self.problem}


@dataclass
class TargetReport:
    out: Path
    profile: str
    units: list[str]
    planned: int
    already_measured: int
    measured: int = 0
    failures: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def remaining(self) -> int:
        return self.planned - self.already_measured - self.measured

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "profile": self.profile, "units": self.units, "planned": self.planned,
                "already_measured": self.already_measured, "measured": self.measured, "remaining": self.remaining,
                "failures": self.failures, "calibration": self.calibration, "problem": self.problem}


@dataclass
class FarmSweepResult:
    plan: str
    targets: list[TargetReport]
    units: list[UnitReport]
    wall_s: float
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return not self.interrupted and all(t.remaining == 0 and not t.failures for t in self.targets)

    def efficiency(self) -> float | None:
        """Σ device-busy time / (units × wall time): how much of the farm the sweep kept busy."""
        if not self.units or self.wall_s <= 0:
            return None
        return sum(u.busy_s for u in self.units) / (len(self.units) * self.wall_s)

    def to_json(self) -> dict[str, Any]:
        efficiency = self.efficiency()
        return {"plan": self.plan, "wall_s": self.wall_s, "interrupted": self.interrupted, "complete": self.complete,
                "efficiency": efficiency if efficiency is None or math.isfinite(efficiency) else None,
                "targets": [t.to_json() for t in self.targets], "units": [u.to_json() for u in self.units]}


def lut_name(profile: str, unit: str | None = None) -> str:
    """``pixel.parquet``, or ``pixel-127.0.0.1_5555.parquet`` for one of several units measured apart."""
    if unit is None:
        return f"{profile}.parquet"
    return f"{profile}-{re.sub(r'[^A-Za-z0-9._-]', '_', unit)}.parquet"


def farm_targets(attached: Sequence[AttachedDevice], profiles: Sequence[DeviceProfile], out_dir: Path,
                 shard: bool = False) -> list[FarmTarget]:
    """The LUTs a farm sweep of ``profiles`` fills with the units the farm has: one per unit, or per profile with ``shard``."""
    targets = []
    for profile in profiles:
        if profile.transport.type != "adb":
            raise FarmError(f"device {profile.name!r}: the farm drives ADB devices; this profile uses the "
                            f"{profile.transport.type} transport (measure it with `bench sweep` on its host)")
        units = tuple(sorted(d for d in attached if d.profile == profile.name))
        if not units:
            announced = ", ".join(sorted({d.profile for d in attached})) or "none"
            raise FarmError(f"the farm has no unit of device {profile.name!r} (profiles announced: {announced}); "
                            f"attach one with `bench farm join ADDRESS --attach {profile.name}=SERIAL`")
        if shard or len(units) == 1:
            targets.append(FarmTarget(profile, units, out_dir / lut_name(profile.name)))
        else:
            targets.extend(FarmTarget(profile, (u,), out_dir / lut_name(profile.name, u.unit)) for u in units)
    return targets


@dataclass
class _Target:
    spec: FarmTarget
    writer: lut_store.LutWriter
    report: TargetReport
    queue: deque[list[OpSignature]]
    done: set[str]
    provenance: dict[str, Any] | None
    calibration: list[OpSignature]
    calibration_results: dict[str, dict[str, float]] = field(default_factory=dict)  # unit -> signature -> median
    calibration_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tolerance: float = AGREEMENT_TOLERANCE
    units: dict[str, "_Unit"] = field(default_factory=dict)  # by str(device)
    agreed: bool = False


@dataclass
class _Unit:
    device: AttachedDevice
    target: _Target
    actor: Any
    report: UnitReport
    failures: int = 0
    next_try: float = 0.0
    gone_since: float | None = None
    calibrated: bool = False


def farm_sweep(targets: Sequence[FarmTarget], plan: Plan, *, on_event: Callable[[FarmEvent], None] | None = None,
               max_failures: int = 3, retry_wait_s: float = 2.0, host_wait_s: float = 300.0,
               calibration: int = CALIBRATION_SIGNATURES, tolerance: float = AGREEMENT_TOLERANCE,
               actor_factory: Callable[[DeviceProfile, AttachedDevice], Any] = device_actor,
               publish: bool = True) -> FarmSweepResult:
    """Measure ``plan`` on every target's units at once (Ray must be initialised); see the module docstring.

    ``on_event`` receives every :class:`FarmEvent` (a display); with
    ``publish`` each unit's state changes also go to the farm's board, for
    ``bench farm status`` (:mod:`harness.farm.status`).
    """
    import ray

    started = time.monotonic()
    session_id = lut_store.new_session_id()
    board = farm_board() if publish else None

    def emit(event: FarmEvent) -> None:
        if on_event is not None:
            on_event(event)
        if board is not None and event.kind in _BOARD_STATES:
            board.report.remote(str(event.unit), _BOARD_STATES[event.kind], event.message or None)

    for target in targets:
        check_fits_memory(target.profile, signatures_for_device(plan, target.profile)[0], f"plan {plan.name}")
    interrupted = False
    with contextlib.ExitStack() as stack:
        states: list[_Target] = []
        units: list[_Unit] = []
        for target in targets:
            lut_store.check_writable(target.out)
            writer = stack.enter_context(lut_store.LutWriter(target.out))  # its lock, held to the end
            existing = lut_store.read_with_parts(target.out)
            signatures, _skipped = signatures_for_device(plan, target.profile)
            done = set(lut_store.signatures_of(existing))
            todo = [s for s in signatures if s.key not in done]
            group = target.profile.measurement.interleave_group
            state = _Target(
                spec=target, writer=writer,
                report=TargetReport(target.out, target.profile.name, [str(u) for u in target.units], len(signatures),
                                    len(signatures) - len(todo)),
                queue=deque(todo[i:i + group] for i in range(0, len(todo), group)),
                done=done,
                provenance=_provenance(existing.slice(0, 1).to_pylist()[0]) if existing.num_rows else None,
                calibration=signatures[1:1 + calibration] if target.sharded else [],
                tolerance=tolerance,
            )
            state.agreed = not target.sharded or not state.calibration
            states.append(state)
            for device in target.units:
                report = UnitReport(device, target.out)
                unit = _Unit(device, state, actor_factory(target.profile, device), report, calibrated=state.agreed)
                state.units[str(device)] = unit
                units.append(unit)
                emit(FarmEvent("start", device, 0, len(todo)))
        inflight: dict[Any, tuple[_Unit, list[OpSignature], bool]] = {}
        try:
            while True:
                now = time.monotonic()
                for unit in units:
                    if unit.report.state in ("busy", "failed", "done") or now < unit.next_try:
                        continue
                    work = _next_work(unit)
                    if work is None:
                        if unit.target.agreed and not unit.target.queue:
                            unit.report.state = "done"
                        continue
                    group, is_calibration = work
                    ref = unit.actor.run_job.remote([s.key for s in group], session_id)
                    inflight[ref] = (unit, group, is_calibration)
                    unit.report.state = "busy"
                if not inflight:
                    waiting = [u.next_try for u in units if u.report.state in ("retrying", "gone") and _has_work(u)]
                    if not waiting:
                        break
                    time.sleep(max(0.0, min(waiting) - time.monotonic()))
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                for ref in ready:
                    unit, group, is_calibration = inflight.pop(ref)
                    _collect(ray, ref, unit, group, is_calibration, emit, max_failures=max_failures,
                             retry_wait_s=retry_wait_s, host_wait_s=host_wait_s)
        except KeyboardInterrupt:
            interrupted = True
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        finally:
            for unit in units:
                with contextlib.suppress(Exception):
                    ray.kill(unit.actor)
    for unit in units:
        if unit.report.state != "failed":
            emit(FarmEvent("done", unit.device, unit.report.rows, 0))
    return FarmSweepResult(plan.name, [s.report for s in states], [u.report for u in units],
                           time.monotonic() - started, interrupted)


def _has_work(unit: _Unit) -> bool:
    return (not unit.calibrated and bool(unit.target.calibration)) or (unit.target.agreed and bool(unit.target.queue))


def _next_work(unit: _Unit) -> tuple[list[OpSignature], bool] | None:
    target = unit.target
    if target.report.problem is not None:
        return None
    if not unit.calibrated:
        return (target.calibration, True) if str(unit.device) not in target.calibration_results else None
    if target.agreed and target.queue:
        return target.queue.popleft(), False
    return None


def _collect(ray: Any, ref: Any, unit: _Unit, group: list[OpSignature], is_calibration: bool,
             emit: Callable[[FarmEvent], None], *, max_failures: int, retry_wait_s: float, host_wait_s: float) -> None:
    """Take one finished job: its rows into the LUT, or the group back in the queue and the unit retried."""
    target, report, now = unit.target, unit.report, time.monotonic()
    try:
        result = ray.get(ref)
    except ray.exceptions.RayActorError as gone:  # the actor died: its host left (or its worker process crashed)
        _put_back(unit, group, is_calibration)
        if unit.gone_since is None:
            report.left += 1
            unit.gone_since = now
        if now - unit.gone_since > host_wait_s:
            _fail(unit, f"its host has been gone {now - unit.gone_since:.0f} s ({_first_line(gone)})", emit)
            return
        report.state, unit.next_try = "gone", now + retry_wait_s
        emit(FarmEvent("left", unit.device, report.rows, 0, f"host left; waiting for it ({_first_line(gone)})"))
        return
    except ray.exceptions.RayTaskError as error:  # the job raised on the device's host
        _put_back(unit, group, is_calibration)
        cause = error.cause if isinstance(getattr(error, "cause", None), BaseException) else error
        unit.failures += 1
        report.retries += 1
        if unit.failures > max_failures:
            _fail(unit, f"failed {unit.failures} jobs in a row; last: {_first_line(cause)}", emit)
            return
        report.state, unit.next_try = "retrying", now + retry_wait_s * 2 ** (unit.failures - 1)
        emit(FarmEvent("retry", unit.device, report.rows, 0, _first_line(cause)))
        return
    if unit.gone_since is not None:
        emit(FarmEvent("back", unit.device, report.rows, 0, "host back"))
    unit.failures, unit.gone_since = 0, None
    report.state = "idle"
    report.jobs += 1
    report.busy_s += result.busy_s
    serial = result.health.unit
    if not unit.device.is_address and serial not in (None, unit.device.unit):
        _fail(unit, f"the device at USB serial {unit.device.unit} reports serial {serial}", emit, group)
        return
    if report.serial is None:
        report.serial = serial
    elif serial != report.serial:
        _fail(unit, f"{unit.device.unit} now answers as serial {serial}, was {report.serial}: another phone; "
                    f"its rows are refused", emit, group)
        return
    if any(row.get("unit") != report.serial for row in result.rows):
        _fail(unit, f"rows labelled with another unit than {report.serial}: refused", emit, group)
        return
    if is_calibration:
        unit.calibrated = True
        target.calibration_results[str(unit.device)] = {row["signature"]: row["median_us"] for row in result.rows}
        target.calibration_rows[str(unit.device)] = result.rows
        _decide_agreement(target, emit)
        return
    _write(unit, result.rows, emit)


def _write(unit: _Unit, rows: list[dict[str, Any]], emit: Callable[[FarmEvent], None]) -> None:
    target, report = unit.target, unit.report
    for row in rows:
        provenance = _provenance(row)
        if target.provenance is None:
            target.provenance = provenance
        elif provenance != target.provenance:
            differ = next(k for k in provenance if provenance[k] != target.provenance[k])
            target.report.failures.append(f"{row['signature']}: measured with {differ} {provenance[differ]!r}, but "
                                          f"{target.spec.out} holds {target.provenance[differ]!r}")
            continue
        if row["signature"] in target.done:
            continue  # a calibration row the LUT already has
        try:
            target.writer.add(row)
        except LutFileError as refused:
            target.report.failures.append(str(refused))
            continue
        target.done.add(row["signature"])
        target.report.measured += 1
        report.rows += 1
    target.writer.flush()  # a finished group is on disk before the next result is taken
    emit(FarmEvent("rows", unit.device, report.rows, 0))


def calibration_agreement(results: dict[str, dict[str, float]], tolerance: float) -> dict[str, Any]:
    """Whether units of one model agree: each unit's median ratio to the first unit's medians on the shared signatures.

    ``results``: unit → signature → median (µs), the first unit the
    reference.  They agree when every ratio is within ``tolerance`` of 1.
    """
    names = list(results)
    reference = results[names[0]]
    ratios: dict[str, float | None] = {}
    for name in names:
        shared = [k for k in reference if k in results[name] and reference[k] > 0]
        ratios[name] = statistics.median(results[name][k] / reference[k] for k in shared) if shared else None
    worst_name = max(names, key=lambda n: abs((ratios[n] if ratios[n] is not None else 1.0) - 1.0))
    worst = abs((ratios[worst_name] if ratios[worst_name] is not None else 1.0) - 1.0)
    return {"signatures": len(reference), "reference_unit": names[0], "tolerance": tolerance,
            "median_ratio_to_reference": ratios, "worst_unit": worst_name, "worst_difference": worst,
            "agree": worst <= tolerance}


def _decide_agreement(target: _Target, emit: Callable[[FarmEvent], None]) -> None:
    """Once every live unit of a sharded target has measured the calibration set: merge them, or refuse."""
    live = [str(u) for u in target.spec.units]
    if not live or any(name not in target.calibration_results for name in live):
        return
    agreement = calibration_agreement({name: target.calibration_results[name] for name in live}, target.tolerance)
    target.report.calibration = agreement
    if not agreement["agree"]:
        target.report.problem = (f"units {live[0]} and {agreement['worst_unit']} of {target.spec.profile.name} differ by "
                                 f"{100 * agreement['worst_difference']:.0f}% on {agreement['signatures']} calibration "
                                 f"signatures (tolerance {100 * target.tolerance:.0f}%): not merged into one LUT; "
                                 f"measure them apart (without --shard)")
        target.queue.clear()
        return
    target.agreed = True
    _write(target.units[live[0]], target.calibration_rows[live[0]], emit)


def _put_back(unit: _Unit, group: list[OpSignature], is_calibration: bool) -> None:
    if not is_calibration:
        unit.target.queue.appendleft(group)


def _fail(unit: _Unit, problem: str, emit: Callable[[FarmEvent], None], group: list[OpSignature] | None = None) -> None:
    if group is not None:
        _put_back(unit, group, False)
    unit.report.state, unit.report.problem = "failed", problem
    target = unit.target
    emit(FarmEvent("failed", unit.device, unit.report.rows, 0, problem))
    if not unit.calibrated and target.spec.sharded:  # the others decide without it
        target.spec = FarmTarget(target.spec.profile, tuple(u for u in target.spec.units if u != unit.device), target.spec.out)
        target.units.pop(str(unit.device), None)
        _decide_agreement(target, emit)


def _provenance(row: dict[str, Any]) -> dict[str, Any]:
    return {column: row[column] for column in lut_store.PROVENANCE_COLUMNS}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__

