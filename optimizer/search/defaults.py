"""What `optimize --lut FILE` fills in when the user gives only a LUT: the space, the accuracy predictor, the budgets.

* :func:`infer_space`: the built-in space whose every operator the LUT holds (ChamNet's LUT is
  per space and device; a LUT swept for a space names it by its signatures).
* :func:`find_accuracy_predictor`: in ChamNet the accuracy predictor belongs to the space, not the
  device, so one predictor serves every device's LUT.  It is looked for, in this order, beside the LUT
  (where the main job leaves ``accuracy_predictor.json``), in the user's predictor cache
  (``$CHAMELEON_CACHE/predictors/SPACE.json``, written by ``optimize build-predictor`` and the main
  job), and among the predictors the project ships (``optimizer/accuracy/shipped/SPACE.json``, each
  rebuilt by the command its ``.md`` file beside it records).
* :func:`default_budgets`: a frontier across the space's latency range on that LUT, the predicted
  latencies of a Sobol pool of the space at fixed quantiles.

May import the harness (paths, errors), :mod:`optimizer.spaces`, :mod:`optimizer.accuracy` and
:mod:`optimizer.latency`; numpy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import paths
from harness.errors import ChameleonError

#: Quantiles of the pool's predicted latency the default frontier is searched at.
DEFAULT_BUDGET_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Architectures of the space whose latency sets the default budgets.
DEFAULT_BUDGET_POOL = 1024
PREDICTOR_FILE = "accuracy_predictor.json"  # the main job's, beside its lut.parquet
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "accuracy" / "shipped"


class SpaceNotInferred(ChameleonError):
    """No built-in space (or more than one) has every operator in the LUT."""


class NoAccuracyPredictor(ChameleonError):
    """No accuracy predictor of the space beside the LUT, in the cache, or shipped."""


def predictor_cache_dir() -> Path:
    """Where ``optimize build-predictor`` and the main job keep the latest predictor of each space."""
    return paths.cache_dir() / "predictors"


def cached_predictor_path(space_name: str) -> Path:
    return predictor_cache_dir() / f"{space_name}.json"


def shipped_predictor_path(space_name: str) -> Path:
    return SHIPPED_DIR / f"{space_name}.json"


# ------------------------------------------------------------------------- the space
def space_coverage(keys: Iterable[str], spaces: Iterable[str] | None = None) -> dict[str, float]:
    """Per built-in space: the share of its operators (units) the LUT's signature ``keys`` hold."""
    from optimizer.spaces import SPACES, get_space

    held = set(keys)
    coverage = {}
    for name in SPACES if spaces is None else spaces:
        wanted = {s.key for s in get_space(name).all_signatures()}
        coverage[name] = len(wanted & held) / len(wanted)
    return coverage


def _holds_its_baselines(held: set[str], space: Any) -> bool:
    """A quick, exact rejection: a LUT missing a unit of one of the space's own reference networks is not the space's."""
    return all(s.key in held for x in space.baselines().values() for s in space.signatures(x))


def infer_space(keys: Iterable[str], lut_name: str = "the LUT") -> str:
    """The one built-in space whose every operator ``keys`` hold; else one line listing each space's coverage.

    Spaces whose reference networks the LUT cannot price are set aside first (milliseconds); only the
    others are checked against every operator (chamnet-mobile has 82,954: seconds).
    """
    from optimizer.spaces import SPACES, get_space

    held = set(keys)
    candidates = [name for name in SPACES if _holds_its_baselines(held, get_space(name))]
    coverage = space_coverage(held, candidates)
    complete = [name for name, share in coverage.items() if share == 1.0]
    if len(complete) == 1:
        return complete[0]
    for name in SPACES:  # the others, by the units of their reference networks (exact coverage would take seconds)
        if name not in coverage:
            units = {s.key for x in get_space(name).baselines().values() for s in get_space(name).signatures(x)}
            coverage[name] = len(units & held) / len(units)
    if len(complete) == 1:
        return complete[0]
    listing = ", ".join(f"{name} {share:.0%}" for name, share in sorted(coverage.items(), key=lambda kv: -kv[1]))
    if complete:
        raise SpaceNotInferred(f"{lut_name} holds every operator of {', '.join(complete)}: give --space ({listing})")
    raise SpaceNotInferred(f"{lut_name} does not hold every operator of any built-in space (operators of their "
                           f"reference networks held: {listing}); "
                           f"give --space, and --interpolate to estimate the missing ones")


# -------------------------------------------------------------------- the predictor
@dataclass(frozen=True)
class FoundPredictor:
    path: Path
    source: str  # "beside the LUT", "cache", "shipped"


def predictor_candidates(space_name: str, lut_path: Path) -> list[FoundPredictor]:
    return [FoundPredictor(Path(lut_path).parent / PREDICTOR_FILE, "beside the LUT"),
            FoundPredictor(cached_predictor_path(space_name), "cache"),
            FoundPredictor(shipped_predictor_path(space_name), "shipped")]


def find_accuracy_predictor(space: Any, lut_path: Path, seed: int = 0) -> tuple[Any, FoundPredictor]:
    """The first accuracy predictor of ``space`` beside the LUT, in the cache or shipped (see the module docstring).

    A predictor file of another space (the main job's folder holds the mini space's) is passed over.
    """
    from optimizer.accuracy.builders import load_predictor
    from optimizer.accuracy.predictors import PredictorFileError

    for candidate in predictor_candidates(space.name, lut_path):
        if not candidate.path.is_file():
            continue
        try:
            return load_predictor(candidate.path, space, seed=seed), candidate
        except PredictorFileError:
            continue
    raise NoAccuracyPredictor(
        f"no accuracy predictor of {space.name} beside {lut_path}, in {predictor_cache_dir()} or shipped; give --accuracy "
        f"(observations or a saved predictor) or build one: optimize build-predictor --space {space.name} --data digits "
        f"--out {cached_predictor_path(space.name)}")


def remember_predictor(predictor: Any, space_name: str) -> Path | None:
    """Keep ``predictor`` as the cache's predictor of ``space_name`` (best effort: a read-only cache only loses the copy)."""
    from harness.errors import OutputNotWritable

    path = cached_predictor_path(space_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        predictor.save(path)
    except (OSError, OutputNotWritable):
        return None
    return path


# ---------------------------------------------------------------------- the budgets
def default_budgets(space: Any, latency: Any, seed: int = 0, pool: int = DEFAULT_BUDGET_POOL,
                    quantiles: Iterable[float] = DEFAULT_BUDGET_QUANTILES) -> list[float]:
    """Budgets (ms) across the space's latency range on this LUT: quantiles of a Sobol pool's predicted latency.

    Rounded to three significant digits (a budget a person can read and retype); duplicates merged.
    """
    X = space.sobol_pool(pool, seed)
    predicted = latency.predict(X).latency_ms
    values = np.quantile(predicted, list(quantiles))
    return sorted({float(f"{v:.3g}") for v in values if np.isfinite(v) and v > 0})


# ------------------------------------------------------------------------ warnings
#: Fewer training samples per gene than this and a GP of the space mostly returns its mean (ChamNet: 240 for ~20 genes).
MIN_SAMPLES_PER_GENE = 2


def predictor_warnings(predictor: Any, space: Any) -> list[str]:
    """Why a search's accuracy predictor may not tell architectures apart: too few samples, or a flat prediction."""
    warnings = []
    samples, genes = len(predictor.y_train_), len(space.gene_names)
    if samples < MIN_SAMPLES_PER_GENE * genes:
        warnings.append(f"the accuracy predictor was fitted on {samples} architectures, fewer than {MIN_SAMPLES_PER_GENE} "
                        f"per gene of {space.name} ({MIN_SAMPLES_PER_GENE * genes}); its predictions are close to one mean")
    X = np.vstack([np.array(list(space.baselines().values()) or [space.low]), space.sobol_pool(64, 0)])
    predicted = np.asarray(predictor.predict(X), dtype=np.float64)
    if np.ptp(predicted) < 1e-4:
        warnings.append(f"the accuracy predictor predicts {float(predicted.mean()):.4f} for every architecture tried: "
                        "it cannot rank them, and the search picks by latency alone")
    return warnings
