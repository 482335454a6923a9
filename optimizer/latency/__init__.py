"""Latency models: what a network costs on a device.

* :mod:`optimizer.latency.lut_model`: the LUT latency model (ChamNet Eq. 7: the sum of the operators' LUT
  entries), the fitted network correction, and the batched :class:`LatencyPredictor` searches call;
* :mod:`optimizer.latency.slot_tables`: how the predictor finds every slot's LUT entry for a batch by array
  indexing (per-slot tables over the grid of the genes a slot reads), so a search's batches cost no Python
  per architecture;
* :mod:`optimizer.latency.architecture_tables`: tables of whole architectures measured (or estimated) on
  several devices, the input of the cross-device methods (read through :mod:`harness.networks.tables`);
* :mod:`optimizer.latency.long_tables`: long-format tables (one row per architecture × device × framework, as
  public benchmark exports are) turned into that wide layout.

NetAdapt's layer-wise tables, built on the LUT model, live with NetAdapt (:mod:`optimizer.netadapt.layer_tables`).

May import: the harness's vocabulary (signatures, the LUT reader, errors, atomic writes) and its table
reader (:mod:`harness.networks.tables`); numpy.  No torch.
"""
