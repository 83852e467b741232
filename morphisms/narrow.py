"""Narrow a conv or FC layer (approximate shrinking morphism, the inverse of Net2Wider).

Layer ``i`` keeps its ``width`` most important units; the layer that reads them
(the next conv, FC or SM layer, after any pooling) drops the input columns of
the removed units. Importance of unit ``u`` (criterion ``"l1"``)::

    score(u) = (|gamma_u| + |beta_u|) * ||W_next[:, u]||_1

the scale and shift of the unit's BatchNorm (how far its post-BN ReLU output
can move, for a normalised input) times the L1 norm of the weights the next
layer reads it with (all its spatial positions after a flatten). Ties keep the
lower index; the kept units stay in their order. A unit the next layer ignores
(all-zero columns) scores 0, so removing only such units preserves the
function exactly; in general the child is approximate and is meant to be
fine-tuned or distilled from its parent (``eas.distill``).
"""

from __future__ import annotations

import numpy as np
import torch

from eas.arch import Architecture
from eas.layers import FC, Conv, Dense, Pool, Softmax
from eas.morphisms._remap import check_layer_index
from eas.network import ChildNet, build_network

__all__ = ["CRITERIA", "narrow", "narrow_refusal", "narrowable_layers", "unit_importance"]

CRITERIA: tuple[str, ...] = ("l1",)
"""Importance criteria :func:`narrow` knows."""


def _consumer(arch: Architecture, layer: int) -> int:
    j = layer + 1
    while isinstance(arch.layers[j], Pool):
        j += 1
    return j


def narrow_refusal(arch: Architecture, layer: int, width: int | None = None) -> str | None:
    """Why ``layer`` cannot be narrowed (to ``width`` if given), or None when it can."""
    if not 0 <= layer < len(arch.layers):
        return f"layer {layer} is out of range (the network has {len(arch.layers)} layers)"
    lay = arch.layers[layer]
    if not isinstance(lay, (Conv, FC)):
        return f"layer {layer} is {lay}; only convolution (C) and FC layers can be narrowed"
    tied = [str(s) for s in arch.skips if layer in (s.src, s.dst)]
    if tied:
        return (f"layer {layer} {lay} is an end of skip connection(s) {', '.join(tied)}; its "
                "channels are read elsewhere too")
    consumer = arch.layers[_consumer(arch, layer)]
    if isinstance(consumer, Dense):
        return f"layer {layer} {lay} feeds a dense block ({consumer}); narrowing it is not supported"
    current = lay.filters if isinstance(lay, Conv) else lay.units
    if current < 2:
        return f"layer {layer} {lay} has a single unit"
    if width is not None:
        if not isinstance(width, (int, np.integer)) or isinstance(width, bool):
            return f"width must be an integer, got {width!r}"
        if not 1 <= int(width) < current:
            return f"layer {layer} {lay} has {current} units; width must be in 1..{current - 1}, got {width}"
    return None


def narrowable_layers(arch: Architecture) -> list[int]:
    """Layers :func:`narrow` accepts (to some smaller width)."""
    return [i for i in range(len(arch.layers)) if narrow_refusal(arch, i) is None]


def _consumer_weight(net: ChildNet, j: int) -> tuple[str, torch.Tensor, int]:
    """Name and weight of consumer ``j``'s input weight, and columns per input channel."""
    lay = net.arch.layers[j]
    if isinstance(lay, Conv):
        return f"layers.{j}.conv.weight", net.layers[j].conv.weight, 1
    h, w = net.shapes[j].in_hw
    name = f"layers.{j}.fc.weight"
    assert isinstance(lay, (FC, Softmax))
    return name, net.layers[j].fc.weight, max(h, 1) * max(w, 1)


def unit_importance(net: ChildNet, layer: int, criterion: str = "l1") -> np.ndarray:
    """Importance score of every unit of ``layer`` (see the module docstring)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; allowed values: {', '.join(CRITERIA)}")
    why = narrow_refusal(net.arch, layer)
    if why is not None:
        raise ValueError(f"unit_importance(layer={layer}): {why}")
    bn = net.layers[layer].bn
    j = _consumer(net.arch, layer)
    _, w, hw = _consumer_weight(net, j)
    with torch.no_grad():
        units = bn.weight.shape[0]
        cols = w.reshape(w.shape[0], units, hw, -1).abs().sum(dim=(0, 2, 3))
        score = (bn.weight.abs() + bn.bias.abs()) * cols
    return score.detach().cpu().double().numpy()


def narrow(net: ChildNet, layer: int, width: int, *, criterion: str = "l1") -> ChildNet:
    """A new network whose ``layer`` keeps its ``width`` most important units.

    Deterministic (no randomness); ``net`` is not modified. Raises
    ``ValueError`` saying why for a layer that cannot be narrowed (not C/FC,
    tied to a skip, feeding a dense block) or a width outside ``1..units-1``.
    """
    what = f"narrow(layer={layer}, width={width})"
    arch = net.arch
    check_layer_index(arch, layer, what)
    why = narrow_refusal(arch, int(layer), width)
    if why is not None:
        raise ValueError(f"{what}: {why}")
    score = unit_importance(net, layer, criterion)
    order = np.argsort(-score, kind="stable")
    keep = np.sort(order[: int(width)])
    lay = arch.layers[layer]
    new_layer = Conv(int(width), lay.kernel, lay.stride) if isinstance(lay, Conv) else FC(int(width))
    new_arch = arch.replace_layer(layer, new_layer)
    like = next(net.parameters())
    idx = torch.as_tensor(keep, dtype=torch.long, device=like.device)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    prefix = f"layers.{layer}."
    for key in list(state):
        if key.startswith(prefix) and not key.endswith("num_batches_tracked"):
            state[key] = state[key].index_select(0, idx)
    name, w, hw = _consumer_weight(net, _consumer(arch, layer))
    units = lay.filters if isinstance(lay, Conv) else lay.units
    grouped = state[name].reshape(w.shape[0], units, hw, *w.shape[2:])
    state[name] = grouped.index_select(1, idx).reshape(w.shape[0], int(width) * hw, *w.shape[2:])
    child = build_network(new_arch, net.input_shape, dropout=net.dropout, seed=0)
    child = child.to(device=like.device, dtype=like.dtype)
    child.load_state_dict(state, strict=True)
    child.train(net.training)
    return child
