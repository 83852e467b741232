"""Shared by the widening morphisms (``net2wider``, ``dense_widen``): which width to
widen to, and the unit-copy plan that widens one layer."""

from __future__ import annotations

import numpy as np

from eas.arch import SearchSpace
from eas.layers import FC, Conv, Dense
from eas.morphisms._remap import Plan
from eas.network import ChildNet


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
