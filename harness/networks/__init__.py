"""Whole networks, end to end: timing a network's model file and tables of such timings.

* :mod:`harness.networks.timing`: one network file timed with the sweep's measurement method.
* :mod:`harness.networks.tables`: architecture latency tables (``arch_id``, encodings, ``latency_ms:<device>``),
  measured resumably per cell by ``bench measure-networks``; the one table reader with one-line errors.

May import: the harness vocabulary, :mod:`harness.measurement`, :mod:`harness.runners`, :mod:`harness.models`,
:mod:`harness.contention` (whether the host was quiet while it measured).
Never the optimizer.
"""
