"""Channel groups and filter pruning of our PyTorch networks (NetAdapt's ChooseWhichFilters), on real networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.signature import INVERTED_RESIDUAL
from optimizer.netadapt.pruning import ChannelStructure, InvalidPruning
from optimizer.spaces import get_space
from optimizer.training.torch_networks import build_torch_network

from torch_helpers import assert_export_computes_the_same, perturb_batch_norms

MINI = get_space("chamnet-mobile-mini")
RES = get_space("chamnet-res")


def mini_network(seed: int = 3):
    """A mini network with stages of two blocks (so residual stages exist) and random BN statistics."""
    x = MINI.random(1, seed)[0]
    for name in MINI.gene_names:
        if name.startswith("n"):
            x[MINI.index(name)] = MINI.high[MINI.index(name)]
    x[MINI.index("resolution")] = 32
    net = build_torch_network(MINI, x, seed=1).eval()
    perturb_batch_norms(net)
    return net


def test_groups_tie_residual_stages_and_fix_input_and_output() -> None:
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    units = net.signatures
    # every identity-shortcut block has its input and output in one width group
    for u, sig in enumerate(units):
        if sig.has_residual:
            holding = [g for g in structure.groups if g.kind == "width" and u in g.units]
            assert any(set(g.units) >= {u - 1, u, u + 1} or u in g.units for g in holding)
    # an expansion group per expanding block, a unit of its own
    expanding = [u for u, s in enumerate(units) if s.kind == INVERTED_RESIDUAL and s.mid_channels != s.c_in]
    assert sorted(g.units[0] for g in structure.groups if g.kind == "expansion") == expanding
    # shrinking any group as far as it goes keeps the image's 3 channels and the 10 logits
    shrunk = 0
    for g in structure.groups:
        allowed = [c for c in range(8, g.channels, 8) if structure.allowed(g.index, c)]
        if allowed:
            resized = structure.resized({g.index: allowed[0]})
            assert resized[0].c_in == 3 and resized[-1].c_out == 10
            shrunk += 1
    assert shrunk >= len(structure.groups) // 2


def test_a_residual_stage_shrinks_in_lockstep() -> None:
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    stage = next(g for g in structure.groups if g.kind == "width"
                 and any(net.signatures[u].has_residual for u in g.units)
                 and any(structure.allowed(g.index, c) for c in range(8, g.channels, 8)))
    target = next(c for c in range(stage.channels - 8, 0, -8) if structure.allowed(stage.index, c))
    resized = structure.resized({stage.index: target})
    for u in stage.units:
        old, new = net.signatures[u], resized[u]
        if old.has_residual:
            assert new.has_residual and new.c_in == new.c_out == target
    changed = [u for u, (a, b) in enumerate(zip(net.signatures, resized)) if a != b]
    assert set(changed) <= set(stage.units)


def test_sizes_that_would_change_a_block_are_refused() -> None:
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    expansion = next(g for g in structure.groups if g.kind == "expansion")
    block = net.signatures[expansion.units[0]]
    assert not structure.allowed(expansion.index, block.c_in)  # the expand conv would vanish
    with pytest.raises(InvalidPruning, match="structure"):
        structure.resized({expansion.index: block.c_in})
    with pytest.raises(InvalidPruning):
        structure.prune(net, {expansion.index: expansion.channels + 8})


def test_keeping_every_channel_changes_nothing() -> None:
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    same = structure.prune(net, {g.index: g.channels for g in structure.groups}).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(same(x), net(x))


@pytest.mark.parametrize("kind", ["width", "expansion"])
def test_pruning_drops_the_weakest_filters_exactly(kind: str) -> None:
    """Silence some channels of a group (their filters and batch-norm at zero): pruning them must not change the output,
    which it does only if the L2 ranking picks exactly those and every reader's weights are sliced to match."""
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    groups = [g for g in structure.groups if g.kind == kind and g.channels >= 16]
    assert groups
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for group in groups:
        allowed = [c for c in range(8, group.channels, 8) if structure.allowed(group.index, c)]
        if not allowed:
            continue
        keep = allowed[-1]
        rng = np.random.default_rng(group.index)
        silent = torch.from_numpy(np.sort(rng.choice(group.channels, group.channels - keep, replace=False)))
        for layer, _ in structure.layers_writing(net, group.index):
            with torch.no_grad():
                layer[0].weight[silent] = 0
                layer[1].weight[silent] = 0
                layer[1].bias[silent] = 0
        with torch.no_grad():
            expected = net(x)
        pruned = structure.prune(net, {group.index: keep}).eval()
        assert structure.resized({group.index: keep}) == pruned.signatures
        with torch.no_grad():
            np.testing.assert_allclose(pruned(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
        order = structure.filter_order(net, group.index)
        assert set(order[keep:].tolist()) == set(silent.tolist())


def test_a_pruned_network_exports_to_the_harness_model_and_computes_the_same(tmp_path) -> None:
    net = mini_network()
    structure = ChannelStructure(net.signatures)
    sizes = {}
    for g in structure.groups:
        options = [c for c in range(8, g.channels, 8) if structure.allowed(g.index, c)]
        if options:
            sizes[g.index] = options[len(options) // 2]
    pruned = structure.prune(net, sizes).eval()
    assert_export_computes_the_same(pruned, tmp_path / "pruned.onnx")
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in net.parameters())


def test_resnet_bottlenecks_prune_as_units() -> None:
    net = build_torch_network(RES, RES.low, seed=0).eval()
    perturb_batch_norms(net)
    structure = ChannelStructure(net.signatures)
    kinds = {g.kind for g in structure.groups}
    assert kinds == {"width", "expansion"}
    sizes = {g.index: g.channels // 2 for g in structure.groups if structure.allowed(g.index, g.channels // 2)}
    pruned = structure.prune(net, sizes).eval()
    with torch.no_grad():
        out = pruned(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    for g in structure.groups:
        if g.kind == "expansion" and g.index in sizes:
            assert pruned.signatures[g.units[0]].mid_channels == sizes[g.index]
