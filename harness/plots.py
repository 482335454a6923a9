"""PNG figures of measurements (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from harness.errors import OutputNotWritable
from harness.lut.summary import macs_of
from harness.signature import IDENTITY


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (which must end in .png: matplotlib would quietly add it) and close it."""
    from harness.output_paths import check_png_path

    try:
        path = check_png_path(path, "figure")
    except OutputNotWritable:
        _pyplot().close(fig)
        raise
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as err:
        raise OutputNotWritable(f"{path}: cannot write the plot ({err.strerror or err})") from None
    finally:
        _pyplot().close(fig)
    return path


def plot_latency_vs_macs(table: pa.Table, path: str | Path, title: str = "") -> Path:
    """Each LUT entry's median latency against its MACs, by kind and dtype (log-log)."""
    plt = _pyplot()
    keep = np.array([k != IDENTITY for k in table.column("kind").to_pylist()], dtype=bool)
    table = table.filter(pa.array(keep))
    macs = np.maximum(macs_of(table), 1.0)
    medians = table.column("median_us").to_numpy()
    labels = [f"{k} {d}" for k, d in zip(table.column("kind").to_pylist(), table.column("dtype").to_pylist())]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    kinds = sorted({label.split()[0] for label in labels})
    palette = plt.get_cmap("tab20")
    for label in sorted(set(labels)):
        mask = np.array([lab == label for lab in labels])
        kind, dtype = label.split()
        ax.scatter(macs[mask], medians[mask], s=18, marker="x" if dtype == "int8" else "o", label=label, alpha=0.85,
                   color=palette(2 * kinds.index(kind) % 20 + (kinds.index(kind) >= 10)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per forward pass")
    ax.set_ylabel("median latency (µs)")
    title = title or "LUT entries: latency against work"
    if any("loopback" in str(model).lower() for model in table.column("device_model").to_pylist()):
        # Measured through the loopback ADB device: this host's CPU standing for a phone, never a phone's figures.
        title += "\nSIMULATED: loopback ADB device (this host's CPU, not a phone)"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return save_figure(fig, path)
