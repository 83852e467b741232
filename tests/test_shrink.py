"""Approximate shrinking morphisms (remove a layer, narrow a layer) and distillation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import FASHION

from eas import morphisms
from eas.data import load_dataset
from eas.distill import DistillConfig, agreement, distill
from eas.morphisms.narrow import narrow, narrowable_layers, unit_importance
from eas.morphisms.remove_layer import removable_layers, remove_layer
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.training import train_child

ARCH = "C(8,3,1), P(2,2,MAX), C(8,3,1), P(2,2,MAX), FC(32), FC(32), SM(10)"


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def same_function(a, b) -> float:
    a.eval()
    b.eval()
    with torch.no_grad():
        return float((a(images()) - b(images())).abs().max())


def test_remove_layer_inverts_net2deeper_exactly() -> None:
    net = build_network(ARCH, seed=0)
    for block, pos in [(1, 0), (2, 0), (2, 1)]:
        deeper = morphisms.net2deeper(net, block, pos, rng=np.random.default_rng(0))
        inserted = deeper.arch.blocks()[block][pos + 1]
        child = remove_layer(deeper, inserted)
        assert str(child.arch) == ARCH
        assert same_function(child, net) < 1e-5
    assert len(deeper.arch.layers) == len(net.arch.layers) + 1  # the parent is untouched


def test_remove_layer_shifts_skips_and_gates() -> None:
    arch = "C(8,3,1), C(8,3,1), C(8,3,1), C(8,3,1), S(2,3,ADD), P(2,2,MAX), FC(16), SM(10)"
    net = build_network(arch, seed=0)
    with torch.no_grad():
        net.gates["2_3"].fill_(0.5)
    child = remove_layer(net, 1)
    assert str(child.arch) == ("C(8,3,1), C(8,3,1), C(8,3,1), S(1,2,ADD), P(2,2,MAX), FC(16), "
                               "SM(10)")
    assert float(child.gates["1_2"].detach()) == 0.5
    assert torch.equal(child.layers[1].conv.weight, net.layers[2].conv.weight)
    assert removable_layers(net.arch, net.input_shape) == [1]  # 0 maps 1 -> 8, 2/3 in a skip


def test_remove_layer_refusals() -> None:
    net = build_network(ARCH, seed=0)
    for layer, match in [(0, "keeping the channel count"), (1, "only convolution"),
                         (4, "features"), (6, "only convolution"), (9, "out of range")]:
        with pytest.raises(ValueError, match=match):
            remove_layer(net, layer)
    skip = build_network("C(8,3,1), C(8,3,1), S(0,1,CAT), P(2,2,MAX), SM(10)", seed=0)
    with pytest.raises(ValueError, match="skip"):
        remove_layer(skip, 1)
    s2 = build_network("C(8,3,1), C(8,3,2), P(2,2,MAX), SM(10)", seed=0)
    with pytest.raises(ValueError, match="stride"):
        remove_layer(s2, 1)


def test_narrow_dropping_ignored_units_is_exact() -> None:
    net = build_network(ARCH, seed=0)
    with torch.no_grad():  # the next layer ignores units 1, 4, 6 of conv 2 and units 0..15 of FC 4
        net.layers[4].fc.weight.view(32, 8, 49)[:, [1, 4, 6]] = 0
        net.layers[5].fc.weight[:, :16] = 0
    conv = narrow(net, 2, 5)
    assert str(conv.arch).startswith("C(8,3,1), P(2,2,MAX), C(5,3,1)")
    assert same_function(conv, net) < 1e-5
    fc = narrow(net, 4, 16)
    assert "FC(16), FC(32)" in str(fc.arch)
    assert same_function(fc, net) < 1e-5
    assert torch.equal(fc.layers[4].fc.weight, net.layers[4].fc.weight[16:])
    assert net.layers[2].conv.weight.shape[0] == 8  # the parent is untouched


def test_narrow_keeps_the_most_important_units() -> None:
    net = build_network(ARCH, seed=0)
    score = unit_importance(net, 2)
    child = narrow(net, 2, 3)
    top = np.sort(np.argsort(-score, kind="stable")[:3])
    assert torch.equal(child.layers[2].conv.weight, net.layers[2].conv.weight[top])
    assert torch.equal(child.layers[2].bn.running_var, net.layers[2].bn.running_var[top])
    assert narrowable_layers(net.arch) == [0, 2, 4, 5]


def test_narrow_refusals() -> None:
    net = build_network(ARCH, seed=0)
    for layer, width, match in [(1, 3, "only convolution"), (0, 8, r"1\.\.7"), (0, 0, r"1\.\.7"),
                                (0, 2.5, "integer"), (6, 4, "only convolution")]:
        with pytest.raises(ValueError, match=match):
            narrow(net, layer, width)
    with pytest.raises(ValueError, match="criterion"):
        narrow(net, 0, 4, criterion="random")
    skip = build_network("C(8,3,1), C(8,3,1), S(0,1,ADD), P(2,2,MAX), SM(10)", seed=0)
    with pytest.raises(ValueError, match="skip"):
        narrow(skip, 0, 4)
    dense = build_network("C(8,3,1), DL(4,3,0), DL(4,3,0), P(2,2,AVG), SM(10)", seed=0)
    with pytest.raises(ValueError, match="dense block"):
        narrow(dense, 0, 4)


def test_distill_config_checks() -> None:
    for kwargs, match in [({"steps": -1}, "steps"), ({"temperature": 0}, "temperature"),
                          ({"alpha": 2}, "alpha"), ({"lr": 0}, "lr")]:
        with pytest.raises(ValueError, match=match):
            DistillConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
@pytest.mark.usefixtures("one_thread")
def test_distillation_brings_shrunk_children_back_to_their_parent() -> None:
    data = load_dataset("fashion-mnist", val_size=1000, train_subset=4000, seed=0)
    parent = build_network(ARCH, seed=0)
    train_child(parent, data, TrainConfig(epochs=1, batch_size=64, channels_last=False), seed=0)
    parent.eval()
    held_out = data.val_x
    for child in (narrow(parent, 2, 3), narrow(parent, 4, 8), narrow(parent, 0, 3),
                  remove_layer(parent, 5)):
        before = agreement(parent, child, held_out, data)
        res = distill(child, parent, data, DistillConfig(steps=200), seed=0)
        after = agreement(parent, res.net, held_out, data)
        assert after["kl"] < before["kl"] and after["top1"] > before["top1"], (before, after)
        assert after["top1"] > 0.85
        assert res.last_loss < res.first_loss
    # deterministic: the same seed gives the same distilled weights
    child = narrow(parent, 2, 3)
    a = distill(child, parent, data, DistillConfig(steps=20), seed=3).net
    b = distill(copy.deepcopy(child), parent, data, DistillConfig(steps=20), seed=3).net
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
