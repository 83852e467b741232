"""The DenseNet forward (one concatenation per dense layer, in-place ReLUs) computes exactly
what the straightforward version computes: outputs and gradients bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from eas.arch import Architecture, densenet_bc
from eas.network import ChildNet, build_network


def reference_forward(net: ChildNet, x: Tensor) -> Tensor:
    """Every dense layer reads the concatenation of its whole block, rebuilt from a list."""
    kept: dict[int, Tensor] = {}
    block: list[Tensor] | None = None
    for i, module in enumerate(net.layers):
        if net._dense[i]:
            block = [x] if block is None else block
            y = module(torch.cat(block, 1) if len(block) > 1 else block[0])
            block.append(y)
            x = torch.cat(block, 1)
        else:
            block = None
            y = module(x)
            for s in net.arch.skips_into(i):
                if s.mode == "ADD":
                    y = y + net.gates[f"{s.src}_{s.dst}"] * kept[s.src]
                else:
                    y = torch.cat([y, kept[s.src]], 1)
            x = y
        if i in net._sources:
            kept[i] = y
    return x


ARCHS = [
    densenet_bc(16, 12, spatial=16),
    Architecture.parse("DL(12,3,0), DL(12,3,0), C(16,1,1), P(2,2,AVG), DL(12,3,48), "
                       "P(8,8,AVG), SM(10)"),
    Architecture.parse("C(16,3,1), C(16,3,1), S(0,1,ADD), C(16,3,1), S(0,2,CAT), "
                       "P(2,2,MAX), FC(32), SM(10)"),
]


@pytest.mark.parametrize("index", range(len(ARCHS)))
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_and_gradients_equal_the_reference(index: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    net = build_network(ARCHS[index], (3, 16, 16), seed=index)
    x = torch.randn(4, 3, 16, 16)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    for train in (False, True):
        net.train(train)
        outs, grads = [], []
        for fwd in (net.forward, lambda t: reference_forward(net, t)):
            state = {k: v.clone() for k, v in net.state_dict().items()}
            net.zero_grad(set_to_none=True)
            out = fwd(x)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append([p.grad.clone() for p in net.parameters()])
            net.load_state_dict(state)  # undo the BN statistics update of train mode
        assert torch.equal(outs[0], outs[1])
        for a, b in zip(*grads):
            assert torch.equal(a, b)
