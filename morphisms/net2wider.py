"""Net2WiderNet (EAS Eq. 1-3) for convolutional and fully connected layers."""

from __future__ import annotations

import numpy as np
import torch

from eas.arch import SearchSpace
from eas.layers import FC, Conv, Dense
from eas.morphisms._remap import add_carriers, apply_plan, as_rng, check_layer_index, gaussian_
from eas.morphisms._widen import resolve_width, widen_plan
from eas.morphisms.dense_widen import dense_widen
from eas.network import ChildNet

__all__ = ["net2wider", "resolve_width", "widen_plan"]


def net2wider(net: ChildNet, layer: int, width: int | None = None, *,
              space: SearchSpace | None = None, rng: np.random.Generator | None = None,
              noise: bool = True, noise_scale: float = 1e-2) -> ChildNet:
    """Widen conv/FC ``layer`` to ``width`` units, preserving the network's function.

    New units copy randomly chosen existing units (mapping G from ``rng``),
    BatchNorm parameters and statistics follow the copies, and every layer
    reading the widened units (next conv/FC, the FC after a flatten, CAT skip
    consumers, dense blocks) divides the replicated input weights by their
    replication counts (Eq. 3). ``width`` defaults to the next level of
    ``space`` (``SearchSpace()`` if none). With ``noise`` the new copies' incoming
    weights get Gaussian noise of std ``noise_scale * weight.std()`` (breaks
    symmetry; output then differs slightly). A ``Dense`` layer is handed to
    :func:`morphisms.dense_widen`. Returns a new ChildNet; ``net`` is not modified.
    """
    what = f"net2wider(layer={layer}, width={width})"
    arch = net.arch
    check_layer_index(arch, layer, what)
    lay = arch.layers[layer]
    if isinstance(lay, Dense):
        return dense_widen(net, layer, width, space=space, rng=rng, noise=noise,
                           noise_scale=noise_scale)
    if not isinstance(lay, (Conv, FC)):
        raise ValueError(
            f"{what}: layer {layer} is {lay}; only convolution (C), fully connected (FC) and "
            "dense (DL) layers can be widened"
        )
    carriers = add_carriers(arch, layer)
    if carriers:
        raise ValueError(
            f"{what}: layer {layer} {lay} takes part in an ADD skip connection (through "
            f"layer(s) {carriers}); an ADD sums two outputs channel by channel, so both ends "
            "must keep the same channel count and order and widening one end would break it"
        )
    width = resolve_width(net, layer, width, space, what)
    rng = as_rng(rng)
    plan, old = widen_plan(net, layer, width, rng)
    child = apply_plan(net, plan)
    if noise and width > old:
        module = child.layers[layer]
        w = module.conv.weight if isinstance(lay, Conv) else module.fc.weight
        with torch.no_grad():
            std = float(w[:old].std()) if w[:old].numel() > 1 else 0.0
        gaussian_(w, noise_scale * std, rng, rows=slice(old, width))
    return child
