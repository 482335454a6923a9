"""ChamNet's energy protocol (§4.3) as arithmetic: energy per inference from a power trace.

The protocol: the phone, powered by a Monsoon at 4.2 V, idles for 18 s, then
runs the network 1000 times while the current is sampled every 200 µs; the
baseline (idle) current is subtracted and the rest divided by the runs.
:func:`analyze` does the post-processing on a :class:`Trace`:

1. **Levels.**  The current is smoothed by a centred moving mean over
   ``smooth_s`` (20 ms), and a slow linear idle drift is taken out (fitted to
   the samples the clustering calls idle; for detection only).  Two-means
   clustering of the smoothed samples gives an idle and an active level; their
   difference is the *active step*.  A step below eight times the smoothed
   noise (the white noise is estimated from first differences, which steps and
   drift hardly touch) means there is no workload: :class:`WindowNotFound`.
2. **Window.**  Hysteresis on the smoothed current: a stretch becomes active
   when it rises above idle + ½ step and stays so until it falls below
   idle + ¼ step; stretches closer than ``merge_gap_s`` are one; the longest
   is the workload.  It must have at least one sharp edge (a slow ramp or
   drift is not a workload).  Each edge is then refined to below a sample:
   the crossing of the halfway level on the current smoothed over only
   ``refine_s`` (1 ms), linearly interpolated.
3. **Baseline.**  The median current of the idle part before the window (the
   first ``idle_s`` seconds when given, else everything before), stopping
   ``idle_margin_s`` short of the window, and likewise of the part after the
   window when the trace goes on; other active stretches are left out.  With
   both, the baseline is the straight line through the two medians (each
   placed at its part's centre), so a slow drift is subtracted; with one, a
   constant.  The median ignores the idle's bursts (a radio waking up); when
   they are large enough that the same bursts during the window would matter,
   a warning says so.
4. **Energy.**  ∫(I − baseline)·V dt over the window (sample sums, mA·V·s =
   mJ; the edge samples are included whole so their fractional activity
   counts), divided by the runs.

**Uncertainty** (per run, the root-sum-square of):
the baseline level's standard error (scatter of 0.25 s block medians about a
line, ÷ √blocks; for the interpolated line, the two parts' errors weighted as
the line weighs them at the window's centre) × V × window; the measurement
noise summed over the window (σ × V × √samples ÷ rate); the edge placement
(active-minus-idle power × ``refine_s`` for each of the two edges, in
quadrature); and, when only a constant baseline could be used, the drift seen
within the idle part extrapolated to the window's centre.  It is a 1-σ figure
for what the trace can tell; it does not cover a wrong voltage, a monitor's
calibration, or a baseline that changes because of the workload.

**Refused traces** (:class:`TraceRefused`), rather than turned into a figure
that looks right: a sample that is not a finite number (NaN, infinity), a
voltage whose median is not above zero, and *negative current*: the median
current over the workload window below zero, or, when no window is found,
the median over the whole trace.  A phone draws current from the monitor, so
both are positive when the leads are the right way round; with them
reversed every sample is negated, the idle looks like the "active" level and
the analysis would report a positive energy from a meaningless window.  The
window's median (not the idle's) decides, so a near-zero idle that a
monitor's offset puts a hair below zero is still measured.

Warnings are sentences for the user; a trace without a workload raises
instead of returning nonsense.  Everything here is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from harness.energy.bounds import MAX_RUNS, check_count, check_number
from harness.energy.trace import Trace
from harness.errors import ChameleonError

# analyze()'s tunable settings and their defaults (stored with results so a recompute reproduces them).
ANALYSIS_DEFAULTS: dict[str, float] = {
    "smooth_s": 0.02,
    "refine_s": 0.001,
    "merge_gap_s": 0.25,
    "idle_margin_s": 0.5,
    "block_s": 0.25,
    "min_step_ma": 0.0,
    "drift_warn_fraction": 0.05,
    "host_tolerance_s": 0.05,
    "host_tolerance_fraction": 0.05,
    "edge_margin_s": 0.05,
}

_ENTER = 0.5  # hysteresis thresholds, as fractions of the active step above idle
_LEAVE = 0.25
_MIN_STEP_NOISE = 8.0  # the step must exceed this many standard deviations of the smoothed noise
_BURSTY_SHARE = 0.01  # warn when the idle's bursts over the window could add this share of the energy
_MIN_EDGE_CONTRAST = 0.5  # a sharp edge: the smoothed current changes by this share of the step within ±1 smoothing length


class WindowNotFound(ChameleonError):
    """The trace shows no workload window (flat, a slow ramp, or no idle part to take the baseline from)."""


class TraceRefused(ChameleonError):
    """A trace no energy can honestly come from: non-finite samples, negative current, no positive voltage."""


NEGATIVE_RULE = ("a trace is refused when the median current of its workload window (or, with no window found, "
                 "of the whole trace) is below zero")


@dataclass(frozen=True)
class EnergyResult:
    """Energy per inference from one trace, with what the analysis saw.

    ``mean_power_mw`` is the total power over the window (what the monitor
    measured, baseline included); ``mean_active_power_mw`` is what the workload
    added (baseline subtracted): energy_per_run_mj = mean_active_power_mw ×
    latency_per_run_ms / 1000.  ``baseline_ma`` is the subtracted baseline's
    mean over the window.  ``samples`` are the samples integrated.
    """

    energy_per_run_mj: float
    uncertainty_mj: float  # per run, 1 σ (see the module's docstring)
    window_start_s: float  # seconds since the trace's first sample
    window_end_s: float
    window_s: float
    latency_per_run_ms: float  # window / runs
    baseline_ma: float
    baseline_drift_ma: float  # after minus before, or (one idle part only) its slope × its duration
    mean_power_mw: float
    mean_active_power_mw: float
    runs: int
    samples: int
    dropped_samples: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EnergyResult))


@dataclass(frozen=True)
class _Idle:
    """An idle part of the trace: its robust level and how well that is known."""

    level_ma: float  # median
    mean_ma: float  # above the median when the idle current has bursts
    center: float  # mean position, in samples (sample i is centred at i + 0.5)
    stderr_ma: float
    slope_ma_per_s: float
    duration_s: float


def analyze(trace: Trace, runs: int, *, idle_s: float | None = None, host_window: tuple[float, float] | None = None,
            smooth_s: float = 0.02, refine_s: float = 0.001, merge_gap_s: float = 0.25, idle_margin_s: float = 0.5,
            block_s: float = 0.25, min_step_ma: float = 0.0, drift_warn_fraction: float = 0.05,
            host_tolerance_s: float = 0.05, host_tolerance_fraction: float = 0.05,
            edge_margin_s: float = 0.05) -> EnergyResult:
    """Energy per run of the workload in ``trace`` (``runs`` inferences back to back); see the module's docstring.

    ``idle_s``: the idle time the protocol asked for before the workload (18 s
    in ChamNet); the baseline is taken from it.  ``host_window``: the host's
    start and stop of the runs, in seconds of trace time, to cross-check the
    detected window.  Raises :class:`WindowNotFound` when there is no workload,
    :class:`TraceRefused` for a trace no energy can come from (see the
    module's docstring), and :class:`~harness.energy.bounds.InvalidEnergySetting`
    for ``runs`` or ``idle_s`` out of range.
    """
    # Stored rows feed recompute here too, so a corrupt results file is refused as one line, not a crash.
    check_count("runs", runs, MAX_RUNS)
    check_number("idle_s", idle_s, 0.0, float("inf"), unit=" s")
    _check_samples(trace)
    try:
        return _analyze(trace, runs, idle_s, host_window, smooth_s, refine_s, merge_gap_s, idle_margin_s, block_s,
                        min_step_ma, drift_warn_fraction, host_tolerance_s, host_tolerance_fraction, edge_margin_s)
    except WindowNotFound:
        # Reversed leads can also hide the window (the workload negated sinks into the noise): say so instead.
        median = float(np.median(trace.current_ma))
        if median < 0:
            raise _negative(median, "the whole trace (no workload window was found)") from None
        raise


def _analyze(trace: Trace, runs: int, idle_s: float | None, host_window: tuple[float, float] | None, smooth_s: float,
             refine_s: float, merge_gap_s: float, idle_margin_s: float, block_s: float, min_step_ma: float,
             drift_warn_fraction: float, host_tolerance_s: float, host_tolerance_fraction: float,
             edge_margin_s: float) -> EnergyResult:
    fs = trace.sample_rate_hz
    current, voltage, n = trace.current_ma, trace.voltage_v, trace.samples
    width = _odd(smooth_s * fs)
    fine = _odd(refine_s * fs)
    if n < 4 * width:
        raise WindowNotFound(f"trace too short to find a workload window ({n} samples, {trace.duration_s:.3g} s; "
                             f"need at least {4 * width / fs:.3g} s)")
    trend = _idle_trend(_moving_mean(current, width))  # a slow idle drift, removed for detection only
    smooth = _moving_mean(current, width) - trend
    idle0, active0, _ = _two_levels(smooth)
    step = active0 - idle0
    noise = _white_noise_ma(current)
    needed = max(min_step_ma, _MIN_STEP_NOISE * noise / np.sqrt(width))
    if not step > needed:
        raise WindowNotFound(f"no workload window: the current never rises clearly above idle (levels {idle0:.4g} and "
                             f"{active0:.4g} mA, step {step:.3g} mA, needed {needed:.3g} mA at noise {noise:.3g} mA)")

    high, low = idle0 + _ENTER * step, idle0 + _LEAVE * step
    segments = _merge(_hysteresis(smooth, high, low), int(round(merge_gap_s * fs)))
    main = max(segments, key=lambda s: s[1] - s[0])
    coarse_start = main[0]
    coarse_end = main[0] + int(np.flatnonzero(smooth[main[0]:main[1]] > high)[-1]) + 1
    _check_edges(smooth, coarse_start, coarse_end, width, step)

    light = _moving_mean(current, fine) - trend
    half = idle0 + 0.5 * step
    start = _crossing(light, coarse_start, half, True, 2 * width)
    end = _crossing(light, coarse_end, half, False, 2 * width)
    start = float(coarse_start) if start is None else start  # in samples; sample i spans [i, i + 1)
    end = float(coarse_end) if end is None else end
    if end <= start:
        raise WindowNotFound(f"no workload window: the active stretch at {coarse_start / fs:.3f} s has no length")

    window_median = float(np.median(current[int(np.floor(start)):max(int(np.ceil(end)), int(np.floor(start)) + 1)]))
    if window_median < 0:
        raise _negative(window_median, f"the workload window ({start / fs:.3f}–{end / fs:.3f} s)")

    guard = fine // 2 + 2
    k0, k1 = max(0, int(np.floor(start)) - guard), min(n, int(np.ceil(end)) + guard)
    quiet = _quiet_mask(n, segments, width + guard)
    before, after, margin_b = _idle_parts(quiet, start, end, idle_s, idle_margin_s, fs)
    idle_before = _idle_level(current, before, fs, block_s, noise) if before is not None else None
    idle_after = _idle_level(current, after, fs, block_s, noise) if after is not None else None
    if idle_before is None and idle_after is None:
        raise WindowNotFound(f"no idle part before or after the workload window ({start / fs:.3f}–{end / fs:.3f} s of "
                             f"{trace.duration_s:.3f} s) to take the baseline from")

    positions = np.arange(k0, k1) + 0.5
    baseline, stderr, drift, drift_bias = _baseline(idle_before, idle_after, positions, (start + end) / 2, fs)
    volts = voltage[k0:k1]
    window_s = (end - start) / fs
    active_mj = float(np.sum((current[k0:k1] - baseline) * volts)) / fs
    inner = slice(int(np.ceil(start)), max(int(np.floor(end)), int(np.ceil(start)) + 1))
    mean_volts = float(np.mean(volts))

    u_baseline = stderr * mean_volts * window_s
    u_noise = noise * mean_volts * np.sqrt(k1 - k0) / fs
    u_edges = step * mean_volts * (fine / fs) * np.sqrt(2.0)
    u_drift = drift_bias * mean_volts * window_s
    uncertainty = float(np.sqrt(u_baseline**2 + u_noise**2 + u_edges**2 + u_drift**2)) / runs

    warnings = _warnings(trace, segments, main, start, end, step, drift, idle_before is not None and idle_after is not None,
                         idle_s, margin_b, host_window, fs, n, width, host_tolerance_s, host_tolerance_fraction,
                         drift_warn_fraction, edge_margin_s)
    bursts = max(p.mean_ma - p.level_ma for p in (idle_before, idle_after) if p is not None)
    if bursts * mean_volts * window_s > _BURSTY_SHARE * abs(active_mj):
        warnings.append(f"The idle current is bursty (its mean exceeds its median by {bursts:.3g} mA): background bursts "
                        f"during the window count as workload energy, up to {bursts * mean_volts * window_s / abs(active_mj):.1%} of it.")
    return EnergyResult(
        energy_per_run_mj=active_mj / runs,
        uncertainty_mj=uncertainty,
        window_start_s=start / fs,
        window_end_s=end / fs,
        window_s=window_s,
        latency_per_run_ms=window_s / runs * 1000.0,
        baseline_ma=float(np.mean(baseline)),
        baseline_drift_ma=float(drift),
        mean_power_mw=float(np.mean(current[inner] * voltage[inner])),
        mean_active_power_mw=active_mj / window_s,
        runs=int(runs),
        samples=int(k1 - k0),
        dropped_samples=int(trace.dropped_samples),
        warnings=tuple(warnings),
    )


# ----------------------------------------------------------------- refusals
def _check_samples(trace: Trace) -> None:
    """Refuse NaN or infinite samples and a voltage that is not positive (see the module's docstring)."""
    for name, values, unit in (("current", trace.current_ma, "mA"), ("voltage", trace.voltage_v, "V")):
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.argmax(bad))
            raise TraceRefused(f"the trace holds {int(bad.sum())} {name} sample(s) that are not finite numbers (the first, "
                               f"{values[first]} {unit}, at {first / trace.sample_rate_hz:.4f} s); a trace must be numbers throughout")
    if trace.samples and not float(np.median(trace.voltage_v)) > 0:
        raise TraceRefused(f"the trace's voltage is not positive (median {float(np.median(trace.voltage_v)):.4g} V); "
                           "the monitor's voltage channel is missing or its leads are reversed")


def _negative(median_ma: float, where: str) -> TraceRefused:
    return TraceRefused(f"the trace's current is negative (median {median_ma:.4g} mA over {where}): a phone draws current "
                        f"from the monitor, so the monitor's leads are probably reversed ({NEGATIVE_RULE})")


# ----------------------------------------------------------------- signal
def _odd(samples: float) -> int:
    """A window length in samples: at least 1, odd so the moving mean is centred."""
    k = max(1, int(round(samples)))
    return k if k % 2 else k + 1


def _moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving mean over ``width`` samples (shorter windows at the ends)."""
    if width <= 1:
        return x.copy()
    n, h = x.size, width // 2
    cumulative = np.concatenate(([0.0], np.cumsum(x)))
    index = np.arange(n)
    lo, hi = np.maximum(index - h, 0), np.minimum(index + h + 1, n)
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)


def _two_levels(x: np.ndarray, iterations: int = 30) -> tuple[float, float, float]:
    """Idle and active levels (two-means clustering, then each cluster's median) and the threshold between them."""
    lo, hi = np.percentile(x, [0.5, 99.5])
    threshold = (lo + hi) / 2
    for _ in range(iterations):
        below, above = x[x <= threshold], x[x > threshold]
        if not below.size or not above.size:
            break
        new = (below.mean() + above.mean()) / 2
        if abs(new - threshold) < 1e-9 * max(1.0, abs(new)):
            break
        threshold = new
    below, above = x[x <= threshold], x[x > threshold]
    if not below.size or not above.size:
        level = float(np.median(x))
        return level, level, level
    return float(np.median(below)), float(np.median(above)), float(threshold)


def _idle_trend(smooth: np.ndarray, rounds: int = 3) -> np.ndarray:
    """The idle current's linear drift (zero at the idle samples' centre), fitted to the samples the
    two-means clustering calls idle, refitted after removing it (a drift can mislead the first clustering)."""
    n = smooth.size
    index = np.arange(n)
    trend = np.zeros(n)
    stride = max(1, n // 20000)
    for _ in range(rounds):
        _, _, threshold = _two_levels((smooth - trend)[::stride])
        idle = index[::stride][(smooth - trend)[::stride] <= threshold]
        if idle.size < 10:
            break
        slope = np.polyfit(idle, smooth[idle], 1)[0]
        trend = slope * (index - idle.mean())
    return trend


def _white_noise_ma(x: np.ndarray) -> float:
    """Standard deviation of the sample-to-sample noise, from first differences (robust to steps and drift)."""
    diffs = np.diff(x)
    mad = np.median(np.abs(diffs - np.median(diffs)))
    return float(1.4826 * mad / np.sqrt(2.0))


def _hysteresis(x: np.ndarray, high: float, low: float) -> list[tuple[int, int]]:
    """Active stretches [start, stop): enter above ``high``, leave below ``low``."""
    n = x.size
    marks = np.full(n, -1, dtype=np.int8)
    marks[x < low] = 0
    marks[x > high] = 1
    last = np.maximum.accumulate(np.where(marks >= 0, np.arange(n), -1))
    state = np.where(last >= 0, marks[np.maximum(last, 0)], 0)
    edges = np.diff(np.concatenate(([0], state, [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _merge(segments: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in segments:
        if merged and start - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def _check_edges(smooth: np.ndarray, start: int, end: int, width: int, step: float) -> None:
    """The window needs at least one sharp edge inside the trace; a ramp or drift has none."""
    n = smooth.size
    contrasts = []
    if start - width >= 0 and start + width < n:
        contrasts.append(smooth[start + width] - smooth[start - width])
    if end - width >= 0 and end + width < n:
        contrasts.append(smooth[end - width] - smooth[end + width])
    if not contrasts:
        raise WindowNotFound("no workload window: the trace is active from its first sample to its last, "
                             "with no idle part to measure against")
    if max(contrasts) < _MIN_EDGE_CONTRAST * step:
        raise WindowNotFound(f"no workload window: the current changes only slowly (no edge rises by half the "
                             f"{step:.3g} mA step within {width} samples); drift, not a workload")


def _crossing(light: np.ndarray, center: int, level: float, rising: bool, radius: int) -> float | None:
    """Where ``light`` crosses ``level`` nearest ``center``, in samples, interpolated between samples."""
    n = light.size
    lo, hi = max(center - radius, 1), min(center + radius, n - 1)
    if hi < lo:
        return None
    before, after = light[lo - 1:hi], light[lo:hi + 1]
    hits = np.flatnonzero((before < level) & (after >= level) if rising else (before >= level) & (after < level))
    if not hits.size:
        return None
    j = lo + int(hits[np.argmin(np.abs(lo + hits - center))])
    a, b = light[j - 1], light[j]
    return float(j - 1 + (level - a) / (b - a) + 0.5)  # the moving mean at index i describes time i + 0.5


# ----------------------------------------------------------------- baseline
def _quiet_mask(n: int, segments: list[tuple[int, int]], pad: int) -> np.ndarray:
    quiet = np.ones(n, dtype=bool)
    for start, stop in segments:
        quiet[max(0, start - pad):min(n, stop + pad)] = False
    return quiet


def _idle_parts(quiet: np.ndarray, start: float, end: float, idle_s: float | None, margin_s: float,
                fs: float) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Sample indices of the idle parts before and after the window (None when too short), and the margin used before."""
    n = quiet.size
    minimum = max(20, int(round(0.1 * fs)))
    margin_b = min(margin_s * fs, 0.25 * start)
    stop_b = start - margin_b
    if idle_s is not None:
        stop_b = min(stop_b, idle_s * fs)
    before = np.flatnonzero(quiet[:max(0, int(np.floor(stop_b)))])
    margin_a = min(margin_s * fs, 0.25 * (n - end))
    first_a = min(n, int(np.ceil(end + margin_a)))
    after = first_a + np.flatnonzero(quiet[first_a:])
    return (before if before.size >= minimum else None, after if after.size >= minimum else None, margin_b / fs)


def _idle_level(current: np.ndarray, index: np.ndarray, fs: float, block_s: float, noise: float) -> _Idle:
    values = current[index]
    level = float(np.median(values))
    center = float(np.mean(index)) + 0.5
    size = max(1, int(round(block_s * fs)))
    blocks = values.size // size
    if blocks >= 4:
        medians = np.median(values[:blocks * size].reshape(blocks, size), axis=1)
        where = index[:blocks * size].reshape(blocks, size).mean(axis=1) / fs
        slope, intercept = np.polyfit(where, medians, 1)
        residual = medians - (slope * where + intercept)
        scatter = float(np.sqrt(np.sum(residual**2) / (blocks - 2))) if blocks > 2 else 0.0
        stderr = max(scatter, 1.2533 * noise / np.sqrt(size)) / np.sqrt(blocks)
    else:
        slope, stderr = 0.0, 1.2533 * noise / np.sqrt(values.size)
    return _Idle(level, float(np.mean(values)), center, float(stderr), float(slope), values.size / fs)


def _baseline(before: _Idle | None, after: _Idle | None, positions: np.ndarray, middle: float,
              fs: float) -> tuple[np.ndarray, float, float, float]:
    """Baseline per sample of the window, its standard error, the drift, and the drift bias bound (mA)."""
    if before is not None and after is not None:
        gradient = (after.level_ma - before.level_ma) / (after.center - before.center)
        baseline = before.level_ma + gradient * (positions - before.center)
        weight = (middle - before.center) / (after.center - before.center)
        stderr = float(np.hypot((1 - weight) * before.stderr_ma, weight * after.stderr_ma))
        return baseline, stderr, after.level_ma - before.level_ma, 0.0
    part = before if before is not None else after
    drift = part.slope_ma_per_s * part.duration_s
    bias = abs(part.slope_ma_per_s * (middle - part.center) / fs)
    return np.full(positions.size, part.level_ma), part.stderr_ma, drift, bias


# ----------------------------------------------------------------- warnings
def _warnings(trace: Trace, segments, main, start: float, end: float, step: float, drift: float, linear: bool,
              idle_s: float | None, margin_b_s: float, host_window, fs: float, n: int, width: int,
              host_tolerance_s: float, host_tolerance_fraction: float, drift_warn_fraction: float,
              edge_margin_s: float) -> list[str]:
    out = []
    start_s, end_s, window_s = start / fs, end / fs, (end - start) / fs
    if idle_s is not None and start_s < idle_s * 0.98:
        out.append(f"The idle part before the workload lasts {start_s:.2f} s, shorter than the {idle_s:g} s asked; "
                   "the baseline comes from less idle time.")
    edge = max(edge_margin_s, width / fs)
    if start_s < edge or (n / fs - end_s) < edge:
        side = "start" if start_s < edge else "end"
        out.append(f"The workload window touches the {side} of the trace ({start_s:.3f}–{end_s:.3f} s of "
                   f"{n / fs:.3f} s): the workload may be cut and its energy underestimated.")
    if abs(drift) > drift_warn_fraction * step:
        how = ("between before and after the workload; a linear baseline was subtracted" if linear else
               "within the idle part; a constant baseline was subtracted, so the energy may be off")
        out.append(f"The baseline drifts by {drift:+.3g} mA {how} ({abs(drift) / step:.0%} of the {step:.3g} mA active step).")
    if trace.dropped_samples > 0:
        share = trace.dropped_samples / (n + trace.dropped_samples)
        out.append(f"The monitor dropped {trace.dropped_samples} sample(s) ({share:.2%} of the trace); "
                   "times and energy around the gaps are interpolated.")
    others = [s for s in segments if s != main and (s[1] - s[0]) > max(0.2 * fs, 0.01 * (main[1] - main[0]))]
    if others:
        longest = max(others, key=lambda s: s[1] - s[0])
        out.append(f"{len(others)} other active stretch(es) outside the window (the longest {(longest[1] - longest[0]) / fs:.2f} s "
                   f"at {longest[0] / fs:.2f} s); the longest stretch was taken as the workload.")
    if host_window is not None:
        host_start, host_end = float(host_window[0]), float(host_window[1])
        tolerance = max(host_tolerance_s, host_tolerance_fraction * window_s)
        if abs(host_start - start_s) > tolerance or abs(host_end - end_s) > tolerance:
            out.append(f"The host's start/stop ({host_start:.3f}–{host_end:.3f} s) disagree with the detected window "
                       f"({start_s:.3f}–{end_s:.3f} s) by {host_start - start_s:+.3f} s / {host_end - end_s:+.3f} s "
                       f"(tolerance {tolerance:.3f} s).")
    return out
