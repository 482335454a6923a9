"""The ChamNet search spaces (ChamNet, Tables 1 and 2) and the reference networks' genes.

Each space is a stage table (:mod:`optimizer.spaces.stages`) with named baselines: MobileNetV2
at every width multiplier and resolution in ``chamnet-mobile``, ResNet-50/101/152 in ``chamnet-res``,
uniform-width networks in ``chamnet-mobile-mini`` (the main job's reduced space).

Spaces
------
``chamnet-mobile`` (Table 1), 21 genes::

    resolution [96, 224] step 32
    c0 [8, 48] step 8                      stem conv2d 3x3 stride 2, relu6
    c1 [8, 32] step 8                      stage 1: inverted residual, t = 1, n = 1, s = 1
    t2..t7 [2, 6], c2..c7, n2..n6          stages 2..7 (strides 2, 2, 2, 1, 2, 1; n7 = 1)
      c2 [8,40] c3 [8,48] c4 [16,96] c5 [32,160] c6 [56,256] c7 [96,480] (step 8)
      n2 [1,2]  n3 [1,3]  n4 [1,4]  n5 [1,3]  n6 [1,3]
    c_last [1024, 2048] step 8             conv2d 1x1, relu6
    then global_avgpool and fc 1000

The units are exactly those the harness's ``chamnet-mobile`` plan generator
(:func:`harness.plans.mobilenet_v2_stages`) emits: inverted residuals 3x3 with
relu6 and ``mid_channels = c_in * t`` (the first block of a stage takes the
previous stage's width and the stage's stride; the repeated blocks map
c -> c at stride 1, sharing the stage's t), the last 1x1 conv as kind conv2d.

``chamnet-res`` (Table 2), 13 genes::

    c0 [16, 64] step 8                     stem conv2d 7x7 stride 2 padding 3, relu
    t1..t4 [2, 6], c1..c4, n1..n4          4 bottleneck stages, stride 2 each
      c1 [16,64] c2 [32,128] c3 [64,256] c4 [128,512] (step 8)
      n1 [1,3]   n2 [1,8]    n3 [1,36]   n4 [1,3]
    then global_avgpool and fc 1000

A bottleneck has ``mid_channels = c`` and ``c_out = c * t``, kernel 3, relu;
the first block of a stage takes the previous width with stride 2 (and a
projection shortcut), the others map c*t -> c*t at stride 1.  The resolution
is fixed at 224 and is *not* a gene (a gene with one value would only add a
dead dimension to every sampler); :meth:`SearchSpace.resolution` reports it.
ResNet's 3x3 stride-2 max pool after the stem is not in the operator
vocabulary, so it is left out and the first stage's stride 2 (Table 2 gives
s = 2 for every stage) does that downsampling instead: the spatial sizes are
ResNet's (112 after the stem, then 56, 28, 14, 7), but the first block's 1x1
reduce conv runs at 112x112 instead of 56x56 (+38.5 M MACs).  ResNet-50
counts 4.133 GMACs here (25.53 M parameters), against the usual 4.1 G
(torchvision's ResNet-50 v1.5: 4.09 G, without the residual adds and the
pooling this count includes).  ResNet-101: 7.849 G, ResNet-152: 11.565 G.
MobileNetV2 1.0x-224 counts 301.1 M MACs (the paper's 300 M), 3.49 M params.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.signature import BOTTLENECK, CONV2D, FC, GLOBAL_AVGPOOL, INVERTED_RESIDUAL
from optimizer.spaces.space import Gene, SearchSpace
from optimizer.spaces.stages import Stage, build_space


# ---- ChamNet-Mobile (Table 1)
_MOBILE_STAGES_TABLE = (
    # stage, t range, c range, n range (or fixed), stride
    (2, (8, 40), (1, 2), 2),
    (3, (8, 48), (1, 3), 2),
    (4, (16, 96), (1, 4), 2),
    (5, (32, 160), (1, 3), 1),
    (6, (56, 256), (1, 3), 2),
    (7, (96, 480), 1, 1),
)
# MobileNetV2 1.0x (the paper's default column): (t, c, n) of stages 1..7.
_MOBILENET_V2 = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
MOBILENET_V2_WIDTHS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_RESOLUTIONS: tuple[int, ...] = (96, 128, 160, 192, 224)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNetV2's channel rounding: nearest multiple of ``divisor``, never more than 10 % down."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _mobile_stages(stem: tuple[int, int, int], stage1: tuple[int, int, int],
                   table: Sequence[tuple[int, tuple[int, int, int], tuple[int, int] | int, int]],
                   last: tuple[int, int, int], classes: int,
                   resolution: tuple[int, int, int],
                   t_range: tuple[int, int, int] = (2, 6, 1)) -> tuple[list[Gene], list[Stage]]:
    """Genes and stage table of a MobileNetV2-style space: stem, stage 1 (t = 1), stages 2.., last 1x1, pool, fc.

    Channel ranges are ``(low, high, step)``; ``table`` rows are ``(stage, c range, n range or fixed n, stride)``.
    """
    genes = [Gene("resolution", *resolution), Gene("c0", *stem), Gene("c1", *stage1)]
    stages = [
        Stage("stem", CONV2D, c="c0", s=2, k=3, activation="relu6"),
        Stage("stage1", INVERTED_RESIDUAL, c="c1", t=1, n=1, s=1, k=3, activation="relu6"),
    ]
    for s, c_range, n_range, stride in table:
        genes += [Gene(f"t{s}", *t_range), Gene(f"c{s}", *c_range)]
        if isinstance(n_range, tuple):
            genes.append(Gene(f"n{s}", *n_range, 1))
        stages.append(Stage(f"stage{s}", INVERTED_RESIDUAL, c=f"c{s}", t=f"t{s}",
                            n=f"n{s}" if isinstance(n_range, tuple) else n_range, s=stride, k=3,
                            activation="relu6"))
    genes.append(Gene("c_last", *last))
    stages += [
        Stage("last_conv", CONV2D, c="c_last", s=1, k=1, activation="relu6"),
        Stage("avgpool", GLOBAL_AVGPOOL),
        Stage("fc", FC, c=classes),
    ]
    return genes, stages


def chamnet_mobile() -> SearchSpace:
    """ChamNet-Mobile (Table 1), with MobileNetV2 at every width multiplier and resolution as baselines."""
    table = [(s, (lo, hi, 8), n, stride) for s, (lo, hi), n, stride in _MOBILE_STAGES_TABLE]
    genes, stages = _mobile_stages((8, 48, 8), (8, 32, 8), table, (1024, 2048, 8), 1000, (96, 224, 32))
    baselines = {}
    for m in MOBILENET_V2_WIDTHS:
        for res in MOBILENET_V2_RESOLUTIONS:
            baselines[f"mobilenetv2-{m}x-{res}"] = mobilenet_v2_genes(m, res)
    return build_space("chamnet-mobile", genes, stages, "resolution", baselines,
                       "ChamNet-Mobile (ChamNet Table 1): MobileNetV2 inverted residual stages")


# ---- ChamNet-Mobile-mini: the main job's reduced space (small images, 10 classes)
# Table 1's structure (same stages, strides, kinds) with a third of the widths,
# n up to 2, t in {2, 4, 6}, 32-64 px inputs and a 10-way classifier, so that
# every operator of the space can be measured (1,5xx signatures) and networks
# trained on a small data set in minutes on two cores.
_MINI_TABLE = (
    (2, (8, 24, 8), (1, 2), 2),
    (3, (16, 32, 8), (1, 2), 2),
    (4, (24, 48, 12), (1, 2), 2),
    (5, (32, 64, 16), (1, 2), 1),
    (6, (48, 96, 24), (1, 2), 2),
    (7, (64, 128, 32), 1, 1),
)
MINI_CLASSES = 10


def chamnet_mobile_mini() -> SearchSpace:
    """ChamNet-Mobile-mini (the main job's space), with uniform-width networks at every resolution as baselines."""
    genes, stages = _mobile_stages((8, 16, 8), (8, 16, 8), _MINI_TABLE, (256, 512, 128), MINI_CLASSES,
                                   (32, 64, 16), t_range=(2, 6, 2))
    space = build_space("chamnet-mobile-mini", genes, stages, "resolution", {},
                        "ChamNet-Mobile-mini: Table 1's stages at a third of the widths, 32-64 px, 10 classes "
                        "(the main job's space)")
    # Baselines: one uniform width for every stage (the narrowest, middle or widest of each stage's range),
    # MobileNetV2's t = 6 and n; named by that width, not by the fraction ("uniform-0w" read as zero width).
    for fraction, width in ((0.0, "narrowest"), (0.5, "mid"), (1.0, "widest")):
        for res in space.genes[0].values:
            x = space.low + np.rint(fraction * (space.high - space.low) / space.steps).astype(np.int64) * space.steps
            x[0] = res
            for s, n in zip(range(2, 8), (2, 3, 4, 3, 3, 1)):
                x[space.index(f"t{s}")] = 6
                if f"n{s}" in space.gene_names:
                    x[space.index(f"n{s}")] = min(n, space.high[space.index(f"n{s}")])
            space._baselines[f"uniform-{width}-{int(res)}"] = x
    return space


def mobilenet_v2_genes(width: float = 1.0, resolution: int = 224) -> list[int]:
    """The chamnet-mobile gene vector of MobileNetV2 at a width multiplier and resolution.

    Channels by MobileNetV2's ``_make_divisible(c * width, 8)``; the last conv
    stays 1280 for multipliers <= 1.0, else ``_make_divisible(1280 * width)``.
    Every multiplier of :data:`MOBILENET_V2_WIDTHS` at every resolution of
    :data:`MOBILENET_V2_RESOLUTIONS` falls inside the space (none dropped;
    0.35x gives stem 16 and stages 8, 8, 16, 24, 32, 56, 112).
    """
    x = [resolution, make_divisible(32 * width), make_divisible(_MOBILENET_V2[0][1] * width)]
    for s, (t, c, n) in enumerate(_MOBILENET_V2[1:], start=2):
        x += [t, make_divisible(c * width)]
        if s != 7:
            x.append(n)
    x.append(make_divisible(1280 * max(1.0, width)))
    return x


# ---- ChamNet-Res (Table 2)
_RES_TABLE = ((1, (16, 64), (1, 3)), (2, (32, 128), (1, 8)), (3, (64, 256), (1, 36)), (4, (128, 512), (1, 3)))
RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_genes(depth: int = 50) -> list[int]:
    """The chamnet-res gene vector of ResNet-50/101/152: stem 64, t = 4, c = 64, 128, 256, 512."""
    x = [64]
    for c, n in zip((64, 128, 256, 512), RESNET_DEPTHS[depth]):
        x += [4, c, n]
    return x


def chamnet_res() -> SearchSpace:
    """ChamNet-Res (Table 2), with ResNet-50/101/152 as baselines."""
    genes = [Gene("c0", 16, 64, 8)]
    stages = [Stage("stem", CONV2D, c="c0", s=2, k=7, padding=3, activation="relu")]
    for s, (c_lo, c_hi), (n_lo, n_hi) in _RES_TABLE:
        genes += [Gene(f"t{s}", 2, 6, 1), Gene(f"c{s}", c_lo, c_hi, 8), Gene(f"n{s}", n_lo, n_hi, 1)]
        stages.append(Stage(f"stage{s}", BOTTLENECK, c=f"c{s}", t=f"t{s}", n=f"n{s}", s=2, k=3,
                            activation="relu"))
    stages += [Stage("avgpool", GLOBAL_AVGPOOL), Stage("fc", FC, c=1000)]
    baselines = {f"resnet-{d}": resnet_genes(d) for d in RESNET_DEPTHS}
    return build_space("chamnet-res", genes, stages, 224, baselines,
                       "ChamNet-Res (ChamNet Table 2): ResNet bottleneck stages at 224 px, no max pool")
