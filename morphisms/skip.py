"""Adding skip connections (NASH morphism types II and III)."""

from __future__ import annotations

import numpy as np

from eas.arch import Architecture
from eas.layers import Conv, Skip
from eas.morphisms._remap import Plan, apply_plan
from eas.network import ChildNet
from eas.shapes import infer_shapes

__all__ = ["add_skip", "skip_refusal"]


def skip_refusal(arch: Architecture, input_shape: tuple[int, int, int], src: int, dst: int,
                 mode: str) -> str | None:
    """Why ``S(src, dst, mode)`` cannot be added, or None when it can."""
    if mode not in ("ADD", "CAT"):
        return f"mode must be 'ADD' or 'CAT', got {mode!r}"
    n = len(arch.layers)
    for name, v in (("src", src), ("dst", dst)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= v < n:
            return f"{name} {v!r} is out of range (the network has {n} layers, 0..{n - 1})"
    if src >= dst:
        return "a skip must go forward (src < dst)"
    for name, v in (("src", src), ("dst", dst)):
        if not isinstance(arch.layers[v], Conv):
            return f"{name} layer {v} is {arch.layers[v]}; skips connect convolution layers only"
    existing = [s for s in arch.skips if (s.src, s.dst) == (src, dst)]
    if existing:
        return f"there already is a skip {existing[0]} between these layers"
    try:
        infer_shapes(arch.add_skip(Skip(src, dst, mode)), input_shape)
    except ValueError as err:
        return f"the resulting network does not fit: {err}"
    return None


def add_skip(net: ChildNet, src: int, dst: int, mode: str = "ADD") -> ChildNet:
    """Add a skip connection from conv layer ``src`` to conv layer ``dst``, preserving the function.

    ``ADD``: ``out_dst + g * out_src`` with a new gate ``g`` initialised to 0 (NASH
    type II); needs equal channels and spatial size. ``CAT``: ``out_src`` is
    appended to ``out_dst`` (type III); every layer reading ``dst``'s output gets
    zero weights for the new channels. Raises ValueError when the skip is not
    legal (non-conv ends, ``src >= dst``, an existing skip, mismatched shapes, or
    a later ADD that the extra channels would break).
    """
    what = f"add_skip(src={src}, dst={dst}, mode={mode!r})"
    arch = net.arch
    reason = skip_refusal(arch, net.input_shape, src, dst, mode)
    if reason is not None:
        raise ValueError(f"{what}: {reason}")
    new_arch = arch.add_skip(Skip(int(src), int(dst), mode))
    return apply_plan(net, Plan(new_arch, {i: i for i in range(len(arch.layers))}))
