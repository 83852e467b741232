"""Inserting a new layer into a dense block (EAS Eq. 5)."""

from __future__ import annotations

import numpy as np

from eas.arch import Architecture, SearchSpace
from eas.layers import Dense
from eas.morphisms._remap import (
    Insert,
    Plan,
    apply_plan,
    as_rng,
    check_kernel,
    gaussian_,
    layouts,
    maybe_negative_owners,
)
from eas.network import ChildNet

__all__ = ["dense_insert", "dense_insert_refusal"]


def _index_for(arch: Architecture, block: int, position: int) -> tuple[int, Dense]:
    members = arch.dense_blocks()[block]
    at = members[position] if position < len(members) else members[-1] + 1
    neighbour = arch.layers[members[min(position, len(members) - 1)]]
    return at, neighbour  # type: ignore[return-value]


def dense_insert_refusal(arch: Architecture, block: int, position: int) -> str | None:
    """Why a dense layer cannot become layer ``position`` of dense block ``block``, or None."""
    blocks = arch.dense_blocks()
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) \
            or not 0 <= block < len(blocks):
        return f"dense block {block!r} is out of range (the network has {len(blocks)} dense blocks)"
    members = blocks[block]
    if not isinstance(position, (int, np.integer)) or isinstance(position, bool) \
            or not 0 <= position <= len(members):
        return (f"position {position!r} is out of range: dense block {block} has "
                f"{len(members)} layers, so 0 <= position <= {len(members)}")
    if position == 0:
        neg = maybe_negative_owners(arch)
        ins, _ = layouts(arch, 1)
        if all(o in neg for o, _ in ins[members[0]]):
            return ("every channel of the block's input can be negative (the image or the "
                    "output of an ADD skip), so a replicating layer followed by ReLU cannot "
                    "preserve the function at the front of the block")
    return None


def dense_insert(net: ChildNet, block: int, position: int, growth: int | None = None,
                 kernel: int = 3, *, space: SearchSpace | None = None,
                 rng: np.random.Generator | None = None, noise: bool = False,
                 noise_scale: float = 1e-3) -> ChildNet:
    """Insert ``DL(growth, kernel, bottleneck)`` as layer ``position`` of dense block ``block``.

    ``block`` indexes ``net.arch.dense_blocks()`` and ``0 <= position <= len(block)``.
    ``growth`` defaults to the neighbouring layer's; the bottleneck is ``4 * growth``
    when the neighbour has one, else none. Each new output channel replicates a
    randomly chosen (``rng``) non-negative channel of the new layer's input
    ``[O_0 .. O_l]`` (Eq. 5): through a one-hot 1x1 bottleneck and a one-hot
    centre tap, BatchNorms undone, ReLUs harmless on non-negative inputs. All
    later layers of the block and the transition/classifier get their input
    columns remapped with replication counts. ``noise`` adds N(0, noise_scale^2)
    to the new kernels.
    """
    what = f"dense_insert(block={block}, position={position}, growth={growth}, kernel={kernel})"
    arch = net.arch
    check_kernel(kernel, space.kernel_sizes if space is not None else None, what)
    reason = dense_insert_refusal(arch, block, position)
    if reason is not None:
        raise ValueError(f"{what}: {reason}")
    at, neighbour = _index_for(arch, block, position)
    if growth is None:
        growth = neighbour.growth
    if not isinstance(growth, (int, np.integer)) or isinstance(growth, bool) or growth < 1:
        raise ValueError(f"{what}: growth must be a positive integer, got {growth!r}")
    growth = int(growth)
    if space is not None and growth not in space.growth_rates:
        raise ValueError(f"{what}: growth {growth} is not one of the search space's growth "
                         f"rates {list(space.growth_rates)}")
    bottleneck = 4 * growth if neighbour.bottleneck else 0
    rng = as_rng(rng)
    new_arch = arch.insert_layer(at, Dense(growth, kernel, bottleneck))
    ins, _ = layouts(new_arch, int(net.input_shape[0]))
    neg = maybe_negative_owners(new_arch)
    ok = np.array([m for m, (o, _) in enumerate(ins[at]) if o not in neg], dtype=np.int64)
    chosen = rng.choice(ok, size=growth, replace=growth > len(ok))
    if bottleneck:
        extra = rng.choice(ok, size=bottleneck - growth, replace=bottleneck - growth > len(ok))
        select = np.concatenate([chosen, extra])
    else:
        select = chosen
    parent_of = {i: (i if i < at else i - 1) for i in range(len(new_arch.layers)) if i != at}
    child = apply_plan(net, Plan(new_arch, parent_of, insert={at: Insert(select)}))
    if noise:
        module = child.layers[at]
        if bottleneck:
            gaussian_(module.bconv.weight, noise_scale, rng)
        gaussian_(module.conv.weight, noise_scale, rng)
    return child
