"""Sweep plans: YAML files naming the operator signatures a sweep measures.

A plan has a ``name``, an optional ``description``, the plan's default
``dtypes``, and up to three sections, expanded in this order:

``entries``
    grids of signatures: every field of :func:`harness.signature.make_signature`
    (plus ``expansion`` for an inverted residual); a list means one signature
    per value (cartesian product over all listed fields); ``w: same`` takes h's
    value and ``c_out: same`` takes c_in's.
``signatures``
    explicit signatures in their stable string form.
``generators``
    whole search spaces; ``mobilenet_v2_stages`` expands a MobileNetV2-style
    stage table (ChamNet-Mobile, Table 1) into every distinct signature that
    any architecture of the space can contain.

The result is a :class:`Plan` whose signatures are ordered, without
duplicates (the first occurrence is kept).  ``benchmarks/plans/README.md``
documents the format for users.

Every problem is an :class:`~harness.errors.InvalidPlan` with one line:
``plan FILE: WHERE: PROBLEM``, where WHERE is a path into the file such as
``entries[2]`` or ``generators[0].mobilenet_v2_stages.stages[3].c`` (list
indices count from 0) or a line number for YAML syntax errors.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from harness import paths
from harness.errors import ChameleonError, InvalidPlan, InvalidSignature
from harness.textfiles import UnreadableText, read_utf8
from harness.signature import ALL_KINDS, CONV2D, DTYPES, FC, GLOBAL_AVGPOOL, INVERTED_RESIDUAL, POINTWISE_CONV, OpSignature, make_signature, parse_signature

PLAN_SUFFIX = ".yaml"
TOP_LEVEL_KEYS: tuple[str, ...] = ("name", "description", "dtypes", "entries", "signatures", "generators")
DEFAULT_DTYPES: tuple[str, ...] = ("fp32",)

# Entry fields, in the order the grid's product runs (the last varies fastest).
ENTRY_FIELDS: tuple[str, ...] = (
    "kind", "n", "c_in", "h", "w", "c_out", "kernel", "stride", "padding",
    "groups", "mid_channels", "expansion", "activation", "dtype",
)
_STRING_FIELDS = frozenset({"kind", "activation", "dtype"})
# `FIELD: same` copies another field's value (per combination of the grid).
SAME_AS: dict[str, str] = {"w": "h", "c_out": "c_in"}

# A guard against a typo that would expand to billions of signatures.
MAX_SIGNATURES = 2_000_000


@dataclass(frozen=True)
class Plan:
    """A loaded sweep plan: the signatures to measure, in order, without duplicates."""

    name: str
    description: str
    source: Path
    signatures: tuple[OpSignature, ...]


# ------------------------------------------------------------------ public API
def available_plans(plans_dir: Path | None = None) -> list[str]:
    """Names of the built-in plans (``*.yaml`` files in the plans folder), sorted."""
    folder = Path(plans_dir) if plans_dir is not None else paths.plans_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{PLAN_SUFFIX}") if p.is_file())


def load_plan(name_or_path: str | Path, plans_dir: Path | None = None) -> Plan:
    """Load a plan from a path to a YAML file or by built-in name (``plans_dir()/NAME.yaml``).

    An existing file wins over a built-in of the same name.  Raises
    :class:`InvalidPlan` (one line naming the file) for any problem.
    """
    folder = Path(plans_dir) if plans_dir is not None else paths.plans_dir()
    path = _resolve(name_or_path, folder)
    label = str(path)
    try:
        text = _read(path)
        data = _parse_yaml(text)
        return _build_plan(data, path.resolve())
    except _Problem as problem:
        raise InvalidPlan(f"plan {label}: {problem.where}: {problem.problem}") from None


def count_by_kind(plan: Plan) -> dict[str, int]:
    """How many signatures of each kind the plan holds (kinds present, in ALL_KINDS order)."""
    counts = Counter(sig.kind for sig in plan.signatures)
    return {kind: counts[kind] for kind in ALL_KINDS if counts[kind]}


@dataclass(frozen=True)
class PlanSummary:
    """What ``bench plans`` lists of a plan: its size by kind, without its signatures."""

    name: str
    description: str
    source: Path
    signatures: int
    by_kind: dict[str, int]


def summarize_plan(name_or_path: str | Path, plans_dir: Path | None = None) -> PlanSummary:
    """A plan's size by kind, cached by the plan file's content (``$CHAMELEON_CACHE/plan-summaries.json``).

    Expanding the chamnet-mobile plan builds 82,954 validated signatures (seconds); listing the
    plans should not.  The cache key is the file's bytes and the harness version, so an edited plan
    or a new vocabulary is expanded again.
    """
    import hashlib
    import json

    from harness import __version__
    from harness.atomic import write_text_atomically

    folder = Path(plans_dir) if plans_dir is not None else paths.plans_dir()
    path = _resolve(name_or_path, folder)
    try:
        key = hashlib.sha256(path.read_bytes() + __version__.encode()).hexdigest()
    except OSError:
        key = None  # unreadable: load_plan below says why in one line
    cache = paths.cache_dir() / "plan-summaries.json"
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        known = {}
    if key is not None and key in known:
        entry = known[key]
        return PlanSummary(entry["name"], entry["description"], path.resolve(), entry["signatures"], entry["by_kind"])
    plan = load_plan(name_or_path, plans_dir)
    summary = PlanSummary(plan.name, plan.description, plan.source, len(plan.signatures), count_by_kind(plan))
    if key is not None:
        known[key] = {"name": summary.name, "description": summary.description, "signatures": summary.signatures,
                      "by_kind": summary.by_kind}
        try:  # a cache that cannot be written only costs the next listing its seconds
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(cache, json.dumps(known, indent=1) + "\n")
        except (OSError, ChameleonError):
            pass
    return summary


# ------------------------------------------------------------------- locating
class _Problem(Exception):
    """A problem at a place in the plan; load_plan adds the file name."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _resolve(name_or_path: str | Path, folder: Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    looks_like_path = (
        isinstance(name_or_path, Path)
        or len(path.parts) != 1
        or path.suffix in (".yaml", ".yml")
        or str(name_or_path) in ("", ".", "..")
    )
    if not looks_like_path:
        builtin = folder / f"{name_or_path}{PLAN_SUFFIX}"
        if builtin.is_file():
            return builtin
        known = ", ".join(available_plans(folder)) or "none"
        raise InvalidPlan(f"unknown plan {str(name_or_path)!r} (built-in: {known}; or give a path to a .yaml file)")
    if len(path.parts) == 1 and (folder / path.name).is_file():
        return folder / path.name  # "smoke.yaml" names the built-in too
    return path  # does not exist (or is not a file): _read says so


def _read(path: Path) -> str:
    try:
        return read_utf8(path)
    except UnreadableText as err:
        raise _Problem("cannot read", err.reason) from None


# ----------------------------------------------------------------------- YAML
class _PlanLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (YAML would keep the last silently)."""


def _construct_mapping(loader: _PlanLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # SafeLoader reports unhashable keys itself
        if key in first_line:
            mark = key_node.start_mark
            raise _Problem(f"line {mark.line + 1}, column {mark.column + 1}",
                           f"duplicate key {key!r} (first given on line {first_line[key]})")
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_PlanLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_PlanLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        raise _Problem(where, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise _Problem("YAML", f"YAML syntax error: {exc}") from None


# ---------------------------------------------------------------------- plan
def _build_plan(data: Any, source: Path) -> Plan:
    if data is None:
        raise _Problem("top level", "the file is empty; a plan is a mapping with at least 'name'")
    if not isinstance(data, Mapping):
        raise _Problem("top level", f"a plan must be a mapping (name:, entries:, ...), got {_describe(data)}")
    _reject_unknown("top level", data, TOP_LEVEL_KEYS, "key")
    if "name" not in data:
        raise _Problem("top level", "missing required key 'name'")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise _Problem("name", f"expected a non-empty string, got {_describe(name)}")
    description = data.get("description")
    if description is None:
        description = ""
    elif not isinstance(description, str):
        raise _Problem("description", f"expected a string, got {_describe(description)}")
    dtypes = _dtypes(data.get("dtypes"))

    seen: dict[OpSignature, None] = {}  # an ordered set
    for index, entry in enumerate(_section(data, "entries")):
        for sig in _expand_entry(entry, f"entries[{index}]", dtypes):
            seen.setdefault(sig, None)
    for index, text in enumerate(_section(data, "signatures")):
        seen.setdefault(_explicit_signature(text, f"signatures[{index}]"), None)
    for index, generator in enumerate(_section(data, "generators")):
        for sig in _run_generator(generator, f"generators[{index}]", dtypes):
            seen.setdefault(sig, None)
    if not seen:
        raise _Problem("top level", "the plan names no signatures (entries, signatures and generators are all empty or absent)")
    if len(seen) > MAX_SIGNATURES:
        raise _Problem("top level", f"the plan expands to {len(seen)} signatures, more than the limit of {MAX_SIGNATURES}")
    return Plan(name=name.strip(), description=description.strip(), source=source, signatures=tuple(seen))


def _dtypes(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_DTYPES
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise _Problem("dtypes", f"expected a dtype or a non-empty list of dtypes ({', '.join(DTYPES)}), got {_describe(value)}")
    out: list[str] = []
    for index, dtype in enumerate(values):
        if dtype not in DTYPES:
            raise _Problem(f"dtypes[{index}]", f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if dtype not in out:
            out.append(dtype)
    return tuple(out)


def _section(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Problem(key, f"expected a list, got {_describe(value)}")
    return value


def _explicit_signature(text: Any, where: str) -> OpSignature:
    if not isinstance(text, str):
        raise _Problem(where, f"expected a signature string such as 'conv2d(n=1,c_in=3,...)', got {_describe(text)}")
    try:
        return parse_signature(text)
    except InvalidSignature as exc:
        raise _Problem(where, str(exc)) from None


# ---------------------------------------------------------------- grid entries
def _expand_entry(entry: Any, where: str, dtypes: tuple[str, ...]) -> list[OpSignature]:
    if not isinstance(entry, Mapping):
        raise _Problem(where, f"an entry must be a mapping of field: value, got {_describe(entry)}")
    _reject_unknown(where, entry, ENTRY_FIELDS, "field")
    if "kind" not in entry:
        raise _Problem(where, f"missing field 'kind' (one of {', '.join(ALL_KINDS)})")

    axes: list[tuple[str, list[Any]]] = []
    same: list[str] = []
    for field in ENTRY_FIELDS:
        if field not in entry:
            continue
        value = entry[field]
        if value == "same":
            if field not in SAME_AS:
                allowed = ", ".join(f"{a} (= {b})" for a, b in SAME_AS.items())
                raise _Problem(f"{where}.{field}", f"'same' is only allowed for {allowed}")
            if SAME_AS[field] not in entry:
                raise _Problem(f"{where}.{field}", f"'same' copies {SAME_AS[field]}, which the entry does not give")
            same.append(field)
            continue
        axes.append((field, _grid_values(field, value, f"{where}.{field}")))
    if "dtype" not in entry:
        axes.append(("dtype", list(dtypes)))

    if "expansion" in entry:
        if "mid_channels" in entry:
            raise _Problem(where, "give expansion or mid_channels, not both (mid_channels = c_in * expansion)")
        if "c_in" not in entry:
            raise _Problem(where, "expansion needs c_in (mid_channels = c_in * expansion)")
        other = [k for k in dict(axes)["kind"] if k != INVERTED_RESIDUAL]
        if other:
            raise _Problem(f"{where}.expansion", f"applies to inverted_residual only, not {other[0]}")
    if "h" in entry and "w" not in entry and any(k != FC for k in dict(axes)["kind"]):
        raise _Problem(where, "missing field 'w' (write 'w: same' for square inputs)")

    size = math.prod(len(values) for _, values in axes)
    if size > MAX_SIGNATURES:
        raise _Problem(where, f"the grid expands to {size} signatures, more than the limit of {MAX_SIGNATURES}")

    names = [field for field, _ in axes]
    out: list[OpSignature] = []
    for combo in itertools.product(*(values for _, values in axes)):
        values = dict(zip(names, combo))
        for field in same:
            values[field] = values[SAME_AS[field]]
        kind = values.pop("kind")
        expansion = values.pop("expansion", None)
        if expansion is not None:
            values["mid_channels"] = values["c_in"] * expansion
        try:
            out.append(make_signature(kind, **values))
        except InvalidSignature as exc:
            raise _Problem(where, str(exc)) from None
    return out


def _grid_values(field: str, value: Any, where: str) -> list[Any]:
    check: Callable[[Any], bool]
    if field in _STRING_FIELDS:
        check, wanted = (lambda v: isinstance(v, str)), "a string"
    else:
        check, wanted = _is_int, "an integer"
    if isinstance(value, list):
        if not value:
            raise _Problem(where, f"empty list; give {wanted} or a non-empty list")
        for index, item in enumerate(value):
            if not check(item):
                raise _Problem(f"{where}[{index}]", f"expected {wanted}, got {_describe(item)}")
        values = list(dict.fromkeys(value))
    elif check(value):
        values = [value]
    else:
        raise _Problem(where, f"expected {wanted} or a list of them, got {_describe(value)}")
    if field == "expansion":
        for item in values:
            if item < 1:
                raise _Problem(where, f"expansion must be >= 1, got {item}")
    return values


# ------------------------------------------------------------------ generators
def _run_generator(generator: Any, where: str, dtypes: tuple[str, ...]) -> list[OpSignature]:
    if not isinstance(generator, Mapping) or len(generator) != 1:
        raise _Problem(where, f"a generator is a mapping with one key, the generator's name "
                              f"({', '.join(GENERATORS)}), got {_describe(generator)}")
    (gen_name, params), = generator.items()
    if gen_name not in GENERATORS:
        raise _Problem(where, f"unknown generator {gen_name!r}{_did_you_mean(gen_name, GENERATORS)} "
                              f"(known: {', '.join(GENERATORS)})")
    return GENERATORS[gen_name](params, f"{where}.{gen_name}", dtypes)


# Per stage op: the parameters it accepts and those it requires.
_STAGE_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    CONV2D: (frozenset({"op", "c", "n", "s", "k", "activation"}), frozenset({"c", "k"})),
    POINTWISE_CONV: (frozenset({"op", "c", "n", "s", "k", "activation"}), frozenset({"c"})),
    INVERTED_RESIDUAL: (frozenset({"op", "t", "c", "n", "s", "k", "activation"}), frozenset({"t", "c"})),
    GLOBAL_AVGPOOL: (frozenset({"op", "n"}), frozenset()),
    FC: (frozenset({"op", "c", "n", "activation"}), frozenset({"c"})),
}
_STAGE_PARAM_ORDER = ("op", "t", "c", "n", "s", "k", "activation")
_GENERATOR_KEYS = ("resolutions", "channel_step", "input_channels", "stages")

# (kind, c_in, h, c_out, kernel, stride, padding, mid_channels, activation): a
# square, batch-1, ungrouped signature without its dtype.
_Unit = tuple[str, int, int, int, int, int, int, int, str]


def mobilenet_v2_stages(params: Any, where: str, dtypes: tuple[str, ...]) -> list[OpSignature]:
    """Every distinct signature any architecture of a MobileNetV2-style stage table contains.

    ``params`` holds ``resolutions`` (a list), ``channel_step`` (default 8),
    ``input_channels`` (default 3) and ``stages``, each ``{op, t, c, n, s, k,
    activation}``; ``[a, b]`` is an inclusive range (channels in steps of
    channel_step, t and n in steps of 1), a scalar is fixed.  A stage's first
    block takes any output width of the previous stage and the stage's stride;
    its other blocks (only when n can reach 2) map c -> c with stride 1.  t is
    shared by the blocks of a stage; mid_channels = c_in * t.  A stage with
    ``op: conv2d`` emits kind conv2d (also with k: 1); ``op: pointwise_conv``
    emits kind pointwise_conv.  Order: resolution by resolution, stage by
    stage, each stage's new signatures sorted, dtype fastest.
    """
    if not isinstance(params, Mapping):
        raise _Problem(where, f"expected a mapping of {', '.join(_GENERATOR_KEYS)}, got {_describe(params)}")
    _reject_unknown(where, params, _GENERATOR_KEYS, "key")
    for key in ("resolutions", "stages"):
        if key not in params:
            raise _Problem(where, f"missing required key {key!r}")
    resolutions = params["resolutions"]
    if isinstance(resolutions, int) and not isinstance(resolutions, bool):
        resolutions = [resolutions]
    if not isinstance(resolutions, list) or not resolutions:
        raise _Problem(f"{where}.resolutions", f"expected a non-empty list of input sizes, got {_describe(resolutions)}")
    for index, res in enumerate(resolutions):
        if not _is_int(res) or res < 1:
            raise _Problem(f"{where}.resolutions[{index}]", f"expected a positive integer, got {_describe(res)}")
    step = _positive(params.get("channel_step", 8), f"{where}.channel_step")
    input_channels = _positive(params.get("input_channels", 3), f"{where}.input_channels")
    stages_raw = params["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        raise _Problem(f"{where}.stages", f"expected a non-empty list of stages, got {_describe(stages_raw)}")
    stages = [_parse_stage(stage, f"{where}.stages[{i}]", step) for i, stage in enumerate(stages_raw)]

    seen: set[_Unit] = set()
    out: list[OpSignature] = []
    for res in dict.fromkeys(resolutions):
        channels: Sequence[int] = (input_channels,)
        size = res
        for index, stage in enumerate(stages):
            stage_where = f"{where}.stages[{index}]"
            units, channels, size = _stage_units(stage, channels, size, stage_where, res)
            new = sorted(units - seen)
            if len(seen) + len(new) > MAX_SIGNATURES:
                raise _Problem(stage_where, f"the generator expands to more than {MAX_SIGNATURES} signatures")
            seen.update(new)
            for kind, c_in, h, c_out, kernel, stride, padding, mid, act in new:
                for dtype in dtypes:
                    try:
                        out.append(OpSignature(kind=kind, n=1, c_in=c_in, h=h, w=h, c_out=c_out, kernel=kernel,
                                               stride=stride, padding=padding, groups=1, mid_channels=mid,
                                               activation=act, dtype=dtype))
                    except InvalidSignature as exc:
                        raise _Problem(f"{stage_where} (resolution {res})", str(exc)) from None
    return out


GENERATORS: dict[str, Callable[[Any, str, tuple[str, ...]], list[OpSignature]]] = {
    "mobilenet_v2_stages": mobilenet_v2_stages,
}


@dataclass(frozen=True)
class _Stage:
    op: str
    t: tuple[int, ...]
    c: tuple[int, ...]
    repeats: bool  # n can reach 2: blocks c -> c with stride 1 exist
    s: int
    k: int
    activation: str


def _parse_stage(stage: Any, where: str, step: int) -> _Stage:
    if not isinstance(stage, Mapping):
        raise _Problem(where, f"a stage must be a mapping {{op, t, c, n, s, k, activation}}, got {_describe(stage)}")
    if "op" not in stage:
        raise _Problem(where, f"missing 'op' (one of {', '.join(_STAGE_PARAMS)})")
    op = stage["op"]
    if not isinstance(op, str) or op not in _STAGE_PARAMS:
        raise _Problem(f"{where}.op", f"unknown stage op {op!r}{_did_you_mean(op, _STAGE_PARAMS)} "
                                      f"(known: {', '.join(_STAGE_PARAMS)})")
    allowed, required = _STAGE_PARAMS[op]
    _reject_unknown(where, stage, [p for p in _STAGE_PARAM_ORDER if p in allowed], f"parameter for {op}")
    for param in _STAGE_PARAM_ORDER:
        if param in required and param not in stage:
            raise _Problem(where, f"{op} stage needs {param!r}")
    c = _stage_range(stage["c"], f"{where}.c", step) if "c" in stage else ()
    t = _stage_range(stage["t"], f"{where}.t", 1) if "t" in stage else (1,)
    n = _stage_range(stage.get("n", 1), f"{where}.n", 1)
    s = _positive(stage.get("s", 1), f"{where}.s", "a fixed stride (ranges are not supported)")
    k = _positive(stage.get("k", 3 if op == INVERTED_RESIDUAL else 1), f"{where}.k",
                  "a fixed kernel size (ranges are not supported)")
    if k % 2 == 0:
        raise _Problem(f"{where}.k", f"kernel must be odd (so that stride-1 blocks keep the size), got {k}")
    if op == POINTWISE_CONV and k != 1:
        raise _Problem(f"{where}.k", f"a pointwise conv has kernel 1, got {k}")
    if op in (GLOBAL_AVGPOOL, FC) and n != (1,):
        raise _Problem(f"{where}.n", f"{op} occurs once: n must be 1, got {list(n)}")
    default_act = "relu6" if op == INVERTED_RESIDUAL else "none"
    activation = stage.get("activation", default_act)
    if not isinstance(activation, str):
        raise _Problem(f"{where}.activation", f"expected a string, got {_describe(activation)}")
    return _Stage(op=op, t=t, c=c, repeats=max(n) >= 2, s=s, k=k, activation=activation)


def _stage_units(stage: _Stage, channels: Sequence[int], size: int, where: str,
                 res: int) -> tuple[set[_Unit], Sequence[int], int]:
    """The stage's units for inputs of any width in ``channels`` at ``size``; its output widths and size."""
    op, k, s, act = stage.op, stage.k, stage.s, stage.activation
    if op == GLOBAL_AVGPOOL:
        return {(op, c, size, c, 1, 1, 0, 0, "none") for c in channels}, channels, 1
    if op == FC:
        if size != 1:
            raise _Problem(f"{where} (resolution {res})",
                           f"fc takes a 1x1 input but the previous stage outputs {size}x{size}; put a global_avgpool before it")
        return {(op, ci, 1, co, 1, 1, 0, 0, act) for ci in channels for co in stage.c}, stage.c, 1
    padding = k // 2
    out_size = (size + 2 * padding - k) // s + 1
    if out_size < 1:
        raise _Problem(f"{where} (resolution {res})", f"kernel {k} with stride {s} does not fit input size {size}")
    if op == INVERTED_RESIDUAL:
        units = {(op, ci, size, co, k, s, padding, ci * t, act)
                 for ci in channels for co in stage.c for t in stage.t}
        if stage.repeats:
            units.update((op, c, out_size, c, k, 1, padding, c * t, act) for c in stage.c for t in stage.t)
    else:  # conv2d, pointwise_conv
        units = {(op, ci, size, co, k, s, padding, 0, act) for ci in channels for co in stage.c}
        if stage.repeats:
            units.update((op, c, out_size, c, k, 1, padding, 0, act) for c in stage.c)
    return units, stage.c, out_size


def _stage_range(value: Any, where: str, step: int) -> tuple[int, ...]:
    if _is_int(value):
        if value < 1:
            raise _Problem(where, f"must be >= 1, got {value}")
        return (value,)
    if (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        low, high = value
        if low < 1 or high < low:
            raise _Problem(where, f"a range [low, high] needs 1 <= low <= high, got {value}")
        if (high - low) % step:
            raise _Problem(where, f"range {value} does not end on a step of {step} from {low}")
        return tuple(range(low, high + 1, step))
    raise _Problem(where, f"expected an integer or an inclusive range [low, high], got {_describe(value)}")


# ---------------------------------------------------------------------- helpers
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any, where: str, wanted: str = "a positive integer") -> int:
    if not _is_int(value) or value < 1:
        raise _Problem(where, f"expected {wanted}, got {_describe(value)}")
    return value


def _reject_unknown(where: str, mapping: Mapping[Any, Any], known: Sequence[str], what: str) -> None:
    for key in mapping:
        if key not in known:
            raise _Problem(where, f"unknown {what} {key!r}{_did_you_mean(key, known)} (known: {', '.join(known)})")


def _did_you_mean(key: Any, known: Sequence[str] | Mapping[str, Any]) -> str:
    if not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(value: Any) -> str:
    """A short one-line rendering of a YAML value for messages."""
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return text
    return f"{type(value).__name__} {text}"
