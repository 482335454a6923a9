"""Stand-in for TFLite's ``benchmark_model`` on the Chameleon loopback ADB device.

This file is copied, with a ``#!`` line naming the Python that wrote it, to an
executable the user pushes like the real binary (see
``harness.fake_device.benchmark_model_standin``).  It imports nothing from
Chameleon: only LiteRT (``ai_edge_litert``) and numpy.

What it does, as the real tool does:

* takes the real flags (``--graph --num_threads --warmup_runs --warmup_min_secs
  --num_runs --min_secs --max_secs --run_delay --use_hexagon --hexagon_lib_path
  --use_nnapi --use_gpu --use_xnnpack --enable_op_profiling ...``); an unknown
  flag gives ``WARN: Unconsumed cmdline flags: ...`` and the run goes on; a
  value that does not parse fails the run;
* loads the model with LiteRT (``Interpreter(model_path, num_threads)``), fills
  the inputs with random values, runs the warm-up loop then the timed loop with
  the real stopping rule (at least N runs *and* at least S seconds, stop
  starting runs after ``--max_secs``), timing each ``invoke()`` in integer
  microseconds;
* prints the current log format: ``INFO:``/``WARN:`` lines on stdout,
  ``ERROR:`` lines on stderr, statistics lines ``count= first= curr= min= max=
  avg= std= p5= median= p95=`` (``count=1 curr=X p5=...`` when all runs took
  the same time), then ``Inference timings in us: Init: ..., First inference:
  ..., Warmup (avg): ..., Inference (avg): ...`` and the memory footprint.

**The simulator has no DSP, GPU or NPU.**  Every model runs on the host's CPU.
``--use_hexagon=true`` fails (exit status 1) unless ``--hexagon_lib_path``
(default ``/data/local/tmp``) holds a file named ``libhexagon_interface.so``,
like a phone without the Hexagon libraries -- stricter than the real tool,
which warns and falls back to the CPU, so that a Hexagon measurement is never
silently a CPU one.  With the file there, it logs the Hexagon delegate as
created and applied, and runs on the CPU.  ``--use_gpu`` / ``--use_nnapi`` log
their delegate likewise and run on the CPU.  ``--use_xnnpack=false`` runs the
builtin kernels without LiteRT's default XNNPACK delegate.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time

_PARAMS = {
    # name: (default, label as the real tool logs it)
    "num_runs": (50, "Min num runs"),
    "min_secs": (1.0, "Min runs duration (seconds)"),
    "max_secs": (150.0, "Max runs duration (seconds)"),
    "run_delay": (-1.0, "Inter-run delay (seconds)"),
    "run_frequency": (-1.0, "Number of prorated runs per second"),
    "num_threads": (-1, "Num threads"),
    "use_caching": (False, "Use caching"),
    "benchmark_name": ("", "Benchmark name"),
    "output_prefix": ("", "Output prefix"),
    "warmup_runs": (1, "Min warmup runs"),
    "warmup_min_secs": (0.5, "Min warmup runs duration (seconds)"),
    "dry_run": (False, "Run w/o invoking kernels"),
    "report_peak_memory_footprint": (False, "Report the peak memory footprint"),
    "memory_footprint_check_interval_ms": (50, "Memory footprint check interval (ms)"),
    "graph": ("", "Graph"),
    "input_layer": ("", "Input layers"),
    "input_layer_shape": ("", "Input shapes"),
    "input_layer_value_range": ("", "Input value ranges"),
    "input_layer_value_files": ("", "Input value files"),
    "allow_fp16": (False, "Allow fp16"),
    "require_full_delegation": (False, "Require full delegation"),
    "enable_op_profiling": (False, "Enable op profiling"),
    "max_profiling_buffer_entries": (1024, "Max profiling buffer entries"),
    "profiling_output_csv_file": ("", "CSV File to export profiling data to"),
    "print_preinvoke_state": (False, "Print pre-invoke interpreter state"),
    "print_postinvoke_state": (False, "Print post-invoke interpreter state"),
    "use_gpu": (False, "Use gpu"),
    "gpu_precision_loss_allowed": (True, "Allow lower precision in gpu"),
    "use_hexagon": (False, "Use Hexagon"),
    "hexagon_lib_path": ("/data/local/tmp", "Hexagon lib path"),
    "hexagon_profiling": (False, "Hexagon profiling"),
    "use_nnapi": (False, "Use NNAPI"),
    "nnapi_accelerator_name": ("", "NNAPI accelerator name"),
    "use_xnnpack": (False, "Use xnnpack"),
    "verbose": (False, None),
    "help": (False, None),
}
_ALWAYS_LOGGED = ("graph",)
_DELEGATE_PARAMS = (
    "use_gpu",
    "gpu_precision_loss_allowed",
    "use_hexagon",
    "hexagon_lib_path",
    "hexagon_profiling",
    "use_nnapi",
    "nnapi_accelerator_name",
    "use_xnnpack",
)


def info(message: str) -> None:
    sys.stdout.write(f"INFO: {message}\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    sys.stdout.write(f"WARN: {message}\n")
    sys.stdout.flush()


def error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"ERROR: {message}\n")
    sys.stderr.flush()


def fmt(value: object) -> str:
    """A value as C++'s ``ostream <<`` prints it (bools as 1/0, doubles with 6 significant digits)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def parse_flags(argv: list[str]) -> tuple[dict, set[str], list[str]] | None:
    params = {name: default for name, (default, _) in _PARAMS.items()}
    given: set[str] = set()
    unconsumed: list[str] = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            unconsumed.append(arg)
            continue
        name, text = arg[2:].split("=", 1)
        if name not in _PARAMS:
            unconsumed.append(arg)
            continue
        default = _PARAMS[name][0]
        try:
            if isinstance(default, bool):
                if text.lower() in ("true", "1"):
                    value: object = True
                elif text.lower() in ("false", "0"):
                    value = False
                else:
                    raise ValueError(text)
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            else:
                value = text
        except ValueError:
            error(f"Failed to parse flag '{name}' against argv '{arg}'")
            return None
        params[name] = value
        given.add(name)
    return params, given, unconsumed


class Stat:
    """TFLite's ``StatWithPercentiles<int64_t>``."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def add(self, value: int) -> None:
        self.values.append(value)

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def first(self) -> int:
        return self.values[0] if self.values else 0

    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    def std(self) -> int:
        if not self.values or min(self.values) == max(self.values):
            return 0
        mean = self.avg()
        variance = sum(v * v for v in self.values) / len(self.values) - mean * mean
        return int(math.sqrt(max(variance, 0.0)))

    def percentile(self, p: int) -> int:
        if not self.values:
            return 0
        ordered = sorted(self.values)
        return ordered[-1] if p == 100 else ordered[len(ordered) * p // 100]

    def line(self) -> str:
        v = self.values
        if not v:
            text = "count=0"
        elif min(v) == max(v):
            text = f"count={len(v)} curr={v[-1]}" + ("(all same)" if len(v) > 1 else "")
        else:
            text = f"count={len(v)} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)} avg={fmt(self.avg())} std={self.std()}"
        return text + f" p5={self.percentile(5)} median={self.percentile(50)} p95={self.percentile(95)}"


def memory_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_loop(interpreter, min_runs: int, min_secs: float, max_secs: float, run_delay: float, dry_run: bool) -> Stat:
    info(
        f"Running benchmark for at least {min_runs} iterations and at least {fmt(float(min_secs))} seconds"
        f" but terminate if exceeding {fmt(float(max_secs))} seconds."
    )
    stat = Stat()
    now = time.perf_counter_ns() // 1000
    min_finish = now + int(min_secs * 1e6)
    max_finish = now + int(max_secs * 1e6)
    run = 0
    while (run < min_runs or now < min_finish) and now <= max_finish:
        start = time.perf_counter_ns()
        if not dry_run:
            interpreter.invoke()
        stat.add((time.perf_counter_ns() - start) // 1000)
        if run_delay > 0:
            time.sleep(run_delay)
        now = time.perf_counter_ns() // 1000
        run += 1
    info(stat.line() + "\n")
    return stat


def fill_inputs(interpreter) -> None:
    import numpy as np

    rng = np.random.default_rng()
    for detail in interpreter.get_input_details():
        shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
        elif dtype == np.int8:
            value = rng.integers(-127, 128, size=shape).astype(dtype)
        elif dtype == np.uint8:
            value = rng.integers(0, 255, size=shape).astype(dtype)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            value = rng.integers(0, 100, size=shape).astype(dtype)
        interpreter.set_tensor(detail["index"], value)


def main(argv: list[str]) -> int:
    info("STARTING!")
    parsed = parse_flags(argv)
    if parsed is None:
        return 1
    params, given, unconsumed = parsed
    if unconsumed:
        warn("Unconsumed cmdline flags: " + " ".join(unconsumed))
    if params["help"]:
        error("usage: benchmark_model --graph=PATH [--num_threads=N] [--num_runs=N] [--min_secs=S] ... (loopback stand-in)")
        return 1
    verbose = params["verbose"]
    info(f"Log parameter values verbosely: [{fmt(verbose)}]")
    if not params["graph"]:
        error("Please specify the name of your TF Lite input file with --graph")
        return 1
    for name, (_, label) in _PARAMS.items():
        if label is None or name in _DELEGATE_PARAMS:
            continue
        if verbose or name in given or name in _ALWAYS_LOGGED:
            info(f"{label}: [{fmt(params[name])}]")
    info(f"#threads used for CPU inference: [{params['num_threads']}]")
    for name in _DELEGATE_PARAMS:
        if verbose or name in given:
            info(f"{_PARAMS[name][1]}: [{fmt(params[name])}]")

    graph = params["graph"]
    try:
        model_size_mb = os.path.getsize(graph) / 1e6
    except OSError:
        model_size_mb = -1.0
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:
        error(f"LiteRT (ai_edge_litert) is not importable by {sys.executable}: {e}")
        return 1

    start_mem = memory_kb()
    init_start = time.perf_counter_ns()
    if not os.path.isfile(graph):
        error(f"Could not open '{graph}'.")
        error(f"Failed to mmap model {graph}")
        error("Benchmarking failed.")
        return 1
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if ("use_xnnpack" in given and not params["use_xnnpack"]) else OpResolverType.AUTO
    threads = params["num_threads"] if params["num_threads"] > 0 else None
    try:
        interpreter = Interpreter(model_path=graph, num_threads=threads, experimental_op_resolver_type=resolver)
    except (ValueError, RuntimeError) as e:
        error(f"Failed to mmap model {graph}: {e}")
        error("Benchmarking failed.")
        return 1
    info(f"Loaded model {graph}")

    delegates = []
    if params["use_hexagon"]:
        lib_dir = params["hexagon_lib_path"]
        sandbox = os.environ.get("LOOPBACK_ADB_SANDBOX")
        if "hexagon_lib_path" not in given and sandbox:
            lib_dir = sandbox + lib_dir  # the default is a device path; the device rewrote only the command line
        if not os.path.isfile(os.path.join(lib_dir, "libhexagon_interface.so")):
            warn("Could not create Hexagon delegate: platform may not support delegate or required libraries are missing")
            error("Failed to apply Hexagon delegate.")
            error("Benchmarking failed.")
            return 1
        delegates.append("Hexagon")
    if params["use_gpu"]:
        delegates.append("GPU")
    if params["use_nnapi"]:
        delegates.append("NNAPI")
    if params["use_xnnpack"]:
        delegates.append("XNNPACK")
    for name in delegates:
        info(f"{name} delegate created.")
    if delegates:
        info(f"Going to apply {len(delegates)} delegates one after another.")
        for name in delegates:
            info(f"Explicitly applied {name} delegate, and the model graph will be completely executed by the delegate.")
    try:
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        error(f"Failed to allocate tensors! ({e})")
        error("Benchmarking failed.")
        return 1
    init_us = (time.perf_counter_ns() - init_start) // 1000
    init_mem = memory_kb() - start_mem
    if model_size_mb > 0:
        info(f"The input model file size (MB): {fmt(model_size_mb)}")
    else:
        warn("Failed to get the input model file size.")
    info(f"Initialized session in {fmt(init_us / 1e3)}ms.")
    fill_inputs(interpreter)

    if params["dry_run"]:
        params.update(warmup_runs=0, warmup_min_secs=-1.0, num_runs=0, min_secs=-1.0)
    try:
        warmup = run_loop(interpreter, params["warmup_runs"], params["warmup_min_secs"], params["max_secs"], params["run_delay"], params["dry_run"])
        timed = run_loop(interpreter, params["num_runs"], params["min_secs"], params["max_secs"], params["run_delay"], params["dry_run"])
    except (ValueError, RuntimeError) as e:
        error(f"Node invocation failed: {e}")
        error("Benchmarking failed.")
        return 1
    overall_mem = memory_kb() - start_mem
    info(
        f"Inference timings in us: Init: {init_us}, First inference: {warmup.first},"
        f" Warmup (avg): {fmt(warmup.avg())}, Inference (avg): {fmt(timed.avg())}"
    )
    info(
        "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE"
        " to the actual memory footprint of the model at runtime. Take the information at your discretion."
    )
    info(f"Memory footprint delta from the start of the tool (MB): init={fmt(init_mem / 1024.0)} overall={fmt(overall_mem / 1024.0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
