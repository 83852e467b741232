"""The environment's spaces and mask arrays.

:func:`observation_space` and :meth:`LegalActionDict.for_layers` build the
gymnasium spaces of :class:`~envs.net_transform.NetTransformEnv` for at most
``L`` layers and ``K`` kernel sizes; :class:`Masks` turns the legal actions of
one state (a :class:`~eas.morphisms.legal.LegalActions`, computed in
``eas.morphisms.legal``) into the observation's mask arrays.

With shrinking on (``shrink_width=W``, the environment's ``shrink=True``) the
kind space grows to :data:`~eas.kinds.ALL_KINDS` and the spaces get the
shrink entries (``narrow``/``remove`` actions, ``narrow_mask``/``remove_mask``);
with it off (``None``) every space and array is exactly the exact-kinds one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

from eas.envs.observation import sample_legal_action
from eas.kinds import KINDS, kinds_for
from eas.morphisms.legal import LegalActions, narrow_levels

__all__ = ["ARCH_CHARSET", "ArchText", "LegalActionDict", "Masks", "SharedArchStrings",
           "mask_arrays", "observation_space"]

ARCH_CHARSET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789(), ")
"""The characters an architecture string may hold (the ``arch`` entry's charset)."""


class ArchText(spaces.Text):
    """The ``arch`` entry's space: a :class:`gymnasium.spaces.Text` that survives shared memory.

    Gymnasium's ``AsyncVectorEnv(shared_memory=True)`` (its default) reads a
    ``Text`` entry out of shared memory once, when the vector env is built, so
    every later observation shows that first read (blank strings). For this
    subclass the read returns a :class:`SharedArchStrings` view that decodes the
    shared buffer whenever it is read (and copies to a plain tuple of strings),
    so ``obs["arch"]`` is right under sync and async vectorisation alike.
    """


class SharedArchStrings(Sequence[str]):
    """The ``n`` architecture strings in an ``AsyncVectorEnv``'s shared memory, decoded on access.

    ``copy.deepcopy`` (what ``AsyncVectorEnv`` does to observations with its
    default ``copy=True``) gives a plain tuple of the current strings.
    """

    def __init__(self, space: ArchText, shared_memory: Any, n: int) -> None:
        self._data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(
            n, space.max_length)
        codes = [ord(c) for c in space.character_list]
        self._lut = np.asarray(codes + [0], dtype=np.uint8)  # the padding index -> dropped

    def __len__(self) -> int:
        return int(self._data.shape[0])

    def _decode(self, row: np.ndarray) -> str:
        return self._lut[row[row < len(self._lut) - 1]].tobytes().decode("ascii")

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self._decode(row) for row in self._data[i])
        return self._decode(self._data[i])

    def __iter__(self) -> Iterator[str]:
        return (self._decode(row) for row in self._data)

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@read_from_shared_memory.register(ArchText)
def _read_arch_from_shared_memory(space: ArchText, shared_memory: Any,
                                  n: int = 1) -> SharedArchStrings:
    return SharedArchStrings(space, shared_memory, n)


def observation_space(L: int, K: int, steps: int, vocab_size: int,
                      shrink_width: int | None = None) -> spaces.Dict:
    """The observation space for ``L`` layers, ``K`` kernel sizes and ``steps`` steps per episode.

    ``shrink_width`` (``W``, see :func:`~eas.morphisms.legal.narrow_levels`) adds
    the shrink masks ``narrow_mask`` (``MultiBinary((L, W))``) and ``remove_mask``
    (``MultiBinary(L)``) and widens ``kind_mask`` to every kind.
    """
    entries: dict[str, spaces.Space[Any]] = {
        "arch": ArchText(32 * (L + 1) + 20 * L * (L - 1) // 2, charset=ARCH_CHARSET),
        "tokens": spaces.Box(0, vocab_size - 1, (L,), np.int64),
        "length": spaces.Discrete(L + 1),
        "step": spaces.Discrete(steps + 1),
        "kind_mask": spaces.MultiBinary(len(kinds_for(shrink_width is not None))),
        "wider_mask": spaces.MultiBinary(L),
        "wider_is_fc": spaces.MultiBinary(L),
        "deeper_mask": spaces.MultiBinary((L, L + 1)),
        "deeper_is_fc": spaces.MultiBinary((L, L + 1)),
        "kernel_mask": spaces.MultiBinary(K),
        "skip_mask": spaces.MultiBinary((L, L, 2)),
    }
    if shrink_width is not None:
        entries["narrow_mask"] = spaces.MultiBinary((L, shrink_width))
        entries["remove_mask"] = spaces.MultiBinary(L)
    return spaces.Dict(entries)


# ----------------------------------------------------------------------------- masks
class Masks:
    """Legal actions of one state (a :class:`LegalActions`) plus its kind mask.

    The legal sets are computed lazily per kind by ``LegalActions``; the mask
    arrays are built once, on the first call of :meth:`arrays`. ``kinds`` is the
    environment's kind tuple (:func:`~eas.morphisms.legal.kinds_for`); with the
    shrink kinds in it, the arrays include ``narrow_mask`` and ``remove_mask``.
    """

    def __init__(self, legal: LegalActions, step_kind: str | None, done: bool,
                 kinds: tuple[str, ...] = KINDS) -> None:
        self.legal = legal
        self.kinds = tuple(kinds)
        kind_mask = np.zeros(len(self.kinds), np.int8)
        if not done:
            if step_kind is not None:
                kind_mask[self.kinds.index(step_kind)] = 1
            else:
                kind_mask[:] = [legal.has(k) for k in self.kinds]
                if not kind_mask.any():  # nothing legal: an all-zero "wider" is a no-op
                    kind_mask[0] = 1
        self.kind_mask = kind_mask
        self._arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Fresh mask arrays (new objects on every call)."""
        if self._arrays is None:
            self._arrays = mask_arrays(self.legal, self.kind_mask,
                                       shrink=len(self.kinds) > len(KINDS))
        return {k: v.copy() for k, v in self._arrays.items()}


def mask_arrays(legal: LegalActions, kind_mask: np.ndarray,
                shrink: bool = False) -> dict[str, np.ndarray]:
    """The observation's mask arrays for ``legal`` (its ``max_layers`` sets ``L``).

    ``shrink`` adds ``narrow_mask`` (``(L, W)``) and ``remove_mask`` (``(L,)``).
    """
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
    out = {
        "kind_mask": np.asarray(kind_mask, np.int8).copy(),
        "wider_mask": wider,
        "wider_is_fc": wider_fc,
        "deeper_mask": deeper,
        "deeper_is_fc": is_fc,
        "kernel_mask": kernel,
        "skip_mask": skip,
    }
    if shrink:
        narrow = np.zeros((L, narrow_levels(legal.space)), np.int8)
        if legal.narrow:
            narrow[tuple(np.asarray(legal.narrow).T)] = 1
        remove = np.zeros(L, np.int8)
        remove[list(legal.remove)] = 1
        out["narrow_mask"] = narrow
        out["remove_mask"] = remove
    return out


# ----------------------------------------------------------------------------- actions
class _HasMasks(Protocol):
    def legal_masks(self) -> dict[str, np.ndarray] | None: ...


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
    def for_layers(cls, L: int, K: int, shrink_width: int | None = None) -> LegalActionDict:
        """The action space for ``L`` layers and ``K`` kernel sizes (detached).

        ``shrink_width`` (``W``) adds ``"narrow"`` (``MultiDiscrete([L, W])``:
        layer, width level) and ``"remove"`` (``Discrete(L)``: layer) and widens
        ``"kind"`` to every kind; ``None`` (shrinking off) leaves the space as it was.
        """
        entries: dict[str, spaces.Space[Any]] = {
            "kind": spaces.Discrete(len(kinds_for(shrink_width is not None))),
            "wider": spaces.MultiBinary(L),
            "deeper": spaces.MultiDiscrete([L, L + 1, K]),
            "skip": spaces.MultiDiscrete([L, L, 2]),
        }
        if shrink_width is not None:
            entries["narrow"] = spaces.MultiDiscrete([L, shrink_width])
            entries["remove"] = spaces.Discrete(L)
        return cls(entries)

    def attach(self, env: _HasMasks) -> None:
        """Sample legal actions of ``env``'s current state (held by a weak reference)."""
        self._owner = weakref.ref(env)

    def sample(self, mask: dict[str, Any] | None = None,
               probability: dict[str, Any] | None = None) -> dict[str, Any]:
        """A legal action of the attached environment's state, else a plain ``Dict`` sample."""
        env = self._owner() if self._owner is not None else None
        if mask is None and probability is None and env is not None:
            obs = env.legal_masks()
            if obs is not None:
                return sample_legal_action(obs, self.np_random)
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state
