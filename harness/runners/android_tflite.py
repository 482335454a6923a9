"""TFLite's ``benchmark_model`` on an Android device (CPU, or the Hexagon / NNAPI / GPU delegates).

Each round is one invocation with the round's warm-up and run counts and time
budget (``--num_runs`` and ``--min_secs`` have our semantics: at least N runs
and at least S seconds; ``--min_secs=0`` gives exactly N).  The tool prints
statistics, not per-run times: builds that print a median give one
:class:`~harness.measurement.ToolSummary` per round; builds that print none are
run once per timed run (``--num_runs=1``), which gives real per-run samples at
the cost of a process start each.
"""

from __future__ import annotations

from pathlib import Path

from harness.models import tflite_models
from harness.errors import DeviceUnavailable, InvalidProfile
from harness.measurement import Batch, MeasurementSettings, ToolSummary
from harness.parsers import ToolOutputError
from harness.parsers.tflite_benchmark import TfliteBenchmarkResult, parse_tflite_benchmark
from harness.profiles import DeviceProfile
from harness.runners.android import AndroidRunner, transport_for
from harness.signature import OpSignature


class TfliteBenchmarkRunner(AndroidRunner):
    tool_name = "benchmark_model"
    runtime_label = "tflite-benchmark_model"

    def install_extras(self) -> None:
        """The Hexagon delegate's libraries (libhexagon_interface.so, the skel) go beside the models."""
        self.delegate_dir: str | None = None
        if self.runtime.delegate != "hexagon":
            return
        if not self.runtime.delegate_lib_dir:
            raise InvalidProfile(f"profile {self.profile.source}: runtime.delegate_lib_dir must name the Hexagon libraries' folder")
        folder = Path(self.runtime.delegate_lib_dir).expanduser()
        libraries = sorted(folder.glob("*.so")) if folder.is_dir() else []
        if not libraries:
            raise DeviceUnavailable(f"device {self.profile.name!r}: no Hexagon delegate libraries (*.so) in {folder}")
        self.delegate_dir = f"{self.device_dir}/hexagon"
        for library in libraries:
            self.transport.push(library, f"{self.delegate_dir}/{library.name}")

    def model_file(self, signature: OpSignature) -> Path:
        return tflite_models.tflite_model_file(signature, seed=self.seed, cache=self.cache)

    def command(self, graph: str, warmup_runs: int, runs: int, min_secs: float) -> str:
        argv: list[object] = [
            self.binary,
            f"--graph={graph}",
            f"--num_threads={self.runtime.threads}",
            f"--warmup_runs={warmup_runs}",
            "--warmup_min_secs=0",  # warm-up is counted in runs only
            f"--num_runs={runs}",
            f"--min_secs={min_secs:g}",
        ]
        if self.runtime.delegate == "hexagon":
            argv += ["--use_hexagon=true", f"--hexagon_lib_path={self.delegate_dir}"]
        elif self.runtime.delegate in ("nnapi", "gpu", "xnnpack"):
            argv.append(f"--use_{self.runtime.delegate}=true")
        return self.pinned(argv)

    def take_batch(self, signature: OpSignature, remote_model: str, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        parsed = self._invoke(signature, remote_model, warmup_runs, settings.runs, settings.min_timed_s)
        stats = parsed.inference
        if stats is not None and stats.count >= 1 and stats.all_same and stats.curr_us is not None:
            # "count=N curr=X(all same)": every run took X (the tool's clock is in whole µs).
            x = stats.curr_us
            summary = ToolSummary(count=stats.count, median_us=x, mean_us=x, std_us=0.0, min_us=x, p5_us=x, p95_us=x)
            return Batch(samples_us=(), warmup_runs=warmup_runs, summary=summary)
        if stats is not None and stats.median_us is not None and stats.count >= 1:
            summary = ToolSummary(count=stats.count, median_us=stats.median_us, mean_us=stats.avg_us or stats.median_us,
                                  std_us=stats.std_us or 0.0, min_us=stats.min_us or stats.median_us,
                                  p5_us=stats.p5_us, p95_us=stats.p95_us)
            return Batch(samples_us=(), warmup_runs=warmup_runs, summary=summary)
        # No median printed: one invocation per timed run gives true per-run samples.
        samples = tuple(self._single_run(signature, remote_model, warmup_runs) for _ in range(settings.runs))
        return Batch(samples_us=samples, warmup_runs=warmup_runs * len(samples))

    def _invoke(self, signature: OpSignature, remote_model: str, warmup_runs: int, runs: int, min_secs: float) -> TfliteBenchmarkResult:
        output = self.run_tool(self.command(remote_model, warmup_runs, runs, min_secs), signature)
        try:
            return parse_tflite_benchmark(output)
        except ToolOutputError as err:
            raise DeviceUnavailable(f"benchmark_model output for {signature.key} not understood: {err}") from None

    def _single_run(self, signature: OpSignature, remote_model: str, warmup_runs: int) -> float:
        parsed = self._invoke(signature, remote_model, warmup_runs, 1, 0.0)
        stats = parsed.inference
        value = None if stats is None else (stats.curr_us or stats.avg_us or stats.median_us)
        value = value or parsed.inference_avg_us
        if value is None:
            raise DeviceUnavailable(f"benchmark_model printed no inference time for {signature.key}")
        return float(value)


def from_profile(profile: DeviceProfile) -> TfliteBenchmarkRunner:
    """The factory that :data:`harness.runners.registry.BUILTIN_RUNNERS` names for this runtime."""
    return TfliteBenchmarkRunner(profile, transport_for(profile))
