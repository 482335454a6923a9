"""Flatbuffer plumbing of the ``.tflite`` builders: a TFLite model written field by field.

:class:`FlatModel` collects one subgraph's buffers, tensors (with their
quantization parameters), operator codes and operators, and :meth:`FlatModel.finish`
serialises them with ``flatbuffers.Builder`` in the layout of the TFLite schema
(schema.fbs), no TensorFlow involved.  The ``*_options`` functions give the
builtin options tables of the ops the builders emit, field by field in schema
order.  This module knows the file format only, not what a model computes:
that is :mod:`harness.models.tflite_models`.

Imports: ``flatbuffers``, ``numpy`` and the ``tflite`` schema enums; nothing
from ``harness``.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
import tflite
from flatbuffers import number_types as N

# The TFLite schema version written in Model.version.
SCHEMA_VERSION = 3

_FILE_IDENTIFIER = b"TFL3"
_OP = tflite.BuiltinOperator
_OPTIONS = tflite.BuiltinOptions
_ACT = tflite.ActivationFunctionType


@dataclass
class Quant:
    """Quantization parameters of one tensor (per tensor, or per channel along ``axis``)."""

    scale: np.ndarray  # float32
    zero_point: np.ndarray  # int64
    axis: int = 0


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int  # tflite.TensorType
    buffer: int = 0  # 0: the empty buffer, i.e. no constant data
    quant: Quant | None = None


@dataclass
class Operator:
    opcode: int  # index into the model's operator codes
    inputs: list[int]
    outputs: list[int]
    options_type: int = _OPTIONS.NONE
    # (slot, number type, value) of each field of the options table
    options: tuple[tuple[int, type, int | bool], ...] = ()


class FlatModel:
    """A one-subgraph TFLite model being assembled, then written by :meth:`finish`.

    Field slots follow the TFLite schema (schema.fbs): a table's n-th field is
    vtable slot n, as the ``tflite`` reader classes read it (``Offset(4 + 2n)``).
    """

    def __init__(self, description: str, metadata: dict[str, str]) -> None:
        self.description = description
        self.metadata = metadata
        self.tensors: list[Tensor] = []
        self.buffers: list[bytes] = [b""]  # buffer 0 is the schema's empty sentinel
        self.opcodes: list[tuple[int, int]] = []  # (builtin code, version)
        self.operators: list[Operator] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    def add_buffer(self, data: bytes) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def add_tensor(self, name: str, shape: tuple[int, ...], type: int,
                   data: np.ndarray | None = None, quant: Quant | None = None) -> int:
        buffer = 0 if data is None else self.add_buffer(data.astype(data.dtype.newbyteorder("<")).tobytes())
        self.tensors.append(Tensor(name, tuple(int(d) for d in shape), type, buffer, quant))
        return len(self.tensors) - 1

    def add_operator(self, builtin: int, inputs: list[int], outputs: list[int], version: int = 1,
                     options_type: int = _OPTIONS.NONE, options: tuple = ()) -> None:
        code = (builtin, version)
        if code not in self.opcodes:
            self.opcodes.append(code)
        self.operators.append(Operator(self.opcodes.index(code), list(inputs), list(outputs), options_type, options))

    # ---- serialisation: children first, then the table that points at them
    def finish(self) -> bytes:
        b = flatbuffers.Builder(1024)
        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        operators = [self._operator(b, op) for op in self.operators]
        subgraph = self._table(b, [
            (0, self._offsets(b, tensors)),
            (1, int_vector(b, self.inputs, np.int32)),
            (2, int_vector(b, self.outputs, np.int32)),
            (3, self._offsets(b, operators)),
            (4, b.CreateString("main")),
        ])
        opcodes = [self._table(b, [], [
            (0, N.Int8Flags, min(code, _OP.PLACEHOLDER_FOR_GREATER_OP_CODES)),  # deprecated_builtin_code
            (2, N.Int32Flags, version),
            (3, N.Int32Flags, code),  # builtin_code
        ]) for code, version in self.opcodes]
        metadata = []
        for name, text in self.metadata.items():
            buffer = len(buffers)
            buffers.append(self._buffer(b, text.encode()))
            metadata.append(self._table(b, [(0, b.CreateString(name))], [(1, N.Uint32Flags, buffer)]))
        model = self._table(b, [
            (1, self._offsets(b, opcodes)),
            (2, self._offsets(b, [subgraph])),
            (3, b.CreateString(self.description)),
            (4, self._offsets(b, buffers)),
            (6, self._offsets(b, metadata)),
        ], [(0, N.Uint32Flags, SCHEMA_VERSION)])
        b.Finish(model, file_identifier=_FILE_IDENTIFIER)
        return bytes(b.Output())

    @staticmethod
    def _table(b: flatbuffers.Builder, offsets: list[tuple[int, int]],
               scalars: list[tuple[int, type, int | bool | float]] = ()) -> int:
        """A table from (slot, offset) and (slot, number type, value) fields, every field written."""
        b.StartObject(1 + max(slot for slot, *_ in [*offsets, *scalars]) if (offsets or scalars) else 0)
        for slot, flags, value in scalars:
            b.PrependSlot(flags, slot, value, None)  # default None: always written, read back as is
        for slot, offset in offsets:
            b.PrependUOffsetTRelativeSlot(slot, offset, 0)
        return b.EndObject()

    @staticmethod
    def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def _buffer(self, b: flatbuffers.Builder, data: bytes) -> int:
        if not data:
            return self._table(b, [])
        # Constant data 16-byte aligned, as the converter writes it, so kernels
        # may read weights in place.
        b.StartVector(1, len(data), 16)
        b.head -= len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        return self._table(b, [(0, b.EndVector())])

    def _tensor(self, b: flatbuffers.Builder, t: Tensor) -> int:
        offsets = [(0, int_vector(b, t.shape, np.int32)), (3, b.CreateString(t.name))]
        if t.quant is not None:
            q = t.quant
            quant = self._table(b, [
                (2, b.CreateNumpyVector(q.scale.astype("<f4"))),
                (3, b.CreateNumpyVector(q.zero_point.astype("<i8"))),
            ], [(6, N.Int32Flags, q.axis)])
            offsets.append((4, quant))
        return self._table(b, offsets, [(1, N.Int8Flags, t.type), (2, N.Uint32Flags, t.buffer)])

    def _operator(self, b: flatbuffers.Builder, op: Operator) -> int:
        offsets = [(1, int_vector(b, op.inputs, np.int32)), (2, int_vector(b, op.outputs, np.int32))]
        if op.options_type != _OPTIONS.NONE:
            offsets.append((4, self._table(b, [], list(op.options))))
        return self._table(b, offsets, [(0, N.Uint32Flags, op.opcode), (3, N.Uint8Flags, op.options_type)])


def int_vector(b: flatbuffers.Builder, values, dtype) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")))


# Builtin options tables: (slot, type, value) per field, in schema order.
def conv_options(padding: int, stride: int, activation: int) -> tuple:
    return ((0, N.Int8Flags, padding), (1, N.Int32Flags, stride), (2, N.Int32Flags, stride),
            (3, N.Int8Flags, activation), (4, N.Int32Flags, 1), (5, N.Int32Flags, 1))


def depthwise_options(padding: int, stride: int, multiplier: int, activation: int) -> tuple:
    return ((0, N.Int8Flags, padding), (1, N.Int32Flags, stride), (2, N.Int32Flags, stride),
            (3, N.Int32Flags, multiplier), (4, N.Int8Flags, activation), (5, N.Int32Flags, 1),
            (6, N.Int32Flags, 1))


def pool_options(padding: int, stride: int, kernel: int) -> tuple:
    return ((0, N.Int8Flags, padding), (1, N.Int32Flags, stride), (2, N.Int32Flags, stride),
            (3, N.Int32Flags, kernel), (4, N.Int32Flags, kernel), (5, N.Int8Flags, _ACT.NONE))


def fc_options(activation: int) -> tuple:
    # weights_format DEFAULT, keep_num_dims false: what the Hexagon delegate accepts.
    return ((0, N.Int8Flags, activation), (1, N.Int8Flags, 0), (2, N.BoolFlags, False))


def add_options(activation: int) -> tuple:
    return ((0, N.Int8Flags, activation),)


def mul_options(activation: int) -> tuple:
    return ((0, N.Int8Flags, activation),)


def reducer_options(keep_dims: bool) -> tuple:
    return ((0, N.BoolFlags, keep_dims),)
