"""Declarative search spaces: ChamNet-Mobile (ChamNet, Table 1), ChamNet-Res (Table 2), OFA's MobileNetV3.

An architecture is a vector of integer genes; its network is a sequence of operator signatures of the
harness's vocabulary, so the latency LUT and the predictors can run over it.

* :mod:`optimizer.spaces.space`: :class:`Gene`, :class:`Slot`, :class:`SearchSpace` (the grid, the unit
  box, the network's units, vectorised MACs and parameter counts, ONNX export), the errors,
  :func:`unit_params`;
* :mod:`optimizer.spaces.stages`: the stage-table compiler (a paper's table → slots → a space);
* :mod:`optimizer.spaces.chamnet`: the ChamNet-Mobile, ChamNet-Mobile-mini and ChamNet-Res spaces and the
  genes of their reference networks (:func:`mobilenet_v2_genes`, :func:`resnet_genes`);
* :mod:`optimizer.spaces.ofa`: Once-for-All's MobileNetV3 space (``ofa-mbv3``: squeeze-and-excite and
  h-swish blocks, per-block kernel and expansion), whose LUT OFA's published tables can fill
  (``bench lut import --format ofa-yaml``), and :func:`ofa_mbv3_genes`;
* :mod:`optimizer.spaces.fbnet`: FBNet's layer-wise spaces (``fbnet``: Tables 1-2 at 224 px; ``fbnet-mini``:
  the same at CPU scale), one gene per layer picking one of nine candidate blocks (:class:`FBNetSpace`,
  :data:`CANDIDATES`), which both EES and the differentiable search of :mod:`optimizer.dnas` search;
* this module: :func:`get_space`, the registry of spaces by name (a new space is one new module building
  it plus one line in ``_BUILDERS``).

May import: the harness's vocabulary (:mod:`harness.signature`, :mod:`harness.errors`), lazily
:mod:`harness.models.onnx_models` (ONNX export) and ``scipy`` (Sobol pools); numpy.  No torch, nothing
else of the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable

from optimizer.spaces.chamnet import (
    MINI_CLASSES,
    MOBILENET_V2_RESOLUTIONS,
    MOBILENET_V2_WIDTHS,
    RESNET_DEPTHS,
    chamnet_mobile,
    chamnet_mobile_mini,
    chamnet_res,
    make_divisible,
    mobilenet_v2_genes,
    resnet_genes,
)
from optimizer.spaces.fbnet import CANDIDATE_NAMES, CANDIDATES, FBNetSpace, fbnet, fbnet_mini
from optimizer.spaces.ofa import ofa_mbv3, ofa_mbv3_genes
from optimizer.spaces.space import Gene, InvalidArchitecture, SearchSpace, Slot, UnknownSpace, unit_params

__all__ = [
    "CANDIDATES", "CANDIDATE_NAMES", "FBNetSpace", "MINI_CLASSES", "MOBILENET_V2_RESOLUTIONS", "MOBILENET_V2_WIDTHS", "RESNET_DEPTHS", "SPACES", "Gene",
    "InvalidArchitecture", "SearchSpace", "Slot", "UnknownSpace", "get_space", "make_divisible",
    "mobilenet_v2_genes", "ofa_mbv3_genes", "resnet_genes", "unit_params",
]

# The registry: name → builder (called once, on first use).
_BUILDERS: dict[str, Callable[[], SearchSpace]] = {
    "chamnet-mobile": chamnet_mobile,
    "chamnet-res": chamnet_res,
    "chamnet-mobile-mini": chamnet_mobile_mini,
    "ofa-mbv3": ofa_mbv3,
    "fbnet": fbnet,
    "fbnet-mini": fbnet_mini,
}
SPACES: tuple[str, ...] = tuple(_BUILDERS)
_CACHE: dict[str, SearchSpace] = {}


def get_space(name: str) -> SearchSpace:
    """The search space by name (built once)."""
    if name not in _BUILDERS:
        raise UnknownSpace(f"unknown search space {name!r} (known: {', '.join(SPACES)})")
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]
