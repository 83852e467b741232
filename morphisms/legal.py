"""Legal actions: the transformations that apply to an architecture.

Every action listed here succeeds when applied with the corresponding function
(default arguments otherwise); every other action raises ValueError.

:class:`LegalActions` is the one object the environment and the agents read:
it computes each kind's legal set lazily, the first time it is asked for, from
facts about the architecture (channel owners, shapes) derived once per
architecture and cached. :func:`legal_actions` returns a cached instance, so
several episodes sitting on the same architecture (the copies of a vector
environment after ``reset``) share one computation.

The answers equal those of asking each transformation's ``*_refusal`` function
about every candidate (``tests/test_legal.py`` checks this on random networks);
they are just derived without building a new architecture per candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property, lru_cache

from eas.arch import Architecture, SearchSpace, width_of
from eas.kinds import ALL_KINDS
from eas.layers import FC, Conv, Dense, Pool, Skip, Softmax
from eas.morphisms._remap import add_carriers, maybe_negative_owners
from eas.morphisms.narrow import narrowable_layers
from eas.morphisms.remove_layer import removable_layers
from eas.morphisms.skip import skip_refusal
from eas.shapes import LayerShape, infer_shapes

__all__ = ["SKIP_MODES", "LegalActions", "clear_caches", "deeper_positions", "dense_insert_positions", "legal_actions", "narrow_levels", "skip_candidates", "widenable_layers"]

def narrow_levels(space: SearchSpace) -> int:
    """``W``: the width levels a narrow action indexes (``max(len(filters), len(fc_units))``)."""
    return max(len(space.filters), len(space.fc_units), 1)

SKIP_MODES: tuple[str, ...] = ("ADD", "CAT")
"""Skip modes, in the index order of the environment's ``skip`` action."""


# ------------------------------------------------------------------ per-architecture facts
class _Facts:
    """Structural facts of one architecture, each derived once (see :func:`_facts`)."""

    def __init__(self, arch: Architecture) -> None:
        self.arch = arch
        self.by_dst: dict[int, list[Skip]] = {}
        for s in arch.skips:  # arch.skips is sorted by (dst, src, mode): merge order
            self.by_dst.setdefault(s.dst, []).append(s)
        self.pairs = {(s.src, s.dst) for s in arch.skips}
        self.negative = maybe_negative_owners(arch)
        self.convs = [i for i, layer in enumerate(arch.layers) if isinstance(layer, Conv)]
        self.has_dense = any(isinstance(layer, Dense) for layer in arch.layers)
        self.in_owners, self.out_owners = self._owners()
        self.wider: dict[SearchSpace, list[int]] = {}

    def _owners(self) -> tuple[list[frozenset[int]], list[frozenset[int]]]:
        """Owner sets of every layer's input and output channels.

        The set version of :func:`eas.shapes.channel_layouts` (input of one
        channel, as the refusal functions use): which layers produced the
        channels, without listing the channels one by one.
        """
        current: frozenset[int] = frozenset({-1})
        ins: list[frozenset[int]] = []
        outs: list[frozenset[int]] = []
        block: frozenset[int] | None = None
        for i, layer in enumerate(self.arch.layers):
            if isinstance(layer, Dense):
                if block is None:
                    block = current
                ins.append(block)
                own = frozenset({i}) if layer.growth > 0 else frozenset()
                outs.append(own)
                block = block | own
                current = block
                continue
            block = None
            ins.append(current)
            if isinstance(layer, Pool):
                out = current
            else:
                out = frozenset({i})  # conv, FC and SM own >= 1 channel
            for s in self.by_dst.get(i, ()):
                out = frozenset({i}) if s.mode == "ADD" else out | outs[s.src]
            outs.append(out)
            current = out
        return ins, outs

    def widenable(self, space: SearchSpace) -> list[int]:
        """Layers ``net2wider``/``dense_widen`` accept in ``space`` (as ``widenable_layers``)."""
        if space not in self.wider:
            has_add = any(s.mode == "ADD" for s in self.arch.skips)
            out = []
            for i, layer in enumerate(self.arch.layers):
                if not isinstance(layer, (Conv, FC, Dense)) or space.next_width(layer) is None:
                    continue
                if has_add and isinstance(layer, Conv) and add_carriers(self.arch, i):
                    continue
                out.append(i)
            self.wider[space] = out
        return list(self.wider[space])

    @cached_property
    def deeper(self) -> list[tuple[int, int]]:
        """Positions ``net2deeper`` accepts (the conditions of ``deeper_refusal``)."""
        layers = self.arch.layers
        out = []
        for b, members in enumerate(self.arch.blocks()):
            for p, q in enumerate(members):
                if not isinstance(layers[q], (Conv, FC)):
                    continue
                if any(s.mode == "ADD" for s in self.by_dst.get(q, ())):
                    continue
                if self.out_owners[q] & self.negative:
                    continue
                out.append((b, p))
        return out

    @cached_property
    def dense_inserts(self) -> list[tuple[int, int]]:
        """Positions ``dense_insert`` accepts (the conditions of ``dense_insert_refusal``)."""
        out = []
        for b, members in enumerate(self.arch.dense_blocks()):
            front_ok = not self.in_owners[members[0]] <= self.negative
            out.extend((b, p) for p in range(len(members) + 1) if p > 0 or front_ok)
        return out

    def skips(self, input_shape: tuple[int, int, int]) -> list[tuple[int, int, str]]:
        """Skips ``add_skip`` accepts (the conditions of ``skip_refusal``)."""
        if self.has_dense:  # not derived for dense blocks: ask the refusal function
            return [(s, d, m) for s in self.convs for d in self.convs if s < d
                    for m in SKIP_MODES if skip_refusal(self.arch, input_shape, s, d, m) is None]
        shapes = _shapes(self.arch, input_shape)
        if shapes is None:  # the network does not fit its input: nothing can be added
            return []
        cat_ok = {d: self._cat_keeps_adds(d) for d in self.convs}
        out = []
        for s in self.convs:
            src = shapes[s]
            for d in self.convs:
                if d <= s or (s, d) in self.pairs or src.out_hw != shapes[d].out_hw:
                    continue
                merged = self.by_dst.get(d, ())
                before = [t for t in merged if t.src < s]
                # ADD: equal channels where the sum is taken (after the CAT skips merged before)
                width = self.arch.layers[d].filters  # type: ignore[union-attr]
                width += sum(shapes[t.src].out_channels for t in before if t.mode == "CAT")
                if src.out_channels == width:
                    out.append((s, d, "ADD"))
                # CAT: more channels out of d; every ADD merged later must still match
                if cat_ok[d] and not any(t.mode == "ADD" and t.src > s for t in merged):
                    out.append((s, d, "CAT"))
        return out

    def _cat_keeps_adds(self, d: int) -> bool:
        """Whether extra channels out of layer ``d`` leave every later ADD skip consistent.

        Channel counts are linear in the extra amount, so one unit is followed
        through the network: ``extra[i]`` is how many units layer ``i``'s output
        gains. An ADD skip stays legal only when both of its sides gain equally.
        """
        extra = [0] * len(self.arch.layers)
        extra[d] = 1
        for i in range(d + 1, len(self.arch.layers)):
            layer = self.arch.layers[i]
            if isinstance(layer, Pool):
                extra[i] = extra[i - 1]
                continue
            if not isinstance(layer, (Conv, FC, Softmax)):  # pragma: no cover - no dense here
                return False
            gained = 0
            for s in self.by_dst.get(i, ()):
                if s.mode == "ADD":
                    if extra[s.src] != gained:
                        return False
                else:
                    gained += extra[s.src]
            extra[i] = gained
        return True


@lru_cache(maxsize=512)
def _facts(arch: Architecture) -> _Facts:
    return _Facts(arch)


@lru_cache(maxsize=512)
def _shapes(arch: Architecture, input_shape: tuple[int, int, int]) -> list[LayerShape] | None:
    try:
        return infer_shapes(arch, input_shape)
    except ValueError:
        return None


# --------------------------------------------------------------------------- public API
class LegalActions:
    """The legal actions of one architecture, per kind, computed when first asked for.

    ``max_layers`` (the environment's ``L``) keeps only actions that fit its
    padded masks: layer indices below ``L``, and no insertion once the network
    has ``L`` layers (``SM`` excluded). Every attribute is a sorted tuple or a
    frozenset of plain ints, so agents need not re-parse architecture strings:

    * ``wider``: widenable layer indices; ``wider_fc``: those that are FC layers.
    * ``deeper``: ``(block, position)`` pairs (dense blocks on DenseNets);
      ``deeper_fc``: those that insert an FC layer (no kernel size needed).
    * ``kernels``: indices into ``space.kernel_sizes`` usable by a new conv
      (the odd sizes); when there is none, only FC insertions stay in ``deeper``.
    * ``skips``: ``(src, dst, mode_index)`` with ``mode_index`` into
      :data:`SKIP_MODES` (none on DenseNets).
    * ``narrow`` (a shrink kind): ``(layer, level)`` pairs: conv/FC layer ``layer``
      may be narrowed (``morphisms.narrow``) to ``space.levels_for(layer)[level]``,
      a width of the space below its current one.
    * ``remove`` (a shrink kind): layers ``morphisms.remove_layer`` accepts.
    """

    def __init__(self, arch: Architecture | str, input_shape: tuple[int, int, int],
                 space: SearchSpace | None = None, max_layers: int | None = None) -> None:
        self.arch = Architecture.parse(arch)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.space = space if space is not None else SearchSpace()
        self.max_layers = max_layers
        self.densenet = self.arch.is_densenet
        self._facts = _facts(self.arch)

    def _fits(self, i: int) -> bool:
        return self.max_layers is None or 0 <= i < self.max_layers

    @property
    def full(self) -> bool:
        """True when the network has ``max_layers`` layers (``SM`` excluded): no insertion."""
        return self.max_layers is not None and len(self.arch.layers) - 1 >= self.max_layers

    @cached_property
    def wider(self) -> tuple[int, ...]:
        return tuple(sorted(i for i in self._facts.widenable(self.space) if self._fits(i)))

    @cached_property
    def wider_fc(self) -> frozenset[int]:
        return frozenset(i for i in self.wider if isinstance(self.arch.layers[i], FC))

    @cached_property
    def kernels(self) -> tuple[int, ...]:
        return tuple(k for k, size in enumerate(self.space.kernel_sizes) if size % 2 == 1)

    @cached_property
    def _insertions(self) -> tuple[tuple[tuple[int, int], ...], frozenset[tuple[int, int]]]:
        if self.full:
            positions: Iterable[tuple[int, int]] = ()
        elif self.densenet:
            positions = self._facts.dense_inserts
        else:
            positions = self._facts.deeper
        L = self.max_layers
        kept = sorted((b, p) for b, p in positions if L is None or (b < L and p <= L))
        blocks = self.arch.blocks()
        fc = frozenset() if self.densenet else frozenset(
            (b, p) for b, p in kept if isinstance(self.arch.layers[blocks[b][p]], FC))
        if not self.kernels:
            kept = [bp for bp in kept if bp in fc]
        return tuple(kept), fc

    @property
    def deeper(self) -> tuple[tuple[int, int], ...]:
        return self._insertions[0]

    @property
    def deeper_fc(self) -> frozenset[tuple[int, int]]:
        return self._insertions[1]

    @cached_property
    def skips(self) -> tuple[tuple[int, int, int], ...]:
        if self.densenet:
            return ()
        L = self.max_layers if self.max_layers is not None else len(self.arch.layers)
        return tuple((s, d, 0 if m == "ADD" else 1)
                     for s, d, m in self._facts.skips(self.input_shape) if s < L and d < L)

    @cached_property
    def narrow(self) -> tuple[tuple[int, int], ...]:
        out = []
        for i in narrowable_layers(self.arch):
            if not self._fits(i):
                continue
            layer = self.arch.layers[i]
            width = width_of(layer)
            out.extend((i, k) for k, w in enumerate(self.space.levels_for(layer))
                       if width is not None and 1 <= w < width)
        return tuple(sorted(out))

    @cached_property
    def remove(self) -> tuple[int, ...]:
        if _shapes(self.arch, self.input_shape) is None:  # does not fit its input
            return ()
        return tuple(i for i in removable_layers(self.arch, self.input_shape) if self._fits(i))

    def has(self, kind: str) -> bool:
        """Whether ``kind`` (one of :data:`ALL_KINDS`) has at least one legal action."""
        if kind == "wider":
            return bool(self.wider)
        if kind == "deeper":
            return bool(self.deeper)
        if kind == "skip":
            return bool(self.skips)
        if kind == "narrow":
            return bool(self.narrow)
        if kind == "remove":
            return bool(self.remove)
        raise ValueError(f"unknown kind {kind!r}; expected one of {ALL_KINDS}")


@lru_cache(maxsize=256)
def _cached(arch: Architecture, input_shape: tuple[int, int, int], space: SearchSpace,
            max_layers: int | None) -> LegalActions:
    return LegalActions(arch, input_shape, space, max_layers)


def legal_actions(arch: Architecture, input_shape: tuple[int, int, int],
                  space: SearchSpace | None = None, max_layers: int | None = None
                  ) -> LegalActions:
    """A cached :class:`LegalActions` (one per architecture, input shape, space and ``L``)."""
    space = space if space is not None else SearchSpace()
    return _cached(Architecture.parse(arch), tuple(int(v) for v in input_shape), space,
                   None if max_layers is None else int(max_layers))


def widenable_layers(arch: Architecture, space: SearchSpace) -> list[int]:
    """Conv/FC/DL layers below the space's top level and not tied to an ADD skip.

    Apply with ``net2wider(net, i, space=space)`` (DL layers are handed to
    ``dense_widen``).
    """
    return _facts(Architecture.parse(arch)).widenable(space)


def deeper_positions(arch: Architecture) -> list[tuple[int, int]]:
    """``(block, position)`` pairs accepted by ``net2deeper`` (index into ``arch.blocks()``)."""
    return list(_facts(Architecture.parse(arch)).deeper)


def dense_insert_positions(arch: Architecture) -> list[tuple[int, int]]:
    """``(dense block, position)`` pairs accepted by ``dense_insert``."""
    return list(_facts(Architecture.parse(arch)).dense_inserts)


def skip_candidates(arch: Architecture,
                    input_shape: tuple[int, int, int]) -> list[tuple[int, int, str]]:
    """``(src, dst, mode)`` triples accepted by ``add_skip``."""
    return _facts(Architecture.parse(arch)).skips(tuple(int(v) for v in input_shape))


def clear_caches() -> None:
    """Forget every cached architecture (benchmarks use it to time cold computations)."""
    _facts.cache_clear()
    _shapes.cache_clear()
    _cached.cache_clear()
