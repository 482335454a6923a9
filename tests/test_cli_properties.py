"""Every subcommand of `bench` and `optimize`, driven with generated bad arguments and files (hypothesis).

For each subcommand, and for each example, a fresh folder holds the bad files (garbage, non-UTF-8, empty and truncated Parquet,
a LUT that lies, a table of NaN and negative times, a trace of negative current...) and the
command line is drawn from the command's own parameters, every value from a pool of bad ones
(NaN, infinities, huge or negative numbers, shell metacharacters, out-of-range ports, paths that are
folders, files, unwritable or missing).  Whatever the line, the contract holds:

* the exit code is 0, 1, 2 or 130, and a failure is one ``error:`` line on stderr;
* no traceback, and no "internal error" (the last net of :func:`harness.cli.common.run_command_line`,
  which would mean a bug);
* with ``--json``, stdout is exactly one strict JSON document (no NaN or Infinity);
* no existing file is shortened, and a command that fails leaves every file as it was.

The commands run in this process through the same entry point as the console scripts
(:func:`run_command_line`), so hundreds of cases fit in CI's minute.  A guard interrupts a case
that runs long (a line that is valid after all): it counts as Ctrl-C (130) and is reported.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.cli.app import app as bench_app
from harness.cli.common import run_command_line
from lut_rows import SIGS, row, write_lut
from optimizer.cli.app import app as optimize_app

GUARD_S = 20.0  # a case still running after this is interrupted (counted, reported)
EXAMPLES_PER_COMMAND = 25

NUMBERS = ["-1", "nan", "inf", "-inf", "1e999", "99999999999999999999", "abc", ""]
TEXTS = ["nosuch", "127.0.0.1:70000", "x;rm -rf /", "$(touch pwned)", "conv2d(n=1)", "1,2,nan", "-5ms", "ééé", "a" * 300]
FILES = ["folder", "garbage.txt", "nonutf8.txt", "empty.parquet", "broken.parquet", "lying.parquet", "bad.csv",
         "notes.json", "trace.csv", "/proc/self/nowhere/x"]
# Options that name an output folder: any plain new name would be a valid folder, and the command would
# start real work (the main job, a device server).  They draw files that are no folder only.
# Good values for some parameters, drawn now and then so that a line gets past its first check and
# reaches the deeper ones; every line still carries at least one bad value.
SIGNATURE = "add(n=1,c_in=8,h=4,w=4,c_out=8,kernel=1,stride=1,padding=0,groups=1,mid_channels=0,activation=none,dtype=fp32)"
VALID = {"device": ["xeon"], "lut": ["good.parquet"], "luts": ["good.parquet"], "plan": ["smoke"],
         "space_name": ["chamnet-mobile-mini"], "fmt": ["tflite"], "signature": [SIGNATURE], "table_path": ["table.csv"],
         "file": ["good.parquet"], "target": ["good.parquet", "b"], "inputs": ["good.parquet"], "proxy": ["a"],
         "samples": ["3"], "budget": ["1ms"], "latency": ["1ms"], "data": ["digits"], "signatures": ["net.txt"]}
FOLDER_OUTPUTS = {("optimize pipeline", "--out"), ("optimize netadapt", "--out"), ("optimize", "--out"), ("optimize dnas", "--out"),
                  ("bench energy session", "--out"), ("bench fake-device", "--sandbox")}


@dataclass(frozen=True)
class Param:
    name: str  # "--plan", or "" for a positional argument
    key: str  # the parameter's name in the code ("plan", "table_path"), which VALID is keyed by
    required: bool
    flag: bool
    many: bool  # a positional taking several values


@dataclass(frozen=True)
class Command:
    prog: str
    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def label(self) -> str:
        return " ".join((self.prog, *self.path))


def _commands() -> list[Command]:
    found = []

    def walk(prog: str, command, path: tuple[str, ...]) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(prog, child, (*path, name))
        if not children or (prog == "optimize" and not path):  # `optimize` itself is the search
            params = tuple(Param("" if p.param_type_name == "argument" else p.opts[0], p.name, bool(p.required),
                                 bool(getattr(p, "is_flag", False)), p.nargs == -1)
                           for p in command.params if p.name != "help")
            found.append(Command(prog, path, params))

    walk("bench", typer.main.get_command(bench_app), ())
    walk("optimize", typer.main.get_command(optimize_app), ())
    return found


COMMANDS = _commands()


@pytest.fixture(autouse=True, scope="module")
def _no_ray_started():
    """This test checks how commands take their arguments, not Ray: `bench farm head/join` would start real Ray
    nodes (``ray start``) that outlive a case, and a farm or cluster connection a Ray instance in this process.
    Both are refused in one line here; tests/test_farm.py and tests/test_cluster_training.py run them for real."""
    from harness.cli import farm as farm_cli
    from harness.farm import cluster as farm_cluster
    from harness.farm.cluster import FarmError

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise FarmError("no Ray in the property test")

    from optimizer.training import cluster as training_cluster

    saved = farm_cli._ray_start, farm_cluster.connect, training_cluster.connect
    farm_cli._ray_start = farm_cluster.connect = training_cluster.connect = refuse
    yield
    farm_cli._ray_start, farm_cluster.connect, training_cluster.connect = saved


@st.composite
def command_lines(draw, command: Command) -> list[str]:
    args: list[str] = list(command.path)
    optional = [p for p in command.params if not p.required]
    chosen = [p for p in command.params if p.required] + draw(st.lists(st.sampled_from(optional), unique=True, max_size=4)) \
        if optional else [p for p in command.params if p.required]
    valued = [p for p in chosen if not p.flag]
    if not valued:  # every line carries at least one bad value
        candidates = [p for p in command.params if not p.flag]
        if candidates:
            chosen.append(draw(st.sampled_from(candidates)))
    valued = [p for p in chosen if not p.flag]
    surely_bad = draw(st.sampled_from(valued)) if valued else None
    for param in chosen:
        if param.flag:
            args.append(param.name)
            continue
        folder_output = (command.label, param.name) in FOLDER_OUTPUTS
        pool = [f for f in FILES if f != "folder"] if folder_output else NUMBERS + TEXTS + FILES
        if param is not surely_bad and param.key in VALID and draw(st.sampled_from(["good", "bad"])) == "good":
            pool = VALID[param.key]
        values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2 if param.many else 1))
        if param.name:
            args += [param.name, values[0]]
        else:
            args += values
    return args


def _bad_files(folder: Path) -> None:
    (folder / "folder").mkdir()
    (folder / "garbage.txt").write_text("this is not what any command reads\n")
    (folder / "nonutf8.txt").write_bytes(b"\xff\xfe\x00\x81 not text\n")
    (folder / "empty.parquet").write_bytes(b"")
    good = write_lut(folder / "good.parquet", [row(s) for s in SIGS])
    (folder / "broken.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    table = pq.read_table(good)  # a LUT that lies: NaN and a negative time, written past our own writer
    medians = table.column("median_us").to_pylist()
    medians[0], medians[1] = float("nan"), -5.0
    pq.write_table(table.set_column(table.schema.get_field_index("median_us"), "median_us", pa.array(medians)),
                   folder / "lying.parquet")
    (folder / "table.csv").write_text("arch_id,g,latency_ms:a,latency_ms:b\n"
                                      + "".join(f"n{i},{i % 3},{1 + i},{2 + (i * 7) % 12}\n" for i in range(12)))
    (folder / "net.txt").write_text(SIGNATURE + "\n")
    (folder / "bad.csv").write_text("arch_id,g,latency_ms:a,latency_ms:b,accuracy\nn0,1,nan,-1,inf\nn1,2,1e999,0,2\nn1,x,,,\n")
    (folder / "notes.json").write_text("{}\n")
    (folder / "trace.csv").write_text("time_s,current_mA,voltage_V\n" + "".join(f"{i / 5000},{-300},4.2\n" for i in range(2000)))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class _Guard(Exception):
    pass


@contextlib.contextmanager
def _time_guard(seconds: float):
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


STATS = {"cases": 0, "by_code": {}, "guarded": [], "commands": set()}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.label.replace(" ", "-"))
@settings(max_examples=EXAMPLES_PER_COMMAND, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_command_line_breaks_the_contract(command: Command, data) -> None:
    args = data.draw(command_lines(command))
    app = bench_app if command.prog == "bench" else optimize_app
    with tempfile.TemporaryDirectory(prefix="chameleon-prop-") as tmp:
        folder = Path(tmp)
        _bad_files(folder)
        before = _snapshot(folder)
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _time_guard(GUARD_S):
                code = run_command_line(app, args, command.prog)
        finally:
            os.chdir(cwd)
        after = _snapshot(folder)
    stdout, stderr = out.getvalue(), err.getvalue()
    line = f"{command.prog} {' '.join(args)!r}"
    STATS["cases"] += 1
    STATS["commands"].add(command.label)
    STATS["by_code"][code] = STATS["by_code"].get(code, 0) + 1
    assert code in (0, 1, 2, 130), (line, code, stderr[-2000:])
    assert "Traceback" not in stderr and "internal error" not in stderr, (line, stderr[-2000:])
    if code == 2:
        errors = [text for text in stderr.splitlines() if text.startswith("error:")]
        assert len(errors) == 1, (line, stderr[-2000:])
    if code == 130 and "error:" not in stderr:
        STATS["guarded"].append(line)
    if "--json" in args:
        _strict_json(stdout)  # exactly one strict document (json.loads refuses trailing text)
    for name, content in before.items():
        assert name in after and len(after[name]) >= len(content), (line, f"{name} was shortened or removed")
        if code != 0:
            assert after[name] == content, (line, f"{name} was changed by a command that failed")


def test_the_property_test_covered_every_subcommand() -> None:
    """Run after the property test (file order): every subcommand was drawn, few cases hit the guard."""
    if STATS["cases"] == 0:
        pytest.skip("run with the property test")
    print(f"\n{STATS['cases']} command lines over {len(STATS['commands'])} subcommands; exit codes {STATS['by_code']}; "
          f"{len(STATS['guarded'])} interrupted by the {GUARD_S:g} s guard: {STATS['guarded']}")
    assert STATS["commands"] == {c.label for c in COMMANDS}
    assert len(STATS["guarded"]) <= 2, STATS["guarded"]
