"""Import Once-for-All's per-operator latency lookup tables (YAML, one file per resolution) into a LUT.

OFA (Cai et al., ICLR 2020; mit-han-lab/once-for-all) publishes, per device, one
YAML file per input resolution (``160_lookup_table.yaml`` ... ``224_lookup_table.yaml``)
mapping an operator key to the statistics of its latency in milliseconds::

    expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0:
      count: 50
      mean: 1.234
      std: 0.012

A key is the op type, then ``-``-separated ``name:value`` fields; shapes are
``HxWxC`` (``Logits``' output: the class count).  The keys map to signatures
(fp32, n = 1) as OFA's network is built:

=============== =================================================================
OFA op type      signature
=============== =================================================================
``Conv``         the first conv: conv2d 3x3, padding 1, stride from the shapes
                 (2 when the output is ``(H - 1) // 2 + 1``), h-swish (relu6 in
                 the ProxylessNAS grammar)
``expanded_conv`` ``inverted_residual``, or ``inverted_residual_se`` when ``se:1``;
                 kernel, stride from the key; ``hs:1`` → hardswish, else relu
                 (relu6 in the ProxylessNAS grammar); ``expand`` → mid_channels
                 (see below); ``idskip`` must be the residual our block adds
                 (stride 1 and c_in = c_out)
``Conv_1``       conv2d 1x1 (the final expand layer; ProxylessNAS: the feature mix), h-swish / relu6
``Conv_2``       conv2d 1x1 on the pooled 1x1 map (the feature mix layer), h-swish
``AvgPool2D``    global_avgpool (output 1x1xC)
``Logits``       fc, when its input is 1x1xC (MobileNetV3); the ProxylessNAS
                 table's ``Logits`` over a 7x7 map is pooling and fc in one
                 entry, which no signature is: skipped
=============== =================================================================

Two grammars exist.  MobileNetV3 tables (``MBv3LatencyTable``) give
``expanded_conv`` keys ``se`` and ``hs`` fields, and their ``expand`` is the
expanded *width*; ProxylessNAS tables (``mobile_trim.yaml``) have no ``se`` and
``hs``, and their ``expand`` is the expansion *ratio* (mid_channels = c_in ·
expand).  A file is read in the MobileNetV3 grammar when one of its
``expanded_conv`` keys has ``se`` or ``hs`` (or it has none), else in the
ProxylessNAS one.

Statistics: OFA keeps the mean, std and count of its runs only, so ``median_us``
is the mean (ms × 1000), ``mean_us`` and ``std_us`` the mean and std, ``cv``
std / mean, ``runs`` the count (0 when absent), ``min_us`` the mean (unknown);
the row's ``harness_version`` says "import of FILE (OFA mean as median)".  A
signature given by several keys or files (``Conv_2`` and ``Logits`` are in every
resolution's file) gets one row whose mean and std pool all their runs, weighted
by count.

A key that cannot be mapped (an op type outside the vocabulary, a pooling-and-fc
``Logits``, shapes that do not chain) is skipped and counted by reason, with
its first key as an example; a file that is not such a table (not YAML, not a
mapping of keys to statistics, a key without a ``:``-field grammar, a mean that
is not a non-negative number) is one :class:`OfaLutError` line naming the file
and key, and so is a table of which no key maps.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness import __version__ as harness_version
from harness.errors import ChameleonError, InvalidSignature
from harness.lut import store as lut_store
from harness.signature import (
    CONV2D,
    FC,
    GLOBAL_AVGPOOL,
    INVERTED_RESIDUAL,
    INVERTED_RESIDUAL_SE,
    OpSignature,
    make_signature,
)
from harness.textfiles import UnreadableText, read_utf8


class OfaLutError(ChameleonError):
    """A file that is not a readable OFA latency lookup table."""


MBV3, PROXYLESS = "mbv3", "proxylessnas"
MS_TO_US = 1000.0
_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")


class Unmapped(Exception):
    """A well-formed key with no signature; the message is the skip reason (without the key)."""


@dataclass
class OfaImportResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0  # keys read, all files
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, str] = field(default_factory=dict)  # reason -> its first key
    pooled: int = 0  # signatures given by more than one key or file
    grammars: dict[str, str] = field(default_factory=dict)  # file -> grammar it was read in


@dataclass
class _Stats:
    """The runs of one signature so far: count-weighted sums of the means and of the second moments."""

    weight: float = 0.0
    mean_sum: float = 0.0
    square_sum: float = 0.0
    std_known: bool = True
    count: int = 0
    keys: int = 0

    def add(self, mean_ms: float, std_ms: float | None, count: int | None) -> None:
        w = float(count) if count else 1.0
        self.weight += w
        self.mean_sum += w * mean_ms
        self.square_sum += w * ((std_ms or 0.0) ** 2 + mean_ms ** 2)
        self.std_known = self.std_known and std_ms is not None
        self.count += int(count or 0)
        self.keys += 1

    @property
    def mean_ms(self) -> float:
        return self.mean_sum / self.weight

    @property
    def std_ms(self) -> float | None:
        if not self.std_known:
            return None
        return math.sqrt(max(self.square_sum / self.weight - self.mean_ms ** 2, 0.0))


# ------------------------------------------------------------------ keys
def parse_ofa_key(key: str) -> tuple[str, dict[str, str]]:
    """``'Conv-input:224x224x3-output:112x112x24'`` → ``('Conv', {'input': '224x224x3', 'output': '112x112x24'})``.

    Raises ValueError for a key that does not follow the grammar.
    """
    op_type, *parts = key.split("-")
    if not op_type or not parts:
        raise ValueError("expected TYPE-name:value-...")
    fields: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or not name or not value:
            raise ValueError(f"{part!r} is not name:value")
        if name in fields:
            raise ValueError(f"field {name!r} given twice")
        fields[name] = value
    return op_type, fields


def _shape(fields: dict[str, str], name: str) -> tuple[int, ...]:
    value = fields.get(name)
    if value is None:
        raise ValueError(f"no {name} field")
    if not _SHAPE_RE.match(value):
        raise ValueError(f"{name}:{value} is not a shape like 56x56x24")
    return tuple(int(v) for v in value.split("x"))


def _int_field(fields: dict[str, str], name: str) -> int:
    value = fields.get(name)
    if value is None or not value.isdigit():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _hwc(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise Unmapped(f"{what} shape is not HxWxC")
    return shape[0], shape[1], shape[2]


def signature_of_key(key: str, grammar: str = MBV3) -> OpSignature:
    """The signature of one OFA key (fp32, n = 1).

    Raises ValueError for a malformed key, :class:`Unmapped` (its message the
    reason) for a well-formed key with no signature.
    """
    op_type, fields = parse_ofa_key(key)
    if op_type == "expanded_conv":
        return _expanded_conv(fields, grammar)
    if op_type not in ("Conv", "Conv_1", "Conv_2", "AvgPool2D", "Logits"):
        raise Unmapped(f"op type {op_type} not in the vocabulary")
    shape_in, shape_out = _shape(fields, "input"), _shape(fields, "output")
    if op_type == "Logits":
        if len(shape_out) != 1:
            raise Unmapped("Logits with an output that is not a class count")
        h, w, c = _hwc(shape_in, "Logits input")
        if (h, w) != (1, 1):
            raise Unmapped("Logits over an HxW map (pooling and fc in one entry)")
        return make_signature(FC, c_in=c, c_out=shape_out[0])
    h, w, c_in = _hwc(shape_in, f"{op_type} input")
    h_out, w_out, c_out = _hwc(shape_out, f"{op_type} output")
    if op_type == "AvgPool2D":
        if (h_out, w_out) != (1, 1) or c_out != c_in:
            raise Unmapped("AvgPool2D that is not a global pooling")
        return make_signature(GLOBAL_AVGPOOL, c_in=c_in, h=h, w=w)
    activation = "hardswish" if grammar == MBV3 else "relu6"
    if op_type == "Conv":
        stride = next((s for s in (2, 1) if (h_out, w_out) == ((h - 1) // s + 1, (w - 1) // s + 1)), None)
        if stride is None:
            raise Unmapped("Conv whose output size is no 3x3 stride-1 or -2 conv's")
        return make_signature(CONV2D, c_in=c_in, h=h, w=w, c_out=c_out, kernel=3, stride=stride, activation=activation)
    if (h_out, w_out) != (h, w):
        raise Unmapped(f"{op_type} (a 1x1 conv) that changes the spatial size")
    return make_signature(CONV2D, c_in=c_in, h=h, w=w, c_out=c_out, kernel=1, activation=activation)


def _expanded_conv(fields: dict[str, str], grammar: str) -> OpSignature:
    h, w, c_in = _hwc(_shape(fields, "input"), "expanded_conv input")
    h_out, w_out, c_out = _hwc(_shape(fields, "output"), "expanded_conv output")
    expand, kernel = _int_field(fields, "expand"), _int_field(fields, "kernel")
    stride, idskip = _int_field(fields, "stride"), _int_field(fields, "idskip")
    se = _int_field(fields, "se") if "se" in fields else 0
    hs = _int_field(fields, "hs") if "hs" in fields else 0
    if grammar == MBV3:
        mid, activation = expand, ("hardswish" if hs else "relu")
    else:
        mid, activation = c_in * expand, "relu6"
    if stride < 1 or (h_out, w_out) != ((h - 1) // stride + 1, (w - 1) // stride + 1):
        raise Unmapped("expanded_conv whose output size is not its stride's")
    try:
        sig = make_signature(INVERTED_RESIDUAL_SE if se else INVERTED_RESIDUAL, c_in=c_in, h=h, w=w, c_out=c_out,
                             kernel=kernel, stride=stride, mid_channels=mid, activation=activation)
    except InvalidSignature as err:
        raise Unmapped(f"expanded_conv outside the vocabulary ({str(err).split(': ', 1)[-1]})") from None
    if bool(idskip) != sig.has_residual:
        raise Unmapped("expanded_conv whose idskip is not the residual its shapes allow")
    return sig


def grammar_of(keys: Iterable[str]) -> str:
    """MBV3 when an ``expanded_conv`` key has ``se`` or ``hs`` fields (or there is none), else PROXYLESS."""
    expanded = [k for k in keys if k.startswith("expanded_conv-")]
    if not expanded or any("-se:" in k or "-hs:" in k for k in expanded):
        return MBV3
    return PROXYLESS


# ------------------------------------------------------------------ files
def _load_table(path: Path) -> dict[str, tuple[float, float | None, int | None]]:
    """The file's key → (mean ms, std ms or None, count or None), checked."""
    import yaml

    try:
        text = read_utf8(path)
    except UnreadableText as err:
        raise OfaLutError(f"{path}: cannot read ({err.reason})") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise OfaLutError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict) or not data:
        raise OfaLutError(f"{path}: not an OFA lookup table (expected a mapping of op keys to count/mean/std)")
    table: dict[str, tuple[float, float | None, int | None]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or "mean" not in entry:
            raise OfaLutError(f"{path}: key {key}: expected a mapping with mean (and count, std), got {entry!r:.60}")
        mean, std, count = entry.get("mean"), entry.get("std"), entry.get("count")
        if not _number(mean) or not math.isfinite(mean) or mean < 0:
            raise OfaLutError(f"{path}: key {key}: mean {mean!r} is not a latency in ms")
        if std is not None and (not _number(std) or not math.isfinite(std) or std < 0):
            raise OfaLutError(f"{path}: key {key}: std {std!r} is not a spread in ms")
        if count is not None and (not _number(count) or count < 0 or count != int(count)):
            raise OfaLutError(f"{path}: key {key}: count {count!r} is not a number of runs")
        table[str(key)] = (float(mean), None if std is None else float(std), None if count is None else int(count))
    return table


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def import_ofa_luts(paths: Iterable[Path], device_id: str, *, device_model: str = "unknown (OFA lookup table)",
                    runtime: str = "unknown", provider: str = "cpu") -> OfaImportResult:
    """Read OFA lookup tables (one YAML per resolution) into LUT rows for ``device_id``: one row per signature."""
    result = OfaImportResult()
    stats: dict[str, _Stats] = {}
    signatures: dict[str, OpSignature] = {}
    names: list[str] = []
    read: list[str] = []
    for path in paths:
        path = Path(path)
        table = _load_table(path)
        grammar = result.grammars[str(path)] = grammar_of(table)
        names.append(path.name)
        read.append(str(path))
        for key, (mean, std, count) in table.items():
            result.records += 1
            try:
                sig = signature_of_key(key, grammar)
            except ValueError as err:
                raise OfaLutError(f"{path}: key {key!r} is not an OFA op key ({err})") from None
            except Unmapped as reason:
                result.skipped[str(reason)] += 1
                result.examples.setdefault(str(reason), key)
                continue
            except InvalidSignature:  # numbers no signature takes (a zero-channel shape...)
                reason = f"{key.split('-')[0]} with sizes outside the vocabulary"
                result.skipped[reason] += 1
                result.examples.setdefault(reason, key)
                continue
            signatures.setdefault(sig.key, sig)
            stats.setdefault(sig.key, _Stats()).add(mean, std, count)
    if not stats:
        example = next(iter(result.examples.values()), "none")
        raise OfaLutError(f"{', '.join(read) or 'no file'}: no key maps to a signature "
                          f"({result.records} key(s), e.g. {example})")
    session, imported_at = lut_store.new_session_id(), lut_store.now_utc()
    provenance = f"{harness_version} import of {', '.join(names)} (OFA mean as median)"
    for key, s in stats.items():
        mean_us = s.mean_ms * MS_TO_US
        std_us = None if s.std_ms is None else s.std_ms * MS_TO_US
        result.pooled += s.keys > 1
        row = lut_store.imported_row(signatures[key], median_us=mean_us,  # OFA keeps the mean only
                                     mean_us=mean_us, std_us=std_us, runs=s.count, device_id=device_id,
                                     device_model=device_model, runtime=runtime, provider=provider,
                                     provenance=provenance, session_id=session, measured_at=imported_at)
        result.rows.append(row)
    return result
