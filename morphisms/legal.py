"""Action masks: the transformations that are legal on an architecture.

Every action returned here succeeds when applied with the corresponding
function (default arguments otherwise); every other action raises ValueError.
"""

from __future__ import annotations

from eas.morphisms._remap import add_carriers
from eas.morphisms.dense_insert import dense_insert_refusal
from eas.morphisms.net2deeper import deeper_refusal
from eas.morphisms.skip import skip_refusal

from eas.arch import FC, Architecture, Conv, Dense, SearchSpace

__all__ = ["widenable_layers", "deeper_positions", "dense_insert_positions", "skip_candidates"]


def widenable_layers(arch: Architecture, space: SearchSpace) -> list[int]:
    """Conv/FC/DL layers below the space's top level and not tied to an ADD skip.

    Apply with ``net2wider(net, i, space=space)`` (DL layers are handed to
    ``dense_widen``).
    """
    out = []
    for i, layer in enumerate(arch.layers):
        if not isinstance(layer, (Conv, FC, Dense)):
            continue
        if space.next_width(layer) is None:
            continue
        if isinstance(layer, Conv) and add_carriers(arch, i):
            continue
        out.append(i)
    return out


def deeper_positions(arch: Architecture) -> list[tuple[int, int]]:
    """``(block, position)`` pairs accepted by ``net2deeper`` (index into ``arch.blocks()``)."""
    return [(b, p) for b, members in enumerate(arch.blocks()) for p in range(len(members))
            if deeper_refusal(arch, b, p) is None]


def dense_insert_positions(arch: Architecture) -> list[tuple[int, int]]:
    """``(dense block, position)`` pairs accepted by ``dense_insert``."""
    return [(b, p) for b, members in enumerate(arch.dense_blocks())
            for p in range(len(members) + 1) if dense_insert_refusal(arch, b, p) is None]


def skip_candidates(arch: Architecture,
                    input_shape: tuple[int, int, int]) -> list[tuple[int, int, str]]:
    """``(src, dst, mode)`` triples accepted by ``add_skip``."""
    convs = [i for i, layer in enumerate(arch.layers) if isinstance(layer, Conv)]
    return [(s, d, mode) for s in convs for d in convs if s < d for mode in ("ADD", "CAT")
            if skip_refusal(arch, input_shape, s, d, mode) is None]
