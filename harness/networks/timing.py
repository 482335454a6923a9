"""Whole networks timed end to end, the way the LUT times its operators.

A network's measured latency and its LUT prediction are only comparable when
both come from the same method, so a network is measured by the very runner
that measures the device's operators (same runtime, session options, threads,
pinning, bound inputs and outputs) under the same :class:`MeasurementSettings`
(warm-up, rounds, minimum runs and time, robust CV, re-measured attempts), and
several networks are timed in interleaved rounds as a sweep times a group of
operators, so a burst of interference slows one round of many networks rather
than every run of one.

The runner axis stays apart: any runner with a ``prepare_file(path)`` method
returning a :class:`~harness.measurement.PreparedOp` measures networks (the
local ONNX Runtime runner has one; an ADB runner would push the file and run
its tool on it).

    from harness.profiles import load_profile
    from harness.networks.timing import measure_networks

    timings = measure_networks(load_profile("xeon"), ["a.onnx", "b.onnx"])
    timings[0].median_us
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from harness import host_speed
from harness.contention import ContentionProbe
from harness.errors import DeviceUnavailable, InvalidModelFile
from harness.measurement import Measurement, MeasurementSettings, PreparedOp, measure_in_groups
from harness.profiles import DeviceProfile
from harness.runners import DeviceIdentity, make_runner

# (networks measured so far, networks in all, the last one measured or None at the start)
NetworkProgress = Callable[[int, int, "Path | None"], None]


class NetworkRunner(Protocol):
    """What measuring whole networks needs of a runner: open a model file ready to time."""

    @property
    def identity(self) -> DeviceIdentity: ...

    def prepare_file(self, path: Path) -> PreparedOp: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class NetworkTiming:
    """One network's end-to-end latency on one device, with the statistics of a LUT row (µs)."""

    path: Path
    median_us: float  # the median of the round medians, as a LUT entry
    p10_us: float | None
    p90_us: float | None
    mean_us: float
    std_us: float
    min_us: float
    runs: int  # timed runs, all rounds
    warmup_runs: int
    cv: float  # robust: 1.4826·MAD/median
    attempts: int  # 1 + extra rounds taken because cv was over the threshold
    timed_total_us: float
    device_id: str
    device_model: str
    runtime: str
    runtime_version: str
    provider: str
    threads: int
    measured_at: datetime
    throttled: bool | None = None
    temperature_c: float | None = None
    cpu_freq_khz: int | None = None
    # As the LUT's host columns (schema version 2): the median's 95% interval, runs dropped as descheduled, the
    # CPU share, and with a reference kernel its time around the batches kept, the baseline they were held to
    # and the rounds dropped because the host was off it.
    ci_low_us: float | None = None
    ci_high_us: float | None = None
    descheduled_runs: int | None = None
    cpu_share: float | None = None
    reference_us: float | None = None
    reference_baseline_us: float | None = None
    off_baseline_rounds: int | None = None
    at_baseline: bool | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["measured_at"] = self.measured_at.isoformat()
        return data


def measure_networks(
    profile: DeviceProfile,
    model_paths: Sequence[str | Path],
    settings: MeasurementSettings | None = None,
    progress: NetworkProgress | None = None,
    *,
    runner: NetworkRunner | None = None,
    probe: ContentionProbe | None = None,
    baseline_us: float | None = None,
) -> list[NetworkTiming]:
    """Time each model file end to end on ``profile``'s device, in the order given.

    Networks are timed in groups of ``settings.interleave_group`` in
    interleaved rounds (see :func:`harness.measurement.measure_interleaved`);
    ``settings`` defaults to the profile's, the ones its LUT was measured
    with.  Every file is checked before anything is timed.  Raises
    :class:`InvalidModelFile` for a missing or unloadable file and
    :class:`DeviceUnavailable` when the profile's runner cannot time whole
    model files.  A ``probe`` (:class:`harness.contention.ContentionProbe`)
    watches every batch of timed runs, to tell afterwards whether the host
    was quiet.

    With the profile's ``reference_kernel`` (and a runner that can build the
    reference op), the host's speed is read around every batch and only
    batches taken at ``baseline_us`` are kept (see
    :func:`harness.measurement.measure_interleaved`): pass the LUT's
    (:func:`harness.host_speed.lut_baseline`) to time networks in the host
    state its rows were measured in; without it the first group's fastest
    reading is the baseline, kept in every timing.
    """
    paths = [Path(p) for p in model_paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InvalidModelFile(f"{missing[0]}: no such model file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    settings = settings or profile.measurement
    if settings.network_cycles:
        settings = replace(settings, cold_cache=True)
    own_runner = runner is None
    runner = runner or make_runner(profile)  # type: ignore[assignment]
    reference = None
    try:
        if not callable(getattr(runner, "prepare_file", None)):
            raise DeviceUnavailable(
                f"device {profile.name!r}: the {profile.runtime.name} runner over the {profile.transport.type} "
                f"transport cannot time whole model files yet"
            )
        identity = runner.identity
        prepare = runner.prepare_file if probe is None else probe.watching(runner.prepare_file)
        if settings.reference_kernel and callable(getattr(runner, "prepare", None)):
            try:
                reference = runner.prepare(host_speed.REFERENCE_SIGNATURE)  # type: ignore[attr-defined]
            except DeviceUnavailable:  # a runner that times model files only (LiteRT here): no reference
                reference = None
            if reference is not None and probe is not None:
                reference = probe.watch(reference)
        timings: list[NetworkTiming] = []
        if progress:
            progress(0, len(paths), None)
        for group, measurements in measure_in_groups(paths, prepare, settings, reference=reference,
                                                     baseline_us=baseline_us):
            for path, measurement in zip(group, measurements):
                timings.append(_timing(path, measurement, identity, profile))
            if progress:
                progress(len(timings), len(paths), group[-1])
        return timings
    finally:
        if reference is not None:
            reference.close()
        if own_runner:
            runner.close()


def measure_network(profile: DeviceProfile, path: str | Path, settings: MeasurementSettings | None = None, *,
                    runner: NetworkRunner | None = None) -> NetworkTiming:
    """Time one model file end to end (its rounds are interleaved with nothing)."""
    return measure_networks(profile, [path], settings, runner=runner)[0]


def _timing(path: Path, measurement: Measurement, identity: DeviceIdentity, profile: DeviceProfile) -> NetworkTiming:
    return NetworkTiming(
        path=path,
        **measurement.columns(),
        device_id=profile.name,
        device_model=identity.model,
        runtime=identity.runtime,
        runtime_version=identity.runtime_version,
        provider=identity.provider,
        threads=profile.runtime.threads,
        measured_at=datetime.now(timezone.utc),
    )
