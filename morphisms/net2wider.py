"""Net2WiderNet (EAS Eq. 1-3) for convolutional and fully connected layers."""

from __future__ import annotations

import numpy as np
import torch

from eas.arch import FC, Conv, Dense, SearchSpace
from eas.network import ChildNet
from morphisms._remap import Plan, add_carriers, apply_plan, as_rng, check_layer_index, gaussian_

__all__ = ["net2wider", "resolve_width", "widen_plan"]


def resolve_width(net: ChildNet, layer: int, width: int | None, space: SearchSpace | None,
                  what: str) -> int:
    """The target width of a widening request, validated; ValueError explains a refusal."""
    arch = net.arch
    lay = arch.layers[layer]
    current = lay.growth if isinstance(lay, Dense) else (
        lay.filters if isinstance(lay, Conv) else lay.units)
    unit = "growth rate" if isinstance(lay, Dense) else (
        "filters" if isinstance(lay, Conv) else "units")
    levels = (space or SearchSpace()).levels_for(lay)
    if width is None:
        bigger = [v for v in levels if v > current]
        if not bigger:
            raise ValueError(
                f"{what}: layer {layer} {lay} already has {current} {unit}, at or above the "
                f"largest level {levels[-1]} of the search space; it cannot be widened further"
            )
        return bigger[0]
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool):
        raise ValueError(f"{what}: width must be an integer, got {width!r}")
    width = int(width)
    if width <= current:
        raise ValueError(
            f"{what}: layer {layer} {lay} has {current} {unit}; widening needs a larger "
            f"value, got {width}"
        )
    if space is not None and width not in levels:
        raise ValueError(
            f"{what}: {width} is not one of the search space's levels for {lay}: {list(levels)}"
        )
    return width


def widen_plan(net: ChildNet, layer: int, width: int,
               rng: np.random.Generator) -> tuple[Plan, int]:
    """The plan widening ``layer`` to ``width`` with a random mapping G; returns (plan, old)."""
    arch = net.arch
    lay = arch.layers[layer]
    if isinstance(lay, Conv):
        old = lay.filters
        new_layer = Conv(width, lay.kernel, lay.stride)
    elif isinstance(lay, FC):
        old = lay.units
        new_layer = FC(width)
    else:
        old = lay.growth
        new_layer = Dense(width, lay.kernel, lay.bottleneck)
    g = np.concatenate([np.arange(old), rng.integers(0, old, size=width - old)])
    new_arch = arch.replace_layer(layer, new_layer)
    plan = Plan(new_arch, {i: i for i in range(len(arch.layers))}, widen={layer: g})
    return plan, old


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
        from morphisms.dense_widen import dense_widen

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
