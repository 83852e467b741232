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

import torch
from torch import Tensor, nn

from eas.arch import Architecture
from eas.layers import FC, Conv, Dense, Pool
from eas.shapes import MAX_PARAMETERS, cat_channels, count_flops, estimate_parameters, infer_shapes

__all__ = ["ChildNet", "build_network", "count_parameters"]


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
                own = shape.out_channels - cat_channels(arch, self.shapes, i)
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
