"""A batch of network-transformation episodes run in lockstep (one per child of a round).

EAS samples several children per controller update. :class:`VectorNetTransformEnv`
runs ``num_envs`` copies of :class:`~envs.net_transform.NetTransformEnv` side by
side; on the last step it collects all finished children and evaluates them
with *one* :func:`~envs.evaluators.evaluate_batch` call, so an evaluator with
``evaluate_many`` (``eas.envs.parallel.ParallelEvaluator``) trains them
concurrently. Children already in the shared :class:`~envs.cache.EvalCache`, and
duplicates within the batch, are trained once.

Gymnasium's own ``SyncVectorEnv`` and ``AsyncVectorEnv`` (``gymnasium.make_vec(...,
vectorization_mode="sync" | "async")``) work too, with their defaults: ``obs["arch"]``
survives ``AsyncVectorEnv``'s shared memory (``envs.spaces.ArchText``),
:func:`~envs.observation.sample_legal_actions` draws legal batched actions, and a
forked worker process runs torch single-threaded (building the first
:class:`~envs.net_transform.NetTransformEnv` in a process registers an
``os.register_at_fork`` hook; ``AsyncVectorEnv`` builds one in the parent before it
forks): a child forked from a process whose OpenMP thread pool already ran would
otherwise hang at its first parallel torch op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from eas.arch import Architecture
from eas.envs.actions import InvalidActionError
from eas.envs.cache import EvalCache, evaluate_children, fingerprint
from eas.envs.net_transform import NetTransformEnv
from eas.envs.observation import sample_legal_action
from eas.envs.record import EvalResult
from eas.network import ChildNet, build_network

__all__ = ["VectorNetTransformEnv"]


class _LegalBatchDict(spaces.Dict):
    """The batched action space; ``sample()`` without a mask draws legal actions for every copy.

    Otherwise a plain batched :class:`gymnasium.spaces.Dict` (see
    ``envs.spaces.LegalActionDict`` for the reasoning).
    """

    _masks: Callable[[], list[dict[str, np.ndarray] | None]] | None = None

    def sample(self, mask: dict[str, Any] | None = None,
               probability: dict[str, Any] | None = None) -> dict[str, Any]:
        if mask is None and probability is None and self._masks is not None:
            per_env = self._masks()
            if all(m is not None for m in per_env):
                acts = [sample_legal_action(m, self.np_random) for m in per_env]  # type: ignore[arg-type]
                return {k: np.stack([a[k] for a in acts]) for k in acts[0]}
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_masks", None)
        return state


class VectorNetTransformEnv(gym.vector.VectorEnv):
    """``num_envs`` :class:`NetTransformEnv` copies in lockstep, evaluated as one batch.

    ``VectorNetTransformEnv(num_envs, **env_kwargs)`` takes the keyword
    arguments of :class:`NetTransformEnv`. All copies share the evaluator, the
    start network and one :class:`EvalCache` (``cache=True`` creates it,
    ``cache=False`` disables caching; duplicates within one batch are still
    trained once).

    * ``reset(seed=s, options={"start": net})``: copy ``i`` is seeded with
      ``s + i`` (or ``seed`` may be a list); ``options["start"]`` is one start
      network for all copies (a ``ChildNet``, string or ``Architecture``) or a
      list with one per copy. The start network's fingerprint is computed once.
    * ``step(actions)``: ``actions`` is a dict of batched arrays (``"kind"``
      ``(n,)``, ``"wider"`` ``(n, L)``, ``"deeper"`` ``(n, 3)``, ``"skip"``
      ``(n, 3)``) or a list of ``n`` per-copy action dicts. Every action is
      checked before any is applied: an illegal one raises
      :class:`InvalidActionError` naming the copy and leaves all copies
      unchanged. On the last step all children are evaluated with one
      ``evaluate_batch`` call.
    * Observations are the per-copy observations stacked (``"arch"`` a tuple of
      strings). ``infos`` holds gymnasium-style per-key arrays (with ``"_key"``
      masks) plus ``"final"``: a list of each copy's last-step info dict (keys
      as in :class:`NetTransformEnv`), or ``None`` before the end.
    * There is no autoreset (``metadata["autoreset_mode"]`` is
      ``AutoresetMode.DISABLED``): call :meth:`reset` for every round.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, num_envs: int, **env_kwargs: Any) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        env_kwargs = dict(env_kwargs)
        env_kwargs.pop("defer_evaluation", None)
        cache = env_kwargs.pop("cache", True)
        if cache is True:
            cache = EvalCache()
        self.cache: EvalCache | None = cache if isinstance(cache, EvalCache) else None
        self.evaluator = env_kwargs.pop("evaluator", None)
        first = NetTransformEnv(**env_kwargs, evaluator=self.evaluator, cache=self.cache,
                                defer_evaluation=True)
        env_kwargs["start"] = first.start  # build a string start once, share it
        env_kwargs["space"] = first.space
        self.envs: list[NetTransformEnv] = [first] + [
            NetTransformEnv(**env_kwargs, evaluator=self.evaluator, cache=self.cache,
                            defer_evaluation=True)
            for _ in range(self.num_envs - 1)
        ]
        self.steps = first.steps
        self.single_observation_space = first.observation_space
        self.single_action_space = spaces.Dict(dict(first.action_space.spaces))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        batched = batch_space(self.single_action_space, self.num_envs)
        self.action_space = _LegalBatchDict(dict(batched.spaces))
        self.action_space._masks = self._all_masks

    # ------------------------------------------------------------------ helpers
    def _all_masks(self) -> list[dict[str, np.ndarray] | None]:
        return [env.legal_masks() for env in self.envs]

    def _get_evaluator(self) -> Callable[[ChildNet], Any]:
        if self.evaluator is None:
            self.evaluator = self.envs[0].resolve_evaluator()
            for env in self.envs:
                env.evaluator = self.evaluator
        return self.evaluator

    def _stack(self, observations: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in observations[0]:
            if key == "arch":
                out[key] = tuple(o[key] for o in observations)
            else:
                out[key] = np.stack([np.asarray(o[key]) for o in observations])
        return out

    def _as_start(self, start: Any) -> ChildNet:
        if isinstance(start, (str, Architecture)):
            return build_network(start, self.envs[0].input_shape, seed=0)
        return start

    # -------------------------------------------------------------------- reset
    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reset every copy (from ``options["start"]`` if given) and stack the observations."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} environments")
        super().reset(seed=seeds[0] if isinstance(seed, Sequence) else seed)
        options = dict(options or {})
        start = options.pop("start", None)
        if isinstance(start, (list, tuple)):
            if len(start) != self.num_envs:
                raise ValueError(f"got {len(start)} start networks for {self.num_envs} "
                                 "environments")
            starts = [self._as_start(s) if s is not None else self.envs[i].start
                      for i, s in enumerate(start)]
        else:
            net = self._as_start(start) if start is not None else self.envs[0].start
            starts = [net] * self.num_envs
        prints: dict[int, str] = {}
        observations, infos = [], {}
        for i, (env, net) in enumerate(zip(self.envs, starts)):
            if id(net) not in prints:
                prints[id(net)] = fingerprint(net)
            opts = dict(options, start=net, fingerprint=prints[id(net)])
            obs, info = env.reset(seed=seeds[i], options=opts)
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        return self._stack(observations), infos

    # --------------------------------------------------------------------- step
    def _split(self, actions: Any) -> list[Any]:
        if isinstance(actions, Mapping):
            out = []
            for i in range(self.num_envs):
                try:
                    out.append({k: np.asarray(v)[i] for k, v in actions.items()})
                except IndexError:
                    raise InvalidActionError(
                        f"batched actions must have a leading dimension of {self.num_envs}; "
                        f"got shapes { {k: np.shape(v) for k, v in actions.items()} }"
                    ) from None
            return out
        if isinstance(actions, Sequence) and not isinstance(actions, str) \
                and len(actions) == self.num_envs:
            return list(actions)
        raise InvalidActionError(
            f"actions must be a dict of batched arrays or a list of {self.num_envs} action "
            f"dicts, got {type(actions).__name__}"
        )

    def step(self, actions: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Step every copy; on the last step evaluate all children in one batch."""
        per_env = self._split(actions)
        for env in self.envs:
            env.check_ready()
        plans = []
        for i, (env, action) in enumerate(zip(self.envs, per_env)):
            try:
                plans.append(env.check_action(action))
            except InvalidActionError as exc:
                raise InvalidActionError(f"environment {i}: {exc}") from exc
        results = [env.apply_checked(plan) for env, plan in zip(self.envs, plans)]
        observations = [r[0] for r in results]
        rewards = np.array([r[1] for r in results], dtype=np.float64)
        terminations = np.array([r[2] for r in results], dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        step_infos = [dict(r[4]) for r in results]
        finals: list[dict[str, Any] | None] = [None] * self.num_envs
        pending = [i for i, env in enumerate(self.envs) if env.pending_child is not None]
        if pending:
            children = [self.envs[i].pending_child for i in pending]
            keys = [self.envs[i].pending_key for i in pending]
            evaluated: list[tuple[EvalResult, bool]] = evaluate_children(
                self._get_evaluator(), children, keys, self.cache  # type: ignore[arg-type]
            )
            for i, (result, cached) in zip(pending, evaluated):
                reward, final = self.envs[i].complete_evaluation(result, cached)
                rewards[i] = reward
                step_infos[i].pop("pending", None)
                step_infos[i].update(final)
                finals[i] = step_infos[i]
        infos: dict[str, Any] = {}
        for i, info in enumerate(step_infos):
            infos = self._add_info(infos, info, i)
        infos["final"] = finals
        return self._stack(observations), rewards, terminations, truncations, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-environments."""
        for env in self.envs:
            env.close()

    def __repr__(self) -> str:
        return f"VectorNetTransformEnv(num_envs={self.num_envs}, steps={self.steps})"
