"""Differentiable architecture search (FBNet, Wu et al. CVPR 2019) with the device's LUT, beside ChamNet's EES.

A supernet whose every layer holds all its candidate blocks is trained once, its weights w and its
architecture parameters θ alternately on two splits of the training images, the blocks mixed by
Gumbel-softmax samples of P_θ at an annealed temperature; latency enters θ's loss,
``CE · α · log(LAT)^β``, through the same per-operator LUT that EES searches with.

* :mod:`optimizer.dnas.latency`: the differentiable LUT latency (pure numpy, and torch for autograd),
  equal to the LUT model's estimate on every architecture; sampling from P_θ;
* :mod:`optimizer.dnas.supernet`: the supernet (torch), Gumbel-softmax, shared-weight path accuracy;
* :mod:`optimizer.dnas.search`: one search (:class:`DnasSettings`, :func:`run_search`): the alternating
  loop, the temperature schedule, the resumable run folder;
* :mod:`optimizer.dnas.selection`: candidates sampled from P_θ, scored, one picked per budget;
* :mod:`optimizer.dnas.job`: ``optimize dnas`` end to end (:class:`DnasJob`, :func:`run_dnas`): searches
  per β, picks, trained from scratch, exported and measured.

May import: :mod:`optimizer.spaces`, :mod:`optimizer.latency`, :mod:`optimizer.training` (the torch units,
the trainer, the data sets), :mod:`optimizer.pipeline` (the end-to-end measurement of exports),
:data:`optimizer.netadapt.records.MEASURED_MARGIN`, :mod:`optimizer.progress`, the harness's vocabulary.
Torch only in :mod:`~optimizer.dnas.supernet` at module level, elsewhere inside functions.
"""

from __future__ import annotations

from optimizer.dnas.job import DEFAULT_BETAS, DnasFinal, DnasJob, DnasResult, run_dnas
from optimizer.dnas.latency import (LayerLatencyTable, argmax_architecture, expected_latency_torch, expected_latency_us,
                                    fbnet_loss_factor, one_hot, sample_architectures, softmax)
from optimizer.dnas.search import DnasError, DnasSettings, EpochRecord, SearchOutcome, run_search, temperature
from optimizer.dnas.selection import ScoredCandidate, candidates_of, order_for_budget, pick, representatives

__all__ = [
    "DEFAULT_BETAS", "DnasError", "DnasFinal", "DnasJob", "DnasResult", "DnasSettings", "EpochRecord",
    "LayerLatencyTable", "ScoredCandidate", "SearchOutcome", "argmax_architecture", "candidates_of",
    "expected_latency_torch", "expected_latency_us", "fbnet_loss_factor", "one_hot", "order_for_budget", "pick", "representatives", "run_dnas",
    "run_search", "sample_architectures", "softmax", "temperature",
]
