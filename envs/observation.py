"""Reading the environment's observations and writing its actions.

The helpers agents use to handle one observation at a time: split a batched
(vector-env) observation into one dict per child, read which kinds are allowed,
draw a legal index from a mask, draw a whole legal action
(:func:`sample_legal_action`, the one definition of a uniformly random legal
action: the environment's ``action_space.sample()``, random search and hill
climbing's fallback all use it), and build or stack action dicts. The kinds and
their indices come from :data:`eas.kinds.KINDS` and
:data:`~eas.kinds.SHRINK_KINDS` (the one definition); an observation
carries the shrink masks (``narrow_mask``, ``remove_mask``) only when the
environment has shrinking on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from eas.kinds import ALL_KINDS

__all__ = [
    "allowed_kinds",
    "empty_action",
    "sample_legal_action",
    "sample_legal_actions",
    "split_obs",
    "stack_actions",
    "uniform_index",
]

WIDER, DEEPER, SKIP, NARROW, REMOVE = (
    ALL_KINDS.index(k) for k in ("wider", "deeper", "skip", "narrow", "remove"))
"""Index of each kind in the ``kind`` action and in ``kind_mask`` (the shrink kinds,
``NARROW`` and ``REMOVE``, exist only in environments with shrinking on)."""


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
    """Stack per-environment actions into the batched action dict (or return the single one).

    Fields beyond the four exact ones (the shrink fields ``narrow``/``remove``)
    are stacked too; an action lacking one (e.g. an :func:`empty_action`) gets zeros there.
    """
    if not batched:
        return actions[0]
    out = {
        "kind": np.asarray([a["kind"] for a in actions], dtype=np.int64),
        "wider": np.stack([a["wider"] for a in actions]).astype(np.int8),
        "deeper": np.stack([a["deeper"] for a in actions]).astype(np.int64),
        "skip": np.stack([a["skip"] for a in actions]).astype(np.int64),
    }
    extra = [k for k in dict.fromkeys(k for a in actions for k in a) if k not in out]
    for key in extra:
        like = np.zeros_like(np.asarray(next(a[key] for a in actions if key in a)),
                             dtype=np.int64)
        out[key] = np.stack([np.asarray(a.get(key, like)) for a in actions]).astype(np.int64)
    return out


def uniform_index(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, ...] | None:
    """A uniformly drawn index among the nonzero entries of ``mask``; None if there is none."""
    legal = np.argwhere(np.asarray(mask) != 0)
    if len(legal) == 0:
        return None
    return tuple(int(v) for v in legal[rng.integers(len(legal))])


def allowed_kinds(one: Mapping[str, Any]) -> list[int]:
    """Indices of the kinds allowed now for one environment's observation."""
    return [int(k) for k in np.flatnonzero(np.asarray(one["kind_mask"]))]


def sample_legal_action(one: Mapping[str, Any], rng: np.random.Generator,
                        wider_prob: float | None = 0.5, *,
                        kernel_for_fc: bool = False) -> dict[str, Any]:
    """Draw an action that the masks of one (unbatched) observation allow.

    * **kind**: uniform over ``kind_mask`` (no draw when only one kind is allowed,
      as in schedule mode);
    * **wider**: each widenable layer (``wider_mask``) is marked independently
      with probability ``wider_prob`` (one draw per layer; all-zero is a legal
      "no change"); ``wider_prob=None`` marks every widenable layer, drawing nothing;
    * **deeper**: a legal ``(block, position)`` uniformly from ``deeper_mask``,
      then the kernel uniformly from ``kernel_mask``, except where the new
      layer is FC (``deeper_is_fc``: no kernel, index 0); ``kernel_for_fc=True``
      draws (and records) a kernel there too, which the environment ignores;
    * **skip**: a legal ``(src, dst, mode)`` uniformly from ``skip_mask``;
    * **narrow** (shrinking on): a legal ``(layer, width level)`` uniformly from
      ``narrow_mask``; **remove**: a legal layer uniformly from ``remove_mask``.

    Fields of the other kinds are zeros (the shrink fields are present only when
    the observation has the shrink masks); with no kind allowed the action is the
    all-zero no-op. The draws, in this order from ``rng``, are what makes a
    seeded random search reproducible: changing them changes its children.
    """
    act = empty_action(int(np.asarray(one["wider_mask"]).shape[0]))
    if "narrow_mask" in one:
        act["narrow"] = np.zeros(2, dtype=np.int64)
        act["remove"] = np.int64(0)
    kinds = allowed_kinds(one)
    if not kinds:
        return act
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    act["kind"] = np.int64(kind)
    if kind == WIDER:
        mask = np.asarray(one["wider_mask"]) != 0
        if wider_prob is not None:
            mask &= rng.random(mask.shape[0]) < wider_prob
        act["wider"] = mask.astype(np.int8)
    elif kind == DEEPER:
        where = uniform_index(one["deeper_mask"], rng)
        if where is not None:
            block, position = where
            kernel = 0
            if kernel_for_fc or not np.asarray(one["deeper_is_fc"])[block, position]:
                k = uniform_index(one["kernel_mask"], rng)
                kernel = 0 if k is None else k[0]
            act["deeper"] = np.asarray([block, position, kernel], dtype=np.int64)
    elif kind == SKIP:
        where = uniform_index(one["skip_mask"], rng)
        if where is not None:
            act["skip"] = np.asarray(where, dtype=np.int64)
    elif kind == NARROW:
        where = uniform_index(one["narrow_mask"], rng)
        if where is not None:
            act["narrow"] = np.asarray(where, dtype=np.int64)
    elif kind == REMOVE:
        where = uniform_index(one["remove_mask"], rng)
        if where is not None:
            act["remove"] = np.int64(where[0])
    return act


def sample_legal_actions(obs: Mapping[str, Any], rng: np.random.Generator,
                         wider_prob: float | None = 0.5) -> dict[str, Any]:
    """Legal actions for a batched (vector-env) observation: one :func:`sample_legal_action` per copy.

    Works for any vector env of the environment (gymnasium's ``SyncVectorEnv`` and
    ``AsyncVectorEnv``, ``make_vec``, :class:`~envs.vector.VectorNetTransformEnv`),
    whose batched ``action_space.sample()`` knows nothing of the masks;
    ``vec.step(sample_legal_actions(obs, rng))`` always works. An unbatched
    observation gives one action dict.
    """
    ones, batched = split_obs(dict(obs))
    return stack_actions([sample_legal_action(one, rng, wider_prob) for one in ones], batched)
