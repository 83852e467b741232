"""Shapes and sizes of an architecture from its string alone (no torch): the shape of
every layer, channel layouts, weight and FLOP counts.

:mod:`eas.network` builds the modules from these shapes; the configuration checks
size a start architecture with :func:`estimate_parameters` before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from eas.arch import Architecture, width_of
from eas.layers import FC, Conv, Dense, Layer, Pool, Softmax

__all__ = [
    "MAX_PARAMETERS",
    "LayerShape",
    "cat_channels",
    "channel_layouts",
    "count_flops",
    "estimate_parameters",
    "infer_shapes",
    "own_channels",
]


@dataclass(frozen=True)
class LayerShape:
    """Shapes around one layer: input (C, H, W) and output (C, H, W); H=W=0 when flat."""

    in_channels: int
    in_hw: tuple[int, int]
    out_channels: int
    out_hw: tuple[int, int]

    @property
    def in_features(self) -> int:
        """Number of input features after flattening."""
        h, w = self.in_hw
        return self.in_channels * max(h, 1) * max(w, 1)


def infer_shapes(arch: Architecture | str, input_shape: tuple[int, int, int]) -> list[LayerShape]:
    """Shapes of every layer for an input of ``(C, H, W)``.

    Raises ``ValueError`` saying which layer does not fit (e.g. a pooling window
    larger than what is left of a 28x28 image, or a skip between layers whose
    shapes differ).

    >>> shapes = infer_shapes("C(16,3,1), P(2,2,MAX), FC(32), SM(10)", (1, 28, 28))
    >>> [(s.out_channels, s.out_hw) for s in shapes]
    [(16, (28, 28)), (16, (14, 14)), (32, (0, 0)), (10, (0, 0))]
    >>> shapes[2].in_features  # 16 channels of 14 x 14, flattened for the FC layer
    3136
    """
    arch = Architecture.parse(arch)
    if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    c, h, w = (int(v) for v in input_shape)
    shapes: list[LayerShape] = []
    block_channels: int | None = None  # channels of the running dense concatenation
    for i, layer in enumerate(arch.layers):
        flat = h == 0
        if isinstance(layer, Dense):
            if flat:
                raise ValueError(f"layer {i} {layer}: a dense layer needs a spatial input")
            if block_channels is None:
                block_channels = c
            in_c = block_channels
            block_channels += layer.growth
            shapes.append(LayerShape(in_c, (h, w), layer.growth, (h, w)))
            c = block_channels
            continue
        block_channels = None
        if isinstance(layer, Conv):
            if flat:
                raise ValueError(f"layer {i} {layer}: a convolution cannot follow an FC layer")
            oh = (h + 2 * (layer.kernel // 2) - layer.kernel) // layer.stride + 1
            ow = (w + 2 * (layer.kernel // 2) - layer.kernel) // layer.stride + 1
            if oh < 1 or ow < 1:
                raise ValueError(f"layer {i} {layer}: input {h}x{w} is too small for it")
            out = LayerShape(c, (h, w), layer.filters, (oh, ow))
        elif isinstance(layer, Pool):
            if flat:
                raise ValueError(f"layer {i} {layer}: pooling cannot follow an FC layer")
            if layer.kernel > h or layer.kernel > w:
                raise ValueError(
                    f"layer {i} {layer}: the pooling window {layer.kernel}x{layer.kernel} is "
                    f"larger than its {h}x{w} input (too many poolings for this input size)"
                )
            oh = (h - layer.kernel) // layer.stride + 1
            ow = (w - layer.kernel) // layer.stride + 1
            out = LayerShape(c, (h, w), c, (oh, ow))
        elif isinstance(layer, (FC, Softmax)):
            units = layer.units if isinstance(layer, FC) else layer.classes
            out = LayerShape(c, (h, w), units, (0, 0))
        else:  # pragma: no cover - Architecture.validate rules this out
            raise ValueError(f"layer {i}: unknown layer {layer!r}")
        oc = out.out_channels
        for s in arch.skips_into(i):
            src = shapes[s.src]
            if src.out_hw != out.out_hw:
                raise ValueError(
                    f"{s}: layer {s.src} outputs {src.out_hw[0]}x{src.out_hw[1]} but layer "
                    f"{i} outputs {out.out_hw[0]}x{out.out_hw[1]}; a skip needs equal spatial sizes"
                )
            if s.mode == "ADD":
                if src.out_channels != oc:
                    raise ValueError(
                        f"{s}: layer {s.src} has {src.out_channels} channels but layer {i} has "
                        f"{oc}; an ADD skip needs equal channel counts"
                    )
            else:
                oc += src.out_channels
        out = LayerShape(out.in_channels, out.in_hw, oc, out.out_hw)
        shapes.append(out)
        c, (h, w) = out.out_channels, out.out_hw
    return shapes


def channel_layouts(
    arch: Architecture | str, input_channels: int | tuple[int, int, int]
) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
    """Which producer owns each input and output channel of every layer.

    Returns ``(inputs, outputs)``: for layer ``i``, ``inputs[i]`` is a list of
    ``(owner, channel)`` pairs, one per input channel in order, where ``owner``
    is the index of the layer that made that channel (``-1`` for the network
    input, whose channel count is ``input_channels`` or ``input_shape[0]``) and
    ``channel`` its index among that owner's channels. Pooling passes channels
    through; CAT skips and dense blocks concatenate. A layer receiving an ``ADD``
    skip owns every channel present when the sum is taken (those channels are
    sums now, no longer the values of their producers); channels concatenated
    after it keep their owners. This is what a transformation needs to find
    every weight that reads a widened layer's units. Purely structural: no
    spatial sizes are checked.
    """
    arch = Architecture.parse(arch)
    if not isinstance(input_channels, int):
        input_channels = int(input_channels[0])
    current = [(-1, ch) for ch in range(input_channels)]
    ins: list[list[tuple[int, int]]] = []
    outs: list[list[tuple[int, int]]] = []
    block: list[tuple[int, int]] | None = None
    for i, layer in enumerate(arch.layers):
        if isinstance(layer, Dense):
            if block is None:
                block = list(current)
            ins.append(list(block))
            own = [(i, ch) for ch in range(layer.growth)]
            outs.append(own)
            block = block + own
            current = block
            continue
        block = None
        ins.append(list(current))
        out = list(current) if isinstance(layer, Pool) else [(i, ch) for ch in range(own_channels(layer))]
        for s in arch.skips_into(i):
            if s.mode == "ADD":
                out = [(i, ch) for ch in range(len(out))]
            else:
                out = out + outs[s.src]
        outs.append(out)
        current = out
    return ins, outs


def own_channels(layer: Layer) -> int:
    """Number of channels (units) a layer computes itself; 0 for pooling."""
    if isinstance(layer, Softmax):
        return layer.classes
    return width_of(layer) or 0


def cat_channels(arch: Architecture, shapes: list[LayerShape], i: int) -> int:
    """Channels that ``CAT`` skips into layer ``i`` add to its input."""
    return sum(shapes[s.src].out_channels for s in arch.skips_into(i) if s.mode == "CAT")


MAX_PARAMETERS = 2_000_000_000
"""Most weights :func:`build_network` builds (8 GB in fp32); larger requests are refused
before any memory is allocated."""


def estimate_parameters(arch: Architecture | str, input_shape: tuple[int, int, int]) -> int:
    """Weights of conv, dense and FC layers (biases and BN ignored), from shapes alone."""
    arch = Architecture.parse(arch)
    total = 0
    for layer, shape in zip(arch.layers, infer_shapes(arch, input_shape)):
        if isinstance(layer, Conv):
            total += shape.in_channels * layer.filters * layer.kernel**2
        elif isinstance(layer, Dense):
            mid = layer.bottleneck or shape.in_channels
            if layer.bottleneck:
                total += shape.in_channels * layer.bottleneck
            total += mid * layer.growth * layer.kernel**2
        elif isinstance(layer, (FC, Softmax)):
            total += shape.in_features * shape.out_channels
    return total


def count_flops(arch: Architecture | str, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of conv, dense and FC layers for one image (pooling/BN ignored)."""
    arch = Architecture.parse(arch)
    total = 0
    for layer, shape in zip(arch.layers, infer_shapes(arch, input_shape)):
        if isinstance(layer, Conv):
            oh, ow = shape.out_hw
            own = layer.filters
            total += shape.in_channels * own * layer.kernel**2 * oh * ow
        elif isinstance(layer, Dense):
            oh, ow = shape.out_hw
            mid = shape.in_channels
            if layer.bottleneck:
                total += shape.in_channels * layer.bottleneck * oh * ow
                mid = layer.bottleneck
            total += mid * layer.growth * layer.kernel**2 * oh * ow
        elif isinstance(layer, (FC, Softmax)):
            total += shape.in_features * shape.out_channels
    return total
