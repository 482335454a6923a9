"""ONNX Runtime's ``onnxruntime_perf_test`` on an Android device, over the same ADB transport.

Each round is one invocation in ``-m times`` mode with the round's run count,
writing a result file that holds one row per timed run: true per-run samples.
The tool makes one untimed first inference itself (its warm-up); it has no
flag for more, so ``warmup_runs`` is 1 per round whatever the profile says.
"""

from __future__ import annotations

from pathlib import Path

from harness.models import onnx_models
from harness.errors import DeviceUnavailable
from harness.measurement import Batch, MeasurementSettings
from harness.parsers import ToolOutputError, parse_ort_result_csv
from harness.profiles import DeviceProfile
from harness.runners.android import AndroidRunner, transport_for
from harness.signature import OpSignature
from harness.transports.adb import quote

_PROVIDERS = {"none": "cpu", "nnapi": "nnapi", "xnnpack": "xnnpack"}


class OrtPerfTestRunner(AndroidRunner):
    tool_name = "onnxruntime_perf_test"
    runtime_label = "onnxruntime_perf_test"

    def model_file(self, signature: OpSignature) -> Path:
        return onnx_models.model_file(signature, seed=self.seed, cache=self.cache)

    def command(self, model: str, result_file: str, runs: int) -> str:
        provider = _PROVIDERS.get(self.runtime.delegate)
        if provider is None:
            raise DeviceUnavailable(f"device {self.profile.name!r}: onnxruntime_perf_test has no {self.runtime.delegate} provider here")
        return self.pinned([self.binary, "-I", "-m", "times", "-r", runs, "-x", self.runtime.threads, "-y", 1,
                            "-e", provider, "-o", 99, model, result_file])

    def take_batch(self, signature: OpSignature, remote_model: str, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        result_file = f"{self.device_dir}/results/{signature.digest}.csv"
        # The tool appends to its result file: start each round from an empty one.
        self.transport.run(["mkdir", "-p", f"{self.device_dir}/results"])
        self.transport.shell(f"rm -f {quote(result_file)}")
        self.run_tool(self.command(remote_model, result_file, settings.runs), signature)
        rows = self.transport.run(["cat", result_file]).output
        try:
            per_run_ms = parse_ort_result_csv(rows)
        except ToolOutputError as err:
            raise DeviceUnavailable(f"onnxruntime_perf_test result file for {signature.key} not understood: {err}") from None
        if not per_run_ms:
            raise DeviceUnavailable(f"onnxruntime_perf_test wrote no timed runs for {signature.key}")
        return Batch(samples_us=tuple(ms * 1000.0 for ms in per_run_ms), warmup_runs=1)


def from_profile(profile: DeviceProfile) -> OrtPerfTestRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    return OrtPerfTestRunner(profile, transport_for(profile))
