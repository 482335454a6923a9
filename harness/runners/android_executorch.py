"""ExecuTorch's ``executor_runner`` on an Android CPU (XNNPACK), over the same ADB transport as the other phone runtimes.

Profile::

    transport: {type: adb}
    runtime: {name: executor_runner, delegate: xnnpack, threads: 1, core_mask: "0x10",
              benchmark_binary: ~/android/arm64/xnn_executor_runner, etdump: false}

The binary is ExecuTorch's example runner built for Android (``xnn_executor_runner``,
or ``executor_runner`` built with ``EXECUTORCH_BUILD_XNNPACK=ON``), pushed to
``device_dir/executor_runner`` like ``benchmark_model``.  The programs are the
single-op ``.pte`` files of :mod:`harness.models.pte_models`, the very ones the
local ``xeon-executorch`` profile times: ``delegate: xnnpack`` lowers them with
the XNNPACK partitioner (fp32 and int8), ``none`` leaves them to the portable
kernels (fp32 only; then a portable ``executor_runner`` will do).

Each round is one invocation, ``taskset MASK executor_runner --model_path=M
--num_executions=W+N --cpu_threads=T``, parsed by
:mod:`harness.parsers.executorch_runner`.  What the samples are depends on the
build:

* builds that log each execution (``Iteration I of N: X ms``, current
  sources): the first W executions are the warm-up, the other N are true
  per-run samples, each one ``Method::execute`` timed by the runner itself
  (the inputs are set before its clock starts);
* builds that log only the total (``Model executed successfully N time(s) in
  X ms.``, the 1.x releases): the runner cannot leave warm-up executions out
  of the total, so a round is ``--num_executions=N`` and gives ONE sample, the
  mean of its N executions, the process's first (cold) execution included.
  Such a LUT's ``runs`` counts rounds, its percentiles are over round means,
  and its medians lean high for small ops; a build that logs each execution
  is the better instrument.

``min_timed_s`` and the adaptive ``precision`` are not applied: a round is as
many executions as the run count asks.

**ETDump** (``runtime.etdump: true``, off by default): per op, before its timed
rounds, one separate invocation with ``--etdump_path`` (W+N executions) whose
ETDump is pulled back and kept as ``<lut>.etdump/<signature digest>.etdp``
beside the LUT the sweep writes (``OpSignature.digest`` of the row's
``signature``; outside a sweep, under ``$CHAMELEON_CACHE/etdump/<profile>/``).
A kept file is not taken again when a sweep resumes.  Profiling and timing
never share an invocation, so the timed numbers carry no tracer's cost as far
as the runner can help it: a binary built with the event tracer
(``EXECUTORCH_BUILD_DEVTOOLS=ON``, ``EXECUTORCH_ENABLE_EVENT_TRACER=ON``, which
``--etdump_path`` needs) traces every execution, so time with a build without
it when ETDumps are not wanted.  Reading an ETDump is the Inspector's
business, not this module's.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from harness import paths
from harness.errors import DeviceUnavailable
from harness.measurement import Batch, MeasurementSettings, PreparedOp
from harness.models import pte_models
from harness.parsers import ToolOutputError
from harness.parsers.executorch_runner import ExecutorRunnerResult, parse_executor_runner
from harness.profiles import DeviceProfile
from harness.runners.android import AndroidRunner, transport_for
from harness.signature import OpSignature
from harness.transports.adb import AdbTransport, quote

# Profile delegate -> pte_models backend (and the LUT's provider column, as the local ExecuTorch runner writes it).
_BACKENDS = {"xnnpack": "xnnpack", "none": "portable"}

ETDUMP_SUFFIX = ".etdp"


def etdump_folder(lut: str | Path) -> Path:
    """Where the ETDumps of a LUT's rows are kept: ``<lut>.etdump/`` (beside ``<lut>.parts/``)."""
    lut = Path(lut)
    return lut.with_name(lut.name + ".etdump")


def etdump_file(folder: Path, signature: OpSignature) -> Path:
    """The kept ETDump of one signature: ``<folder>/<signature digest>.etdp``."""
    return Path(folder) / f"{signature.digest}{ETDUMP_SUFFIX}"


class ExecutorRunnerRunner(AndroidRunner):
    """Times single-op ``.pte`` programs with ``executor_runner`` on a phone; see the module docstring."""

    tool_name = "executor_runner"
    runtime_label = "executorch-executor_runner"

    def __init__(self, profile: DeviceProfile, transport: AdbTransport, seed: int = 0, cache: Path | None = None,
                 etdump_dir: Path | None = None, **kwargs) -> None:
        if profile.runtime.delegate not in _BACKENDS:
            raise DeviceUnavailable(f"device {profile.name!r}: executor_runner takes delegate xnnpack or none, "
                                    f"not {profile.runtime.delegate!r}")
        super().__init__(profile, transport, seed=seed, cache=cache, **kwargs)
        self.backend = _BACKENDS[self.runtime.delegate]
        self._identity = dataclasses.replace(self._identity, provider=self.backend)
        self.etdump_dir = Path(etdump_dir) if etdump_dir is not None else None
        # Whether this build logs each execution; None until its first output says.
        self.logs_each_execution: bool | None = None

    # ------------------------------------------------------------- the LUT
    def attach_lut(self, lut: str | Path) -> None:
        """Keep this sweep's ETDumps beside ``lut`` (called by :func:`harness.sweep.run_sweep`)."""
        self.etdump_dir = etdump_folder(lut)

    def etdump_path(self, signature: OpSignature) -> Path:
        """Where the signature's ETDump is (or will be) kept on this machine."""
        folder = self.etdump_dir or paths.cache_dir() / "etdump" / self.profile.name
        return etdump_file(folder, signature)

    # ------------------------------------------------------- the commands
    def model_file(self, signature: OpSignature) -> Path:
        return pte_models.model_file(signature, seed=self.seed, backend=self.backend, cache=self.cache)

    def command(self, model: str, executions: int, etdump: str | None = None) -> str:
        argv: list[object] = [self.binary, f"--model_path={model}", f"--num_executions={executions}",
                              f"--cpu_threads={self.runtime.threads}"]
        if etdump is not None:
            argv.append(f"--etdump_path={etdump}")
        # ET_LOG writes to stderr, where the timings are: one stream, whatever the ADB shell protocol.
        return self.pinned(argv) + " 2>&1"

    def _invoke(self, signature: OpSignature, model: str, executions: int, etdump: str | None = None) -> ExecutorRunnerResult:
        result = self.transport.shell(self.command(model, executions, etdump))
        if not result.ok:
            if "unknown command line flag 'etdump_path'" in result.output:
                raise DeviceUnavailable(
                    f"device {self.profile.name!r}: runtime.etdump is on but {self.binary} has no event tracer "
                    "(build it with EXECUTORCH_BUILD_DEVTOOLS=ON and EXECUTORCH_ENABLE_EVENT_TRACER=ON)")
            try:
                parse_executor_runner(result.output)  # a summary, then a failure (writing the ETDump): its last lines
                reason = " | ".join(result.output.strip().splitlines()[-2:])
            except ToolOutputError as err:  # the runner's own error line, when it printed one
                reason = str(err)
            raise DeviceUnavailable(f"executor_runner failed on {signature.key} (exit {result.exit_code}): {reason[:300]}")
        try:
            parsed = parse_executor_runner(result.output)
        except ToolOutputError as err:
            raise DeviceUnavailable(f"executor_runner output for {signature.key} not understood: {err}") from None
        if parsed.executions != executions:
            raise DeviceUnavailable(f"executor_runner ran {signature.key} {parsed.executions} times, "
                                    f"asked for {executions}")
        return parsed

    # ------------------------------------------------------- measuring
    def take_batch(self, signature: OpSignature, remote_model: str, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        if self.logs_each_execution is not False:
            parsed = self._invoke(signature, remote_model, warmup_runs + settings.runs)
            self.logs_each_execution = bool(parsed.per_execution_ms)
            if parsed.per_execution_ms:
                timed = parsed.per_execution_ms[warmup_runs:]
                return Batch(samples_us=tuple(ms * 1000.0 for ms in timed), warmup_runs=warmup_runs)
        # A build that logs only the total: one sample a round, the mean of N executions (no warm-up to leave out).
        parsed = self._invoke(signature, remote_model, settings.runs)
        return Batch(samples_us=(parsed.mean_ms * 1000.0,), warmup_runs=0)

    def prepare(self, signature: OpSignature) -> PreparedOp:
        pushed = super().prepare(signature)
        if self.runtime.etdump:
            self.keep_etdump(signature, pushed.remote)
        return pushed

    def keep_etdump(self, signature: OpSignature, remote_model: str) -> Path:
        """Run the program once more with the event tracer, pull its ETDump back and keep it; returns the local path."""
        local = self.etdump_path(signature)
        if local.is_file() and local.stat().st_size > 0:
            return local  # a resumed sweep: kept the first time
        folder = f"{self.device_dir}/etdump"
        remote = f"{folder}/{signature.digest}{ETDUMP_SUFFIX}"
        self.transport.run(["mkdir", "-p", folder])
        self.transport.shell(f"rm -f {quote(remote)}")  # never pull a stale file
        measurement = self.profile.measurement
        self._invoke(signature, remote_model, measurement.warmup_runs + measurement.runs, etdump=remote)
        size = self.transport.shell(f"wc -c < {quote(remote)}")
        if not size.ok or not size.output.strip().isdigit() or int(size.output.strip()) == 0:
            raise DeviceUnavailable(f"executor_runner wrote no ETDump for {signature.key} at {remote}")
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.{os.getpid()}.part")
        try:
            self.transport.pull(remote, partial)
            os.replace(partial, local)  # whole or absent: a pull cut short never passes for an ETDump
        finally:
            partial.unlink(missing_ok=True)
        self.transport.shell(f"rm -f {quote(remote)}")
        return local


def from_profile(profile: DeviceProfile) -> ExecutorRunnerRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    return ExecutorRunnerRunner(profile, transport_for(profile))
