"""FBNet's differentiable latency (Eq. 7 of the FBNet paper) from a device's operator LUT.

A supernet layer ``l`` holds candidate blocks ``i`` with weights ``m_li`` (Gumbel-softmax samples, or
the probabilities ``softmax(θ_l)``).  Its latency is ``Σ_i m_li · LAT(b_li)``, linear in ``m``, so the
network's is differentiable in ``θ``.  Here ``LAT`` is exactly what the LUT model charges a network
(:meth:`optimizer.latency.lut_model.LutLatencyModel.estimate`, what ``optimize estimate`` prints):

* the plain sum ``Σ entries − (k − 1)·overhead``, k the number of units (the runtime's per-call
  overhead, in every entry, is paid once by a network); a candidate that is no block (the skip of a
  layer that keeps its shape) adds no entry and no unit;
* with a :class:`~optimizer.latency.lut_model.NetworkCorrection`, ``scale·plain − (k − 1)·b − e·E``,
  E the elements passed between units.

Every term is linear in the weights (k and E too: a layer adds ``Σ_i m_li`` units and
``Σ_i m_li·elements_li``), so the expected latency of a distribution is that formula over its
expected k and E, and a one-hot ``m`` gives a network's own figure.  The sums are taken in the
network's order, unit after unit from 0, with the same operations as ``estimate``, so for one-hot
weights the result is ``estimate``'s to the last bit (a product by 1.0 or 0.0 and a sum with zeros
are exact): :func:`expected_latency_us` (numpy) and :func:`expected_latency_torch` (autograd) agree
with it exactly on the argmax architecture, which ``tests/test_dnas.py`` checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel, MissingSignatures, NetworkCorrection


class NotALayerwiseSpace(ChameleonError):
    """A space without per-layer candidate blocks (the differentiable search needs FBNet's kind of space)."""


@dataclass(frozen=True)
class LayerLatencyTable:
    """The LUT entries of a layer-wise space: its fixed units, and every layer's candidates (µs, in gene order).

    ``candidate_us[l, i]`` is candidate i's entry in layer l (0 where it is no block),
    ``present[l, i]`` 1 where it is a unit, ``elements[l, i]`` its output's elements.
    """

    space: str
    head_us: tuple[float, ...]
    tail_us: tuple[float, ...]
    head_elements: tuple[int, ...]
    tail_elements: tuple[int, ...]  # the last unit's (the logits) is no boundary and is not counted
    candidate_us: np.ndarray
    present: np.ndarray
    elements: np.ndarray
    overhead_us: float
    correction: NetworkCorrection | None = None
    interpolated: tuple[str, ...] = ()  # entries estimated from measured ones (--interpolate)

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, candidates)."""
        return tuple(self.candidate_us.shape)  # type: ignore[return-value]

    @classmethod
    def from_lut(cls, space: Any, lut: LutLatencyModel, interpolate: bool = False) -> "LayerLatencyTable":
        """The table of ``space`` (an :class:`~optimizer.spaces.fbnet.FBNetSpace`) on one device's LUT."""
        if not hasattr(space, "layer_units"):
            raise NotALayerwiseSpace(f"space {space.name} has no per-layer candidate blocks; the differentiable "
                                     f"search takes fbnet or fbnet-mini")
        layer_units = space.layer_units()
        fixed = list(space.head) + list(space.tail)
        units = fixed + [u for row in layer_units for u in row if u is not None]
        missing = lut.missing(units)
        if missing and not interpolate:
            device = lut.device or "DEVICE"
            raise MissingSignatures(
                f"{lut.source}: {len(missing)} signature(s) of {space.name} are not in the LUT, e.g. {missing[0]}; "
                f"measure them with: optimize space-plan --space {space.name} --out plan.yaml && bench sweep "
                f"--device {device} --plan plan.yaml --out {lut.source} (or pass --interpolate)")
        priced = LatencyPredictor(lut, space, interpolate=interpolate)
        entries = dict(zip((u.key for u in units), priced._unit_entries(units)))  # (µs, interpolated, elements)

        def us(sig: Any) -> float:
            return float(entries[sig.key][0])

        L, C = len(layer_units), len(layer_units[0])
        candidate_us, present, elements = np.zeros((L, C)), np.zeros((L, C)), np.zeros((L, C))
        for l, row in enumerate(layer_units):
            for i, unit in enumerate(row):
                if unit is not None:
                    candidate_us[l, i], present[l, i] = us(unit), 1.0
                    elements[l, i] = math.prod(unit.output_shape)
        return cls(space=space.name, head_us=tuple(us(s) for s in space.head), tail_us=tuple(us(s) for s in space.tail),
                   head_elements=tuple(math.prod(s.output_shape) for s in space.head),
                   tail_elements=tuple(math.prod(s.output_shape) for s in space.tail[:-1]),
                   candidate_us=candidate_us, present=present, elements=elements, overhead_us=float(lut.overhead_us),
                   correction=lut.correction, interpolated=tuple(sorted(priced.interpolated_keys)))


def expected_latency_us(table: LayerLatencyTable, weights: Any) -> float:
    """``LAT(m)`` (µs) of layer weights ``m`` ``[layers, candidates]`` (each row sums to 1): see the module docstring."""
    m = np.asarray(weights, dtype=np.float64)
    if m.shape != table.shape:
        raise ValueError(f"weights of shape {m.shape}; the space has {table.shape} (layers, candidates)")
    total = 0.0
    for t in table.head_us:
        total += t
    for l in range(m.shape[0]):
        total += float(np.dot(m[l], table.candidate_us[l]))
    for t in table.tail_us:
        total += t
    units = len(table.head_us) + float(np.sum([np.dot(m[l], table.present[l]) for l in range(m.shape[0])])) \
        + len(table.tail_us)
    elements = float(sum(table.head_elements)) + float(np.sum([np.dot(m[l], table.elements[l])
                                                               for l in range(m.shape[0])])) + sum(table.tail_elements)
    return _finish(table, total, units, elements)


def _finish(table: LayerLatencyTable, total: Any, units: Any, elements: Any) -> Any:
    """``estimate``'s last steps: the overhead counted once, then the correction (scalars or torch tensors)."""
    boundaries = units - 1
    plain = total - boundaries * table.overhead_us
    c = table.correction
    if c is None:
        return plain
    return c.scale * plain - c.boundary_us * boundaries - c.boundary_element_us * elements


def expected_latency_torch(table: LayerLatencyTable, weights: Any) -> Any:
    """:func:`expected_latency_us` in torch (float64), differentiable in ``weights`` ``[layers, candidates]`` (a scalar),
    or ``[batch, layers, candidates]`` (one latency per architecture)."""
    import torch

    m = weights.to(torch.float64)
    cost = torch.as_tensor(table.candidate_us, dtype=torch.float64)
    present = torch.as_tensor(table.present, dtype=torch.float64)
    elems = torch.as_tensor(table.elements, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for t in table.head_us:
        total = total + t
    for l in range(m.shape[-2]):  # layer after layer, as the LUT sum runs (the same float additions)
        total = total + (m[..., l, :] * cost[l]).sum(dim=-1)
    for t in table.tail_us:
        total = total + t
    units = len(table.head_us) + (m * present).sum(dim=-1).sum(dim=-1) + len(table.tail_us)
    elements = float(sum(table.head_elements)) + (m * elems).sum(dim=-1).sum(dim=-1) + sum(table.tail_elements)
    return _finish(table, total, units, elements)


def one_hot(genes: Any, candidates: int) -> np.ndarray:
    """Layer weights ``[layers, candidates]`` of one architecture."""
    genes = np.asarray(genes, dtype=np.int64)
    m = np.zeros((len(genes), candidates))
    m[np.arange(len(genes)), genes] = 1.0
    return m


def softmax(theta: Any) -> np.ndarray:
    """Row-wise softmax: the distribution P_θ over each layer's candidates."""
    theta = np.asarray(theta, dtype=np.float64)
    z = np.exp(theta - theta.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def argmax_architecture(theta: Any) -> np.ndarray:
    """The most probable candidate of each layer (the first of equals): the distribution's argmax architecture."""
    return np.asarray(theta).argmax(axis=1).astype(np.int64)


def sample_architectures(theta: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` architectures drawn from P_θ (each layer independently), ``[count, layers]`` genes."""
    p = softmax(theta)
    u = rng.random((count, p.shape[0], 1))
    # Inverse CDF per layer; the clip guards the last bin against a cumulative sum that rounds below 1.
    return np.minimum((u > np.cumsum(p, axis=1)[None]).sum(axis=2), p.shape[1] - 1).astype(np.int64)


def fbnet_loss_factor(latency_us: Any, alpha: float, beta: float) -> Any:
    """FBNet's latency factor ``α · log(LAT)^β`` (LAT in µs, held at e or more so the log is ≥ 1 and the power real).

    FBNet wrote LAT in ms on phones, where networks take ~20 ms and log LAT ≈ 3; a network of this CPU's
    spaces takes ~0.1 ms, whose log is negative.  In µs the log is 4-6 here, the range FBNet's α and β
    were tuned for.  Scalars or torch tensors.
    """
    if hasattr(latency_us, "clamp_min"):  # a torch tensor (not imported here: this module loads no torch)
        return alpha * latency_us.clamp_min(math.e).log() ** beta
    return alpha * math.log(max(float(latency_us), math.e)) ** beta
