"""Remove a layer (approximate shrinking morphism, the inverse of Net2Deeper).

Removing conv or FC layer ``i`` whose input and output have the same shape
leaves every other weight in place: the layer after it reads the removed
layer's input instead of its output. The child computes exactly the parent's
function when layer ``i`` was an identity (a Net2Deeper layer not trained since)
and approximately otherwise, so it is meant to be fine-tuned or distilled from
its parent (``eas.distill``) before it is evaluated.
"""

from __future__ import annotations

from eas.arch import Architecture
from eas.layers import FC, Conv, Skip
from eas.morphisms._remap import check_layer_index
from eas.network import ChildNet, build_network
from eas.shapes import infer_shapes

__all__ = ["removable_layers", "remove_layer", "remove_refusal"]


def remove_refusal(arch: Architecture, input_shape: tuple[int, int, int], layer: int) -> str | None:
    """Why layer ``layer`` cannot be removed, or None when it can."""
    if not 0 <= layer < len(arch.layers):
        return f"layer {layer} is out of range (the network has {len(arch.layers)} layers)"
    lay = arch.layers[layer]
    if not isinstance(lay, (Conv, FC)):
        return (f"layer {layer} is {lay}; only convolution (C) and fully connected (FC) layers "
                "can be removed")
    tied = [str(s) for s in arch.skips if layer in (s.src, s.dst)]
    if tied:
        return f"layer {layer} {lay} is an end of skip connection(s) {', '.join(tied)}"
    shape = infer_shapes(arch, input_shape)[layer]
    if isinstance(lay, Conv):
        if lay.stride != 1:
            return f"layer {layer} {lay} has stride {lay.stride}; removing it would change the size"
        if shape.in_channels != lay.filters:
            return (f"layer {layer} {lay} maps {shape.in_channels} channels to {lay.filters}; "
                    "only a layer keeping the channel count can be removed (narrow or widen "
                    "first)")
    elif shape.in_features != lay.units:
        return (f"layer {layer} {lay} maps {shape.in_features} features to {lay.units}; only a "
                "layer keeping the feature count can be removed")
    return None


def removable_layers(arch: Architecture, input_shape: tuple[int, int, int]) -> list[int]:
    """Layers :func:`remove_layer` accepts."""
    return [i for i in range(len(arch.layers)) if remove_refusal(arch, input_shape, i) is None]


def remove_layer(net: ChildNet, layer: int) -> ChildNet:
    """A new network without layer ``layer``; ``net`` is not modified.

    Deterministic (no randomness). Raises ``ValueError`` saying why when the
    layer cannot be removed (not C/FC, tied to a skip, changes the shape).
    """
    what = f"remove_layer(layer={layer})"
    arch = net.arch
    check_layer_index(arch, layer, what)
    why = remove_refusal(arch, net.input_shape, int(layer))
    if why is not None:
        raise ValueError(f"{what}: {why}")

    def shift(i: int) -> int:
        return i - 1 if i > layer else i

    layers = arch.layers[:layer] + arch.layers[layer + 1:]
    new_arch = Architecture(layers, tuple(Skip(shift(s.src), shift(s.dst), s.mode)
                                          for s in arch.skips))
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("layers."):
            idx, rest = key[len("layers."):].split(".", 1)
            i = int(idx)
            if i == layer:
                continue
            state[f"layers.{shift(i)}.{rest}"] = value.detach().clone()
        elif key.startswith("gates."):
            src, dst = (int(v) for v in key[len("gates."):].split("_"))
            state[f"gates.{shift(src)}_{shift(dst)}"] = value.detach().clone()
        else:  # pragma: no cover - ChildNet has only layers and gates
            state[key] = value.detach().clone()
    child = build_network(new_arch, net.input_shape, dropout=net.dropout, seed=0)
    like = next(net.parameters())
    child = child.to(device=like.device, dtype=like.dtype)
    child.load_state_dict(state, strict=True)
    child.train(net.training)
    return child
