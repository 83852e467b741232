"""Widening a DenseNet layer's growth rate (EAS Eq. 1-4)."""

from __future__ import annotations

import numpy as np
import torch

from eas.arch import SearchSpace
from eas.layers import Dense
from eas.morphisms._remap import apply_plan, as_rng, check_layer_index, gaussian_
from eas.morphisms._widen import resolve_width, widen_plan
from eas.network import ChildNet

__all__ = ["dense_widen"]


def dense_widen(net: ChildNet, layer: int, growth: int | None = None, *,
                space: SearchSpace | None = None, rng: np.random.Generator | None = None,
                noise: bool = True, noise_scale: float = 1e-2) -> ChildNet:
    """Widen dense layer ``layer`` to ``growth`` output channels, preserving the function.

    The layer's final conv and BatchNorm get copies of random existing units;
    every later layer of the block, the transition conv or the classifier (all
    read the widened output through the concatenation) has its input columns
    remapped with replication counts (Eq. 4). ``growth`` defaults to the next
    of ``space.growth_rates`` (``SearchSpace()`` if no space). With ``noise`` the
    copies' incoming weights get noise of std ``noise_scale * weight.std()``.
    """
    what = f"dense_widen(layer={layer}, growth={growth})"
    arch = net.arch
    check_layer_index(arch, layer, what)
    lay = arch.layers[layer]
    if not isinstance(lay, Dense):
        raise ValueError(f"{what}: layer {layer} is {lay}, not a dense layer DL(...); use "
                         "net2wider for conv and FC layers")
    growth = resolve_width(net, layer, growth, space, what)
    rng = as_rng(rng)
    plan, old = widen_plan(net, layer, growth, rng)
    child = apply_plan(net, plan)
    if noise:
        w = child.layers[layer].conv.weight
        with torch.no_grad():
            std = float(w[:old].std()) if w[:old].numel() > 1 else 0.0
        gaussian_(w, noise_scale * std, rng, rows=slice(old, growth))
    return child
