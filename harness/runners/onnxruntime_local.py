"""ONNX Runtime on this machine: the CPU execution provider, or CUDA when a GPU exists."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from harness.models import onnx_models
from harness.errors import DeviceUnavailable, InvalidModelFile
from harness.measurement import Batch, Measurement, MeasurementSettings, measure_prepared, time_callable
from harness.profiles import DeviceProfile, pinned_cores
from harness.runners.base import DeviceIdentity
from harness.signature import OpSignature

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntimeRunner:
    """Times single-op ONNX models with ``InferenceSession.run_with_iobinding``.

    Inputs and outputs are bound once, on the device that computes, so a timed
    run is the runtime's own work plus its fixed per-call cost (which the sweep
    measures separately with an identity model) and no host-device copies.
    The process is pinned to the profile's cores while the runner is open; with
    one intra-op thread ONNX Runtime computes on the calling thread.
    """

    def __init__(self, provider: str = "cpu", threads: int = 1, cores: tuple[int, ...] | None = None,
                 seed: int = 0, cache: Path | None = None, disabled_optimizers: tuple[str, ...] = ()) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.provider = provider
        self.threads = threads
        self.seed = seed
        self.cache = cache
        # Graph transformers to leave out (e.g. "NchwcTransformer"), for diagnostics; none in profiles.
        self.disabled_optimizers = tuple(disabled_optimizers)
        ep = _PROVIDERS[provider]
        if ep not in ort.get_available_providers():
            raise DeviceUnavailable(
                f"ONNX Runtime {ort.__version__} has no {ep} here "
                f"(available: {', '.join(ort.get_available_providers())})"
                + ("; the cuda device needs an NVIDIA GPU and the onnxruntime-gpu package" if provider == "cuda" else "")
            )
        self._previous_affinity = os.sched_getaffinity(0)
        self.cores = cores
        if cores is not None:
            os.sched_setaffinity(0, set(cores))
        self._identity = DeviceIdentity(
            model=_gpu_name() if provider == "cuda" else _cpu_model(),
            runtime="onnxruntime",
            runtime_version=ort.__version__,
            # A LUT measured without some graph transformers must never pass for an ordinary one.
            provider=ep + (f" (disabled: {', '.join(self.disabled_optimizers)})" if self.disabled_optimizers else ""),
        )

    @property
    def identity(self) -> DeviceIdentity:
        return self._identity

    def prepare(self, signature: OpSignature) -> "_OrtSession":
        """Build (or reuse) the op's model and open a session with inputs and outputs bound."""
        path = onnx_models.model_file(signature, seed=self.seed, cache=self.cache)
        return self._open(path, onnx_models.make_inputs(signature, seed=self.seed))

    def prepare_file(self, path: str | Path) -> "_OrtSession":
        """Open any ONNX model file (a whole network) the way :meth:`prepare` opens an op's model.

        Same session options, threads, pinning and bound inputs and outputs, so
        a network's timed run is comparable to its operators'.  Inputs are drawn
        from the model's declared shapes (a symbolic dimension counts 1).
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidModelFile(f"{path}: no such model file")
        try:
            return self._open(path, None)
        except InvalidModelFile:
            raise
        except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid models
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InvalidModelFile(f"{path}: ONNX Runtime cannot load it: {first[:300]}") from None

    def _open(self, path: Path, feed: dict[str, np.ndarray] | None) -> "_OrtSession":
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        extra = {"disabled_optimizers": list(self.disabled_optimizers)} if self.disabled_optimizers else {}
        session = ort.InferenceSession(str(path), sess_options=options, providers=[_PROVIDERS[self.provider]], **extra)
        device = "cuda" if self.provider == "cuda" else "cpu"
        binding = session.io_binding()
        if feed is None:
            feed = _inputs_for(session.get_inputs(), self.seed)
        for meta in session.get_inputs():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feed[meta.name]), device, 0)
            binding.bind_ortvalue_input(meta.name, value)
        for meta in session.get_outputs():
            binding.bind_output(meta.name, device)
        # With one intra-op thread on the CPU, ONNX Runtime computes on the calling thread: its CPU clock tells a
        # descheduled run from a slow one.  A CUDA run waits for the GPU, and a thread pool computes elsewhere.
        on_calling_thread = self.provider == "cpu" and self.threads == 1
        return _OrtSession(session, binding, synchronize=self.provider == "cuda",
                           cpu_clock=time.thread_time_ns if on_calling_thread else None)

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement:
        """Measure one op on its own (a sweep measures groups, interleaved)."""
        return measure_prepared([signature], self.prepare, settings)[0]

    def close(self) -> None:
        if self.cores is not None:
            os.sched_setaffinity(0, self._previous_affinity)
            self.cores = None


class _OrtSession:
    """A session with bound inputs and outputs: one timed run is one ``run_with_iobinding``."""

    def __init__(self, session, binding, synchronize: bool, cpu_clock=None) -> None:
        self.session, self.binding = session, binding
        self.cpu_clock = cpu_clock
        # Run once so the outputs get allocated; later runs reuse them.
        session.run_with_iobinding(binding)
        if synchronize:  # CUDA runs are asynchronous: a timed run ends when its outputs are ready
            def run_once() -> None:
                session.run_with_iobinding(binding)
                binding.synchronize_outputs()
        else:
            def run_once() -> None:
                session.run_with_iobinding(binding)
        self.run_once = run_once

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        return time_callable(self.run_once, settings, warmup_runs, cpu_clock=self.cpu_clock)

    def close(self) -> None:
        self.binding = self.session = None


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
                "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def _inputs_for(inputs, seed: int) -> dict[str, np.ndarray]:
    """Deterministic inputs for a model's declared inputs: floats uniform in [-1, 1) as an op's feed, small non-negative integers."""
    rng = np.random.default_rng(seed)
    feed = {}
    for meta in inputs:
        dtype = _NUMPY_TYPES.get(meta.type)
        if dtype is None:
            raise InvalidModelFile(f"model input {meta.name!r} has type {meta.type}, which the harness cannot feed")
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in meta.shape)
        if np.issubdtype(dtype, np.floating):
            feed[meta.name] = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        else:
            feed[meta.name] = rng.integers(0, 2 if dtype is np.bool_ else 8, size=shape).astype(dtype)
    return feed


def _cpu_model() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()})"


def _gpu_name() -> str:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        driver = pynvml.nvmlSystemGetDriverVersion()
        return f"{name if isinstance(name, str) else name.decode()} (driver {driver if isinstance(driver, str) else driver.decode()})"
    except Exception:
        return "NVIDIA GPU 0 (name unavailable: nvidia-ml-py not installed)"


def from_profile(profile: DeviceProfile) -> OnnxRuntimeRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    spec = profile.runtime
    cores = pinned_cores(spec) if spec.provider == "cpu" else None
    return OnnxRuntimeRunner(provider=spec.provider, threads=spec.threads, cores=cores)
