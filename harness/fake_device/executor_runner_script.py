"""Stand-in for ExecuTorch's ``executor_runner`` (``xnn_executor_runner``: the same program linked with XNNPACK) on the loopback ADB device.

Copied, with a ``#!`` line naming the Python that wrote it, to an executable
that is pushed like the real binary (see
:mod:`harness.fake_device.benchmark_model_standin`).  It imports nothing from
Chameleon: only PyTorch and ExecuTorch's C++ runtime through its Python
bindings (``executorch.extension.pybindings._C``, the same runtime, kernels and
XNNPACK backend a phone build links; imported directly so the start-up is
PyTorch's two seconds, not the exporter's seven).

What it does, as examples/portable/executor_runner/executor_runner.cpp (read at
pytorch/executorch 018a3a5) does:

* takes the real gflags (``--model_path``, ``--num_executions``, ``--cpu_threads``,
  ``--etdump_path``, ``--method_name``, ``--data_path``, ``--inputs``,
  ``--output_file``, ``--print_output``), as ``--flag=value``, ``--flag value``
  or ``--[no]flag`` for booleans; an unknown flag or a bad value is gflags'
  ``ERROR: ...`` and exit status 1, a positional argument ``Extra commandline
  args`` and 1;
* resets the thread pool to ``--cpu_threads`` (-1: one thread per host CPU),
  loads the program (``Failed to parse model file``, status 1, when it is not
  one), loads the method, then per execution sets the inputs to ones (or to
  ``--inputs`` files) and times ``Method::execute`` alone, as the real runner
  does;
* logs as the default platform layer does, on stderr: ``I HH:MM:SS.UUUUUU
  executorch:executor_runner.cpp:LINE] ...``: ``Iteration I of N: X ms`` per
  execution, ``Model executed successfully N time(s) in X ms.``, ``K outputs:``,
  then prints the outputs on stdout (``OutputX 0: tensor(sizes=[...], [...])``
  with print_evalue's first and last 100 elements, as the current source);
* with ``--etdump_path`` writes the run's ETDump there (``ETDump written to
  file 'PATH'.``), made by the runtime's own event tracer.

Where it differs: ``EXECUTOR_RUNNER_STANDIN_LOG=1.x`` in its environment makes
it log as 1.x releases did (no per-execution lines, ``Method loaded.``,
``Output 0:``, and only ``--model_path --inputs --num_executions --etdump_path
--cpu_threads``), to test that path.  A real build with the event tracer
(``EXECUTORCH_BUILD_DEVTOOLS``) traces every run and writes ``model.etdump``
when no path is given; the stand-in traces only when ``--etdump_path`` is
given, so its timed runs carry no tracer.  The planned-buffer lines are left
out (the bindings do not expose the buffer sizes), ``--server_mode`` and
``--input_shapes`` are not simulated, and everything runs on the host's CPU.
"""

from __future__ import annotations

import math
import os
import sys
import time

_STARTED = time.monotonic()
_SOURCE = "executor_runner.cpp"
_FORMAT = os.environ.get("EXECUTOR_RUNNER_STANDIN_LOG", "iterations")

# name: (type, default); the flags of the current source, and those 1.x releases had.
_FLAGS = {
    "model_path": ("string", "model.pte"),
    "data_path": ("string", ""),
    "inputs": ("string", ""),
    "input_shapes": ("string", ""),
    "output_file": ("string", ""),
    "server_mode": ("bool", False),
    "print_output": ("string", "summary"),
    "num_executions": ("uint32", 1),
    "method_name": ("string", ""),
    "etdump_path": ("string", "model.etdump"),
    "cpu_threads": ("int32", -1),
}
_FLAGS_1X = ("model_path", "inputs", "num_executions", "etdump_path", "cpu_threads")

# ExecuTorch ScalarType codes -> torch dtype names (the inputs and outputs our programs use, and a few more).
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64", 11: "bool"}


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def log(level: str, line: int, message: str) -> None:
    """One ET_LOG line as the default (posix) platform layer writes it: time since start-up, file and line."""
    us = int((time.monotonic() - _STARTED) * 1e6)
    seconds, micro = divmod(us, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    sys.stderr.write(f"{level} {hours:02d}:{minute:02d}:{sec:02d}.{micro:06d} executorch:{_SOURCE}:{line}] {message}\n")
    sys.stderr.flush()


def check(condition: bool, line: int, text: str, message: str) -> None:
    """ET_CHECK_MSG: a fatal line and abort() (the shell reports 134) when the condition fails."""
    if not condition:
        log("F", line, f"In function main(), assert failed ({text}): {message}")
        raise _Exit(134)


def parse_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """gflags' ParseCommandLineFlags with remove_flags: (flag values, arguments left)."""
    known = {name: spec for name, spec in _FLAGS.items() if _FORMAT != "1.x" or name in _FLAGS_1X}
    values = {name: default for name, (_kind, default) in known.items()}
    values["_given"] = set()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name not in known and name.startswith("no") and known.get(name[2:], ("",))[0] == "bool" and not has_value:
            name, has_value, value = name[2:], True, "false"
        if name not in known:
            _fail(f"ERROR: unknown command line flag '{name}'")
        kind = known[name][0]
        if not has_value:
            if kind == "bool":
                value = "true"
            elif i < len(argv):
                value, i = argv[i], i + 1
            else:
                _fail(f"ERROR: flag '{arg}' is missing its argument")
        values[name] = _convert(name, kind, value)
        values["_given"].add(name)
    return values, rest


def _convert(name: str, kind: str, text: str) -> object:
    try:
        if kind == "string":
            return text
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("true", "t", "yes", "y", "1"):
                return True
            if lowered in ("false", "f", "no", "n", "0"):
                return False
            raise ValueError
        number = int(text, 10)
        if (kind == "uint32" and not 0 <= number < 2**32) or (kind == "int32" and not -2**31 <= number < 2**31):
            raise ValueError
        return number
    except ValueError:
        _fail(f"ERROR: illegal value '{text}' specified for {kind} flag '{name}'")
        raise AssertionError("unreachable")


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise _Exit(1)


def print_double(value: float) -> str:
    """A scalar as print_evalue writes it: ostream's 6 significant digits, a trailing dot when integral."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:g}"
    integral = value == 0 or (abs(value) < 2**63 and text == str(int(value)))
    return text + "." if integral else text


def format_tensor(tensor, edge_items: int = 100) -> str:
    """print_evalue's ``tensor(sizes=[...], [...])``: every size, then the first and last ``edge_items`` values."""
    sizes = "[" + ", ".join(str(s) for s in tensor.shape) + "]"
    flat = tensor.reshape(-1).tolist()
    floating = tensor.is_floating_point()
    items = [print_double(float(v)) if floating else ("True" if v is True else "False" if v is False else str(v))
             for v in flat]
    if len(items) > 2 * edge_items:
        shown, elide_at = items[:edge_items] + items[-edge_items:], edge_items
    else:
        shown, elide_at = items, None
    per_line = 10
    if len(shown) <= per_line:  # no wrapping: one line, ", " between items, "..., " where elided
        parts = [item + (", " if n < len(shown) - 1 else "") + ("..., " if n + 1 == elide_at else "")
                 for n, item in enumerate(shown)]
        return f"tensor(sizes={sizes}, [{''.join(parts)}])"
    out, printed = ["["], 0
    for n, item in enumerate(shown):
        if printed % per_line == 0:
            out.append("\n  ")
        out.append(item + ", ")
        printed += 1
        if n + 1 == elide_at:
            out.append("\n  ...,")
            printed = per_line - edge_items % per_line
            if printed % per_line != 0:
                out.append("\n  ")
    out.append("\n]")
    return f"tensor(sizes={sizes}, {''.join(out)})"


def make_inputs(torch, method, files: list[str]):
    """The method's inputs: ones of each input's size and dtype, or the bytes of the ``--inputs`` files."""
    meta = method.method_meta()
    inputs = []
    for index in range(meta.num_inputs()):
        info = meta.input_tensor_meta(index)
        dtype = getattr(torch, _DTYPES.get(int(info.dtype()), "float32"))
        sizes = tuple(int(s) for s in info.sizes())
        if index < len(files):
            with open(files[index], "rb") as handle:
                data = bytearray(handle.read())
            tensor = torch.frombuffer(data, dtype=dtype)[: max(1, int(torch.Size(sizes).numel()))].reshape(sizes)
        else:
            tensor = torch.ones(sizes, dtype=dtype)
        inputs.append(tensor)
    return inputs


def run(argv: list[str]) -> int:
    flags, rest = parse_flags(argv)
    if rest:
        log("E", 397, "Extra commandline args: " + " ".join(rest))
        return 1
    current = _FORMAT != "1.x"
    if current and flags["print_output"] not in ("none", "summary", "all"):
        log("E", 411, f"Unknown --print_output mode '{flags['print_output']}'. Expected 'none', 'summary', or 'all'.")
        return 1
    if current and (flags["server_mode"] or flags["input_shapes"]):
        print("[loopback] --server_mode and --input_shapes are not simulated", file=sys.stderr)
        return 1

    import torch
    from executorch.extension.pybindings import _C

    global _STARTED
    _STARTED = time.monotonic()  # the log's clock starts with the runtime (et_pal_init), not with Python
    threads = flags["cpu_threads"] if flags["cpu_threads"] != -1 else (os.cpu_count() or 1)
    log("I", 425, f"Resetting threadpool with num threads = {threads}")
    if threads > 0:
        _C._unsafe_reset_threadpool(threads)
        torch.set_num_threads(threads)  # ATen's workers would otherwise spin beside the pinned thread

    files = [path for path in flags["inputs"].split(",") if path] if flags["inputs"] else []
    if files:
        log("I", 468, "Loading inputs from input file(s).")
        for path in files:
            check(os.path.isfile(path), 490, "load_status == Error::Ok", "Could not load inputs: 0x22")
    model_path = flags["model_path"]
    check(os.path.isfile(model_path), 535, "file_loader.ok()", "FileDataLoader::from() failed: 0x22")
    etdump = "etdump_path" in flags["_given"]
    before_load = time.perf_counter_ns()
    try:
        program = _C._load_program(model_path, enable_etdump=etdump, debug_buffer_size=0,
                                   data_path=flags.get("data_path") or None)
    except RuntimeError:
        log("E", 545, f"Failed to parse model file {model_path}")
        return 1
    log("I", 548, f"Model file {model_path} is loaded.")
    method_name = flags.get("method_name") or program.get_method_name(0)
    log("I", 557, f"Using method {method_name}")
    try:
        method = program.load_method(method_name)
    except RuntimeError as error:
        check(False, 668, "method.ok()", f"Loading of method {method_name} failed with status {_status(error)}")
    after_load = time.perf_counter_ns()
    if current:
        log("I", 677, f"Model loaded in {(after_load - before_load) / 1e6:f} ms.")
    else:
        log("I", 242, "Method loaded.")

    runs = flags["num_executions"]
    spent_ns = 0
    for iteration in range(1, runs + 1):
        method.set_inputs(make_inputs(torch, method, files))  # re-prepared every execution, as the real runner does
        before = time.perf_counter_ns()
        try:
            method.execute()
        except RuntimeError as error:
            check(False, 801, "status == Error::Ok", f"Execution of method {method_name} failed with status {_status(error)}")
        elapsed = time.perf_counter_ns() - before
        spent_ns += elapsed
        if current:
            log("I", 815, f"Iteration {iteration} of {runs}: {elapsed / 1e6:f} ms")
    log("I", 823, f"Model executed successfully {runs} time(s) in {spent_ns / 1e6:f} ms.")

    outputs = method.get_outputs(clone_outputs=False) if runs else []
    log("I", 831, f"{method.method_meta().num_outputs()} outputs: ")
    if current and flags["output_file"]:
        for index, tensor in enumerate(outputs):
            if isinstance(tensor, torch.Tensor):
                name = f"{flags['output_file']}-{index}.bin"
                log("I", 842, f"Writing output to file: {name}")
                with open(name, "wb") as handle:
                    handle.write(tensor.contiguous().numpy().tobytes())
    mode = flags.get("print_output", "summary")
    for index, value in enumerate(outputs):
        if mode == "all" and isinstance(value, torch.Tensor):
            kind = {torch.int32: "int", torch.float32: "float", torch.int8: "char", torch.bool: "bool"}.get(value.dtype)
            for j, item in enumerate(value.reshape(-1).tolist() if kind else []):
                shown = {"float": f"{item:f}", "bool": f"{'true ' if item else 'false'} (0x{int(item):x})"}.get(kind, item)
                print(f"Output[{index}][{j}]: ({kind}) {shown}")
        elif mode == "summary":
            text = format_tensor(value) if isinstance(value, torch.Tensor) else str(value)
            print(f"{'OutputX' if current else 'Output'} {index}: {text}")
    sys.stdout.flush()

    if etdump:
        path = flags["etdump_path"]
        try:
            program.write_etdump_result_to_file(path)
        except (RuntimeError, OSError):
            log("E", 283, f"Failed to open ETDump file at {path}.")
            check(False, 960, "status == Error::Ok", "Failed to save ETDump file.")
        log("I", 299, f"ETDump written to file '{path}'.")
    return 0


def _status(error: BaseException) -> str:
    """The runtime's error code in the bindings' message (``error: 0x:23``), as the runner prints it (``0x23``)."""
    text = str(error)
    at = text.rfind("0x")
    return "0x" + text[at + 2:].lstrip(":").split()[0] if at >= 0 else "0x1"


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except _Exit as stop:
        return stop.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
