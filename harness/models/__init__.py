"""Model builders: single operators and whole networks as files a runtime loads.

* :mod:`harness.models.onnx_models`: ONNX graphs of one operator signature, or of a network (a list of them).
* :mod:`harness.models.tflite_models`: the same as ``.tflite`` flatbuffers (NHWC), with weights.
* :mod:`harness.models.block_graphs`: how a block signature (an inverted residual) unrolls into layers,
  shared by the builders and by the optimizer's PyTorch networks.

May import: ``harness.signature``, ``harness.errors``, ``harness.atomic``, ``harness.paths``, onnx,
flatbuffers/tflite.  Never a runner, a transport or the optimizer; no torch.
"""
