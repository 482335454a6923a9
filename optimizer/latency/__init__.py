"""Latency models: what a network costs on a device.

* :mod:`optimizer.latency.lut_model`: the LUT latency model (ChamNet Eq. 7: the sum of the operators' LUT
  entries), the fitted network correction, and the batched :class:`LatencyPredictor` searches call.
* :mod:`optimizer.latency.architecture_tables`: tables of whole architectures measured (or estimated) on
  several devices, the input of the cross-device methods (read through :mod:`harness.networks.tables`).

NetAdapt's layer-wise tables, built on the LUT model, live with NetAdapt (:mod:`optimizer.netadapt.layer_tables`).

May import: the harness's vocabulary (signatures, the LUT reader, errors, atomic writes) and its table
reader (:mod:`harness.networks.tables`); numpy.  No torch.
"""
