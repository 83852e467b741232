"""An SB3-ready view of the environment: one ``Discrete`` action, numeric observations, a flat mask.

:class:`~envs.net_transform.NetTransformEnv` speaks in dicts: a ``Dict`` action
(one field per kind), a ``Text`` entry in its observation and a *dict* of masks.
Stable-Baselines3 accepts none of them (its algorithms take ``Discrete``,
``MultiDiscrete`` or ``MultiBinary`` actions and array observations; sb3-contrib's
``MaskablePPO`` wants ``env.action_masks()`` to be one flat boolean array).
:class:`FlatNetTransformEnv` wraps the environment so that it does:

* **Action**: ``Discrete(n)``, every transformation the environment can apply,
  enumerated by :class:`FlatActions` in segments (``L = max_layers``,
  ``K = len(space.kernel_sizes)``, ``W`` the narrow levels)::

      0                    no-op (where the environment allows one, see below)
      wider   (L, L)       (i, j), i <= j: widen every widenable layer in i..j at once
                           (i == j: one layer; the EAS actor's multi-layer widening
                           restricted to runs of consecutive widenable layers)
      deeper  (L, L+1, K)  (block, position, kernel index); an FC insertion takes kernel 0
      skip    (L, L, 2)    (src, dst, ADD|CAT)
      narrow  (L, W)       (layer, width level)         only with shrink=True
      remove  (L,)         layer                         only with shrink=True

  On a DenseNet start ``wider`` raises growth rates (``dense_widen``) and ``deeper``
  inserts dense layers (``dense_insert``), as in the environment. The no-op is
  legal where the environment has one: when "wider" is allowed (nothing marked)
  or when the kind the schedule imposes has no legal action.
* **Observation**: the environment's observation without ``arch`` (token ids,
  length, step and the per-kind masks; all numeric, a ``Dict`` for
  ``MultiInputPolicy``), or with ``flatten=True`` one flat ``Box`` for
  ``MlpPolicy``. The architecture string is in ``info["arch"]``.
* **Mask**: :meth:`FlatNetTransformEnv.action_masks` is one boolean array of
  length ``n`` (sb3-contrib's protocol); ``env.action_space.sample()`` draws a
  legal action from it.
* **Illegal actions**: ``illegal="penalty"`` (default) leaves the state
  unchanged, pays ``-illegal_penalty`` and sets ``info["illegal"]`` to the
  reason; after ``max_illegal`` illegal actions in one episode it is truncated.
  ``illegal="raise"`` raises :class:`~envs.actions.InvalidActionError` instead.

``gymnasium.make("eas/NetTransformFlat-v0", **env_kwargs)`` builds it around a
new ``NetTransformEnv(**env_kwargs)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from eas.envs.actions import InvalidActionError
from eas.envs.net_transform import NetTransformEnv
from eas.envs.observation import DEEPER, NARROW, REMOVE, SKIP, WIDER, empty_action
from eas.kinds import ALL_KINDS
from eas.morphisms.legal import SKIP_MODES, narrow_levels

__all__ = ["FlatActions", "FlatNetTransformEnv", "LegalDiscrete", "flat_observation",
           "flat_observation_space", "sample_masked"]

_KIND_MASK_OF = {WIDER: "wider_mask", DEEPER: "deeper_mask", SKIP: "skip_mask",
                 NARROW: "narrow_mask", REMOVE: "remove_mask"}


class FlatActions:
    """One ``Discrete`` index for every transformation of an environment (the codec).

    ``FlatActions(max_layers, n_kernels, shrink_width)`` lays the actions out in
    segments (see the module docstring); :meth:`mask` turns one observation's
    per-kind masks into the flat legal mask and :meth:`decode` turns an index
    back into the environment's action dict. Pure functions of the masks: the
    wrapper and the SB3 agent (``agents/sb3.py``) share them.
    """

    def __init__(self, max_layers: int, n_kernels: int, shrink_width: int | None = None) -> None:
        L, K = int(max_layers), int(n_kernels)
        self.max_layers, self.n_kernels, self.shrink_width = L, K, shrink_width
        shapes: dict[str, tuple[int, ...]] = {
            "noop": (), "wider": (L, L), "deeper": (L, L + 1, K), "skip": (L, L, 2)}
        if shrink_width is not None:
            shapes["narrow"] = (L, int(shrink_width))
            shapes["remove"] = (L,)
        self.shapes = shapes
        """Segment name -> shape, in index order."""
        self.offsets: dict[str, int] = {}
        start = 0
        for name, shape in shapes.items():
            self.offsets[name] = start
            start += int(np.prod(shape, dtype=np.int64))
        self.n = start
        """The number of actions (the ``Discrete`` space's ``n``)."""

    @classmethod
    def for_env(cls, env: NetTransformEnv) -> FlatActions:
        """The codec of ``env`` (its ``max_layers``, kernel sizes and shrink setting)."""
        return cls(env.max_layers, len(env.space.kernel_sizes),
                   narrow_levels(env.space) if env.shrink else None)

    # ------------------------------------------------------------------ masks
    def mask(self, masks: Mapping[str, Any]) -> np.ndarray:
        """The flat boolean mask of the legal actions, from one observation's (or
        :meth:`NetTransformEnv.legal_masks`') per-kind masks."""
        km = np.asarray(masks["kind_mask"]) != 0
        L = self.max_layers
        parts = [np.asarray([self._noop_kind(masks) is not None])]
        w = (np.asarray(masks["wider_mask"]) != 0) & bool(km[WIDER])
        parts.append(np.triu(np.outer(w, w)).ravel())
        d = (np.asarray(masks["deeper_mask"]) != 0) & bool(km[DEEPER])
        fc = np.asarray(masks["deeper_is_fc"]) != 0
        kern = np.asarray(masks["kernel_mask"]) != 0
        first = np.zeros(self.n_kernels, bool)
        first[0] = True
        per_kernel = np.where(fc[:, :, None], first[None, None, :], kern[None, None, :])
        parts.append((d[:, :, None] & per_kernel).ravel())
        parts.append(((np.asarray(masks["skip_mask"]) != 0) & bool(km[SKIP])).ravel())
        if self.shrink_width is not None:
            parts.append(((np.asarray(masks["narrow_mask"]) != 0) & bool(km[NARROW])).ravel())
            parts.append(((np.asarray(masks["remove_mask"]) != 0) & bool(km[REMOVE])).ravel())
        out = np.concatenate(parts)
        assert out.shape == (self.n,), (out.shape, self.n, L)
        return out

    def _noop_kind(self, masks: Mapping[str, Any]) -> int | None:
        """The kind index whose empty action is a legal no-op now, or None."""
        km = np.asarray(masks["kind_mask"]) != 0
        if km[WIDER]:
            return WIDER  # "wider" with nothing marked changes nothing
        for k in np.flatnonzero(km):
            name = _KIND_MASK_OF.get(int(k))
            if name is not None and name in masks and not np.any(masks[name]):
                return int(k)  # the scheduled kind has no legal action: any action is a no-op
        return None

    # ----------------------------------------------------------------- decode
    def split(self, index: int) -> tuple[str, tuple[int, ...]]:
        """``(segment, coordinates)`` of a flat index (no legality check)."""
        index = int(index)
        if not 0 <= index < self.n:
            raise InvalidActionError(f"flat action {index} is not in 0..{self.n - 1}")
        names = list(self.shapes)
        for name, nxt in zip(names, names[1:] + [None]):
            end = self.n if nxt is None else self.offsets[nxt]
            if index < end:
                shape = self.shapes[name]
                local = index - self.offsets[name]
                coords = tuple(int(v) for v in np.unravel_index(local, shape)) if shape else ()
                return name, coords
        raise AssertionError("unreachable")

    def describe(self, index: int) -> str:
        """A short text of a flat index, e.g. ``"deeper block 1 position 2 kernel 1"``."""
        name, c = self.split(index)
        if name == "noop":
            return "no-op"
        if name == "wider":
            return f"wider layer {c[0]}" if c[0] == c[1] else f"wider layers {c[0]}..{c[1]}"
        if name == "deeper":
            return f"deeper block {c[0]} position {c[1]} kernel {c[2]}"
        if name == "skip":
            return f"skip S({c[0]},{c[1]},{SKIP_MODES[c[2]]})"
        if name == "narrow":
            return f"narrow layer {c[0]} to width level {c[1]}"
        return f"remove layer {c[0]}"

    def decode(self, index: int, masks: Mapping[str, Any]) -> dict[str, Any]:
        """The environment's action dict for a flat index in the state whose masks are ``masks``.

        Assumes the index is legal there (:meth:`mask`); an illegal one gives an
        action the environment rejects (or, for the no-op, raises here).
        """
        name, c = self.split(index)
        act = empty_action(self.max_layers)
        if self.shrink_width is not None:
            act["narrow"] = np.zeros(2, dtype=np.int64)
            act["remove"] = np.int64(0)
        if name == "noop":
            kind = self._noop_kind(masks)
            if kind is None:
                raise InvalidActionError("no-op: not allowed now (the scheduled kind has legal "
                                         "actions and is not 'wider')")
            act["kind"] = np.int64(kind)
            return act
        act["kind"] = np.int64(ALL_KINDS.index(name))
        if name == "wider":
            i, j = c
            wider = np.zeros(self.max_layers, np.int8)
            wider[i:j + 1] = np.asarray(masks["wider_mask"])[i:j + 1] != 0
            act["wider"] = wider
        elif name == "remove":
            act["remove"] = np.int64(c[0])
        else:
            act[name] = np.asarray(c, dtype=np.int64)
        return act


def sample_masked(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn legal index per row of a flat mask (``(n,)`` -> scalar, ``(B, n)`` -> ``(B,)``).

    For vector environments of :class:`FlatNetTransformEnv`:
    ``sample_masked(np.stack(vec.call("action_masks")), rng)``.
    """
    m = np.asarray(masks, dtype=bool)
    rows = m.reshape(-1, m.shape[-1])
    out = np.empty(len(rows), np.int64)
    for r, row in enumerate(rows):
        legal = np.flatnonzero(row)
        if len(legal) == 0:
            raise ValueError(f"row {r} of the mask allows no action")
        out[r] = legal[rng.integers(len(legal))]
    return out.reshape(m.shape[:-1]) if m.ndim > 1 else out[0]


# ----------------------------------------------------------------------------- spaces
def flat_observation_space(space: spaces.Dict, flatten: bool = False) -> spaces.Space[Any]:
    """The environment's observation space without ``arch`` (flattened to a ``Box`` if asked)."""
    numeric = spaces.Dict({k: v for k, v in space.spaces.items() if k != "arch"})
    return spaces.flatten_space(numeric) if flatten else numeric


def flat_observation(obs: Mapping[str, Any], space: spaces.Dict | None = None) -> Any:
    """One observation without ``arch``; flattened when ``space`` (the numeric ``Dict``) is given."""
    numeric = {k: v for k, v in obs.items() if k != "arch"}
    return numeric if space is None else spaces.flatten(space, numeric)


class LegalDiscrete(spaces.Discrete):
    """``Discrete(n)`` whose unmasked ``sample()`` draws a legal action of the attached env.

    Otherwise an ordinary ``Discrete`` (``contains``, ``sample(mask=...)``);
    detached (pickled, or before ``reset``) it samples like one.
    """

    _owner: weakref.ReferenceType[Any] | None = None

    def attach(self, env: Any) -> None:
        """Draw from ``env.action_masks()`` (held by a weak reference)."""
        self._owner = weakref.ref(env)

    def sample(self, mask: Any = None, probability: Any = None) -> np.int64:
        env = self._owner() if self._owner is not None else None
        if mask is None and probability is None and env is not None:
            legal = env.action_masks()
            if legal is not None and legal.any():
                return np.int64(sample_masked(legal, self.np_random))
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state


# ----------------------------------------------------------------------------- wrapper
class FlatNetTransformEnv(gym.Wrapper):
    """:class:`NetTransformEnv` with one ``Discrete`` action, numeric observations and a flat mask.

    ``FlatNetTransformEnv(env)`` wraps an environment; ``FlatNetTransformEnv(**env_kwargs)``
    builds ``NetTransformEnv(**env_kwargs)``. Keyword arguments of the wrapper:

    - ``illegal``: ``"penalty"`` (default: an illegal action changes nothing, pays
      ``-illegal_penalty`` and sets ``info["illegal"]``; SB3's ``check_env`` and
      unmasked algorithms such as ``PPO`` run) or ``"raise"``
      (:class:`~envs.actions.InvalidActionError`).
    - ``illegal_penalty``: the penalty (default 1.0).
    - ``max_illegal``: illegal actions per episode before it is truncated (default 100).
    - ``flatten``: observations as one ``Box`` (``MlpPolicy``) instead of a ``Dict``
      (``MultiInputPolicy``).

    Step infos carry the environment's (``arch``, ``kind``, ``noop``, on the last
    step ``accuracy`` etc.) plus ``action`` (:meth:`FlatActions.describe`).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: NetTransformEnv | None = None, *, illegal: str = "penalty",
                 illegal_penalty: float = 1.0, max_illegal: int = 100, flatten: bool = False,
                 **env_kwargs: Any) -> None:
        if env is None:
            env = NetTransformEnv(**env_kwargs)
        elif env_kwargs:
            raise TypeError(f"give either an env or env keyword arguments, not both "
                            f"({sorted(env_kwargs)})")
        base = env.unwrapped
        if not isinstance(base, NetTransformEnv):
            raise TypeError(f"FlatNetTransformEnv wraps a NetTransformEnv, got {type(base).__name__}")
        if illegal not in ("penalty", "raise"):
            raise ValueError(f"illegal must be 'penalty' or 'raise', got {illegal!r}")
        if int(max_illegal) < 1:
            raise ValueError(f"max_illegal must be >= 1, got {max_illegal}")
        super().__init__(env)
        self.base: NetTransformEnv = base
        self.codec = FlatActions.for_env(base)
        self.illegal = illegal
        self.illegal_penalty = float(illegal_penalty)
        self.max_illegal = int(max_illegal)
        self.flatten = bool(flatten)
        self._numeric = flat_observation_space(base.observation_space)
        self.observation_space = (spaces.flatten_space(self._numeric) if self.flatten
                                  else self._numeric)
        self.action_space = LegalDiscrete(self.codec.n)
        self.action_space.attach(self)
        self._illegal_count = 0
        self._last: tuple[Any, str | None] = (None, None)

    def _obs(self, obs: Mapping[str, Any]) -> Any:
        return flat_observation(obs, self._numeric if self.flatten else None)

    def action_masks(self) -> np.ndarray:
        """One boolean per flat action: legal now (all False before reset / after the episode)."""
        masks = self.base.legal_masks()
        if masks is None:
            return np.zeros(self.codec.n, dtype=bool)
        return self.codec.mask(masks)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment (``options["start"]`` as there); ``seed`` also seeds the action space."""
        if seed is not None:
            self.action_space.seed(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._illegal_count = 0
        self._last = (self._obs(obs), info.get("arch"))
        return self._last[0], info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Apply the flat action; an illegal one is penalised or raises (``illegal``)."""
        self.base.check_ready()
        index = int(np.asarray(action).reshape(()))
        masks = self.base.legal_masks()
        assert masks is not None
        legal = 0 <= index < self.codec.n and bool(self.codec.mask(masks)[index])
        if not legal:
            what = (self.codec.describe(index) if 0 <= index < self.codec.n
                    else f"action {index} (not in 0..{self.codec.n - 1})")
            reason = f"{what} is not legal now"
            if self.illegal == "raise":
                raise InvalidActionError(reason)
            self._illegal_count += 1
            truncated = self._illegal_count >= self.max_illegal
            obs, arch = self._last
            info = {"arch": arch, "illegal": reason, "action": what}
            return _copy(obs), -self.illegal_penalty, False, truncated, info
        obs, reward, terminated, truncated, info = self.env.step(self.codec.decode(index, masks))
        info = dict(info, action=self.codec.describe(index))
        self._last = (self._obs(obs), info.get("arch"))
        return self._last[0], float(reward), bool(terminated), bool(truncated), info


def _copy(obs: Any) -> Any:
    """A fresh copy of a (dict or array) observation."""
    if isinstance(obs, Mapping):
        return {k: np.array(v, copy=True) for k, v in obs.items()}
    return np.array(obs, copy=True)
