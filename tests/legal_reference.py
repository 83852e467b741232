"""The previous legal-action code path, kept as the reference for the fast one.

Every candidate is asked of the transformation's own ``*_refusal`` function
(which, for skips, builds the new architecture and infers its shapes), and the
mask arrays are filled as the environment filled them before
``morphisms.legal.LegalActions``. Used by ``tests/test_legal.py`` (equality on
random networks) and ``bench/bench_env_steps.py`` (timings side by side).
"""

from __future__ import annotations

import numpy as np

from eas.arch import Architecture, SearchSpace
from eas.layers import FC, Conv, Dense
from eas.morphisms._remap import add_carriers
from eas.morphisms.dense_insert import dense_insert_refusal
from eas.morphisms.net2deeper import deeper_refusal
from eas.morphisms.skip import skip_refusal

KINDS = ("wider", "deeper", "skip")


def ref_widenable(arch: Architecture, space: SearchSpace) -> list[int]:
    out = []
    for i, layer in enumerate(arch.layers):
        if not isinstance(layer, (Conv, FC, Dense)) or space.next_width(layer) is None:
            continue
        if isinstance(layer, Conv) and add_carriers(arch, i):
            continue
        out.append(i)
    return out


def ref_deeper(arch: Architecture) -> list[tuple[int, int]]:
    return [(b, p) for b, members in enumerate(arch.blocks()) for p in range(len(members))
            if deeper_refusal(arch, b, p) is None]


def ref_dense_insert(arch: Architecture) -> list[tuple[int, int]]:
    return [(b, p) for b, members in enumerate(arch.dense_blocks())
            for p in range(len(members) + 1) if dense_insert_refusal(arch, b, p) is None]


def ref_skips(arch: Architecture, shape: tuple[int, int, int]) -> list[tuple[int, int, str]]:
    convs = [i for i, layer in enumerate(arch.layers) if isinstance(layer, Conv)]
    return [(s, d, m) for s in convs for d in convs if s < d for m in ("ADD", "CAT")
            if skip_refusal(arch, shape, s, d, m) is None]


def ref_masks(arch: Architecture, shape: tuple[int, int, int], space: SearchSpace, L: int,
              step_kind: str | None, done: bool) -> dict[str, np.ndarray]:
    """The mask arrays as the environment computed them before LegalActions."""
    K = len(space.kernel_sizes)
    densenet = arch.is_densenet
    wider = sorted(i for i in ref_widenable(arch, space) if 0 <= i < L)
    if len(arch.layers) - 1 >= L:
        positions: list[tuple[int, int]] = []
    elif densenet:
        positions = ref_dense_insert(arch)
    else:
        positions = ref_deeper(arch)
    deeper = {(b, p) for b, p in positions if 0 <= b < L and 0 <= p <= L}

    def inserts_fc(block: int, position: int) -> bool:
        if densenet:
            return False
        blocks = arch.blocks()
        if block >= len(blocks):
            return False
        layers = blocks[block]
        if position < len(layers):
            return isinstance(arch.layers[layers[position]], FC)
        return block == len(blocks) - 1 and all(isinstance(arch.layers[i], FC) for i in layers)

    deeper_fc = {bp for bp in deeper if inserts_fc(*bp)}
    kernels = [k for k, ks in enumerate(space.kernel_sizes) if ks % 2 == 1]
    skips = set() if densenet else {
        (s, d, ("ADD", "CAT").index(m)) for s, d, m in ref_skips(arch, shape) if s < L and d < L
    }
    if not kernels:
        deeper = set(deeper_fc)
    has = {"wider": bool(wider), "deeper": bool(deeper), "skip": bool(skips)}
    kind_mask = np.zeros(3, np.int8)
    if not done:
        if step_kind is not None:
            kind_mask[KINDS.index(step_kind)] = 1
        else:
            kind_mask[:] = [has[k] for k in KINDS]
            if not kind_mask.any():
                kind_mask[0] = 1
    w = np.zeros(L, np.int8)
    w[wider] = 1
    dm = np.zeros((L, L + 1), np.int8)
    fc = np.zeros((L, L + 1), np.int8)
    for b, p in deeper:
        dm[b, p] = 1
    for b, p in deeper_fc:
        fc[b, p] = 1
    km = np.zeros(K, np.int8)
    km[kernels] = 1
    sm = np.zeros((L, L, 2), np.int8)
    for s, d, m in skips:
        sm[s, d, m] = 1
    # what hill climbing derived by re-parsing the architecture string
    wfc = np.zeros(L, np.int8)
    wfc[[i for i in wider if isinstance(arch.layers[i], FC)]] = 1
    return {"kind_mask": kind_mask, "wider_mask": w, "wider_is_fc": wfc, "deeper_mask": dm,
            "deeper_is_fc": fc,
            "kernel_mask": km, "skip_mask": sm}
