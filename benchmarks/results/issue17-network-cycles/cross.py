"""Cross LUTs and network sets of lut_fidelity runs: each LUT's estimates judged against each run's measured networks.

Every run of ``benchmarks/lut_fidelity.py`` (same seeds) evaluates the same 50 networks and 30 calibration
networks, so the plain estimates of one run's LUT can be set against the networks measured in another; the
correction (scale and two boundary terms, as ``NetworkCorrection``) is refitted on the calibration networks of
the set judged.  Prints the share of evaluated networks within ±10% and Spearman's ρ, LUTs as rows.

Usage:  python benchmarks/results/issue17-network-cycles/cross.py NAME=REPORT.json [NAME=REPORT.json ...]
"""

import json
import sys

import numpy as np
from scipy.stats import spearmanr


def judged(lut_networks: list[dict], measured_networks: list[dict]) -> tuple[float, float]:
    plain = np.array([x["plain_us"] for x in lut_networks])
    boundaries = np.array([x["units"] - 1 for x in lut_networks], dtype=float)
    elements = np.array([x["boundary_elements"] for x in lut_networks], dtype=float)
    measured = np.array([x["measured_us"] for x in measured_networks])
    calibration = np.array([x["set"] == "calibration" for x in lut_networks])
    design = np.stack([plain, -boundaries, -elements], axis=1) / measured[:, None]
    coef, *_ = np.linalg.lstsq(design[calibration], np.ones(calibration.sum()), rcond=None)
    predicted = design @ coef * measured
    error = predicted / measured - 1
    evaluated = ~calibration
    return float(np.mean(np.abs(error[evaluated]) <= 0.10)), float(spearmanr(predicted[evaluated], measured[evaluated]).statistic)


runs = {arg.split("=", 1)[0]: json.load(open(arg.split("=", 1)[1]))["networks"] for arg in sys.argv[1:]}
print("LUT \\ networks " + " ".join(f"{name:>12}" for name in runs))
for lut_name, lut_networks in runs.items():
    cells = [judged(lut_networks, networks) for networks in runs.values()]
    print(f"{lut_name:15}" + " ".join(f"{share:5.0%} ρ{rho:.3f}" for share, rho in cells))
