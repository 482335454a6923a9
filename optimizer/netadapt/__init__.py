"""NetAdapt (Yang et al., ECCV 2018, Algorithm 1): progressive, measurement-guided filter pruning of a trained
network down to resource budgets, checked against the device (the algorithm's steps: :mod:`optimizer.netadapt.loop`).

* :mod:`optimizer.netadapt.settings`: :class:`NetAdaptSettings`, budgets (:func:`parse_budget`), resource units,
  the channel-step grid, :class:`NetAdaptError`.
* :mod:`optimizer.netadapt.network_files`: NetAdapt's network checkpoints, :func:`load_network` (the trainer's too).
* :mod:`optimizer.netadapt.layer_tables`: the layer-wise resource tables NetAdapt asks (latency from the LUT,
  measured on demand or interpolated and flagged; energy; MACs).
* :mod:`optimizer.netadapt.pruning`: channel groups and L2-norm filter pruning of a network.
* :mod:`optimizer.netadapt.traced_models`: a chain-shaped PyTorch model traced into our units.
* :mod:`optimizer.netadapt.finetune`: the data splits and the training jobs (short- and long-term fine-tunes,
  baselines from scratch), inline or in the worker pool.
* :mod:`optimizer.netadapt.records`: the records (iterations, finals, the result), when an iteration may be a
  budget's final, and the run folder's state file.
* :mod:`optimizer.netadapt.inputs`: a run's fields and what its parts share (unit, estimate, console).
* :mod:`optimizer.netadapt.measure`: end-to-end measurement on a device (network correction, reference networks).
* :mod:`optimizer.netadapt.finals`: the long-term fine-tunes and the width-multiplier baselines.
* :mod:`optimizer.netadapt.loop`: :class:`NetAdaptRun`, Algorithm 1's loop, resumable.
* :mod:`optimizer.netadapt.report`: the finals against the multipliers' frontier, and its plot.

May import: the harness's vocabulary (signatures, errors, atomic writes, plots, and, lazily, its ONNX builder,
network timing, sweep and energy results), :mod:`optimizer.latency`, :mod:`optimizer.training` (lazily: torch only inside functions),
:mod:`optimizer.spaces`, :mod:`optimizer.progress`.  No torch at import time.
"""

from optimizer.netadapt.finetune import JobResult, TrainJob, run_jobs
from optimizer.netadapt.loop import NetAdaptRun
from optimizer.netadapt.network_files import load_network, save_network
from optimizer.netadapt.records import Final, Iteration, NetAdaptResult
from optimizer.netadapt.report import compare_with_baselines, plot_netadapt
from optimizer.netadapt.settings import NetAdaptError, NetAdaptSettings, parse_budget

__all__ = ["Final", "Iteration", "JobResult", "NetAdaptError", "NetAdaptResult", "NetAdaptRun", "NetAdaptSettings",
           "TrainJob", "compare_with_baselines", "load_network", "parse_budget", "plot_netadapt", "run_jobs",
           "save_network"]
