"""The Once-for-All MobileNetV3 search space (Cai et al., ICLR 2020), ``ofa-mbv3``.

OFA trains one MobileNetV3 supernet and searches its subnets: per stage a depth,
per block a kernel size and an expansion ratio, and the input resolution; the
widths are fixed.  This is the width-1.2 network of OFA's published latency
lookup tables (``ofa/tutorial/latency_table.py``: the Note10 tables, one YAML
per resolution, which ``bench lut import --format ofa-yaml`` reads)::

    resolution 160..224 step 16              (the resolutions OFA publishes LUTs for)
    stem       conv2d 3x3 stride 2, 24, h-swish                            OFA "Conv"
    block 0    inverted_residual 24 -> 24, t = 1, 3x3, relu (residual)      "expanded_conv"
    stages 1-5 widths 32, 48, 96, 136, 192; strides 2, 2, 2, 1, 2
               activation relu, relu, h-swish, h-swish, h-swish
               squeeze-and-excite  -,   SE,   -,   SE,   SE   (inverted_residual_se)
               depth d1..d5 in 2..4 (the first d blocks of 4)
               block i (1..20): kernel k_i in 3, 5, 7; expansion e_i in 3, 4, 6
    final      conv2d 1x1 -> 1152, h-swish                                 "Conv_1"
               global_avgpool                                              "AvgPool2D"
               conv2d 1x1 (on 1x1) -> 1536, h-swish                        "Conv_2"
               fc -> 1000                                                  "Logits"

Genes: ``resolution``, ``d1..d5``, ``k1..k20`` and ``e1..e20``.  An expansion
gene holds the *index* of the ratio in :data:`EXPAND_RATIOS` (0, 1, 2 for 3, 4,
6): a gene is an evenly spaced integer grid, and OFA's ratios are not
(:meth:`OfaMobileNetV3Space.describe` shows the ratios).  Block i of stage s
(i = 4 (s - 1) + j) is present when j <= d_s; the first block of a stage takes
the previous width and the stage's stride, the others map the width to itself at
stride 1 with the residual add.  A block's expanded width is
``make_divisible(round(c_in * e), 8)`` as in OFA's ``DynamicMBConvLayer``, its
squeeze-and-excite width :func:`harness.signature.se_reduced_channels` of that.

The space is compiled into slots by hand (the stage-table compiler of
:mod:`optimizer.spaces.stages` knows no per-block genes); each slot declares
the genes it reads, so the latency predictor prices batches by array indexing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.signature import (
    CONV2D,
    FC,
    GLOBAL_AVGPOOL,
    INVERTED_RESIDUAL,
    INVERTED_RESIDUAL_SE,
)
from optimizer.spaces.chamnet import make_divisible
from optimizer.spaces.space import Gene, SearchSpace, Slot
from optimizer.spaces.stages import _Signatures

# OFA MobileNetV3 at width multiplier 1.2 (the published latency tables' network).
STEM_WIDTH = 24
FIRST_BLOCK_WIDTH = 24
STAGE_WIDTHS = (32, 48, 96, 136, 192)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTIVATIONS = ("relu", "relu", "hardswish", "hardswish", "hardswish")
STAGE_SE = (False, True, False, True, True)
FINAL_EXPAND_WIDTH = 1152
FEATURE_MIX_WIDTH = 1536
CLASSES = 1000
EXPAND_RATIOS = (3, 4, 6)
KERNELS = (3, 5, 7)
DEPTHS = (2, 3, 4)
RESOLUTIONS = (160, 176, 192, 208, 224)
BLOCKS_PER_STAGE = 4


def _out(size: np.ndarray | int, stride: int) -> np.ndarray | int:
    """Output size of a 'same'-padded odd kernel: OFA's ``(size - 1) // stride + 1``."""
    return (size - 1) // stride + 1


def _expanded_widths(c_in: int) -> np.ndarray:
    """OFA's expanded width ``make_divisible(round(c_in * e), 8)`` for each ratio of :data:`EXPAND_RATIOS`."""
    return np.array([make_divisible(round(c_in * e), 8) for e in EXPAND_RATIOS], dtype=np.int64)


class OfaMobileNetV3Space(SearchSpace):
    """The ``ofa-mbv3`` space: a :class:`SearchSpace` whose description lists each stage's blocks (k, e)."""

    def describe(self, x: Any) -> dict[str, Any]:
        x = self._vector(x)
        values = dict(zip(self.gene_names, (int(v) for v in x)))
        stages = []
        for s in range(len(STAGE_WIDTHS)):
            depth = values[f"d{s + 1}"]
            blocks = [{"k": values[f"k{4 * s + j + 1}"], "e": EXPAND_RATIOS[values[f"e{4 * s + j + 1}"]]}
                      for j in range(depth)]
            stages.append({"stage": f"stage{s + 1}", "c": STAGE_WIDTHS[s], "n": depth, "s": STAGE_STRIDES[s],
                           "activation": STAGE_ACTIVATIONS[s], "se": STAGE_SE[s], "blocks": blocks})
        units = self.signatures(x)
        return {"space": self.name, "genes": values, "resolution": self.resolution(x), "stages": stages,
                "units": len(units), "macs": sum(s.macs for s in units), "params": self.params(x)}


def ofa_mbv3_genes(resolution: int, depths: Sequence[int], kernels: Sequence[int],
                   expand_ratios: Sequence[int]) -> list[int]:
    """The gene vector of an OFA subnet given as OFA writes it (``r``, ``d``, ``ks``, ``e``: 5, 20 and 20 values)."""
    if len(depths) != len(STAGE_WIDTHS) or len(kernels) != 20 or len(expand_ratios) != 20:
        raise ValueError("an OFA MobileNetV3 subnet has 5 depths, 20 kernel sizes and 20 expansion ratios")
    return [int(resolution), *map(int, depths), *map(int, kernels), *(EXPAND_RATIOS.index(e) for e in expand_ratios)]


def ofa_mbv3() -> OfaMobileNetV3Space:
    """The OFA MobileNetV3 (width 1.2) space, with OFA's largest and smallest subnets at each resolution as baselines."""
    genes = [Gene("resolution", RESOLUTIONS[0], RESOLUTIONS[-1], RESOLUTIONS[1] - RESOLUTIONS[0])]
    genes += [Gene(f"d{s}", DEPTHS[0], DEPTHS[-1], 1) for s in range(1, 6)]
    genes += [Gene(f"k{i}", KERNELS[0], KERNELS[-1], 2) for i in range(1, 21)]
    genes += [Gene(f"e{i}", 0, len(EXPAND_RATIOS) - 1, 1) for i in range(1, 21)]
    names = [g.name for g in genes]
    R = names.index("resolution")

    def ones(X: np.ndarray) -> np.ndarray:
        return np.ones(len(X), dtype=np.int64)

    def sizes(X: np.ndarray) -> list[np.ndarray]:
        """The input size of every stage (after the stem), then the final size: [N] arrays."""
        h = _out(X[:, R].astype(np.int64), 2)
        out = [h]
        for stride in STAGE_STRIDES:
            h = _out(h, stride)
            out.append(h)
        return out

    def square(r: Sequence[int]) -> dict[str, int]:
        return {"h": r[0], "w": r[0]}

    def block(r: Sequence[int]) -> dict[str, int]:
        return {"h": r[0], "w": r[0], "kernel": r[1], "padding": r[1] // 2, "mid_channels": r[2]}

    def constant(X: np.ndarray) -> np.ndarray:
        return np.ones((len(X), 1), dtype=np.int64)

    slots = [
        Slot("stem", lambda X: X[:, [R]].astype(np.int64),
             _Signatures(CONV2D, square, c_in=3, c_out=STEM_WIDTH, kernel=3, stride=2, activation="hardswish"),
             ones, genes=(R,)),
        Slot("block0", lambda X: sizes(X)[0][:, None],
             _Signatures(INVERTED_RESIDUAL, square, c_in=STEM_WIDTH, c_out=FIRST_BLOCK_WIDTH, kernel=3,
                         mid_channels=STEM_WIDTH, activation="relu"), ones, genes=(R,)),
    ]
    c_in = FIRST_BLOCK_WIDTH
    for s, (width, stride, act, se) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES, STAGE_ACTIVATIONS, STAGE_SE)):
        D = names.index(f"d{s + 1}")
        kind = INVERTED_RESIDUAL_SE if se else INVERTED_RESIDUAL
        for j in range(BLOCKS_PER_STAGE):
            i = 4 * s + j + 1
            K, E = names.index(f"k{i}"), names.index(f"e{i}")
            block_in, block_stride = (c_in, stride) if j == 0 else (width, 1)

            def params(X: np.ndarray, s=s, j=j, K=K, E=E, mids=_expanded_widths(block_in)) -> np.ndarray:
                h = sizes(X)[s] if j == 0 else sizes(X)[s + 1]
                return np.stack([h, X[:, K].astype(np.int64), mids[X[:, E].astype(np.int64)]], axis=1)

            if j < DEPTHS[0]:
                count, slot_genes = ones, (R, K, E)
            else:
                count = (lambda X, D=D, j=j: (X[:, D] > j).astype(np.int64))
                slot_genes = (R, D, K, E)
            make = _Signatures(kind, block, c_in=block_in, c_out=width, stride=block_stride, activation=act)
            slots.append(Slot(f"stage{s + 1}.block{j + 1}", params, make, count, genes=tuple(sorted(slot_genes))))
        c_in = width
    slots += [
        Slot("final_expand", lambda X: sizes(X)[-1][:, None],
             _Signatures(CONV2D, square, c_in=STAGE_WIDTHS[-1], c_out=FINAL_EXPAND_WIDTH, kernel=1,
                         activation="hardswish"), ones, genes=(R,)),
        Slot("avgpool", lambda X: sizes(X)[-1][:, None],
             _Signatures(GLOBAL_AVGPOOL, square, c_in=FINAL_EXPAND_WIDTH), ones, genes=(R,)),
        Slot("feature_mix", constant,
             _Signatures(CONV2D, lambda r: {}, c_in=FINAL_EXPAND_WIDTH, h=1, w=1, c_out=FEATURE_MIX_WIDTH, kernel=1,
                         activation="hardswish"), ones, genes=()),
        Slot("classifier", constant, _Signatures(FC, lambda r: {}, c_in=FEATURE_MIX_WIDTH, c_out=CLASSES), ones,
             genes=()),
    ]
    baselines = {}
    for r in RESOLUTIONS:
        baselines[f"ofa-largest-{r}"] = ofa_mbv3_genes(r, [4] * 5, [7] * 20, [6] * 20)
        baselines[f"ofa-smallest-{r}"] = ofa_mbv3_genes(r, [2] * 5, [3] * 20, [3] * 20)
    return OfaMobileNetV3Space(
        "ofa-mbv3", genes, slots, resolution="resolution", baselines=baselines,
        description="Once-for-All MobileNetV3 (width 1.2, the published LUTs' network): per-stage depth 2-4, "
                    "per-block kernel 3/5/7 and expansion 3/4/6 (genes e*: index 0/1/2), SE and h-swish as in "
                    "MobileNetV3, 160-224 px")
