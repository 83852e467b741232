"""The environment's spaces and mask arrays.

:func:`observation_space` and :meth:`LegalActionDict.for_layers` build the
gymnasium spaces of :class:`~envs.net_transform.NetTransformEnv` for at most
``L`` layers and ``K`` kernel sizes; :class:`Masks` turns the legal actions of
one state (a :class:`~eas.morphisms.legal.LegalActions`, computed in
``eas.morphisms.legal``) into the observation's mask arrays.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import numpy as np
from eas.envs.observation import sample_legal_action
from eas.morphisms.legal import KINDS, LegalActions
from gymnasium import spaces

__all__ = ["ARCH_CHARSET", "LegalActionDict", "Masks", "mask_arrays", "observation_space"]

ARCH_CHARSET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789(), ")
"""The characters an architecture string may hold (the ``arch`` entry's charset)."""


def observation_space(L: int, K: int, steps: int, vocab_size: int) -> spaces.Dict:
    """The observation space for ``L`` layers, ``K`` kernel sizes and ``steps`` steps per episode."""
    return spaces.Dict({
        "arch": spaces.Text(32 * (L + 1) + 20 * L * (L - 1) // 2, charset=ARCH_CHARSET),
        "tokens": spaces.Box(0, vocab_size - 1, (L,), np.int64),
        "length": spaces.Discrete(L + 1),
        "step": spaces.Discrete(steps + 1),
        "kind_mask": spaces.MultiBinary(len(KINDS)),
        "wider_mask": spaces.MultiBinary(L),
        "wider_is_fc": spaces.MultiBinary(L),
        "deeper_mask": spaces.MultiBinary((L, L + 1)),
        "deeper_is_fc": spaces.MultiBinary((L, L + 1)),
        "kernel_mask": spaces.MultiBinary(K),
        "skip_mask": spaces.MultiBinary((L, L, 2)),
    })


# ----------------------------------------------------------------------------- masks
class Masks:
    """Legal actions of one state (a :class:`LegalActions`) plus its kind mask.

    The legal sets are computed lazily per kind by ``LegalActions``; the mask
    arrays are built once, on the first call of :meth:`arrays`.
    """

    def __init__(self, legal: LegalActions, step_kind: str | None, done: bool) -> None:
        self.legal = legal
        kind_mask = np.zeros(len(KINDS), np.int8)
        if not done:
            if step_kind is not None:
                kind_mask[KINDS.index(step_kind)] = 1
            else:
                kind_mask[:] = [legal.has(k) for k in KINDS]
                if not kind_mask.any():  # nothing legal: an all-zero "wider" is a no-op
                    kind_mask[0] = 1
        self.kind_mask = kind_mask
        self._arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Fresh mask arrays (new objects on every call)."""
        if self._arrays is None:
            self._arrays = mask_arrays(self.legal, self.kind_mask)
        return {k: v.copy() for k, v in self._arrays.items()}


def mask_arrays(legal: LegalActions, kind_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The observation's mask arrays for ``legal`` (its ``max_layers`` sets ``L``)."""
    L, K = int(legal.max_layers or 0), len(legal.space.kernel_sizes)
    wider = np.zeros(L, np.int8)
    wider[list(legal.wider)] = 1
    wider_fc = np.zeros(L, np.int8)
    wider_fc[sorted(legal.wider_fc)] = 1
    deeper = np.zeros((L, L + 1), np.int8)
    is_fc = np.zeros((L, L + 1), np.int8)
    if legal.deeper:
        deeper[tuple(np.asarray(legal.deeper).T)] = 1
    if legal.deeper_fc:
        is_fc[tuple(np.asarray(sorted(legal.deeper_fc)).T)] = 1
    kernel = np.zeros(K, np.int8)
    kernel[list(legal.kernels)] = 1
    skip = np.zeros((L, L, 2), np.int8)
    if legal.skips:
        skip[tuple(np.asarray(legal.skips).T)] = 1
    return {
        "kind_mask": np.asarray(kind_mask, np.int8).copy(),
        "wider_mask": wider,
        "wider_is_fc": wider_fc,
        "deeper_mask": deeper,
        "deeper_is_fc": is_fc,
        "kernel_mask": kernel,
        "skip_mask": skip,
    }


# ----------------------------------------------------------------------------- actions
class _HasMasks(Protocol):
    def action_masks(self) -> dict[str, np.ndarray] | None: ...


class LegalActionDict(spaces.Dict):
    """The action space; ``sample()`` without a mask draws an action legal *now*.

    An ordinary :class:`gymnasium.spaces.Dict` in every other respect
    (``contains``, batching, ``sample(mask=...)`` with gymnasium's semantics).
    Because most of the space is illegal in any given state, an unmasked
    ``sample()`` asks the environment it is attached to for the current masks
    and draws with :func:`~envs.observation.sample_legal_action` (random
    search's draws) from the space's own RNG (``action_space.seed(...)``), so
    ``env.step(env.action_space.sample())`` always works. Detached (copied into
    a batch, pickled, or before the first ``reset``) it samples like a plain ``Dict``.
    """

    _owner: weakref.ReferenceType[Any] | None = None

    @classmethod
    def for_layers(cls, L: int, K: int) -> LegalActionDict:
        """The action space for ``L`` layers and ``K`` kernel sizes (detached)."""
        return cls({
            "kind": spaces.Discrete(len(KINDS)),
            "wider": spaces.MultiBinary(L),
            "deeper": spaces.MultiDiscrete([L, L + 1, K]),
            "skip": spaces.MultiDiscrete([L, L, 2]),
        })

    def attach(self, env: _HasMasks) -> None:
        """Sample legal actions of ``env``'s current state (held by a weak reference)."""
        self._owner = weakref.ref(env)

    def sample(self, mask: dict[str, Any] | None = None,
               probability: dict[str, Any] | None = None) -> dict[str, Any]:
        """A legal action of the attached environment's state, else a plain ``Dict`` sample."""
        env = self._owner() if self._owner is not None else None
        if mask is None and probability is None and env is not None:
            obs = env.action_masks()
            if obs is not None:
                return sample_legal_action(obs, self.np_random)
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state
