"""Filter pruning of a :class:`~optimizer.training.torch_networks.Network`: which channels can shrink together, and how.

NetAdapt removes whole filters.  Removing output filters of one layer also
removes input channels of every layer that reads that tensor, and where a
residual add joins two tensors, both must keep the same channels.  This module
works that out once for a network, as *channel groups*:

* a **width** group is a set of tensors between units that must keep the same
  channels: a unit's input and output are tied when the unit adds its input
  to its output (MobileNetV2's and ResNet's identity shortcuts), or when it
  maps channels one to one (depthwise, pooling).  A stage of MobileNetV2
  blocks is therefore pruned in lockstep, as NetAdapt does for MobileNetV2
  (§4.5: "reduce all bottleneck layers of the same resolution in lockstep");
* an **expansion** group is the inner width of one block: an inverted
  residual's expanded channels (its expand, depthwise and project convs) or a
  bottleneck's reduced width.  It is pruned individually, as NetAdapt prunes
  MobileNetV2's expansion layers.

The network's input channels and its output (the classifier's classes) are
fixed; so is any width whose change would alter a block's structure (an
expansion shrunk to its input width drops the expand conv; a stage entry
shrunk to its output width gains a shortcut): such sizes are refused, not
silently re-wired.

Which filters survive: the ``n`` channels whose producing filters have the
largest L2 norm (NetAdapt §3.3), measured on the batch-norm-folded weights
(what the layer actually multiplies by) and summed over every non-depthwise
layer that writes the group (for a lockstep stage: every block's project
conv and the stage entry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from harness.signature import ACTIVATION, ADD, AVGPOOL, BOTTLENECK, CONV2D, DEPTHWISE_CONV, FC, GLOBAL_AVGPOOL, IDENTITY, INVERTED_RESIDUAL, POINTWISE_CONV, OpSignature


class InvalidPruning(ChameleonError):
    """A channel count or filter choice a network cannot take (a fixed width, a changed structure, too few channels)."""


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are pruned together, and the units whose signature changes with them."""

    index: int
    name: str  # "width: units 3-5" or "expansion: unit 4"
    kind: str  # "width" | "expansion"
    channels: int  # current count
    units: tuple[int, ...]  # units whose signature depends on the group


@dataclass(frozen=True)
class _Layer:
    """One Conv/Gemm of a unit, in the unit's layer order: the variables of its input and output channels."""

    in_var: int
    out_var: int
    depthwise: bool


@dataclass(frozen=True)
class _Unit:
    in_var: int
    out_var: int
    mid_var: int | None  # None: the unit has no independent inner width
    layers: tuple[_Layer, ...]


class ChannelStructure:
    """The channel groups of a chain of units, and how a choice of sizes maps back to signatures.

    Built from the units alone (no weights): ``ChannelStructure(units)``.
    Variables are the tensors between units (0 = network input, U = output)
    and one inner width per block; a union-find ties the variables that must
    be equal; the free classes are the groups.
    """

    def __init__(self, units: Sequence[OpSignature]) -> None:
        self.units_in = tuple(units)
        count = len(self.units_in)
        if not count:
            raise InvalidPruning("a network needs at least one unit")
        parent = list(range(count + 1))
        sizes: dict[int, int] = {}
        fixed = {0, count}  # the input image's channels and the logits
        next_var = count + 1
        described: list[_Unit] = []

        def find(v: int) -> int:
            while parent[v] != v:
                parent[v] = parent[parent[v]]
                v = parent[v]
            return v

        def tie(a: int, b: int) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra

        for u, sig in enumerate(self.units_in):
            if u and self.units_in[u - 1].output_shape[1] != sig.c_in:
                raise InvalidPruning(f"unit {u} ({sig.kind}) takes {sig.c_in} channels but unit {u - 1} gives "
                                     f"{self.units_in[u - 1].output_shape[1]}")
            a, b = u, u + 1
            sizes[a], sizes[b] = sig.c_in, sig.c_out
            mid: int | None = None
            layers: list[_Layer] = []
            kind = sig.kind
            if kind in (DEPTHWISE_CONV, AVGPOOL, GLOBAL_AVGPOOL, ADD, ACTIVATION, IDENTITY):
                tie(a, b)
                if kind == DEPTHWISE_CONV:
                    layers.append(_Layer(a, b, True))
            elif kind in (CONV2D, POINTWISE_CONV):
                if sig.groups == 1:
                    layers.append(_Layer(a, b, False))
                elif sig.groups == sig.c_in == sig.c_out:
                    tie(a, b)
                    layers.append(_Layer(a, b, True))
                else:  # a grouped conv: channels must stay multiples of the groups; left alone
                    fixed.update((a, b))
                    layers.append(_Layer(a, b, False))
            elif kind == FC:
                layers.append(_Layer(a, b, False))
            elif kind == INVERTED_RESIDUAL:
                if sig.mid_channels == sig.c_in:  # t = 1: the depthwise runs on the input's channels
                    inner = a
                else:
                    parent.append(next_var)
                    inner = mid = next_var
                    sizes[inner] = sig.mid_channels
                    next_var += 1
                    layers.append(_Layer(a, inner, False))
                layers.append(_Layer(inner, inner, True))
                layers.append(_Layer(inner, b, False))
                if sig.has_residual:
                    tie(a, b)
            elif kind == BOTTLENECK:
                parent.append(next_var)
                inner = mid = next_var
                sizes[inner] = sig.mid_channels
                next_var += 1
                if sig.groups != 1:
                    fixed.add(inner)
                layers += [_Layer(a, inner, False), _Layer(inner, inner, False), _Layer(inner, b, False)]
                if sig.has_residual:
                    tie(a, b)
                else:
                    layers.append(_Layer(a, b, False))
            else:
                raise InvalidPruning(f"unit {u}: kind {kind} cannot be pruned")
            described.append(_Unit(a, b, mid, tuple(layers)))

        self._find = find
        self._units = tuple(described)
        self._sizes = sizes
        roots_fixed = {find(v) for v in fixed}
        classes: dict[int, list[int]] = {}
        for v in range(next_var):
            classes.setdefault(find(v), []).append(v)
        groups: list[ChannelGroup] = []
        self._group_of_root: dict[int, int] = {}
        for root in sorted(classes, key=lambda r: min(classes[r])):
            if root in roots_fixed:
                continue
            members = classes[root]
            units = sorted({u for u, d in enumerate(described)
                            if {find(d.in_var), find(d.out_var)} & {root} or (d.mid_var is not None and find(d.mid_var) == root)})
            tensors = [v for v in members if v <= count]
            if tensors:
                kind, name = "width", f"width: units {units[0]}-{units[-1]}" if len(units) > 1 else f"width: unit {units[0]}"
            else:
                kind, name = "expansion", f"expansion: unit {units[0]}"
            self._group_of_root[root] = len(groups)
            groups.append(ChannelGroup(len(groups), name, kind, sizes[members[0]], tuple(units)))
        self.groups: tuple[ChannelGroup, ...] = tuple(groups)

    # ---- sizes and signatures
    def group_of(self, var: int) -> int | None:
        """The group a variable belongs to (None: fixed)."""
        return self._group_of_root.get(self._find(var))

    def sizes(self) -> tuple[int, ...]:
        """The current channel count of every group, in group order."""
        return tuple(g.channels for g in self.groups)

    def resized(self, sizes: Sequence[int] | Mapping[int, int]) -> list[OpSignature]:
        """The units with the groups at ``sizes`` (all groups, or {group: size} for some).

        Raises :class:`InvalidPruning` when a size is below 1 or would change a
        block's structure (see the module docstring).
        """
        chosen = dict(enumerate(self.sizes()))
        chosen.update(dict(sizes) if isinstance(sizes, Mapping) else dict(enumerate(sizes)))
        if len(chosen) != len(self.groups):
            raise InvalidPruning(f"expected {len(self.groups)} group sizes, got {len(chosen)}")

        def size(var: int | None, default: int) -> int:
            if var is None:
                return default
            g = self.group_of(var)
            return self._sizes[var] if g is None else int(chosen[g])

        out: list[OpSignature] = []
        for u, (sig, d) in enumerate(zip(self.units_in, self._units)):
            c_in, c_out = size(d.in_var, sig.c_in), size(d.out_var, sig.c_out)
            if min(c_in, c_out) < 1:
                raise InvalidPruning(f"unit {u}: {c_in} -> {c_out} channels")
            values: dict[str, int] = {"c_in": c_in, "c_out": c_out}
            if sig.kind == INVERTED_RESIDUAL:
                values["mid_channels"] = c_in if d.mid_var is None else size(d.mid_var, sig.mid_channels)
            elif sig.kind == BOTTLENECK:
                values["mid_channels"] = size(d.mid_var, sig.mid_channels)
            elif sig.kind == DEPTHWISE_CONV or (sig.kind in (CONV2D, POINTWISE_CONV) and sig.groups > 1
                                                and sig.groups == sig.c_in == sig.c_out):
                values["groups"] = c_in
            new = replace(sig, **values)
            if _structure(new) != _structure(sig):
                raise InvalidPruning(f"unit {u} ({sig.kind}): {c_in} -> {values.get('mid_channels', '')} -> {c_out} "
                                     f"channels would change its structure")
            out.append(new)
        return out

    def allowed(self, group: int, channels: int) -> bool:
        """Whether ``group`` can take ``channels`` with every other group as it is."""
        try:
            self.resized({group: channels})
        except (InvalidPruning, ChameleonError):
            return False
        return True

    # ---- weights
    def layers_writing(self, net: Any, group: int) -> list[tuple[Any, bool]]:
        """The (layer module, is depthwise) pairs of ``net`` whose output channels are the group's."""
        found = []
        for unit, d in zip(net.units, self._units):
            for layer, spec in zip(unit.layers, d.layers):
                if self.group_of(spec.out_var) == group:
                    found.append((layer, spec.depthwise))
        return found

    def filter_order(self, net: Any, group: int) -> np.ndarray:
        """The group's channels, most important first: L2 norm of the folded filters that write them."""
        scores = None
        fallback = None
        for layer, depthwise in self.layers_writing(net, group):
            weight, _ = layer.folded()
            norms = (weight.reshape(weight.shape[0], -1).astype(np.float64) ** 2).sum(axis=1)
            if depthwise:
                fallback = norms if fallback is None else fallback + norms
            else:
                scores = norms if scores is None else scores + norms
        chosen = scores if scores is not None else fallback
        if chosen is None:
            raise InvalidPruning(f"group {group}: no layer writes it")
        return np.argsort(-np.sqrt(chosen), kind="stable")

    def prune(self, net: Any, sizes: Mapping[int, int]) -> Any:
        """A new :class:`Network` with the groups cut to ``sizes``, keeping the largest-norm filters' weights.

        ``net`` must be this structure's network (same units).  Batch-norm
        parameters and running statistics are sliced with their channels, so
        the pruned network computes exactly what the kept channels computed.
        """
        import torch

        from optimizer.training.torch_networks import Network

        if [u.signature for u in net.units] != list(self.units_in):
            raise InvalidPruning("the network's units are not the ones this structure was built from")
        units = self.resized(sizes)
        keep: dict[int, np.ndarray] = {}
        for g, n in sizes.items():
            if n > self.groups[g].channels:
                raise InvalidPruning(f"{self.groups[g].name}: cannot grow {self.groups[g].channels} -> {n} channels")
            keep[g] = np.sort(self.filter_order(net, g)[:n])

        def index(var: int, length: int) -> torch.Tensor:
            g = self.group_of(var)
            chosen = keep.get(g) if g is not None else None
            return torch.arange(length) if chosen is None else torch.from_numpy(chosen.astype(np.int64))

        pruned = Network(units)
        with torch.no_grad():
            for old_unit, new_unit, d in zip(net.units, pruned.units, self._units):
                for old, new, spec in zip(old_unit.layers, new_unit.layers, d.layers):
                    out_idx = index(spec.out_var, old[0].weight.shape[0])
                    weight = old[0].weight.detach().index_select(0, out_idx)
                    if not spec.depthwise and weight.ndim >= 2 and self.group_of(spec.in_var) is not None:
                        weight = weight.index_select(1, index(spec.in_var, weight.shape[1]))
                    new[0].weight.copy_(weight)
                    if isinstance(old[1], torch.nn.BatchNorm2d):
                        for name in ("weight", "bias", "running_mean", "running_var"):
                            getattr(new[1], name).copy_(getattr(old[1], name).detach().index_select(0, out_idx))
                        new[1].num_batches_tracked.copy_(old[1].num_batches_tracked)
                    else:  # Dense: Linear with bias
                        new[0].bias.copy_(old[0].bias.detach().index_select(0, out_idx))
        return pruned.train(net.training)


def _structure(sig: OpSignature) -> tuple[bool, bool]:
    """What a resize must not change: whether the block has an expand conv, and whether it has an identity shortcut."""
    expands = sig.kind == INVERTED_RESIDUAL and sig.mid_channels != sig.c_in
    return expands, sig.has_residual
