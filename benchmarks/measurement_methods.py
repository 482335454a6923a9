"""The measurement methods the benchmarks put side by side: the profile's own, and the one it replaced.

Issue 17 replaced a fixed timing floor (0.15 s of timed runs per operator,
three rounds, re-measure above a CV of 0.10) with adaptive stopping,
descheduled-run exclusion and a reference kernel.  Benchmarks measure both in
one run, alternating, because this machine's speed drifts by 20% within
minutes: figures from two runs made at different times do not compare.
"""

from __future__ import annotations

from dataclasses import replace

from harness.measurement import MeasurementSettings


def previous_method(settings: MeasurementSettings) -> MeasurementSettings:
    """The xeon profile's method before issue 17 (harness commit e32e057): a fixed floor, nothing host-aware."""
    return replace(settings, runs=11, rounds=3, min_timed_s=0.15, max_runs=3000, cv_threshold=0.10, max_attempts=3,
                   precision=0.0, exclude_descheduled=False, reference_kernel=False, cold_cache=False,
                   network_cycles=False)


METHODS = {"adaptive": lambda settings: settings, "previous": previous_method}
