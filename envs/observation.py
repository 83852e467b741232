"""Reading the environment's observations and writing its actions.

The helpers agents use to handle one observation at a time: split a batched
(vector-env) observation into one dict per child, read which kinds are allowed,
draw a legal index from a mask, and build or stack action dicts. The kinds and
their indices come from :data:`envs.net_transform.KINDS` (the one definition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eas.envs.net_transform import KINDS

__all__ = [
    "DEEPER",
    "SKIP",
    "WIDER",
    "allowed_kinds",
    "empty_action",
    "split_obs",
    "stack_actions",
    "uniform_index",
]

WIDER, DEEPER, SKIP = (KINDS.index(k) for k in ("wider", "deeper", "skip"))
"""Index of each kind in the ``kind`` action and in ``kind_mask``."""


def split_obs(obs: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Split a (possibly batched) observation into one dict per environment.

    Returns the per-environment observations and whether ``obs`` was batched
    (a vector-env observation has a leading batch dimension on ``kind_mask``).
    """
    batched = np.asarray(obs["kind_mask"]).ndim == 2
    if not batched:
        return [dict(obs)], False
    n = np.asarray(obs["kind_mask"]).shape[0]
    out: list[dict[str, Any]] = []
    for i in range(n):
        one: dict[str, Any] = {}
        for key, value in obs.items():
            if key == "arch":
                one[key] = value[i] if not isinstance(value, str) else value
            else:
                one[key] = np.asarray(value)[i]
        out.append(one)
    return out, True


def empty_action(max_layers: int) -> dict[str, Any]:
    """An all-zero action for one environment (kind wider with nothing marked: no change)."""
    return {
        "kind": np.int64(WIDER),
        "wider": np.zeros(max_layers, dtype=np.int8),
        "deeper": np.zeros(3, dtype=np.int64),
        "skip": np.zeros(3, dtype=np.int64),
    }


def stack_actions(actions: list[dict[str, Any]], batched: bool) -> dict[str, np.ndarray]:
    """Stack per-environment actions into the batched action dict (or return the single one)."""
    if not batched:
        return actions[0]
    return {
        "kind": np.asarray([a["kind"] for a in actions], dtype=np.int64),
        "wider": np.stack([a["wider"] for a in actions]).astype(np.int8),
        "deeper": np.stack([a["deeper"] for a in actions]).astype(np.int64),
        "skip": np.stack([a["skip"] for a in actions]).astype(np.int64),
    }


def uniform_index(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, ...] | None:
    """A uniformly drawn index among the nonzero entries of ``mask``; None if there is none."""
    legal = np.argwhere(np.asarray(mask) != 0)
    if len(legal) == 0:
        return None
    return tuple(int(v) for v in legal[rng.integers(len(legal))])


def allowed_kinds(one: dict[str, Any]) -> list[int]:
    """Indices of the kinds allowed now for one environment's observation."""
    return [int(k) for k in np.flatnonzero(np.asarray(one["kind_mask"]))]
