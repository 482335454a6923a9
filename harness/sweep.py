"""A sweep: measure every signature of a plan on one device into its LUT, resumably.

The sweep reads what the LUT (and any parts an interrupted sweep left) already
holds, measures only what is missing, group by group (the ops of a group are
timed in interleaved rounds, see :class:`harness.measurement.MeasurementSettings`),
and writes each group's rows durably as soon as it is done (see
:class:`harness.lut.store.LutWriter`).  Ctrl-C stops it cleanly with
everything measured kept; the same command resumes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness import __version__ as harness_version
from harness import host_speed
from harness.contention import ContentionProbe, ContentionReport
from harness.lut import store as lut_store
from harness.errors import LutFileError
from harness.measurement import Measurement, MeasurementSettings, measure_in_groups
from harness.plans import Plan
from harness.profiles import DeviceProfile, check_fits_memory
from harness.runners import DeviceIdentity, Runner, make_runner
from harness.signature import IDENTITY, OpSignature, make_signature

# The runtime's fixed per-invocation cost, measured on an empty model in every
# LUT.  A network estimate subtracts it from all but one of the summed entries.
OVERHEAD_SIGNATURE = make_signature(IDENTITY)

ProgressCallback = Callable[[int, int, "OpSignature | None"], None]


@dataclass(frozen=True)
class SweepResult:
    out: Path
    device_id: str
    device_model: str
    plan: str
    planned: int  # signatures this device measures for the plan, the overhead probe included
    skipped_dtype: int  # plan signatures in a dtype the device does not take
    already_measured: int
    measured: int
    interrupted: bool
    wall_s: float
    timed_s: float  # the timed runs of this invocation, re-measured attempts included
    rows_in_lut: int
    overhead_us: float | None
    # Signatures whose measurement the LUT refused (a NaN or negative time from a runner): one line each,
    # not written, not counted measured; the next run measures them again.
    failures: tuple[str, ...] = ()
    # Part files of an earlier run that could not be read: kept on disk for inspection, their rows not in the LUT.
    unreadable_parts: tuple[str, ...] = ()
    # How contended this host was during the timed runs, and whether the figures can be trusted.
    contention: ContentionReport | None = None

    @property
    def remaining(self) -> int:
        return self.planned - self.already_measured - self.measured

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["remaining"] = self.remaining
        data["failed"] = len(self.failures)
        data["failures"] = list(self.failures)
        data["unreadable_parts"] = list(self.unreadable_parts)
        data["contention"] = None if self.contention is None else self.contention.to_json()
        return data


def signatures_for_device(plan: Plan, profile: DeviceProfile) -> tuple[list[OpSignature], int]:
    """The plan's signatures in the dtypes the device takes, overhead probe first; and how many were skipped."""
    wanted = [s for s in plan.signatures if s.dtype in profile.dtypes]
    skipped = len(plan.signatures) - len(wanted)
    return [OVERHEAD_SIGNATURE] + [s for s in wanted if s != OVERHEAD_SIGNATURE], skipped


def make_row(signature: OpSignature, measurement: Measurement, identity: DeviceIdentity, device_id: str,
             threads: int, session_id: str) -> dict[str, Any]:
    row = signature.to_record()
    row.update(
        signature=signature.key,
        **measurement.columns(),
        device_id=device_id,
        device_model=identity.model,
        unit=identity.unit,
        runtime=identity.runtime,
        runtime_version=identity.runtime_version,
        provider=identity.provider,
        threads=threads,
        harness_version=harness_version,
        session_id=session_id,
        measured_at=lut_store.now_utc(),
    )
    return row


def check_provenance(existing: Any, out: Path, device_id: str, identity: DeviceIdentity, threads: int) -> None:
    """Refuse to resume into a LUT measured on another device or with other software."""
    if existing.num_rows == 0:
        return
    current = {
        "device_id": device_id,
        "device_model": identity.model,
        "runtime": identity.runtime,
        "runtime_version": identity.runtime_version,
        "provider": identity.provider,
        "threads": threads,
    }
    for column, value in current.items():
        seen = set(existing.column(column).to_pylist())
        if seen != {value}:
            other = ", ".join(sorted(map(str, seen - {value}))) or "?"
            raise LutFileError(
                f"{out}: holds rows with {column} {other}, but this sweep measures {column} {value}; "
                f"give another --out (bench lut merge can combine files of one device)"
            )


def run_sweep(
    profile: DeviceProfile,
    plan: Plan,
    out: str | Path,
    *,
    runner: Runner | None = None,
    settings: MeasurementSettings | None = None,
    on_progress: ProgressCallback | None = None,
    limit: int | None = None,
    reference_baseline_us: float | None = None,
) -> SweepResult:
    """Measure what ``out`` lacks of ``plan`` on ``profile``'s device; see the module docstring.

    ``reference_baseline_us`` holds a new LUT's batches to another LUT's
    baseline (:mod:`harness.host_speed`), so that the two compare; a LUT that
    has one keeps its own.
    """
    out = lut_store.check_writable(out)
    settings = settings or profile.measurement
    signatures, skipped = signatures_for_device(plan, profile)
    check_fits_memory(profile, signatures, f"plan {plan.name}")  # before a runner starts or a model is built
    own_runner = runner is None
    runner = runner or make_runner(profile)
    if hasattr(runner, "attach_lut"):  # a runner that keeps files beside the LUT's rows (executor_runner's ETDumps)
        runner.attach_lut(out)
    started = time.monotonic()
    timed_us = 0.0
    measured = 0
    failures: list[str] = []
    interrupted = False
    reference = None
    try:
        identity = runner.identity
        # Every batch of timed runs is watched: the CPU share of the measuring thread, steal, load.
        probe = ContentionProbe.for_profile(profile)
        prepare = probe.watching(runner.prepare)
        session_id = lut_store.new_session_id()
        with lut_store.LutWriter(out) as writer:
            existing = lut_store.read_with_parts(out)
            check_provenance(existing, out, profile.name, identity, profile.runtime.threads)
            done = set(lut_store.signatures_of(existing))
            # The host's speed: a LUT keeps the baseline of its first sweep; one measured without a reference
            # kernel (schema version 1, or another profile setting) is resumed without one, its rows alike.
            baseline = host_speed.lut_baseline(existing)
            if baseline is None and existing.num_rows == 0:
                baseline = reference_baseline_us  # another LUT's fast state, to compare with it (None: find it)
            track_speed = settings.reference_kernel and (existing.num_rows == 0 or baseline is not None)
            if track_speed:
                reference = prepare(host_speed.REFERENCE_SIGNATURE)
            todo = [s for s in signatures if s.key not in done]
            already = len(signatures) - len(todo)
            if limit is not None:
                todo = todo[:limit]
            if on_progress:
                on_progress(0, len(todo), None)
            # Rows of a group that never met the host's fast state (a slow spell longer than its waits) are held
            # back and taken again once, in groups of their own at the end of the sweep, when the spell is usually
            # over; those still off it then are written as measured, and say so (at_baseline false).  Until then
            # they are not in the LUT: a sweep stopped before the end measures them again when resumed.
            retry: list[OpSignature] = []
            try:
                for group, measurements in measure_in_groups(todo, prepare, settings, reference=reference,
                                                             baseline_us=baseline, then=retry):
                    for signature, measurement in zip(group, measurements):
                        timed_us += measurement.timed_total_us
                        if measurement.at_baseline is False and signature not in retry:
                            retry.append(signature)
                            continue
                        try:
                            writer.add(make_row(signature, measurement, identity, profile.name,
                                                profile.runtime.threads, session_id))
                        except LutFileError as refused:
                            failures.append(str(refused))
                            continue
                        measured += 1
                    writer.flush()  # a finished group is on disk before the next one starts
                    if on_progress:
                        on_progress(measured, len(todo), group[-1])
            except KeyboardInterrupt:
                interrupted = True
    finally:
        if reference is not None:
            reference.close()
        if own_runner:
            runner.close()
    final = lut_store.read_lut(out)
    overhead = lut_store.find_row(final, OVERHEAD_SIGNATURE)
    return SweepResult(
        out=out,
        device_id=profile.name,
        device_model=identity.model,
        plan=plan.name,
        planned=len(signatures),
        skipped_dtype=skipped,
        already_measured=already,
        measured=measured,
        interrupted=interrupted,
        wall_s=time.monotonic() - started,
        timed_s=timed_us / 1e6,
        rows_in_lut=final.num_rows,
        overhead_us=None if overhead is None else overhead["median_us"],
        failures=tuple(failures),
        unreadable_parts=tuple(str(p) for p in lut_store.read_parts(out).unreadable),
        contention=probe.report(),
    )
