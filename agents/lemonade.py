"""LEMONADE (Elsken, Metzen & Hutter, ICLR 2019) through the environment.

Multi-objective search for the accuracy/cost trade-off with Lamarckian
inheritance, at the level of detail the environment allows. The population is
the Pareto front of the children evaluated so far (validation accuracy up, a
cheap cost down: parameters or FLOPs). One search round is one LEMONADE
generation with one parent:

1. **parent**: drawn from the population with probability inversely
   proportional to a Gaussian kernel density of the members' log cost, so
   parents in sparse regions of the front are preferred;
2. **approximate morphism** (probability ``p_shrink``): the parent is shrunk
   first, by narrowing one conv/FC layer to the next smaller width of the
   search space (the most important units kept, ``morphisms.narrow``) or by
   removing a shape-preserving layer (``morphisms.remove_layer``);
3. **exact morphisms**: ``n_pc`` candidate children are generated *without
   training* by replaying ``n_nm`` random morphisms (wider one layer, deeper,
   skip; uniform over the legal ones) in a private copy of the environment;
   in a shrinking round candidate 0 is the shrunk network itself;
4. **cheap objectives first**: each candidate's cost is known from its
   architecture; ``n_ac`` distinct candidates are picked with probability
   inversely proportional to the population's density at their log cost, and
   only those are trained: the round's episodes replay their actions, and the
   environment trains them (starting from the inherited weights: Lamarckian);
5. the trained children enter the population if no member dominates them.

What the environment does not allow, and how it is mapped: every child of a
round shares one start network (``Agent.start_network``), so the paper's
per-child parents become one parent per round; approximate morphisms are not
environment actions, so the agent applies them to the round's start network
and the evaluator's child training is the fine-tuning step (no distillation:
the agent holds no data). In round 0 the population is empty and the agent
does not hold the start network, so its children are plain random morphisms
of the environment's start network.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from eas.agents.base import Agent, AgentContext
from eas.agents.settings import LemonadeConfig
from eas.arch import SearchSpace
from eas.envs.net_transform import NetTransformEnv
from eas.envs.observation import (
    DEEPER,
    SKIP,
    WIDER,
    allowed_kinds,
    empty_action,
    split_obs,
    stack_actions,
    uniform_index,
)
from eas.envs.record import EvalResult
from eas.layers import FC, Conv
from eas.morphisms.narrow import narrow, narrowable_layers
from eas.morphisms.remove_layer import removable_layers, remove_layer
from eas.network import ChildNet, build_network, count_parameters
from eas.pareto import ParetoFront, kde_density
from eas.shapes import count_flops

__all__ = ["LemonadeAgent"]

_EPS = 1e-12


class LemonadeAgent(Agent):
    """LEMONADE: a Pareto-front population grown by exact and approximate morphisms."""

    name: ClassVar[str] = "lemonade"
    required_mode: ClassVar[str | None] = "free"
    Config: ClassVar[type] = LemonadeConfig

    @classmethod
    def env_requirements(cls, config: Any = None) -> dict[str, Any]:
        """Free mode, ``free_steps = n_nm``, ``n_ac`` children per round."""
        config = config if config is not None else cls.Config()
        return {"schedule": None, "free_steps": int(config.n_nm),
                "children_per_round": int(config.n_ac)}

    def __init__(self, ctx: AgentContext, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.population = ParetoFront(2)
        """Points (1 - accuracy, cost); items: dicts with arch, accuracy, params, flops, net."""
        self.round = 0
        self.reference: float | None = None
        """Cost of the hypervolume reference point (fixed after the first round)."""
        self.history: list[dict[str, Any]] = []
        self._plans: list[list[dict[str, Any]]] | None = None
        self._warned = False
        self.planned: list[str] = []
        """Architectures of the children planned for the running round (after start_network)."""
        self._space: SearchSpace = ctx.extra.get("space") or SearchSpace()
        self._input_shape = tuple(ctx.extra.get("input_shape", (1, 28, 28)))

    # ------------------------------------------------------------ the search loop
    def children_this_round(self) -> int:
        """``n_ac`` children per round."""
        return int(self.config.n_ac)

    def _cost(self, net: ChildNet) -> float:
        if self.config.cost == "params":
            return float(count_parameters(net))
        return float(count_flops(net.arch, net.input_shape))

    def _inverse_density(self, costs: list[float]) -> np.ndarray:
        """1 / KDE density of the population's log costs at ``costs`` (normalised weights)."""
        members = [math.log(max(p[1], 1.0)) for p in self.population.points]
        bw = self.config.bandwidth if self.config.bandwidth > 0 else None
        dens = kde_density(members, [math.log(max(c, 1.0)) for c in costs], bw)
        w = 1.0 / (np.asarray(dens, dtype=float) + _EPS)
        return w / w.sum()

    def start_network(self) -> Any:
        """Pick the parent, maybe shrink it, plan the round's children; None in round 0."""
        self._plans, self.planned = None, []
        if len(self.population) == 0:
            return None
        items = self.population.items
        weights = self._inverse_density([self._cost(it["net"]) for it in items])
        parent = items[int(self.rng.choice(len(items), p=weights))]["net"]
        start, shrunk = parent, False
        if self.rng.random() < self.config.p_shrink:
            smaller = self._shrink(parent)
            if smaller is not None:
                start, shrunk = smaller, True
        self._plans = self._plan(start, shrunk)
        return start

    def _shrink(self, net: ChildNet) -> ChildNet | None:
        """An approximate shrinking morphism drawn uniformly among the legal ones, or None."""
        options: list[tuple[str, int, int]] = []
        for i in narrowable_layers(net.arch):
            layer = net.arch.layers[i]
            width = layer.filters if isinstance(layer, Conv) else layer.units  # type: ignore[union-attr]
            lower = [v for v in self._space.levels_for(layer) if v < width]
            target = lower[-1] if lower else width // 2
            if 1 <= target < width:
                options.append(("narrow", i, target))
        options += [("remove", i, 0) for i in removable_layers(net.arch, net.input_shape)
                    if isinstance(net.arch.layers[i], (Conv, FC))]
        if not options:
            return None
        op, layer, width = options[int(self.rng.integers(len(options)))]
        return narrow(net, layer, width) if op == "narrow" else remove_layer(net, layer)

    def _draw(self, one: dict[str, Any]) -> dict[str, Any]:
        """One random exact morphism legal for an observation (one layer widened at most)."""
        act = empty_action(self.ctx.max_layers)
        kinds = allowed_kinds(one)
        if not kinds:
            return act
        kind = kinds[int(self.rng.integers(len(kinds)))]
        act["kind"] = np.int64(kind)
        if kind == WIDER:
            where = uniform_index(one["wider_mask"], self.rng)
            if where is not None:
                act["wider"][where[0]] = 1
        elif kind == DEEPER:
            where = uniform_index(one["deeper_mask"], self.rng)
            if where is not None:
                k = uniform_index(one["kernel_mask"], self.rng)
                act["deeper"] = np.asarray([*where, 0 if k is None else k[0]], dtype=np.int64)
        elif kind == SKIP:
            where = uniform_index(one["skip_mask"], self.rng)
            if where is not None:
                act["skip"] = np.asarray(where, dtype=np.int64)
        return act

    def _plan(self, start: ChildNet, shrunk: bool) -> list[list[dict[str, Any]]]:
        """Generate ``n_pc`` candidates in a private environment; pick ``n_ac`` by cheap cost."""
        env = NetTransformEnv(start=start, input_shape=self._input_shape, evaluator=None,
                              space=self._space, schedule=None, free_steps=int(self.config.n_nm),
                              max_layers=self.ctx.max_layers, noise=False, cache=False,
                              defer_evaluation=True)
        candidates: dict[str, tuple[list[dict[str, Any]], float]] = {}
        for c in range(int(self.config.n_pc)):
            obs, _ = env.reset(seed=0)
            plan = []
            for _ in range(int(self.config.n_nm)):
                keep = shrunk and c == 0 and WIDER in allowed_kinds(obs)
                act = empty_action(self.ctx.max_layers) if keep else self._draw(obs)
                obs, *_ = env.step(act)
                plan.append(act)
            child = env.pending_child
            if child is not None and str(child.arch) not in candidates:
                candidates[str(child.arch)] = (plan, self._cost(child))
        known = {it["arch"] for it in self.population.items}
        fresh = [a for a in candidates if a not in known] or list(candidates)
        weights = self._inverse_density([candidates[a][1] for a in fresh])
        k = min(int(self.config.n_ac), len(fresh))
        picked = self.rng.choice(len(fresh), size=k, replace=False, p=weights)
        plans = [candidates[fresh[int(i)]][0] for i in picked]
        self.planned = [fresh[int(i)] for i in picked]
        while len(plans) < int(self.config.n_ac):  # too few distinct candidates: repeat
            plans.append(plans[len(plans) % k])
            self.planned.append(self.planned[len(self.planned) % k])
        return plans

    # ------------------------------------------------------------------ acting
    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Replay each child's planned morphism for this step (a random one if not legal)."""
        ones, batched = split_obs(obs)
        actions = []
        for i, one in enumerate(ones):
            step = int(np.asarray(one.get("step", 0)))
            planned = None
            if self._plans is not None and i < len(self._plans) and step < len(self._plans[i]):
                planned = self._plans[i][step]
            actions.append(planned if planned is not None and _legal(planned, one)
                           else self._draw(one))
        return stack_actions(actions, batched)

    # ---------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """Add the trained children to the Pareto-front population."""
        added = 0
        for r in results:
            if r.failed or r.net is None or not isinstance(r.net, ChildNet):
                if not r.failed and not self._warned:
                    warnings.warn("lemonade: the evaluator kept no weights, so children cannot "
                                  "join the population (Lamarckian inheritance needs them)",
                                  stacklevel=2)
                    self._warned = True
                continue
            cost = float(r.params if self.config.cost == "params" else r.flops)
            item = {"arch": r.arch, "accuracy": float(r.accuracy), "params": int(r.params),
                    "flops": int(r.flops), "net": r.net}
            added += int(self.population.add((1.0 - float(r.accuracy), cost), item))
        if self.reference is None and len(self.population):
            self.reference = 2.0 * max(p[1] for p in self.population.points)
        self.round += 1
        hv = (self.population.hypervolume((1.0, self.reference)) / self.reference
              if self.reference else 0.0)
        self.history.append({"round": self.round, "population": len(self.population),
                             "added": added, "hypervolume": hv})
        return {"lemonade/population": float(len(self.population)),
                "lemonade/added": float(added), "lemonade/hypervolume": float(hv),
                "charts/mean_reward": float(np.mean([r.reward for r in results]))
                if results else 0.0}

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """RNG, round, the population (with weights), the reference cost and the history."""
        front = self.population.state_dict()
        front["items"] = [{**{k: v for k, v in it.items() if k != "net"},
                           "net": {"arch": str(it["net"].arch),
                                   "input_shape": tuple(it["net"].input_shape),
                                   "dropout": float(it["net"].dropout),
                                   "weights": {k: v.detach().cpu().clone()
                                               for k, v in it["net"].state_dict().items()}}}
                          for it in front["items"]]
        return {**super().state_dict(), "round": self.round, "population": front,
                "reference": self.reference, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (rebuilding the population's networks)."""
        super().load_state_dict(state)
        self.round = int(state.get("round", 0))
        self.reference = state.get("reference")
        self.history = list(state.get("history", []))
        front = dict(state["population"])
        items = []
        for it in front["items"]:
            rec = it["net"]
            net = build_network(rec["arch"], tuple(rec["input_shape"]), dropout=rec["dropout"])
            net.load_state_dict(rec["weights"])
            items.append({**it, "net": net})
        front["items"] = items
        self.population = ParetoFront(2)
        self.population.load_state_dict(front)
        self._plans = None


def _legal(action: dict[str, Any], one: dict[str, Any]) -> bool:
    """Whether the masks of one observation allow ``action`` (its kind's fields)."""
    kind = int(action["kind"])
    if not np.asarray(one["kind_mask"])[kind]:
        return False
    if kind == WIDER:
        marked = np.asarray(action["wider"]) != 0
        return not np.any(marked & (np.asarray(one["wider_mask"]) == 0))
    if kind == DEEPER:
        b, p, k = (int(v) for v in action["deeper"])
        if not np.asarray(one["deeper_mask"])[b, p]:
            return False
        return bool(np.asarray(one["deeper_is_fc"])[b, p] or np.asarray(one["kernel_mask"])[k])
    s, d, m = (int(v) for v in action["skip"])
    return bool(np.asarray(one["skip_mask"])[s, d, m])
