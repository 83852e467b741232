"""What the compounding meta-controller adds around the EAS controller: a pool and a planner.

* :class:`NetworkPool` -- the best networks found so far (with their weights),
  from which every child of a round starts its episode: ``select="best"`` keeps
  the ``size`` most accurate distinct architectures, ``select="pareto"`` the
  Pareto front of (accuracy up, parameters down), at most ``size`` members,
  each drawn with probability inversely proportional to the front's kernel
  density at its log parameter count (as LEMONADE draws parents). Before any
  child is known the pool holds the stage's start network (``net=None``).
* :class:`EpisodePlanner` -- plays whole episodes ahead of the real environment
  in private, untrained copies of it (no evaluator, no noise), so that the
  agent knows the architecture an episode leads to before anything is trained:
  a proposal that repeats an architecture already evaluated (or planned in the
  same round) is resampled, and a predictor may screen several candidates.
  The real environment then replays the planned actions; its observations
  depend on the architecture only, so they are the planned ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eas.agents.reinforce_config import POOL_SELECTIONS
from eas.arch import SearchSpace
from eas.checkpoint import network_from_record, network_record
from eas.envs.net_transform import NetTransformEnv
from eas.envs.observation import (
    WIDER,
    sample_legal_action,
    split_obs,
    stack_actions,
    uniform_index,
)
from eas.envs.rewards import paper_reward
from eas.network import ChildNet, build_network
from eas.pareto import ParetoFront, kde_density

__all__ = ["Episode", "EpisodePlanner", "NetworkPool", "start_rewards", "uniform_actions"]

@dataclass
class Episode:
    """One planned episode: the observation before every step, the actions, the result."""

    obs: list[dict[str, Any]]
    actions: list[dict[str, np.ndarray]]
    arch: str
    """The architecture the episode leads to."""
    final_obs: dict[str, Any]
    """The observation after the last step (the child's tokens, for a predictor)."""


class NetworkPool:
    """The networks the controller's episodes start from (see the module docstring)."""

    def __init__(self, size: int, select: str = "best") -> None:
        if select not in POOL_SELECTIONS:
            raise ValueError(f"pool select must be one of {list(POOL_SELECTIONS)}, got {select!r}")
        if int(size) < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size, self.select = int(size), select
        self.members: list[dict[str, Any]] = []
        """Dicts with ``arch``, ``accuracy``, ``params``, ``reward`` and ``net`` (None = the
        stage start)."""

    def __len__(self) -> int:
        return len(self.members)

    def add(self, arch: str, accuracy: float, params: int, net: ChildNet | None,
            reward: float | None = None) -> bool:
        """Offer a network (``reward``: the reward it earned, if any); returns whether it is
        in the pool afterwards."""
        known = next((m for m in self.members if m["arch"] == arch), None)
        if known is not None:
            if accuracy <= known["accuracy"]:
                return False
            self.members.remove(known)
        self.members.append({"arch": arch, "accuracy": float(accuracy), "params": int(params),
                             "net": net, "reward": None if reward is None else float(reward)})
        self.members = self._keep(self.members)
        return any(m["arch"] == arch for m in self.members)

    def _keep(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ranked = sorted(members, key=lambda m: -m["accuracy"])  # stable: ties keep age order
        if self.select == "best":
            return ranked[: self.size]
        front = ParetoFront(2)
        for m in ranked:
            front.add((1.0 - m["accuracy"], float(max(m["params"], 1))), m)
        kept = sorted(front.items, key=lambda m: -m["accuracy"])
        return kept[: self.size]

    def draw(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """``n`` members, each drawn independently (uniform for best-k; inverse density for Pareto)."""
        if not self.members:
            raise ValueError("the pool is empty")
        k = len(self.members)
        if self.select == "best" or k == 1:
            p = np.full(k, 1.0 / k)
        else:
            logs = [math.log(max(m["params"], 1)) for m in self.members]
            w = 1.0 / (np.asarray(kde_density(logs, logs), dtype=float) + 1e-12)
            p = w / w.sum()
        return [self.members[int(i)] for i in rng.choice(k, size=n, p=p)]

    def state_dict(self) -> dict[str, Any]:
        """Members with their weights as network records (the stage start as None)."""
        return {"size": self.size, "select": self.select,
                "members": [{**{k: v for k, v in m.items() if k != "net"},
                             "net": None if m["net"] is None else network_record(m["net"])}
                            for m in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (rebuilding the networks)."""
        self.members = [{**{k: v for k, v in m.items() if k != "net"},
                         "net": None if m["net"] is None else network_from_record(m["net"])}
                        for m in state["members"]]


class EpisodePlanner:
    """Plays episodes in private copies of the environment (architecture and masks only)."""

    def __init__(self, input_shape: tuple[int, ...], space: SearchSpace,
                 schedule: Sequence[str] | None, steps: int, max_layers: int,
                 shrink: bool = False) -> None:
        self.input_shape = tuple(int(v) for v in input_shape)
        self.space, self.max_layers, self.shrink = space, int(max_layers), bool(shrink)
        self.schedule = None if schedule is None else tuple(schedule)
        self.steps = int(steps)
        self._envs: list[NetTransformEnv] = []
        self._built: dict[str, ChildNet] = {}

    def _env(self, i: int, start: ChildNet) -> NetTransformEnv:
        while len(self._envs) <= i:
            self._envs.append(NetTransformEnv(
                start=start,
                input_shape=self.input_shape, evaluator=None, space=self.space,
                schedule=self.schedule, free_steps=self.steps, max_layers=self.max_layers,
                noise=False, cache=False, defer_evaluation=True, shrink=self.shrink))
        return self._envs[i]

    def _as_net(self, start: ChildNet | str) -> ChildNet:
        """A network of ``start`` (an architecture string is built once, untrained)."""
        if isinstance(start, ChildNet):
            return start
        if start not in self._built:
            if len(self._built) > 64:
                self._built.clear()
            self._built[start] = build_network(start, self.input_shape, seed=0)
        return self._built[start]

    def rollout(self, starts: Sequence[ChildNet | str],
                act: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> list[Episode]:
        """One episode from each start, all in lockstep; ``act`` maps a batched obs to actions."""
        nets = [self._as_net(s) for s in starts]
        envs = [self._env(i, net) for i, net in enumerate(nets)]
        obs = [env.reset(seed=0, options={"start": net, "fingerprint": "plan"})[0]
               for env, net in zip(envs, nets)]
        episodes = [Episode([], [], "", {}) for _ in nets]
        for _ in range(self.steps):
            batch = {k: (np.stack([np.asarray(o[k]) for o in obs]) if k != "arch"
                         else [o[k] for o in obs]) for k in obs[0]}
            actions = act(batch)
            for i, env in enumerate(envs):
                one = {k: np.array(v[i], copy=True) for k, v in actions.items()}
                episodes[i].obs.append(obs[i])
                episodes[i].actions.append(one)
                obs[i] = env.step(one)[0]
        for i, env in enumerate(envs):
            child = env.pending_child
            episodes[i].arch = str(child.arch) if child is not None else str(obs[i]["arch"])
            episodes[i].final_obs = obs[i]
        return episodes


def start_rewards(starts: Sequence[dict[str, Any] | None], n: int) -> list[float | None]:
    """The reward of each of ``n`` episodes' starts (pool members, or ``{"accuracy": a}``
    for the stage start): a member's own ``reward`` when it has one, else the paper's
    reward of its accuracy; None where neither is known (no start, or accuracy < 0)."""
    out: list[float | None] = []
    for m in list(starts[:n]) + [None] * (n - len(starts[:n])):
        acc = None if m is None else m.get("accuracy")
        if m is not None and m.get("reward") is not None:
            out.append(float(m["reward"]))
        else:
            out.append(None if acc is None or acc < 0 else paper_reward(float(acc)))
    return out


_ACTION_KEYS = ("kind", "wider", "deeper", "skip", "narrow", "remove")
"""The controller's action entries (narrow and remove only with the shrink kinds)."""


def uniform_actions(obs: dict[str, Any], rng: np.random.Generator,
                    wider_one: bool = False) -> dict[str, np.ndarray]:
    """One uniformly drawn legal action per observation of a batch, in the controller's
    format (kind, wider, deeper, skip; narrow, remove with the shrink kinds): :func:`~envs.observation.sample_legal_action`
    (each widenable layer with probability 1/2), or with ``wider_one`` one layer."""
    ones, batched = split_obs(dict(obs))
    acts = []
    for one in ones:
        act = sample_legal_action(one, rng, 0.5)
        if wider_one and int(act["kind"]) == WIDER:
            where = uniform_index(one["wider_mask"], rng)
            act["wider"] = np.zeros_like(act["wider"])
            if where is not None:
                act["wider"][where[0]] = 1
        acts.append({k: act[k] for k in _ACTION_KEYS if k in act})
    return stack_actions(acts, batched)
