"""Architecture strings: parsing, printing, blocks and tokenisation.

An architecture is a comma-separated list of layer tokens in the EAS paper's
notation, extended for DenseNet blocks and skip connections::

    C(filters,kernel,stride)      convolution -> BatchNorm -> ReLU
    P(kernel,stride,MAX|AVG)      max or average pooling
    FC(units)                     fully connected -> BatchNorm -> ReLU
    SM(classes)                   the classifier (linear layer + softmax); always last
    DL(growth,kernel,bottleneck)  a DenseNet layer: [1x1 conv to `bottleneck` channels
                                  -> BN -> ReLU ->] kernel x kernel conv to `growth`
                                  channels -> BN -> ReLU; bottleneck 0 means none
    S(i,j,ADD|CAT)                a skip connection from layer i to layer j; written
                                  directly after layer j

Layers are numbered from 0 in order of appearance, skip tokens not counted.
A run of consecutive ``DL`` layers is a dense block: each of its layers reads the
concatenation of the block's input and the outputs of all earlier layers of the
run, and the layer after the run reads the concatenation of all of them.
``S(i,j,ADD)`` adds ``g * out_i`` to ``out_j`` (``g`` a learnable scalar gate);
``S(i,j,CAT)`` appends ``out_i``'s channels to ``out_j``. A layer's output is taken
after its incoming skips are merged.

Blocks, as in the EAS paper, are the runs of layers between pooling layers.

>>> arch = Architecture.parse("C(16,3,1), P(2,2,MAX), C(32,3,1), S(0,2,ADD), FC(64), SM(10)")
>>> str(arch)
'C(16,3,1), P(2,2,MAX), C(32,3,1), S(0,2,ADD), FC(64), SM(10)'
>>> len(arch.layers), arch.blocks()
(5, [[0], [2, 3]])

The layer dataclasses and the token parser live in :mod:`eas.layers` (re-exported here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from eas.layers import (
    FC,
    Conv,
    Dense,
    Layer,
    Pool,
    Skip,
    Softmax,
    parse_token,
    split_tokens,
)

__all__ = [
    "Architecture",
    "SearchSpace",
    "Tokenizer",
    "TABLE1",
    "densenet_bc",
    "resolve_start_arch",
    "table1",
]


@dataclass(frozen=True)
class Architecture:
    """An immutable network architecture: layers plus skip connections.

    ``str(arch)`` gives the canonical string and ``Architecture.parse`` reads it
    back: ``Architecture.parse(str(a)) == a`` for every valid ``a``.
    """

    layers: tuple[Layer, ...]
    skips: tuple[Skip, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        skips = tuple(sorted(self.skips, key=lambda s: (s.dst, s.src, s.mode)))
        object.__setattr__(self, "skips", skips)
        self.validate()

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, text: str | Architecture) -> Architecture:
        """Parse an architecture string; raise ``ValueError`` naming a bad token."""
        if isinstance(text, Architecture):
            return text
        if not isinstance(text, str):
            raise TypeError(f"expected an architecture string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("empty architecture string")
        odd = next((c for c in text if not c.isascii()), None)
        if odd is not None:  # int() would read full-width or other non-ASCII digits
            raise ValueError(f"non-ASCII character {odd!r} at position {text.index(odd)}; "
                             "architecture strings use ASCII letters, digits and punctuation")
        raw = split_tokens(text.strip())
        layers: list[Layer] = []
        skips: list[Skip] = []
        for pos, tok in enumerate(raw):
            if not tok.strip():
                raise ValueError(f"token {pos} is empty (two commas in a row or a trailing comma)")
            item = parse_token(tok, pos)
            if isinstance(item, Skip):
                if item.dst != len(layers) - 1:
                    raise ValueError(
                        f"token {pos} {tok.strip()!r}: a skip into layer {item.dst} must be "
                        f"written directly after layer {item.dst}, but it follows layer "
                        f"{len(layers) - 1}"
                    )
                skips.append(item)
            else:
                layers.append(item)
        return cls(tuple(layers), tuple(skips))

    def __str__(self) -> str:
        by_dst: dict[int, list[Skip]] = {}
        for s in self.skips:
            by_dst.setdefault(s.dst, []).append(s)
        parts: list[str] = []
        for i, layer in enumerate(self.layers):
            parts.append(str(layer))
            parts.extend(str(s) for s in by_dst.get(i, []))
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"Architecture.parse({str(self)!r})"

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check structural rules; raise ``ValueError`` describing the first violation."""
        layers = self.layers
        if not layers:
            raise ValueError("an architecture needs at least one layer")
        if not isinstance(layers[-1], Softmax):
            raise ValueError(f"the last layer must be SM(classes), got {layers[-1]}")
        seen_fc = False
        for i, layer in enumerate(layers):
            if isinstance(layer, Softmax) and i != len(layers) - 1:
                raise ValueError(f"layer {i} {layer}: SM may only be the last layer")
            if isinstance(layer, FC):
                seen_fc = True
            elif seen_fc and isinstance(layer, (Conv, Pool, Dense)):
                raise ValueError(
                    f"layer {i} {layer}: convolution and pooling layers must come before "
                    "all FC layers"
                )
            if isinstance(layer, Dense) and 0 < layer.bottleneck < 1:
                raise ValueError(f"layer {i} {layer}: bottleneck must be 0 or >= 1")
        seen = set()
        for s in self.skips:
            if (s.src, s.dst) in seen:
                raise ValueError(f"{s}: duplicate skip connection from {s.src} to {s.dst}")
            seen.add((s.src, s.dst))
            if not (0 <= s.src < s.dst < len(layers)):
                raise ValueError(
                    f"{s}: a skip needs 0 <= src < dst < {len(layers)} (the number of layers)"
                )
            for end in (s.src, s.dst):
                if not isinstance(layers[end], Conv):
                    raise ValueError(f"{s}: skips connect conv layers; layer {end} is {layers[end]}")

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self.layers)

    @property
    def num_classes(self) -> int:
        """Number of output classes (the ``SM`` layer)."""
        return self.layers[-1].classes  # type: ignore[union-attr]

    @property
    def is_densenet(self) -> bool:
        """True when the architecture contains DenseNet layers."""
        return any(isinstance(layer, Dense) for layer in self.layers)

    def blocks(self) -> list[list[int]]:
        """Layer indices of each block: the runs of non-pooling layers between poolings.

        The classifier ``SM`` belongs to no block. The block after the last
        pooling layer holds the FC layers (possibly none).
        """
        blocks: list[list[int]] = [[]]
        for i, layer in enumerate(self.layers[:-1]):
            if isinstance(layer, Pool):
                blocks.append([])
            else:
                blocks[-1].append(i)
        return blocks

    def dense_blocks(self) -> list[list[int]]:
        """Layer indices of each dense block (maximal runs of consecutive ``DL`` layers)."""
        runs: list[list[int]] = []
        prev = False
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                if not prev:
                    runs.append([])
                runs[-1].append(i)
                prev = True
            else:
                prev = False
        return runs

    def skips_into(self, dst: int) -> list[Skip]:
        """Skip connections ending at layer ``dst``, in merge order."""
        return [s for s in self.skips if s.dst == dst]

    def replace_layer(self, index: int, layer: Layer) -> Architecture:
        """A copy with layer ``index`` replaced."""
        layers = list(self.layers)
        layers[index] = layer
        return replace(self, layers=tuple(layers))

    def insert_layer(self, index: int, layer: Layer) -> Architecture:
        """A copy with ``layer`` inserted at ``index`` (skip indices shifted to match)."""
        layers = list(self.layers)
        layers.insert(index, layer)

        def shift(i: int) -> int:
            return i + 1 if i >= index else i

        skips = tuple(Skip(shift(s.src), shift(s.dst), s.mode) for s in self.skips)
        return Architecture(tuple(layers), skips)

    def add_skip(self, skip: Skip) -> Architecture:
        """A copy with one more skip connection."""
        return Architecture(self.layers, self.skips + (skip,))


TABLE1 = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(4,4,AVG), FC(256), SM(10)"
)
"""The EAS paper's start network (Table 1), for 32x32 inputs."""


def densenet_bc(depth: int = 40, growth: int = 40, classes: int = 10, *,
                blocks: int = 3, compression: float = 0.5, spatial: int = 32) -> Architecture:
    """The DenseNet-BC architecture (e.g. L=40, k=40, the EAS DenseNet start point).

    ``(depth - 4) / 6`` bottleneck layers per block (bottleneck width ``4k``), a
    stem conv of ``2k`` filters, transitions ``C(c,1,1), P(2,2,AVG)`` compressing
    by ``compression``, and a final global average pooling. ``spatial`` is the
    input height/width, used to size the final pooling.
    """
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    channels = 2 * growth
    tokens: list[str] = [f"C({channels},3,1)"]
    size = spatial
    for b in range(blocks):
        tokens += [f"DL({growth},3,{4 * growth})"] * n
        channels += n * growth
        if b != blocks - 1:
            channels = int(channels * compression)
            tokens += [f"C({channels},1,1)", "P(2,2,AVG)"]
            size //= 2
    tokens += [f"P({size},{size},AVG)", f"SM({classes})"]
    return Architecture.parse(", ".join(tokens))


def table1(spatial: int = 32, classes: int = 10) -> Architecture:
    """The Table-1 start network for ``spatial`` x ``spatial`` inputs and ``classes`` classes.

    Its final average pooling covers what three 2x2 poolings leave of the input
    (``P(4,4,AVG)`` for 32x32, ``P(3,3,AVG)`` for 28x28) and the classifier is ``SM(classes)``:

    >>> str(table1(28, 10))
    'C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), C(128,3,1), P(3,3,AVG), FC(256), SM(10)'
    """
    arch = Architecture.parse(TABLE1)
    size = max(1, int(spatial) // 8)
    last_pool = max(i for i, layer in enumerate(arch.layers) if isinstance(layer, Pool))
    arch = arch.replace_layer(last_pool, Pool(size, size, "AVG"))
    return arch.replace_layer(len(arch.layers) - 1, Softmax(int(classes)))


_DENSENET_SPEC = re.compile(r"^\s*densenet_bc\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.IGNORECASE)


def resolve_start_arch(spec: str, input_shape: tuple[int, int, int],
                       num_classes: int) -> Architecture:
    """The start architecture ``spec`` (``start.arch``) on inputs ``(C, H, W)``.

    ``default`` (or ``table1``) is :func:`table1` sized to the input;
    ``densenet_bc(L,k)`` is :func:`densenet_bc` with its last pooling sized to the
    input; anything else is parsed as an architecture string.
    """
    text = spec.strip()
    if text.lower() in ("default", "table1"):
        return table1(input_shape[1], num_classes)
    m = _DENSENET_SPEC.match(text)
    if m:
        return densenet_bc(int(m.group(1)), int(m.group(2)), num_classes, spatial=input_shape[1])
    return Architecture.parse(text)


# ---------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class SearchSpace:
    """The discrete values layers may take (the EAS paper's plain-CNN space by default)."""

    kernel_sizes: tuple[int, ...] = (1, 3, 5)
    filters: tuple[int, ...] = (16, 32, 64, 96, 128, 192, 256, 320, 384, 448, 512)
    fc_units: tuple[int, ...] = (64, 128, 256, 384, 512, 640, 768, 896, 1024)
    growth_rates: tuple[int, ...] = (40, 44, 48, 52, 56, 60, 64)
    max_layers: int = 50

    def __post_init__(self) -> None:
        for name in ("kernel_sizes", "filters", "fc_units", "growth_rates"):
            values = tuple(int(v) for v in getattr(self, name))
            if not values or any(v < 1 for v in values) or list(values) != sorted(set(values)):
                raise ValueError(
                    f"SearchSpace.{name} must be a non-empty increasing list of positive "
                    f"integers, got {list(getattr(self, name))}"
                )
            object.__setattr__(self, name, values)

    def levels_for(self, layer: Layer) -> tuple[int, ...]:
        """The widths a layer may take (filters, units or growth rates); () if none."""
        if isinstance(layer, Conv):
            return self.filters
        if isinstance(layer, FC):
            return self.fc_units
        if isinstance(layer, Dense):
            return self.growth_rates
        return ()

    def next_width(self, layer: Layer) -> int | None:
        """The next discrete width above the layer's current one, or None at the top."""
        width = width_of(layer)
        for v in self.levels_for(layer):
            if width is not None and v > width:
                return v
        return None


def width_of(layer: Layer) -> int | None:
    """The widenable width of a layer (filters, units, growth), or None."""
    if isinstance(layer, Conv):
        return layer.filters
    if isinstance(layer, FC):
        return layer.units
    if isinstance(layer, Dense):
        return layer.growth
    return None


class Tokenizer:
    """Maps architectures to integer tokens, one per layer (the classifier excluded).

    The vocabulary holds 0 for padding, one id per (type, width, kernel) of the
    search space for conv/FC/dense layers, one id per pooling mode, and an
    ``<unk>`` id for values outside the space, plus skip-merge markers: a conv
    that receives skips gets the id of its ``ADD``/``CAT`` variant. Mirroring the
    original EAS code, pooling tokens carry only their mode.
    """

    PAD = 0
    UNK = 1

    def __init__(self, space: SearchSpace | None = None) -> None:
        self.space = space or SearchSpace()
        vocab = ["<pad>", "<unk>", "P(MAX)", "P(AVG)"]
        for k in self.space.kernel_sizes:
            for f in self.space.filters:
                vocab.append(f"C({f},{k})")
                vocab.append(f"C({f},{k})+S")
        for u in self.space.fc_units:
            vocab.append(f"FC({u})")
        for k in self.space.kernel_sizes:
            for g in self.space.growth_rates:
                vocab.append(f"DL({g},{k})")
        self.vocab: list[str] = vocab
        self.index: dict[str, int] = {t: i for i, t in enumerate(vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (padding included)."""
        return len(self.vocab)

    def token_of(self, arch: Architecture, i: int) -> int:
        """The token id of layer ``i``."""
        layer = arch.layers[i]
        if isinstance(layer, Pool):
            key = f"P({layer.mode})"
        elif isinstance(layer, Conv):
            key = f"C({layer.filters},{layer.kernel})" + ("+S" if arch.skips_into(i) else "")
        elif isinstance(layer, FC):
            key = f"FC({layer.units})"
        elif isinstance(layer, Dense):
            key = f"DL({layer.growth},{layer.kernel})"
        else:
            return self.UNK
        return self.index.get(key, self.UNK)

    def encode(self, arch: Architecture | str, max_len: int | None = None) -> list[int]:
        """Token ids of every layer but the classifier, padded to ``max_len`` if given."""
        arch = Architecture.parse(arch)
        ids = [self.token_of(arch, i) for i in range(len(arch.layers) - 1)]
        if max_len is not None:
            if len(ids) > max_len:
                raise ValueError(
                    f"architecture has {len(ids)} layers, more than max_len={max_len}"
                )
            ids = ids + [self.PAD] * (max_len - len(ids))
        return ids
