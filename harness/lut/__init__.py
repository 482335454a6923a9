"""The LUT: the per-device Parquet table of operator latencies that joins harness and optimizer.

* :mod:`harness.lut.store`: the versioned schema, the locked, atomic writer and the strict reader
  (refuses NaN, non-positive times and duplicate signatures), merging.
* :mod:`harness.lut.caffe_import`: Caffe2 / FAI-PEP tables imported as LUTs.
* :mod:`harness.lut.summary`: what a LUT holds, for ``bench lut show``.

May import: the harness vocabulary (``harness.signature``, ``harness.errors``, ``harness.atomic``,
``harness.profiles``), pyarrow.  Never a runner, a runtime or the optimizer.
"""
