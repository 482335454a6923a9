"""ExecuTorch on this machine: single-op ``.pte`` programs through the ``executorch.runtime`` Python API.

Profile::

    transport: {type: local}
    runtime: {name: executorch, delegate: xnnpack, threads: 1, cores: auto}

``delegate: xnnpack`` lowers each op with the XNNPACK partitioner (fp32 and
int8); ``delegate: none`` leaves it to ExecuTorch's portable kernels (fp32
only).  Programs come from :mod:`harness.models.pte_models`, cached.

Threads: ExecuTorch's CPU thread pool (the pthreadpool XNNPACK and the
optimized kernels share) starts with one thread per core it counts, whatever
the process's affinity; the runner resets it to ``threads`` before any program
loads.  With one thread the pool has no workers and every kernel runs on the
calling thread, so, as for ONNX Runtime, the thread's CPU clock tells a
descheduled run from a slow one.  ATen (which copies the outputs the bindings
return) is held to as many threads: its OpenMP workers spin after each copy
and would take turns with the measuring thread on its core.  The process is pinned to the profile's cores
while the runner is open, as the other local runners pin it.

A timed run is one execution of the loaded method, its inputs set once
beforehand, as ``executor_runner`` times it on a phone (``set_inputs`` once, then
``Method::execute`` in the loop).  ``Method.execute(inputs)`` of the Python API
would also copy the inputs in and clone every output into a new tensor on each
run, host work of 5-100 µs that no phone run does and that varies with the
allocator (it made ExecuTorch's smoke LUT less reproducible than ONNX
Runtime's, and its per-op ETDump sums fall short of the timed run by exactly
that).  Where the bindings lack the split calls, the runner falls back to
``execute(inputs)``.  Like ONNX Runtime's ``run_with_iobinding`` a run includes
the runtime's fixed per-call cost, which the sweep measures separately with
the identity program.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.errors import DeviceUnavailable, InvalidModelFile
from harness.measurement import Batch, Measurement, MeasurementSettings, measure_prepared, time_callable
from harness.models import pte_models
from harness.profiles import DeviceProfile, pinned_cores
from harness.runners.base import DeviceIdentity
from harness.runners.onnxruntime_local import _cpu_model
from harness.signature import OpSignature

# c10::ScalarType of float32 in a method's tensor metadata.
_FLOAT_SCALAR_TYPE = 6
# Profile delegate -> pte_models backend.
_BACKENDS = {"xnnpack": "xnnpack", "none": "portable"}


class ExecuTorchRunner:
    """Times single-op ExecuTorch programs, one thread, pinned."""

    def __init__(self, delegate: str = "xnnpack", threads: int = 1, cores: tuple[int, ...] | None = None,
                 seed: int = 0, cache: Path | None = None) -> None:
        if delegate not in _BACKENDS:
            raise DeviceUnavailable(f"ExecuTorch runs locally with delegate xnnpack or none, not {delegate!r}")
        try:
            import torch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
        except ImportError as error:
            raise DeviceUnavailable(f"ExecuTorch (the executorch package) is not importable here: {error}") from None
        self.backend = _BACKENDS[delegate]
        self.threads = threads
        self.seed = seed
        self.cache = cache
        self._previous_affinity = os.sched_getaffinity(0)
        self.cores = cores
        if cores is not None:
            os.sched_setaffinity(0, set(cores))
        # The pool is sized from the CPUs the machine has, not the affinity: set it before any program runs.
        portable_lib._unsafe_reset_threadpool(threads)
        if portable_lib._threadpool_get_thread_count() != threads:
            raise DeviceUnavailable(f"ExecuTorch's thread pool kept {portable_lib._threadpool_get_thread_count()} "
                                    f"threads; the profile asks for {threads}")
        # The bindings hand outputs back as torch tensors, copied with ATen, whose OpenMP workers would spin on the
        # pinned core after each copy: ATen computes on the calling thread too while the runner is open.
        self._torch, self._previous_torch_threads = torch, torch.get_num_threads()
        torch.set_num_threads(threads)
        self._runtime = Runtime.get()
        if self.backend == "xnnpack" and "XnnpackBackend" not in self._runtime.backend_registry.registered_backend_names:
            raise DeviceUnavailable("this ExecuTorch build has no XNNPACK backend "
                                    f"(registered: {', '.join(self._runtime.backend_registry.registered_backend_names)})")
        self._identity = DeviceIdentity(model=_cpu_model(), runtime="executorch",
                                        runtime_version=pte_models.executorch_version(), provider=self.backend)

    @property
    def identity(self) -> DeviceIdentity:
        return self._identity

    def prepare(self, signature: OpSignature) -> "_EtMethod":
        """Build (or reuse) the op's program, load its ``forward`` method, make its inputs, run it once."""
        path = pte_models.model_file(signature, seed=self.seed, backend=self.backend, cache=self.cache)
        method = self._runtime.load_program(path).load_method("forward")
        inputs = list(pte_models.example_inputs(signature, seed=self.seed))
        # One thread computes on the calling thread: its CPU clock tells a descheduled run from a slow one.
        return _EtMethod(method, inputs, cpu_clock=time.thread_time_ns if self.threads == 1 else None)

    def prepare_file(self, path: str | Path) -> "_EtMethod":
        """Open any ``.pte`` (a whole network, :func:`pte_models.network_program`) as :meth:`prepare` opens an op's.

        Same runtime, thread pool and pinning, so a network's timed run is
        comparable to its operators'.  Its float inputs are drawn from the
        method's declared shapes (seeded), as for an ONNX network.
        """
        import numpy as np

        path = Path(path)
        if not path.is_file():
            raise InvalidModelFile(f"{path}: no such model file")
        try:
            method = self._runtime.load_program(path).load_method("forward")
            meta = method.metadata
            shapes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
            dtypes = {meta.input_tensor_meta(i).dtype() for i in range(meta.num_inputs())}
        except Exception as error:  # the runtime raises RuntimeError/ValueError for unreadable programs
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InvalidModelFile(f"{path}: ExecuTorch cannot load it: {first[:300]}") from None
        if dtypes - {_FLOAT_SCALAR_TYPE}:
            raise InvalidModelFile(f"{path}: takes non-float inputs; networks are timed with float inputs only")
        rng = np.random.default_rng(self.seed)
        inputs = [self._torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]
        return _EtMethod(method, inputs, cpu_clock=time.thread_time_ns if self.threads == 1 else None)

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement:
        """Measure one op on its own (a sweep measures groups, interleaved)."""
        return measure_prepared([signature], self.prepare, settings)[0]

    def close(self) -> None:
        if self.cores is not None:
            os.sched_setaffinity(0, self._previous_affinity)
            self._torch.set_num_threads(self._previous_torch_threads)
            self.cores = None


class _EtMethod:
    """A loaded method with its inputs: one timed run is one ``execute``."""

    def __init__(self, method, inputs: list, cpu_clock=None) -> None:
        self.method, self.inputs = method, inputs
        self.cpu_clock = cpu_clock
        self.outputs = method.execute(inputs)  # the first run allocates what later runs reuse
        bound = getattr(method, "_method", None)  # the bindings' ExecuTorchMethod behind executorch.runtime.Method
        if callable(getattr(bound, "set_inputs", None)) and callable(getattr(bound, "execute", None)):
            bound.set_inputs(inputs)  # once, as executor_runner does: a timed run is the execution alone
            self.run_once = bound.execute
        else:
            def run_once() -> None:
                method.execute(inputs)
            self.run_once = run_once

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        return time_callable(self.run_once, settings, warmup_runs, cpu_clock=self.cpu_clock)

    def close(self) -> None:
        self.method = self.inputs = self.outputs = self.run_once = None


def from_profile(profile: DeviceProfile) -> ExecuTorchRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    spec = profile.runtime
    return ExecuTorchRunner(delegate=spec.delegate, threads=spec.threads, cores=pinned_cores(spec))
