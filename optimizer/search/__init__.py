"""Searching a space under budgets.

* :mod:`optimizer.search.ees`: the evolutionary search (EES, ChamNet §3.5), seeded and reproducible.
* :mod:`optimizer.search.frontier`: one search per budget, the reference points, the accuracy-latency
  frontier plot and the result file (``optimize`` without a sub-command).

May import: :mod:`optimizer.latency`, :mod:`optimizer.spaces`, the harness's vocabulary.  No torch.
"""
