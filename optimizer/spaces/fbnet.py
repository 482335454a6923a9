"""FBNet's layer-wise search space (Wu et al., CVPR 2019, Tables 1 and 2), at paper scale and CPU scale.

FBNet fixes the macro-architecture (stem, stage widths, strides, depth) and lets every layer of
every stage choose one block among nine candidates; the search is over that choice alone.  Here a
layer's choice is one integer gene, the index of its candidate in :data:`CANDIDATES`::

    0 skip        no block where the layer keeps its shape; where it changes it (a stage's first
                  layer) FBNet's skip is a 1x1 conv with the layer's stride (conv2d, relu)
    1 k3_e1       inverted_residual, 3x3, expansion 1 (MobileNetV2's t = 1: no expansion conv)
    2 k3_e1_g2    grouped_inverted_residual, 3x3, expansion 1, 1x1 convs in 2 groups + channel shuffle
    3 k5_e1       ... 5x5
    4 k5_e1_g2
    5 k3_e3       inverted_residual, expansion 3
    6 k5_e3
    7 k3_e6       expansion 6
    8 k5_e6

FBNet's Table 2 lists them in another order; here they go roughly by cost, so that a gene step is a
small change (EES's mutation walks the grid, and the GP accuracy predictor reads genes as numbers).
Blocks use ReLU, as FBNet's do.  The grouped candidates are the harness's
``grouped_inverted_residual`` kind (issue 21): FBNet's ``_g2`` blocks, which need a channel shuffle
the other kinds do not have, measured as one fused LUT entry like the inverted residual.

Spaces
------
``fbnet`` (Table 1, 224 px, 22 searched layers, 9^22 ≈ 10^21 networks)::

    conv2d 3x3 s2 -> 16, then layers (n, c, s): (1, 16, 1) (4, 24, 2) (4, 32, 2) (4, 64, 2)
    (4, 112, 1) (4, 184, 2) (1, 352, 1), conv2d 1x1 -> 1984, global_avgpool, fc 1000

for LUT sweeps (``optimize space-plan --space fbnet``) and estimates; it is too large to train here.

``fbnet-mini`` (32 px, 12 searched layers, 9^12 ≈ 2.8·10^11 networks, 10 classes): the same
structure at about a quarter of the widths and half the depth, so that its supernet trains on the
built-in data sets on two CPU cores in minutes::

    conv2d 3x3 s2 -> 8, then (1, 8, 1) (2, 12, 2) (2, 16, 2) (2, 24, 2) (2, 32, 1) (2, 48, 2) (1, 64, 1),
    conv2d 1x1 -> 256, global_avgpool, fc 10

Baselines: every layer the same candidate (``uniform-k3_e6`` is the MobileNetV2-like network of the
macro-architecture).  :class:`FBNetSpace` also lists, per layer, each candidate's unit
(:meth:`FBNetSpace.layer_units`) and the fixed units around them: the supernet of
:mod:`optimizer.dnas` is built from those, and the LUT prices them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.signature import (
    CONV2D,
    FC,
    GLOBAL_AVGPOOL,
    GROUPED_INVERTED_RESIDUAL,
    IDENTITY,
    INVERTED_RESIDUAL,
    OpSignature,
    make_signature,
)
from optimizer.spaces.space import Gene, SearchSpace, Slot


@dataclass(frozen=True)
class Candidate:
    """One of a layer's blocks: FBNet's ``k{kernel}_e{expansion}[_g{groups}]``, or ``skip`` (kernel 0)."""

    name: str
    kernel: int = 0
    expansion: int = 0
    groups: int = 1

    @property
    def is_skip(self) -> bool:
        return self.kernel == 0


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("skip"),
    Candidate("k3_e1", 3, 1), Candidate("k3_e1_g2", 3, 1, 2),
    Candidate("k5_e1", 5, 1), Candidate("k5_e1_g2", 5, 1, 2),
    Candidate("k3_e3", 3, 3), Candidate("k5_e3", 5, 3),
    Candidate("k3_e6", 3, 6), Candidate("k5_e6", 5, 6),
)
CANDIDATE_NAMES: tuple[str, ...] = tuple(c.name for c in CANDIDATES)
ACTIVATION = "relu"  # FBNet's blocks use ReLU


@dataclass(frozen=True)
class Layer:
    """A searched layer: its input (c_in, h x h), output width, stride, and the gene that picks its block."""

    name: str
    gene: int
    c_in: int
    c_out: int
    stride: int
    h: int

    @property
    def keeps_shape(self) -> bool:
        """Whether ``skip`` is no block at all here (stride 1, same width)."""
        return self.stride == 1 and self.c_in == self.c_out

    def unit(self, candidate: Candidate) -> OpSignature | None:
        """The LUT unit of ``candidate`` in this layer (None: the skip of a layer that keeps its shape)."""
        common = {"c_in": self.c_in, "h": self.h, "w": self.h, "c_out": self.c_out, "stride": self.stride}
        if candidate.is_skip:
            if self.keeps_shape:
                return None
            return make_signature(CONV2D, **common, kernel=1, padding=0, activation=ACTIVATION)
        mid = self.c_in * candidate.expansion
        if candidate.groups > 1:
            return make_signature(GROUPED_INVERTED_RESIDUAL, **common, kernel=candidate.kernel, mid_channels=mid,
                                  groups=candidate.groups, activation=ACTIVATION)
        return make_signature(INVERTED_RESIDUAL, **common, kernel=candidate.kernel, mid_channels=mid,
                              activation=ACTIVATION)


# The placeholder of an absent unit, for slots asked for their signature where they have none: the LUT's
# overhead probe, which every sweep measures (harness.sweep.OVERHEAD_SIGNATURE); its count is 0 there.
_ABSENT = make_signature(IDENTITY)


class FBNetSpace(SearchSpace):
    """A layer-wise space: fixed units around ``layers``, each picking one of :data:`CANDIDATES` by its gene."""

    def __init__(self, name: str, resolution: int, head: Sequence[OpSignature], layers: Sequence[Layer],
                 tail: Sequence[OpSignature], description: str) -> None:
        self.head, self.layers, self.tail = tuple(head), tuple(layers), tuple(tail)
        self.candidates = CANDIDATES
        genes = [Gene(layer.name, 0, len(CANDIDATES) - 1, 1) for layer in self.layers]
        slots = [self._fixed_slot(f"head{i}", sig) for i, sig in enumerate(self.head)]
        slots += [self._layer_slot(layer) for layer in self.layers]
        slots += [self._fixed_slot(f"tail{i}", sig) for i, sig in enumerate(self.tail)]
        baselines = {f"uniform-{c.name}": [k] * len(self.layers) for k, c in enumerate(CANDIDATES) if not c.is_skip}
        super().__init__(name, genes, slots, resolution=resolution, baselines=baselines, description=description)

    @staticmethod
    def _fixed_slot(name: str, sig: OpSignature) -> Slot:
        return Slot(name, lambda X: np.zeros((len(X), 1), dtype=np.int64), lambda row, sig=sig: sig,
                    lambda X: np.ones(len(X), dtype=np.int64), genes=())

    @staticmethod
    def _layer_slot(layer: Layer) -> Slot:
        units = [layer.unit(c) for c in CANDIDATES]
        present = np.array([u is not None for u in units], dtype=np.int64)
        signatures = [u if u is not None else _ABSENT for u in units]
        g = layer.gene
        return Slot(layer.name, lambda X: X[:, [g]].astype(np.int64), lambda row: signatures[row[0]],
                    lambda X: present[X[:, g].astype(np.int64)], genes=(g,))

    def layer_units(self) -> list[list[OpSignature | None]]:
        """Per layer, per candidate (in gene order), its unit; None where the candidate is no block."""
        return [[layer.unit(c) for c in CANDIDATES] for layer in self.layers]

    def describe(self, x: Any) -> dict[str, Any]:
        x = self._vector(x)
        units = self.signatures(x)
        return {"space": self.name, "genes": dict(zip(self.gene_names, (int(v) for v in x))),
                "resolution": self.resolution(x),
                "layers": [{"layer": layer.name, "block": CANDIDATE_NAMES[int(v)], "c_in": layer.c_in,
                            "c_out": layer.c_out, "s": layer.stride, "h": layer.h} for layer, v in zip(self.layers, x)],
                "units": len(units), "macs": sum(s.macs for s in units), "params": self.params(x)}

    def blocks(self, x: Any) -> list[str]:
        """The candidate names of an architecture, layer by layer."""
        return [CANDIDATE_NAMES[int(v)] for v in self._vector(x)]


def _build(name: str, resolution: int, stem: int, stages: Sequence[tuple[int, int, int]], last: int, classes: int,
           description: str) -> FBNetSpace:
    """FBNet's macro-architecture: stem conv 3x3 s2, the searched layers ``(n, c, s)`` per stage, 1x1 conv, pool, fc."""
    h = (resolution + 2 - 3) // 2 + 1
    head = [make_signature(CONV2D, c_in=3, h=resolution, w=resolution, c_out=stem, kernel=3, stride=2,
                           activation=ACTIVATION)]
    layers, c_in = [], stem
    for s, (n, c, stride) in enumerate(stages, start=1):
        for j in range(n):
            layer_stride = stride if j == 0 else 1
            layers.append(Layer(f"s{s}l{j + 1}", len(layers), c_in, c, layer_stride, h))
            h = (h - 1) // layer_stride + 1  # 'same' padding for odd kernels (and the 1x1 skip)
            c_in = c
    tail = [make_signature(CONV2D, c_in=c_in, h=h, w=h, c_out=last, kernel=1, activation=ACTIVATION),
            make_signature(GLOBAL_AVGPOOL, c_in=last, h=h, w=h),
            make_signature(FC, c_in=last, c_out=classes)]
    return FBNetSpace(name, resolution, head, layers, tail, description)


# FBNet Table 1: (n, c, s) of the searched stages.
FBNET_STAGES = ((1, 16, 1), (4, 24, 2), (4, 32, 2), (4, 64, 2), (4, 112, 1), (4, 184, 2), (1, 352, 1))
FBNET_MINI_STAGES = ((1, 8, 1), (2, 12, 2), (2, 16, 2), (2, 24, 2), (2, 32, 1), (2, 48, 2), (1, 64, 1))
FBNET_MINI_CLASSES = 10


def fbnet() -> FBNetSpace:
    """FBNet's space (Table 1 macro-architecture, Table 2 candidates) at 224 px, 1000 classes."""
    return _build("fbnet", 224, 16, FBNET_STAGES, 1984, 1000,
                  "FBNet (Wu et al. 2019, Tables 1-2): 22 layers x 9 candidate blocks at 224 px")


def fbnet_mini() -> FBNetSpace:
    """FBNet's structure at CPU scale: 12 layers x 9 candidates, 32 px, 10 classes (supernet trainable here)."""
    return _build("fbnet-mini", 32, 8, FBNET_MINI_STAGES, 256, FBNET_MINI_CLASSES,
                  "FBNet-mini: FBNet's layer-wise space at a quarter of the widths, 12 layers, 32 px, 10 classes")
