"""Per-operator profiles of single-op ExecuTorch programs: ETDump, read through ExecuTorch's Inspector.

A LUT row is one number per signature; the profile says what is inside it.
A program is loaded a second time with ETDump on (``enable_etdump=True``),
run a few times, its dump written and read back with
``executorch.devtools.Inspector``.  Timing and profiling never share a run:
the profiler's events cost time, so the LUT's number comes from the runner's
normal timing and the profile from these separate runs (``sum_over_timed``
compares the two).

What the dump holds, per execution (the ``Execute`` event block):

* ``Method::execute``: the whole method, the profiled run's total;
* one *call* per instruction: ``DELEGATE_CALL`` (a lowered subgraph handed
  to a backend) or ``OPERATOR_CALL`` (a portable/optimized kernel, whose own
  ``native_call_<op>`` event names it);
* inside a delegate call, the operators the delegate reports (XNNPACK:
  ``Convolution (NHWC, F32) IGEMM #1``, ``Transpose (ND, X32) #1``...).

Kernels: the compute operators the runtime ran, i.e. a delegate call's inner
compute operators (or the call itself when its delegate reports none) plus
each non-delegated operator call.  Layout and format conversions at a
program's edges (XNNPACK's NCHW↔NHWC ``Transpose`` and int8 ``Convert``,
the portable ``_to_dim_order_copy``) are *boundary* kernels, counted apart: a
network pays them once per delegated region, a LUT entry once per op, so they
are the non-additive share of a row.  ``one_kernel``: exactly one compute
kernel, which is what summing LUT rows assumes of a signature.

Units (pytorch/executorch#4504, fixed in the Inspector by #5076): the runtime
stamps events in PAL ticks, which the Inspector reads as ns
(``source_time_scale``); XNNPACK's profiler gets whole microseconds from
XNNPACK and converts them to ticks with the PAL's tick rate
(``XNNProfiler::submit_trace``).  A PAL whose ticks are not ns, or an
Inspector without #5076's delegate converter, leaves the dump's times, or its
delegate operators' times, off by a factor (1e3, 1e6).  So two checks, each
against a clock independent of the one in question:

* the dump: ``Method::execute`` against the wall time measured around
  ``execute`` in the same runs (or, for a dump from elsewhere, the timed run);
  a ratio in [0.01, 1.1] is consistent, one a power of 1000 away from it is
  rescaled (and ``units_note`` says so), any other is flagged;
* delegate operators: their sum against their ``DELEGATE_CALL`` (runtime
  clock), for calls of at least :data:`RESOLVABLE_CALL_US` (below, XNNPACK's
  whole microseconds say little); in [0.3, 1.1] (+1 µs an operator for the
  rounding) is consistent, a power of 1000 away is rescaled, else flagged.

:func:`profile_program` profiles a ``.pte`` in this process (the caller sets
threads and pinning: run it inside an open
:class:`~harness.runners.executorch_local.ExecuTorchRunner`);
:func:`read_etdump` reads a dump written anywhere (a phone), and
:func:`check_against_timed` compares a profile with the timed run.
ExecuTorch is imported inside the functions (it takes seconds).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ChameleonError
from harness.signature import OpSignature, parse_signature

#: Profiled executions kept (after the warm-up ones, whose events are dropped), and a time cap for slow programs.
PROFILED_RUNS = 20
WARMUP_RUNS = 3
MIN_RUNS = 5
MAX_PROFILE_S = 1.0
#: The profile sum and the timed run (less its per-call overhead) agree within this share.
TOLERANCE = 0.10
#: Below this a delegate call's inner operators (XNNPACK: whole µs each) cannot be held to its time.
RESOLVABLE_CALL_US = 20.0
# Consistent ratios: the method's total over the wall time around it (an empty method reads ~0.015),
# and a delegate's operators over their call.
_DUMP_BAND = (0.01, 1.1)
_DELEGATE_BAND = (0.3, 1.1)
# Operators that convert layout or format at a program's edge (see the module docstring).
_BOUNDARY_PREFIXES = ("Transpose", "Convert", "Copy", "_to_dim_order_copy", "_clone_dim_order",
                      "quantize_per_tensor", "dequantize_per_tensor")

DELEGATE_CALL, OPERATOR_CALL, DELEGATE_OP = "delegate_call", "operator_call", "delegate_op"


class ProfileUnavailable(ChameleonError):
    """An ETDump that cannot be written or read, or that holds no execution."""


@dataclass(frozen=True)
class ProfileEvent:
    """One event of the profiled method, its median over the kept runs (µs, after any rescaling)."""

    name: str         # as the runtime or delegate names it: DELEGATE_CALL, OPERATOR_CALL, "Add (ND) #1"
    op: str           # an operator call: its kernel ("convolution.out"); a delegate op: its name; a delegate call: ""
    level: str        # DELEGATE_CALL | OPERATOR_CALL | DELEGATE_OP
    boundary: bool    # a layout/format conversion at the program's edge
    instruction: int  # the instruction of the call (a delegate op: of its call)
    median_us: float
    op_types: tuple[str, ...] = ()  # the edge operators behind it, from an ETRecord when one is given


@dataclass(frozen=True)
class OpProfile:
    """A signature's profile, and (after :func:`check_against_timed`) how it compares with the timed run."""

    signature: str
    backend: str
    runs: int                  # profiled executions kept
    events: tuple[ProfileEvent, ...]
    sum_us: float              # median over runs of the calls' sum: what the kernels took
    method_us: float           # Method::execute: the profiled run's total (runtime clock)
    wall_us: float | None      # around execute in the profiled runs (Python clock); None: a dump from elsewhere
    kernels: int               # compute kernels (see the module docstring)
    boundary_kernels: int
    delegate_calls: int
    operator_calls: int
    boundary_us: float         # the boundary kernels' medians, summed
    units_scale: float = 1.0           # factor applied to every time of the dump
    delegate_units_scale: float = 1.0  # further factor applied to the delegate operators
    units_ok: bool = True
    units_note: str = ""
    program: str | None = None         # the .pte's file name (its cache name keys signature, backend, versions)
    timed_us: float | None = None      # the timed run's median (a LUT row's median_us, or the runner's)
    overhead_us: float | None = None   # the per-call overhead subtracted from it (the identity program's median)
    timed_source: str = "none"         # lut | runner | none
    flag: str = "no-timed-run"         # "" when the profile accounts for the timed run; else a short reason code
    note: str = "not compared with a timed run"

    @property
    def one_kernel(self) -> bool:
        return self.kernels == 1

    @property
    def timed_net_us(self) -> float | None:
        """The timed run less the per-call overhead: the op's share of a network, as the optimizer counts it."""
        return None if self.timed_us is None else self.timed_us - (self.overhead_us or 0.0)

    @property
    def sum_over_timed(self) -> float | None:
        net = self.timed_net_us
        return self.sum_us / net if net is not None and net > 0 else None

    @property
    def sum_within_10pct(self) -> bool:
        ratio = self.sum_over_timed
        return self.units_ok and ratio is not None and abs(ratio - 1.0) <= TOLERANCE

    @property
    def flagged(self) -> bool:
        return bool(self.flag)

    def to_record(self, *, device_id: str, runtime_version: str, harness_version: str, profiled_at: Any) -> dict[str, Any]:
        """The profile as one row of the op-profiles sidecar (:mod:`harness.lut.op_profiles`)."""
        signature = parse_signature(self.signature)
        events = self.events
        return {
            "signature": self.signature, "kind": signature.kind, "dtype": signature.dtype, "device_id": device_id,
            "backend": self.backend, "runtime_version": runtime_version, "program": self.program,
            "profiled_runs": self.runs, "sum_us": self.sum_us, "method_us": self.method_us, "wall_us": self.wall_us,
            "timed_us": self.timed_us, "overhead_us": self.overhead_us, "timed_source": self.timed_source,
            "sum_over_timed": self.sum_over_timed, "sum_within_10pct": self.sum_within_10pct,
            "kernels": self.kernels, "one_kernel": self.one_kernel, "boundary_kernels": self.boundary_kernels,
            "boundary_us": self.boundary_us, "delegate_calls": self.delegate_calls,
            "operator_calls": self.operator_calls, "units_scale": self.units_scale,
            "delegate_units_scale": self.delegate_units_scale, "units_ok": self.units_ok,
            "units_note": self.units_note, "flag": self.flag, "note": self.note,
            "event_name": [e.name for e in events], "event_op": [e.op for e in events],
            "event_level": [e.level for e in events], "event_boundary": [e.boundary for e in events],
            "event_instruction": [e.instruction for e in events], "event_median_us": [e.median_us for e in events],
            "harness_version": harness_version, "profiled_at": profiled_at,
        }


# --------------------------------------------------------------- profiling here
def profile_program(program: Path, signature: OpSignature | str, inputs: Sequence[Any], *, backend: str,
                    runs: int = PROFILED_RUNS, warmup_runs: int = WARMUP_RUNS, max_seconds: float = MAX_PROFILE_S,
                    etrecord: Path | None = None) -> OpProfile:
    """Run ``program``'s ``forward`` with ETDump on and profile it (see the module docstring).

    ``runs`` executions are kept after ``warmup_runs`` (fewer, at least
    :data:`MIN_RUNS`, when they would take over ``max_seconds``); each is
    also timed with the wall clock, the dump's unit reference.
    """
    from executorch.runtime import Runtime

    program = Path(program)
    try:
        loaded = Runtime.get().load_program(program, enable_etdump=True)
        method = loaded.load_method("forward")
    except Exception as error:  # the bindings raise RuntimeError and ValueError alike for a bad program
        raise ProfileUnavailable(f"{program}: ExecuTorch cannot load it with ETDump on ({_first_line(error)})") from None
    inputs = list(inputs)
    started = time.perf_counter()
    for _ in range(max(warmup_runs, 1)):  # the first run allocates: always dropped
        method.execute(inputs)
    warmups = max(warmup_runs, 1)
    each_s = (time.perf_counter() - started) / warmups
    wanted = max(MIN_RUNS, min(runs, int(max_seconds / max(each_s, 1e-9))))
    walls: list[float] = []
    for _ in range(wanted):
        start = time.perf_counter_ns()
        method.execute(inputs)
        walls.append((time.perf_counter_ns() - start) / 1e3)
    with tempfile.TemporaryDirectory(prefix="chameleon-etdump-") as folder:
        dump = Path(folder) / "profile.etdp"
        try:
            loaded.write_etdump_result_to_file(str(dump), str(Path(folder) / "debug.bin"))
        except Exception as error:
            raise ProfileUnavailable(f"{program}: ExecuTorch wrote no ETDump ({_first_line(error)}); "
                                     "this build may lack its event tracer") from None
        return read_etdump(dump, signature, backend=backend, program=program, etrecord=etrecord,
                           warmup_runs=warmups, wall_us=statistics.median(walls))


def profile_signature(signature: OpSignature, *, backend: str = "xnnpack", seed: int = 0, cache: Path | None = None,
                      runs: int = PROFILED_RUNS) -> OpProfile:
    """:func:`profile_program` on the signature's cached program (:mod:`harness.models.pte_models`) and inputs."""
    from harness.models import pte_models

    path = pte_models.model_file(signature, seed=seed, backend=backend, cache=cache)
    return profile_program(path, signature, pte_models.example_inputs(signature, seed=seed), backend=backend, runs=runs)


# ----------------------------------------------------------- reading a dump
def read_etdump(etdump: Path, signature: OpSignature | str, *, backend: str, program: Path | None = None,
                etrecord: Path | None = None, warmup_runs: int = 0, wall_us: float | None = None) -> OpProfile:
    """Profile of one program from its ETDump file, wherever it was written (this process, a phone).

    ``warmup_runs``: executions at the start of the dump to drop.
    ``wall_us``: the wall time around one execute, when known, to check the
    dump's unit; without it :func:`check_against_timed` checks it against the
    timed run.  ``etrecord`` (optional) names the edge operators behind each event.
    """
    from executorch.devtools import Inspector
    from executorch.devtools.inspector._inspector_utils import TimeScale

    etdump = Path(etdump)
    if not etdump.is_file():
        raise ProfileUnavailable(f"{etdump}: no such ETDump file")
    try:
        with warnings.catch_warnings():  # "Output Buffer not found": we asked for no tensor data
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(etdump), etrecord=None if etrecord is None else str(etrecord),
                                  source_time_scale=TimeScale.NS, target_time_scale=TimeScale.US)
    except Exception as error:  # flatbuffer and ETRecord parsers raise anything
        raise ProfileUnavailable(f"{etdump}: the Inspector cannot read it ({_first_line(error)})") from None
    key = signature if isinstance(signature, str) else signature.key
    profile = _profile_from_events(_execute_block(inspector, etdump), key, backend, warmup_runs, etdump)
    profile = dataclasses.replace(profile, program=None if program is None else Path(program).name, wall_us=wall_us)
    return checked_units(profile, wall_us)


def _execute_block(inspector: Any, where: Path) -> Any:
    """The event block of the method's executions: the one whose Method::execute has the most runs."""
    best, best_runs = None, 0
    for block in inspector.event_blocks:
        for event in block.events:
            if event.name == "Method::execute" and event.perf_data is not None and len(event.perf_data.raw) > best_runs:
                best, best_runs = block, len(event.perf_data.raw)
    if best is None:
        raise ProfileUnavailable(f"{where}: the ETDump holds no execution (no Method::execute event)")
    return best


def _profile_from_events(block: Any, key: str, backend: str, skip: int, where: Path) -> OpProfile:
    method_raw: list[float] = []
    kernel_names: dict[int, str] = {}
    raw_events: list[tuple[ProfileEvent, list[float]]] = []
    for position, event in enumerate(block.events):
        raw = [float(x) for x in (event.perf_data.raw if event.perf_data is not None else [])][skip:]
        instruction = getattr(event, "_instruction_id", None)
        instruction = position if instruction is None else int(instruction)
        op_types = tuple(event.op_types or ())
        if event.name == "Method::execute":
            method_raw = raw
        elif event.name.startswith("native_call_"):  # the kernel's own event inside its OPERATOR_CALL: its name only
            kernel_names[instruction] = event.name[len("native_call_"):]
        elif event.name in ("DELEGATE_CALL", "OPERATOR_CALL") or event.is_delegated_op:
            level = {"DELEGATE_CALL": DELEGATE_CALL, "OPERATOR_CALL": OPERATOR_CALL}.get(event.name, DELEGATE_OP)
            op = event.name if level == DELEGATE_OP else ""
            raw_events.append((ProfileEvent(event.name, op, level, False, instruction, 0.0, op_types), raw))
    if not method_raw:
        raise ProfileUnavailable(f"{where}: no execution left after dropping the first {skip} (warm-up) run(s)")
    events, call_runs = [], []
    for event, raw in raw_events:
        op = kernel_names.get(event.instruction, "") if event.level == OPERATOR_CALL else event.op
        boundary = event.level != DELEGATE_CALL and op.startswith(_BOUNDARY_PREFIXES)
        events.append(dataclasses.replace(event, op=op, boundary=boundary,
                                          median_us=statistics.median(raw) if raw else 0.0))
        if event.level != DELEGATE_OP:
            call_runs.append(raw)
    return _summarised(OpProfile(signature=key, backend=backend, runs=len(method_raw), events=tuple(events), sum_us=0.0,
                                 method_us=statistics.median(method_raw), wall_us=None, kernels=0, boundary_kernels=0,
                                 delegate_calls=0, operator_calls=0, boundary_us=0.0),
                       _sum_per_run(call_runs))


def _sum_per_run(call_runs: list[list[float]]) -> float:
    """Median over runs of the calls' sum; the sum of their medians when runs do not line up."""
    if not call_runs:
        return 0.0
    lengths = {len(raw) for raw in call_runs}
    if len(lengths) == 1 and 0 not in lengths:
        return statistics.median(sum(values) for values in zip(*call_runs))
    return sum(statistics.median(raw) for raw in call_runs if raw)


def _summarised(profile: OpProfile, sum_us: float) -> OpProfile:
    """Kernel counts and boundary time of a profile's events (see the module docstring)."""
    events = profile.events
    calls = [e for e in events if e.level != DELEGATE_OP]
    inner = {e.instruction: [] for e in calls if e.level == DELEGATE_CALL}
    for e in events:
        if e.level == DELEGATE_OP:
            inner.setdefault(e.instruction, []).append(e)
    kernels = sum(1 for e in calls if e.level == OPERATOR_CALL and not e.boundary)
    kernels += sum(sum(1 for e in ops if not e.boundary) if ops else 1 for ops in inner.values())
    boundary = [e for e in events if e.boundary]
    return dataclasses.replace(profile, sum_us=sum_us, kernels=kernels, boundary_kernels=len(boundary),
                               delegate_calls=sum(1 for e in calls if e.level == DELEGATE_CALL),
                               operator_calls=sum(1 for e in calls if e.level == OPERATOR_CALL),
                               boundary_us=sum(e.median_us for e in boundary))


# ----------------------------------------------------------------- units
def power_of_1000(ratio: float, band: tuple[float, float]) -> float | None:
    """The factor 1000**k (k ≠ 0, |k| ≤ 3) that brings ``ratio`` into ``band``; None when none does."""
    if not (math.isfinite(ratio) and ratio > 0):
        return None
    for k in (1, -1, 2, -2, 3, -3):
        factor = 1000.0 ** k
        if band[0] <= ratio * factor <= band[1]:
            return factor
    return None


def checked_units(profile: OpProfile, reference_us: float | None = None,
                  what: str = "the wall time around execute") -> OpProfile:
    """Both unit checks of the module docstring: delegate operators against their call, then (with a reference
    time from an independent clock) the whole dump against it; rescaled by powers of 1000 or flagged."""
    profile = _checked_delegate_units(profile)
    if reference_us is not None:
        profile = _checked_dump_units(profile, reference_us, what)
    return profile


def _scaled(profile: OpProfile, factor: float, delegate_only: bool) -> OpProfile:
    events = tuple(dataclasses.replace(e, median_us=e.median_us * factor)
                   if (e.level == DELEGATE_OP or not delegate_only) else e for e in profile.events)
    if delegate_only:  # the calls (and so the sum) keep the runtime's clock
        return _summarised(dataclasses.replace(profile, events=events), profile.sum_us)
    scaled = dataclasses.replace(profile, events=events, method_us=profile.method_us * factor)
    return _summarised(scaled, profile.sum_us * factor)


def _with_note(profile: OpProfile, note: str, **changes: Any) -> OpProfile:
    notes = "; ".join(n for n in (profile.units_note, note) if n)
    return dataclasses.replace(profile, units_note=notes, **changes)


def _checked_dump_units(profile: OpProfile, reference_us: float, what: str) -> OpProfile:
    """Hold Method::execute to an independent clock: rescale by a power of 1000, or flag."""
    if not profile.events or not (reference_us and reference_us > 0):  # an empty method: nothing to hold
        return profile
    ratio = profile.method_us / reference_us
    if _DUMP_BAND[0] <= ratio <= _DUMP_BAND[1]:
        return profile
    factor = power_of_1000(ratio, _DUMP_BAND)
    if factor is None:
        return _with_note(profile, f"Method::execute reads {ratio:.3g}x {what}, not a power of 1000 away from it: "
                                   "the dump's unit cannot be reconciled", units_ok=False)
    rescaled = _scaled(profile, factor, delegate_only=False)
    return _with_note(rescaled, f"Method::execute read {ratio:.3g}x {what} (ticks not ns?): every time rescaled x{factor:g}",
                      units_scale=profile.units_scale * factor)


def _checked_delegate_units(profile: OpProfile) -> OpProfile:
    """Hold each delegate call's inner operators to the call (executorch#4504): rescale by a power of 1000, or flag."""
    ratios = []
    for call in (e for e in profile.events if e.level == DELEGATE_CALL and e.median_us >= RESOLVABLE_CALL_US):
        inner = [e for e in profile.events if e.level == DELEGATE_OP and e.instruction == call.instruction]
        if inner:
            ratios.append((sum(e.median_us for e in inner) / call.median_us, len(inner) / call.median_us))
    if not ratios:
        return profile
    ratio, rounding = max(ratios, key=lambda r: abs(math.log(max(r[0], 1e-12))))  # the worst call decides
    band = (_DELEGATE_BAND[0], _DELEGATE_BAND[1] + rounding)  # whole µs an operator may round up
    if band[0] <= ratio <= band[1]:
        return profile
    factor = power_of_1000(ratio, _DELEGATE_BAND)
    if factor is None:
        return _with_note(profile, f"delegate operators sum to {ratio:.3g}x their DELEGATE_CALL, not a power of 1000 "
                                   "away from it: their unit cannot be reconciled", units_ok=False)
    rescaled = _scaled(profile, factor, delegate_only=True)
    return _with_note(rescaled, f"delegate operators summed to {ratio:.3g}x their DELEGATE_CALL "
                                f"(executorch#4504): rescaled x{factor:g}",
                      delegate_units_scale=profile.delegate_units_scale * factor)


# ------------------------------------------------------- against the timed run
def check_against_timed(profile: OpProfile, timed_us: float | None, overhead_us: float | None,
                        source: str) -> OpProfile:
    """Compare the kernels' sum with the timed run less its per-call overhead; set ``flag`` and ``note``.

    A dump with no wall-clock reference has its unit checked against the
    timed run first.  Flags: ``units`` (not reconciled), ``outside-method``
    (the gap is mostly outside Method::execute: the bindings' input and
    output copies, which the identity program's overhead does not cover),
    ``inside-method`` (mostly between the calls), ``timed-slower`` (the
    profiled runs were faster end to end than the timed run: the timed run
    was taken in a slower state), ``profile-slower`` (the profiled kernels
    took longer than the timed run less overhead), ``below-overhead`` (the
    timed run is not above the overhead), ``no-timed-run``.
    """
    if profile.wall_us is None and timed_us is not None:
        profile = _checked_dump_units(profile, timed_us, "the timed run")
    profile = dataclasses.replace(profile, timed_us=timed_us, overhead_us=overhead_us, timed_source=source)
    flag, note = _verdict(profile)
    return dataclasses.replace(profile, flag=flag, note=note)


def _verdict(p: OpProfile) -> tuple[str, str]:
    if not p.units_ok:
        return "units", p.units_note
    net = p.timed_net_us
    if net is None:
        return "no-timed-run", "not compared with a timed run"
    if net <= 0:
        return "below-overhead", (f"the timed run ({p.timed_us:.1f} µs) is not above the per-call overhead "
                                  f"({p.overhead_us or 0:.1f} µs): nothing left to compare the kernels with")
    ratio = p.sum_us / net
    if abs(ratio - 1) <= TOLERANCE:
        return "", ""
    head = f"kernels {p.sum_us:.1f} µs = {ratio:.0%} of the timed {net:.1f} µs (less {p.overhead_us or 0:.1f} µs overhead)"
    if ratio > 1:
        return "profile-slower", f"{head}: the profiler's cost, or a slower state while profiling"
    if p.wall_us is not None and p.wall_us < (1 - TOLERANCE) * p.timed_us:
        return "timed-slower", (f"{head}; the profiled runs took {p.wall_us:.1f} µs end to end against the timed "
                                f"{p.timed_us:.1f} µs: the timed run was slower (contention, another state), not the kernels")
    inside = max(p.method_us - p.sum_us, 0.0)
    outside = None if p.wall_us is None else max(p.wall_us - p.method_us - (p.overhead_us or 0.0), 0.0)
    if outside is not None and outside >= inside:
        return "outside-method", (f"{head}; a run spends ~{outside:.1f} µs outside Method::execute beyond the "
                                  "identity's overhead (the bindings' input and output copies)")
    return "inside-method", f"{head}; {inside:.1f} µs a run is inside Method::execute between the calls"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
