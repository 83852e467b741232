"""Child networks built from architecture strings.

``build_network(arch, input_shape)`` returns a :class:`ChildNet`: an ``nn.Module``
that holds its :class:`~eas.arch.Architecture` (``net.arch``) together with the
weights for exactly that architecture. Module names are stable and indexed by
layer: ``layers.{i}`` is layer ``i`` and ``gates.{src}_{dst}`` the scalar gate of
an ``ADD`` skip, so transformations can map weights between parent and child.

Per layer type (all post-activation, so every conv/FC/DL output is >= 0):

* ``C``: ``conv`` (padding ``kernel // 2``, no bias) -> ``bn`` -> ReLU [-> dropout]
* ``P``: max or average pooling (no padding, floor)
* ``FC``: ``fc`` (no bias) -> ``bn`` (BatchNorm1d) -> ReLU [-> dropout]; the input is
  flattened channel-major (``c * H * W + h * W + w``) when it is still spatial
* ``DL``: [``bconv`` 1x1 -> ``bbn`` -> ReLU ->] ``conv`` -> ``bn`` -> ReLU
* ``SM``: ``fc`` (with bias) producing logits (flattening a spatial input likewise)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from eas.arch import Architecture, width_of
from eas.layers import FC, Conv, Dense, Layer, Pool, Softmax

__all__ = [
    "ChildNet",
    "LayerShape",
    "build_network",
    "infer_shapes",
    "channel_layouts",
    "own_channels",
    "count_parameters",
    "count_flops",
    "estimate_parameters",
    "MAX_PARAMETERS",
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


def _cat_channels(arch: Architecture, shapes: list[LayerShape], i: int) -> int:
    return sum(shapes[s.src].out_channels for s in arch.skips_into(i) if s.mode == "CAT")


class _ConvUnit(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(torch.relu_(self.bn(self.conv(x))))


class _FCUnit(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(torch.relu_(self.bn(self.fc(torch.flatten(x, 1)))))


class _DenseUnit(nn.Module):
    def __init__(self, cin: int, layer: Dense) -> None:
        super().__init__()
        mid = cin
        if layer.bottleneck:
            self.bconv = nn.Conv2d(cin, layer.bottleneck, 1, bias=False)
            self.bbn = nn.BatchNorm2d(layer.bottleneck)
            mid = layer.bottleneck
        self.conv = nn.Conv2d(mid, layer.growth, layer.kernel, padding=layer.kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(layer.growth)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "bconv"):
            x = torch.relu_(self.bbn(self.bconv(x)))
        return torch.relu_(self.bn(self.conv(x)))


class _Pool(nn.Module):
    def __init__(self, layer: Pool) -> None:
        super().__init__()
        cls = nn.MaxPool2d if layer.mode == "MAX" else nn.AvgPool2d
        self.pool = cls(layer.kernel, layer.stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)


class _Classifier(nn.Module):
    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(x, 1))


class ChildNet(nn.Module):
    """A network whose weights always match its architecture string (``.arch``).

    Built by :func:`build_network`; transformations in ``morphisms`` return new
    ``ChildNet`` objects and never modify this one.
    """

    def __init__(self, arch: Architecture, input_shape: tuple[int, int, int],
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.input_shape = tuple(int(v) for v in input_shape)
        self.dropout = float(dropout)
        self.shapes = infer_shapes(arch, self.input_shape)
        modules: list[nn.Module] = []
        for i, (layer, shape) in enumerate(zip(arch.layers, self.shapes)):
            if isinstance(layer, Conv):
                drop = dropout if i > 0 else 0.0
                own = shape.out_channels - _cat_channels(arch, self.shapes, i)
                modules.append(_ConvUnit(shape.in_channels, own, layer.kernel, layer.stride, drop))
            elif isinstance(layer, Pool):
                modules.append(_Pool(layer))
            elif isinstance(layer, FC):
                modules.append(_FCUnit(shape.in_features, layer.units, dropout))
            elif isinstance(layer, Dense):
                modules.append(_DenseUnit(shape.in_channels, layer))
            else:
                modules.append(_Classifier(shape.in_features, layer.classes))
        self.layers = nn.ModuleList(modules)
        self.gates = nn.ParameterDict(
            {f"{s.src}_{s.dst}": nn.Parameter(torch.zeros(())) for s in arch.skips if s.mode == "ADD"}
        )
        self._sources = {s.src for s in arch.skips}
        self._dense = [isinstance(layer, Dense) for layer in arch.layers]
        self._into = [arch.skips_into(i) for i in range(len(arch.layers))]

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of normalised images ``(N, C, H, W)``."""
        kept: dict[int, Tensor] = {}
        into = self.__dict__.get("_into")
        if into is None:  # a network pickled before _into existed
            into = self._into = [self.arch.skips_into(i) for i in range(len(self.arch.layers))]
        for i, module in enumerate(self.layers):
            if self._dense[i]:
                # x is the block's running concatenation: this layer's input; one
                # concatenation per dense layer appends its output
                y = module(x)
                x = torch.cat((x, y), 1)
            else:
                y = module(x)
                for s in into[i]:
                    if s.mode == "ADD":
                        y = y + self.gates[f"{s.src}_{s.dst}"] * kept[s.src]
                    else:
                        y = torch.cat([y, kept[s.src]], 1)
                x = y
            if i in self._sources:
                kept[i] = y
        return x

    def __str__(self) -> str:
        return str(self.arch)

    def extra_repr(self) -> str:
        return f"arch={str(self.arch)!r}, input_shape={self.input_shape}"

    def clone(self) -> ChildNet:
        """A deep copy (architecture and weights)."""
        return copy.deepcopy(self)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return count_parameters(self)

    def flops(self) -> int:
        """Multiply-accumulate count of one forward pass for one image."""
        return count_flops(self.arch, self.input_shape)


def build_network(arch: Architecture | str, input_shape: tuple[int, int, int] = (1, 28, 28),
                  *, dropout: float = 0.0, seed: int | None = None) -> ChildNet:
    """Build a freshly initialised :class:`ChildNet` for ``arch`` and ``(C, H, W)`` inputs.

    ``arch`` may be an :class:`Architecture` or a string; an architecture that
    does not fit the input raises ``ValueError`` saying which layer and why.
    ``seed`` makes the initialisation reproducible without touching global RNG.
    """
    arch = Architecture.parse(arch)
    n = estimate_parameters(arch, input_shape)
    if n > MAX_PARAMETERS:
        raise ValueError(f"{arch} has about {n:,} weights on {tuple(input_shape)} inputs, more "
                         f"than the {MAX_PARAMETERS:,} a network may have")
    if seed is None:
        return ChildNet(arch, input_shape, dropout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ChildNet(arch, input_shape, dropout)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of a module."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


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
