"""Import per-operator timings measured with Caffe2 (FAI-PEP / ChamNet's released LUT) into a LUT.

Caffe2 is discontinued, so its measurements can no longer be reproduced; this
keeps them usable.  The accepted records are those of the operator LUT that
ChamNet and FBNet published (facebookresearch/mobile-vision ``runtime_lut``,
measured with FAI-PEP), one record per operator:

============== ==========================================================
column          meaning
============== ==========================================================
op_type         Caffe2 operator: Conv, ConvRelu, Int8Conv, Int8ConvRelu,
                FC, Int8FC, AveragePool, Int8AveragePool, Add, Int8Add,
                Sum, Relu, Int8Relu
op_args         list of the op's Caffe2 ``Argument`` protos in text form,
                e.g. ``name: "kernel" i: 3`` (JSON list in a CSV cell)
input_shapes    list of input shapes, data first, then weight and bias,
                e.g. ``[[1, 112, 112, 32], [32, 3, 3, 1], [32]]``
input_dtypes    optional; list of Caffe2 DataType codes
runtime_us_p0,  latency percentiles in microseconds (p50 is required)
_p10, _p50,
_p90, _p100
device          the device the record was measured on (e.g. SM-G950U-7.0-24)
============== ==========================================================

Files: CSV with those columns, or JSON (a list of records, or one record per
line, as the released database holds them).  Int8 ops use NHWC shapes
(weights ``[out, kh, kw, in/groups]``), float ops NCHW (``[out, in/groups, kh, kw]``)
unless an ``order`` argument says otherwise.  Records of other operator types
(quantize, layout transposes...) are counted and skipped.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness import __version__ as harness_version
from harness.lut import store as lut_store
from harness.errors import ChameleonError, InvalidSignature
from harness.signature import OpSignature, make_signature
from harness.textfiles import UnreadableText, read_utf8


class LutImportError(ChameleonError):
    """A file that is not a readable Caffe2 / FAI-PEP operator table."""


REQUIRED_COLUMNS = ("op_type", "op_args", "input_shapes", "runtime_us_p50", "device")

_CONV_TYPES = {"Conv", "ConvRelu", "Int8Conv", "Int8ConvRelu"}
_FC_TYPES = {"FC", "Int8FC"}
_POOL_TYPES = {"AveragePool", "Int8AveragePool"}
_ADD_TYPES = {"Add", "Int8Add", "Sum", "Int8Sum"}
_RELU_TYPES = {"Relu", "Int8Relu"}


@dataclass
class ImportResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def parse_caffe2_args(proto_texts: list[str]) -> dict[str, Any]:
    """``['name: "kernel" i: 3', 'name: "order" s: "NHWC"', 'name: "pads" ints: 1 ints: 1 ...']`` → dict."""
    args: dict[str, Any] = {}
    for text in proto_texts:
        name = re.search(r'name:\s*"([^"]+)"', text)
        if not name:
            raise ValueError(f"argument without a name: {text!r}")
        ints = [int(v) for v in re.findall(r"\bints:\s*(-?\d+)", text)]
        single = re.search(r"\bi:\s*(-?\d+)", text)
        real = re.search(r"\bf:\s*(-?[\d.eE+-]+)", text)
        string = re.search(r'\bs:\s*"([^"]*)"', text)
        if ints:
            args[name.group(1)] = ints
        elif single:
            args[name.group(1)] = int(single.group(1))
        elif real:
            args[name.group(1)] = float(real.group(1))
        elif string:
            args[name.group(1)] = string.group(1)
    return args


def signature_of(op_type: str, args: dict[str, Any], shapes: list[list[int]]) -> OpSignature | None:
    """The LUT signature of one Caffe2 op, or None for op types outside the vocabulary."""
    int8 = op_type.startswith("Int8")
    dtype = "int8" if int8 else "fp32"
    nhwc = args.get("order", "NHWC" if int8 else "NCHW") == "NHWC"
    data = shapes[0]

    def nchw(shape: list[int]) -> tuple[int, int, int, int]:
        if len(shape) == 2:
            return shape[0], shape[1], 1, 1
        n, a, b, c = shape
        return (n, c, a, b) if nhwc else (n, a, b, c)

    def square(base: str, default: int) -> int:
        if base in args:
            value = args[base]
            return value[0] if isinstance(value, list) else value
        for key in (f"{base}_h", f"{base}s"):
            if key in args:
                value = args[key]
                return value[0] if isinstance(value, list) else value
        return default

    if op_type in _CONV_TYPES:
        n, c, h, w = nchw(data)
        weight = shapes[1]
        c_out = weight[0]
        kernel = square("kernel", weight[1] if nhwc else weight[2])
        groups = int(args.get("group", 1))
        stride = square("stride", 1)
        padding = args["pads"][0] if "pads" in args else square("pad", 0)
        activation = "relu" if op_type.endswith("Relu") else "none"
        common = dict(n=n, c_in=c, h=h, w=w, stride=stride, padding=padding, activation=activation, dtype=dtype)
        if groups == c == c_out and groups > 1:
            return make_signature("depthwise_conv", kernel=kernel, **common)
        if kernel == 1 and padding == 0:
            return make_signature("pointwise_conv", c_out=c_out, groups=groups, **common)
        return make_signature("conv2d", c_out=c_out, kernel=kernel, groups=groups, **common)
    if op_type in _FC_TYPES:
        n = data[0]
        return make_signature("fc", n=n, c_in=int(math.prod(data[1:])), c_out=shapes[1][0], dtype=dtype)
    if op_type in _POOL_TYPES:
        n, c, h, w = nchw(data)
        if args.get("global_pooling"):
            return make_signature("global_avgpool", n=n, c_in=c, h=h, w=w, dtype=dtype)
        kernel = square("kernel", 1)
        if kernel == h == w and square("stride", 1) in (1, kernel) and square("pad", 0) == 0:
            return make_signature("global_avgpool", n=n, c_in=c, h=h, w=w, dtype=dtype)
        return make_signature("avgpool", n=n, c_in=c, h=h, w=w, kernel=kernel, stride=square("stride", 1),
                              padding=square("pad", 0), dtype=dtype)
    if op_type in _ADD_TYPES and len(shapes) >= 2 and shapes[0] == shapes[1]:
        n, c, h, w = nchw(data)
        return make_signature("add", n=n, c_in=c, h=h, w=w, dtype=dtype)
    if op_type in _RELU_TYPES:
        n, c, h, w = nchw(data)
        return make_signature("activation", n=n, c_in=c, h=h, w=w, activation="relu", dtype=dtype)
    return None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = read_utf8(path)
    except UnreadableText as err:
        raise LutImportError(f"{path}: cannot read ({err.reason}; unzip the released database first)") from None
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise LutImportError(f"{path}: invalid JSON at line {err.lineno} ({err.msg})") from None
        yield from data
        return
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LutImportError(f"{path}: missing column(s) {', '.join(missing)} (expected: {', '.join(REQUIRED_COLUMNS)}, "
                           "runtime_us_p0/p10/p90/p100 and input_dtypes optional)")
    for row in reader:
        record: dict[str, Any] = dict(row)
        for key in ("op_args", "input_shapes", "input_dtypes"):
            if record.get(key):
                try:
                    record[key] = json.loads(record[key])
                except json.JSONDecodeError:
                    raise LutImportError(f"{path}: line {reader.line_num}: {key} is not a JSON list: {record[key][:80]!r}") from None
        yield record


def import_caffe2_lut(path: Path, device_id: str, provider: str = "cpu") -> ImportResult:
    """Read the records of ``path`` into LUT rows for ``device_id`` (one row per signature; p50 is the median)."""
    result = ImportResult()
    session = lut_store.new_session_id()
    imported_at = lut_store.now_utc()
    for index, record in enumerate(_records(path), 1):
        result.records += 1
        missing = [c for c in REQUIRED_COLUMNS if record.get(c) in (None, "")]
        if missing:
            raise LutImportError(f"{path}: record {index} lacks {', '.join(missing)}")
        try:
            args = parse_caffe2_args(list(record["op_args"]))
            signature = signature_of(str(record["op_type"]), args, [list(map(int, s)) for s in record["input_shapes"]])
            p50 = float(record["runtime_us_p50"])
        except (InvalidSignature, ValueError, TypeError, IndexError, KeyError) as err:
            result.skipped[f"malformed {record.get('op_type')} ({type(err).__name__})"] += 1
            continue
        if signature is None:
            result.skipped[f"op type {record['op_type']} not in the vocabulary"] += 1
            continue
        if not p50 > 0:
            result.skipped["non-positive runtime_us_p50"] += 1
            continue
        p10, p90 = _optional(record, "runtime_us_p10"), _optional(record, "runtime_us_p90")
        row = signature.to_record()
        row.update(
            signature=signature.key,
            median_us=p50,
            p10_us=p10,
            p90_us=p90,
            mean_us=None,  # the source keeps percentiles only
            std_us=None,
            min_us=_optional(record, "runtime_us_p0") or p10 or p50,
            runs=0,  # unknown: the source does not say
            warmup_runs=0,
            # The normal-consistent spread from the deciles: (p90 - p10) / (2 * 1.2816 * p50).
            cv=(p90 - p10) / (2.5631 * p50) if p10 is not None and p90 is not None else 0.0,
            attempts=0,
            timed_total_us=0.0,
            throttled=None,
            temperature_c=None,
            cpu_freq_khz=None,
            device_id=device_id,
            device_model=str(record["device"]),
            runtime="caffe2",
            runtime_version="unknown (imported)",
            provider=provider,
            threads=1,
            harness_version=f"{harness_version} import of {path.name}",
            session_id=session,
            measured_at=imported_at,
        )
        result.rows.append(row)
    return result


def _optional(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value in (None, ""):
        return None
    return float(value)
