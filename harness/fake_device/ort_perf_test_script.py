"""Stand-in for ONNX Runtime's ``onnxruntime_perf_test`` on the Chameleon loopback ADB device.

Copied, with a ``#!`` line naming the Python that wrote it, to an executable
that is pushed like the real binary (see
``harness.fake_device.benchmark_model_standin``).  It imports only ONNX Runtime
and numpy.  Like the real tool it:

* takes ``[options] model_path [result_file]`` with ``-m times|duration``,
  ``-r N`` (runs), ``-t S`` (seconds, duration mode), ``-x N`` / ``-y N``
  (intra/inter-op threads), ``-e cpu|nnapi|xnnpack``, ``-o LEVEL``, ``-I``
  (generate inputs), ``-s`` (print statistics), ``-S SEED``;
* creates the session, runs one first inference, then the timed runs;
* prints the current summary (``Session creation time cost: X s`` ...
  ``Average inference time cost total: X ms`` ... ``Runs:N``), and with ``-s``
  the latency statistics;
* appends one row per timed run to the result file:
  ``model_name,time_cost_s,peak_working_set_bytes,avg_cpu_usage,run_index``.

The simulator runs every provider on the host's CPU and says so on stderr.
"""

from __future__ import annotations

import getopt
import os
import resource
import sys
import time


def main(argv: list[str]) -> int:
    try:
        options, positional = getopt.getopt(argv, "m:r:t:x:y:e:o:IsS:v")
    except getopt.GetoptError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    opts = dict(options)
    if not positional:
        print("Error: model path required", file=sys.stderr)
        return 1
    model_path = positional[0]
    result_file = positional[1] if len(positional) > 1 else None
    mode = opts.get("-m", "duration")
    runs = int(opts.get("-r", "1000"))
    seconds = float(opts.get("-t", "10"))
    provider = opts.get("-e", "cpu")
    import numpy as np
    import onnxruntime as ort

    if provider != "cpu":
        print(f"[loopback] provider {provider} is simulated: running on the host CPU", file=sys.stderr)
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = int(opts.get("-x", "1"))
    session_options.inter_op_num_threads = int(opts.get("-y", "1"))
    level = opts.get("-o", "99")
    session_options.graph_optimization_level = {
        "0": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "1": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "2": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(model_path, sess_options=session_options, providers=["CPUExecutionProvider"])
    except Exception as err:  # the real tool prints the runtime's message and exits 1
        print(f"Error: {err}", file=sys.stderr)
        return 1
    created = time.perf_counter() - started
    rng = np.random.default_rng(int(opts.get("-S", "0")))
    feed = {}
    for meta in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in meta.shape]
        feed[meta.name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    print(f"Session creation time cost: {created:g} s")
    first = time.perf_counter()
    session.run(None, feed)
    print(f"First inference time cost: {int((time.perf_counter() - first) * 1000)} ms")

    times: list[float] = []
    run_started = time.perf_counter()
    while (len(times) < runs) if mode == "times" else (time.perf_counter() - run_started < seconds):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    run_time = time.perf_counter() - run_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(times)
    print(f"Total inference time cost: {total:g} s")
    print(f"Total inference requests: {len(times)}")
    print(f"Average inference time cost total: {total / len(times) * 1000:g} ms")
    print(f"Total inference run time: {run_time:g} s")
    print(f"Number of inferences per second: {len(times) / run_time:g} ")
    print("Avg CPU usage: 100 %")
    print(f"Peak working set size: {peak} bytes")
    print("Avg CPU usage:100")
    print(f"Peak working set size:{peak}")
    print(f"Runs:{len(times)}")
    if "-s" in opts:
        ordered = sorted(times)

        def percentile(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

        print(f"Min Latency: {ordered[0]:g} s")
        print(f"Max Latency: {ordered[-1]:g} s")
        for p in (50, 90, 95, 99, 99.9):
            print(f"P{str(p).replace('.', '')} Latency: {percentile(p):g} s")
    if result_file:
        name = os.path.basename(model_path)
        with open(result_file, "a") as handle:
            for index, value in enumerate(times):
                handle.write(f"{name},{value:g},{peak},100,{index}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
