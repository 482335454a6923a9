"""From searched distributions to networks: sample architectures from P_θ, score them, pick one per budget.

FBNet samples six architectures from the trained distribution and trains them all from scratch.  Here
each search (one per β) contributes its argmax architecture and ``samples`` draws from its P_θ
(:func:`candidates_of`), each priced by the LUT model and scored with the supernet's shared weights on
the search's own θ split (:func:`score_candidates`; recorded, not used to choose: a path's shared-weight
accuracy follows how often the search sampled it, 0.65-0.77 for the argmax paths and down to 0.08 for
rare samples, so it ranks how concentrated a distribution is more than how good a network is).

A budget is met as FBNet meets a latency target, by its β.  Within each search, P_θ decides: its
representative for the budget is its most probable candidate within the budget by the LUT
(:func:`representatives`).  Across searches, the θ split decides: each representative is trained
from scratch on w's split with the final networks' recipe and scored on θ's split, and the
representatives are tried best first (the other candidates within the budget after them, most
probable first).  So α, β are chosen per budget on the search's own validation split, never on the
held-out test images the final accuracy is reported on.  The pick (:func:`pick`) is the first whose
untrained export, measured end to end, is ``MEASURED_MARGIN`` under the budget (NetAdapt's rule: the
trained network is measured again, and two quiet measurements of one file differ by up to about 1 %
here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optimizer.dnas.latency import argmax_architecture, sample_architectures, softmax
from optimizer.netadapt.records import MEASURED_MARGIN

#: Candidates measured end to end at a time while looking for a budget's pick.
MEASURE_BATCH = 3


@dataclass
class ScoredCandidate:
    """One sampled architecture: where it came from, its predicted latency and its shared-weight accuracy."""

    genes: list[int]
    blocks: list[str]
    search: str  # the search's folder name (its α and β)
    alpha: float
    beta: float
    argmax: bool  # the search's most probable architecture (else a sample)
    log_probability: float  # under its search's P_θ
    predicted_latency_ms: float  # the LUT model's (with the network correction when given)
    validation_accuracy: float | None = None  # shared weights, on the search's θ split
    macs: int = 0
    trained_validation_accuracy: float | None = None  # trained from scratch on w's split, on θ's (representatives)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def candidates_of(theta: Any, samples: int, rng: np.random.Generator) -> list[tuple[np.ndarray, bool, float]]:
    """The argmax architecture of P_θ, then ``samples`` draws from it, without repeats: (genes, is_argmax, log p)."""
    p = softmax(theta)
    drawn = [argmax_architecture(theta)] + list(sample_architectures(theta, samples, rng))
    seen: set[tuple[int, ...]] = set()
    out = []
    for k, genes in enumerate(drawn):
        key = tuple(int(v) for v in genes)
        if key in seen:
            continue
        seen.add(key)
        out.append((np.asarray(key, dtype=np.int64), k == 0, float(np.log(p[np.arange(len(key)), key]).sum())))
    return out


def score_candidates(space: Any, dataset: Any, checkpoint: str, genes: Sequence[Sequence[int]],
                     theta_fraction: float) -> tuple[list[float], float]:
    """Shared-weight accuracies of ``genes`` on the θ split of a search, from its checkpoint; and the CPU seconds taken.

    Each path's batch-norm statistics are recomputed on (up to 512 of) w's images first
    (:func:`optimizer.dnas.supernet.path_accuracy`).
    """
    import torch

    from optimizer.dnas.search import _search_data, search_splits
    from optimizer.dnas.supernet import Supernet, path_accuracy
    from optimizer.training.loop import _LAYOUT, _deterministic

    started = time.process_time()
    with _deterministic(threads=1):
        layout = getattr(torch, _LAYOUT)
        net = Supernet(space).to(memory_format=layout)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["supernet"])
        images, labels = _search_data(dataset, space, layout)
        w_index, theta_index = search_splits(labels.numpy(), theta_fraction)
        calibration = images[torch.as_tensor(w_index[:512])]
        held, held_labels = images[torch.as_tensor(theta_index)], labels[torch.as_tensor(theta_index)]
        scores = [path_accuracy(net, g, calibration, held, held_labels) for g in genes]
    return scores, time.process_time() - started


def representatives(candidates: Sequence[ScoredCandidate], budget_ms: float) -> list[ScoredCandidate]:
    """Each search's most probable candidate predicted within ``budget_ms`` (the first of equals), in search order."""
    best: dict[str, ScoredCandidate] = {}
    for c in candidates:
        if c.predicted_latency_ms <= budget_ms and (c.search not in best
                                                    or c.log_probability > best[c.search].log_probability):
            best[c.search] = c
    return list(best.values())


def order_for_budget(candidates: Sequence[ScoredCandidate], budget_ms: float) -> list[ScoredCandidate]:
    """The order a budget's candidates are tried in: the representatives by trained validation accuracy (ties: the
    more probable), then every other candidate within the budget, most probable first."""
    reps = representatives(candidates, budget_ms)
    reps.sort(key=lambda c: (-(c.trained_validation_accuracy or 0.0), -c.log_probability))
    chosen = {id(c) for c in reps}
    rest = [c for c in candidates if c.predicted_latency_ms <= budget_ms and id(c) not in chosen]
    rest.sort(key=lambda c: -c.log_probability)
    return reps + rest


def pick(ordered: Sequence[ScoredCandidate], budget_ms: float,
         measure: Callable[[list[ScoredCandidate]], list[float]] | None,
         tried: int = 12) -> tuple[ScoredCandidate | None, float | None, list[dict[str, Any]]]:
    """A budget's pick: the first of ``ordered`` (:func:`order_for_budget`) predicted within ``budget_ms`` whose
    end-to-end measurement is ``MEASURED_MARGIN`` under it; (pick, its measured ms, what was tried).

    ``measure`` times a list of candidates (untrained exports: weights do not change a CPU's latency) and
    returns ms; it is asked :data:`MEASURE_BATCH` at a time, for at most ``tried`` candidates.  Without
    it (no device) the pick is the first within the budget by the LUT, its measurement None.
    """
    feasible = [c for c in ordered if c.predicted_latency_ms <= budget_ms]
    if measure is None:
        return (feasible[0] if feasible else None), None, []
    log: list[dict[str, Any]] = []
    for start in range(0, min(len(feasible), tried), MEASURE_BATCH):
        batch = feasible[start:min(start + MEASURE_BATCH, tried)]
        for candidate, measured in zip(batch, measure(batch)):
            ok = measured <= budget_ms * (1 - MEASURED_MARGIN)
            log.append({"genes": candidate.genes, "search": candidate.search,
                        "predicted_latency_ms": candidate.predicted_latency_ms, "measured_latency_ms": measured,
                        "trained_validation_accuracy": candidate.trained_validation_accuracy, "accepted": ok})
            if ok:
                return candidate, measured, log
    return None, None, log


def validation_view(dataset: Any, theta_fraction: float) -> Any:
    """The data set with w's split as its training images and θ's as its held-out ones (the search's own splits)."""
    from dataclasses import replace

    from optimizer.dnas.search import search_splits

    _, labels = dataset.train()
    w_index, theta_index = search_splits(np.asarray(labels), theta_fraction)
    return replace(dataset, name=f"{dataset.name} (search splits)",
                   dataset_id=f"{dataset.dataset_id}-dnas-splits-{theta_fraction:g}",
                   train_index=dataset.train_index[w_index], held_out_index=dataset.train_index[theta_index])
