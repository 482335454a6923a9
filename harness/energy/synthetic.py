"""Synthetic power traces with a known answer, and writers for the CSV formats :mod:`trace_import` reads.

:func:`make_trace` follows ChamNet's protocol (§4.3): idle, then ``runs``
inferences back to back, then a little idle tail; current sampled at
``rate_hz`` as a Monsoon does, each sample the mean over its interval (so the
window's edges fall between samples).  The idle current drifts linearly; each
run has its own length (a few % jitter), level and texture (a dip at its start
and a ripple); Gaussian noise is added to current and voltage.  The truth is
exact for this model: the noiseless current above the drifting baseline, summed
over the true window, times the nominal voltage, divided by the runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.energy.trace import Trace


def make_trace(idle_s: float = 18, runs: int = 1000, latency_ms: float = 20, idle_ma: float = 150,
               active_ma: float = 900, voltage_v: float = 4.2, rate_hz: float = 5000, noise_ma: float = 25,
               drift_ma_per_s: float = 0.5, tail_idle_s: float = 2, seed: int = 0, *, latency_jitter: float = 0.03,
               level_jitter: float = 0.02, ripple: float = 0.08, dip: float = 0.2, voltage_noise_v: float = 0.001,
               dropped: int = 0, start_time_s: float | None = None) -> tuple[Trace, dict]:
    """A trace of ``runs`` inferences after ``idle_s`` of idle, and the truth about it.

    ``dropped`` samples (isolated, away from the ends) are marked as lost by
    the monitor: their values are the mean of their neighbours (what an
    importer's interpolation gives), their indices are in
    ``trace.metadata["dropped_indices"]``, and the CSV writers with a time
    column leave their rows out.
    """
    rng = np.random.default_rng(seed)
    fs = float(rate_hz)
    start = idle_s + rng.uniform(0.0, 1.0) / fs  # the workload starts between two samples
    lengths = latency_ms / 1000.0 * np.clip(1.0 + latency_jitter * rng.standard_normal(runs), 0.5, 1.5)
    bounds = start + np.concatenate(([0.0], np.cumsum(lengths)))
    end = float(bounds[-1])
    n = int(np.ceil((end + tail_idle_s) * fs))

    index = np.arange(n)
    lo, hi = index / fs, (index + 1) / fs
    coverage = np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None) * fs  # share of each sample that is active
    middle = np.clip((lo + hi) / 2, start, np.nextafter(end, start))
    run = np.clip(np.searchsorted(bounds, middle, side="right") - 1, 0, runs - 1)
    phase = (middle - bounds[run]) / lengths[run]
    levels = (active_ma - idle_ma) * (1.0 + level_jitter * rng.standard_normal(runs))
    texture = 1.0 + ripple * np.sin(2 * np.pi * phase) - dip * (phase < 0.1)
    active = coverage * levels[run] * texture
    baseline = idle_ma + drift_ma_per_s * (index + 0.5) / fs  # the mean of the linear drift over each sample
    current = baseline + active + noise_ma * rng.standard_normal(n)
    voltage = voltage_v + voltage_noise_v * rng.standard_normal(n)

    metadata: dict = {"synthetic": True, "seed": seed}
    if dropped:
        candidates = np.arange(10, n - 10, 3)  # isolated: never two neighbours
        lost = np.sort(rng.choice(candidates, size=dropped, replace=False))
        current[lost] = (current[lost - 1] + current[lost + 1]) / 2
        voltage[lost] = (voltage[lost - 1] + voltage[lost + 1]) / 2
        metadata["dropped_indices"] = lost.tolist()

    trace = Trace(current_ma=current, voltage_v=voltage, sample_rate_hz=fs, start_time_s=start_time_s,
                  dropped_samples=dropped, source="synthetic", metadata=metadata)
    truth = {
        "energy_per_run_mj": float(np.sum(active) * voltage_v / fs / runs),
        "window_start_s": start,
        "window_end_s": end,
        "window_s": end - start,
        "latency_per_run_ms": (end - start) / runs * 1000.0,
        "runs": runs,
        "idle_ma": idle_ma,
        "active_ma": active_ma,
        "voltage_v": voltage_v,
        "drift_ma_per_s": drift_ma_per_s,
        "baseline_at_start_ma": idle_ma + drift_ma_per_s * start,
        "baseline_at_end_ma": idle_ma + drift_ma_per_s * end,
        "samples": n,
    }
    return trace, truth


# ----------------------------------------------------------------- writers
def _kept(trace: Trace) -> np.ndarray:
    keep = np.ones(trace.samples, dtype=bool)
    keep[trace.metadata.get("dropped_indices", [])] = False
    return np.flatnonzero(keep)


def _write_lines(path: Path, header: str, lines: list[str]) -> Path:
    path = Path(path)
    path.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_plain_csv(trace: Trace, path: str | Path) -> Path:
    """``time_s,current_mA,voltage_V``, without the rows of dropped samples."""
    keep = _kept(trace)
    rows = zip((keep / trace.sample_rate_hz).tolist(), trace.current_ma[keep].tolist(), trace.voltage_v[keep].tolist())
    return _write_lines(path, "time_s,current_mA,voltage_V", [f"{t:.7f},{c:.4f},{v:.5f}" for t, c, v in rows])


def write_powertool_csv(trace: Trace, path: str | Path, variant: str = "avg") -> Path:
    """As Monsoon PowerTool exports: ``avg`` (Main Avg Current/Power/Voltage and USB columns), ``plain``
    (Main Current, Main Voltage) or ``power`` (Main Avg Power and Voltage only: current must be derived)."""
    keep = _kept(trace)
    times = (keep / trace.sample_rate_hz).tolist()
    current, voltage = trace.current_ma[keep], trace.voltage_v[keep]
    power = (current * voltage).tolist()
    current, voltage = current.tolist(), voltage.tolist()
    if variant == "avg":
        header = ("Time (s),Main Avg Current (mA),Main Avg Power (mW),Main Avg Voltage (V),"
                  "USB Avg Current (mA),USB Avg Power (mW),USB Avg Voltage (V)")
        lines = [f"{t:.7f},{c:.4f},{p:.4f},{v:.5f},0.0000,0.0000,0.00000" for t, c, p, v in zip(times, current, power, voltage)]
    elif variant == "plain":
        header = "Time (s),Main Current (mA),Main Voltage (V)"
        lines = [f"{t:.7f},{c:.4f},{v:.5f}" for t, c, v in zip(times, current, voltage)]
    elif variant == "power":
        header = "Time (s),Main Avg Power (mW),Main Avg Voltage (V)"
        lines = [f"{t:.7f},{p:.4f},{v:.5f}" for t, p, v in zip(times, power, voltage)]
    else:
        raise ValueError(f"unknown PowerTool variant {variant!r} (avg, plain, power)")
    return _write_lines(path, header, lines)


def write_monsoon_package_csv(trace: Trace, path: str | Path, *, usb: bool = False, numpy2_repr: bool = False,
                              seed: int = 0) -> Path:
    """As the Monsoon Python package's ``sampleEngine.enableCSVOutput`` writes.

    Every cell is ``repr`` of the value followed by a comma (``np.float64(…)``
    with ``numpy2_repr``, as numpy 2 spells it).  The time column mimics the
    package's: one host timestamp per USB packet of 1–3 samples, in seconds
    (the header says ms), taken when the packet was processed, so it lags,
    jitters, repeats within a packet and sometimes steps back.  All samples are
    written (the package does not know where it dropped some).
    """
    rng = np.random.default_rng(seed)
    n, fs = trace.samples, trace.sample_rate_hz
    sizes = rng.integers(1, 4, size=n)  # more than enough packets
    ends = np.cumsum(sizes)
    ends = ends[ends < n].tolist() + [n]
    stamps = np.empty(n)
    first = 0
    for last in ends:
        lag = abs(rng.normal(0.002, 0.002)) + (0.015 if rng.random() < 0.01 else 0.0)
        stamps[first:last] = round(last / fs + lag, 3)  # a millisecond clock
        first = last
    wrap = (lambda x: f"np.float64({x!r})") if numpy2_repr else repr
    columns = [stamps.tolist(), trace.current_ma.tolist()]
    names = ["Time(ms)", "Main(mA)"]
    if usb:
        columns.append([0.0] * n)
        names.append("USB(mA)")
    columns.append(trace.voltage_v.tolist())
    names.append("Main Voltage(V)")
    if usb:
        columns.append([5.0] * n)
        names.append("USB Voltage(V)")
    lines = ["".join(wrap(value) + "," for value in row) for row in zip(*columns)]
    return _write_lines(path, "".join(name + "," for name in names), lines)
