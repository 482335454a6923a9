"""LiteRT (``ai_edge_litert``) on this machine: the TFLite interpreter, XNNPACK delegate as it defaults.

The local twin of the Android ``benchmark_model`` runner, for whole ``.tflite``
networks (:mod:`harness.networks.timing`): one interpreter per file, inputs set
once, a timed run is one ``invoke()``.  The process is pinned to the profile's
cores while the runner is open, as the local ONNX Runtime runner pins it, so a
``litert`` column and an ``xeon`` column of one table are timed on the same
core with the same statistics.

Profile::

    transport: {type: local}
    runtime: {name: litert, delegate: xnnpack, threads: 1, cores: auto}

``delegate: xnnpack`` is LiteRT's default (the XNNPACK delegate takes every
op it supports); ``delegate: none`` runs LiteRT's built-in CPU kernels only
(``BUILTIN_WITHOUT_DEFAULT_DELEGATES``).  The identity's provider says which
one actually ran: ``xnnpack`` only when the interpreter holds a delegate node.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from harness.errors import DeviceUnavailable, InvalidModelFile
from harness.measurement import Batch, MeasurementSettings, time_callable
from harness.profiles import DeviceProfile, pinned_cores
from harness.runners.base import DeviceIdentity
from harness.runners.onnxruntime_local import _cpu_model

_DELEGATES = ("xnnpack", "none")


class LiteRtRunner:
    """Times ``.tflite`` model files with ``ai_edge_litert.interpreter.Interpreter``.

    Whole networks only: single-operator LUTs on LiteRT are measured on the
    phone (``harness.runners.android_tflite``), so :meth:`prepare` refuses.
    """

    def __init__(self, threads: int = 1, cores: tuple[int, ...] | None = None, delegate: str = "xnnpack",
                 seed: int = 0) -> None:
        try:
            from ai_edge_litert import interpreter as litert
        except ImportError as error:
            raise DeviceUnavailable(f"LiteRT (the ai-edge-litert package) is not importable here: {error}") from None
        if delegate not in _DELEGATES:
            raise DeviceUnavailable(f"LiteRT runs locally with delegate xnnpack or none, not {delegate!r}")
        self._litert = litert
        self.threads = threads
        self.delegate = delegate
        self.seed = seed
        self._previous_affinity = os.sched_getaffinity(0)
        self.cores = cores
        if cores is not None:
            os.sched_setaffinity(0, set(cores))
        self._provider: str | None = None
        self._version = _litert_version()

    @property
    def identity(self) -> DeviceIdentity:
        # The provider is what the last opened model ran with (XNNPACK may take none of a model's ops);
        # before any model, what the options ask for.
        return DeviceIdentity(model=_cpu_model(), runtime="litert", runtime_version=self._version,
                              provider=self._provider or ("xnnpack" if self.delegate == "xnnpack" else "cpu"))

    def prepare(self, signature):  # noqa: ANN001 - the Runner protocol
        raise DeviceUnavailable("the local LiteRT runner times whole .tflite networks (prepare_file), not LUT operators")

    def measure(self, signature, settings):  # noqa: ANN001
        return self.prepare(signature)

    def prepare_file(self, path: str | Path) -> "_LiteRtModel":
        """Open a ``.tflite`` file, allocate its tensors, set deterministic inputs, run it once."""
        path = Path(path)
        if not path.is_file():
            raise InvalidModelFile(f"{path}: no such model file")
        resolver = (self._litert.OpResolverType.AUTO if self.delegate == "xnnpack"
                    else self._litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        try:
            interpreter = self._litert.Interpreter(model_path=str(path), num_threads=self.threads,
                                                   experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
            feed = _inputs_for(interpreter.get_input_details(), self.seed)
            for index, value in feed.items():
                interpreter.set_tensor(index, value)
            interpreter.invoke()
        except Exception as error:  # LiteRT raises ValueError / RuntimeError for unreadable or invalid models
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InvalidModelFile(f"{path}: LiteRT cannot load it: {first[:300]}") from None
        delegated = any(op.get("op_name") == "DELEGATE" for op in interpreter._get_ops_details())
        self._provider = "xnnpack" if delegated else "cpu"
        # One thread computes on the calling thread: its CPU clock tells a descheduled run from a slow one.
        return _LiteRtModel(interpreter, cpu_clock=time.thread_time_ns if self.threads == 1 else None)

    def close(self) -> None:
        if self.cores is not None:
            os.sched_setaffinity(0, self._previous_affinity)
            self.cores = None


class _LiteRtModel:
    """An interpreter with its inputs set: one timed run is one ``invoke()``."""

    def __init__(self, interpreter, cpu_clock=None) -> None:
        self.interpreter = interpreter
        self.run_once = interpreter.invoke
        self.cpu_clock = cpu_clock

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        return time_callable(self.run_once, settings, warmup_runs, cpu_clock=self.cpu_clock)

    def close(self) -> None:
        self.interpreter = self.run_once = None


def _inputs_for(details, seed: int) -> dict[int, np.ndarray]:
    """Deterministic inputs for the model's declared inputs: floats uniform in [-1, 1), small integers."""
    rng = np.random.default_rng(seed)
    feed = {}
    for meta in details:
        dtype = np.dtype(meta["dtype"])
        shape = tuple(int(d) if d > 0 else 1 for d in meta["shape"])
        if np.issubdtype(dtype, np.floating):
            feed[meta["index"]] = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            feed[meta["index"]] = rng.integers(0, 2 if dtype == np.bool_ else 8, size=shape).astype(dtype)
        else:
            raise InvalidModelFile(f"model input {meta['name']!r} has type {dtype}, which the harness cannot feed")
    return feed


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:
        return "unknown"


def from_profile(profile: DeviceProfile) -> LiteRtRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    spec = profile.runtime
    return LiteRtRunner(threads=spec.threads, cores=pinned_cores(spec), delegate=spec.delegate)
