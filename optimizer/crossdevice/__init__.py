"""Cross-device methods over architecture latency tables.

* :mod:`optimizer.crossdevice.monotonicity`: rank agreement (SRCC, Kendall) between devices.
* :mod:`optimizer.crossdevice.proxy_reuse`: which measured device ranks best for a target.
* :mod:`optimizer.crossdevice.proxy_adaptation`: a proxy adapted to a target from a few target samples.
* :mod:`optimizer.crossdevice.device_prediction`: a new device predicted from a few measurements and every reference table.
* :mod:`optimizer.crossdevice.rank_correlation`: SRCC and Kendall tau-b with vectorised bootstrap intervals.

May import: :mod:`optimizer.latency.architecture_tables`, ``harness.errors``, numpy/scipy.  No torch.
"""
