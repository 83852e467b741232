"""NASH hill climbing (Elsken, Metzen & Hutter 2017, Algorithm 1) through the env.

One search round is one hill-climbing step of NASH::

    for i in 1..n_steps:                                   # one round each
        for j in 1..n_neigh:                               # the round's children
            model_j = ApplyNetMorphs(model_best, n_NM)     # n_NM env steps (free mode)
            model_j = SGDRtrain(model_j, e_neigh, lr_start, lr_end)   # the evaluator
        model_best = argmax over {model_best, model_1..model_n_neigh} of val accuracy

The environment runs in free mode with ``free_steps = n_NM``; each step applies
one network morphism drawn as in the paper's Appendix B, restricted to what the
environment allows right now:

* the kind is uniform over {deeper, wider, skip} (those with a legal option);
* **deeper** inserts a conv-BN-ReLU layer at a uniformly drawn legal
  ``(block, position)`` (conv positions only; the new conv has as many channels
  as the closest preceding conv, which is what ``net2deeper`` does), kernel
  uniform over {3, 5} (``Config.deeper_kernels``);
* **wider** widens one conv layer drawn uniformly. The paper draws a widening
  factor from {2, 4}; the environment widens a marked layer to the *next level*
  of the search space's width list (16->32->64->96->128->192->...), so one
  wider morphism here means "one level up" -- a factor of 2 for narrow layers
  and 1.33-1.5 for wide ones. A factor of 4 is reached when the same layer is
  drawn twice among the n_NM morphisms. This is the honest mapping of the
  paper's factor onto the environment's discrete widths;
* **skip** adds a skip connection: the mode (ADD / CAT) uniform among modes with
  a legal connection, then a legal ``(src, dst)`` pair uniformly;
* with ``search.shrink`` (not in the paper; LEMONADE's approximate morphisms) the
  kind may also be **narrow** (a legal ``(layer, width level)``, uniformly) or
  **remove** (a legal layer, uniformly); the environment distils such a child
  from the round's start network before it is trained.

**The parent competes.** After a round the best child replaces the current best
only if its validation accuracy is strictly higher. The current best's accuracy
is the accuracy it had when it was selected (children and their parent are
therefore compared by one evaluation each). For the stage's start network the
accuracy comes from, in this order: :meth:`HillClimbingAgent.set_start_accuracy`,
``ctx.extra["start_accuracy"]``, or, when neither is known, a *parent slot*:
in that round child 0 is the parent itself (every step an all-zero Net2Wider,
i.e. no change), trained and evaluated like its siblings, so parent and children
are measured by the same evaluator. With ``Config.reevaluate_parent`` the parent
slot is used every round (its freshly trained weights and accuracy then replace
the recorded ones, the paper's "the current best model is also considered as a
child").

**SGDR.** Children are trained by cosine annealing from ``lr_start`` to
``lr_end`` over ``e_neigh`` epochs, restarted for every child;
:meth:`HillClimbingAgent.child_train_overrides` gives the ``TrainConfig``
overrides the search loop applies to its evaluator for this agent, and
:meth:`HillClimbingAgent.final_train_overrides` those of the final training.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from eas.agents.base import Agent, AgentContext
from eas.agents.settings import HillClimbingConfig
from eas.checkpoint import network_from_record, network_record
from eas.envs.observation import (
    DEEPER,
    NARROW,
    REMOVE,
    SKIP,
    WIDER,
    allowed_kinds,
    empty_action,
    sample_legal_action,
    split_obs,
    stack_actions,
    uniform_index,
)
from eas.envs.record import EvalResult

__all__ = ["HillClimbingAgent"]


class HillClimbingAgent(Agent):
    """Neural Architecture Search by Hill-climbing (NASH) as an :class:`Agent`.

    NASH picks the kind of every morphism itself, so :meth:`env_requirements`
    asks for free mode with ``n_nm`` steps per child and ``n_neigh`` children
    per round.
    """

    name: ClassVar[str] = "hill_climbing"
    shrink_actions: ClassVar[bool] = True
    Config: ClassVar[type] = HillClimbingConfig

    @classmethod
    def env_requirements(cls, config: Any = None) -> dict[str, Any]:
        """Environment settings this agent needs: free mode, ``free_steps``, children per round."""
        config = config if config is not None else cls.Config()
        return {"schedule": None, "free_steps": int(config.n_nm),
                "children_per_round": int(config.n_neigh)}

    def __init__(self, ctx: AgentContext, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.steps = int(self.config.n_nm)
        """Transformations per child (``n_nm``, the env's free_steps)."""
        if ctx.schedule is not None:
            warnings.warn(
                "hill_climbing expects free mode (schedule=None); with a fixed schedule it "
                "only picks positions, not kinds, which is not NASH", stacklevel=2)
        elif ctx.steps_per_episode != self.steps:
            warnings.warn(
                f"hill_climbing has n_nm={self.steps} but the env runs "
                f"{ctx.steps_per_episode} steps per child", stacklevel=2)
        self.round = 0
        self.best_net: Any = None
        """The current best network (a trained ChildNet), None = the stage's start network."""
        self.best_arch: str | None = None
        self.best_accuracy: float | None = None
        start_acc = ctx.extra.get("start_accuracy") if ctx.extra else None
        if start_acc is not None:
            self.best_accuracy = float(start_acc)
        self.history: list[dict[str, Any]] = []
        self._parent_slot = False  # child 0 of the running round is the unchanged parent

    # ------------------------------------------------------------ the search loop
    def start_network(self) -> Any:
        """The current best network (None in round 0: the env's trained start)."""
        return self.best_net

    def children_this_round(self) -> int:
        """``n_neigh`` children per round."""
        return int(self.config.n_neigh)

    @property
    def finished(self) -> bool:
        """True after ``n_steps`` rounds (NASH's hill-climbing steps are done)."""
        return self.round >= int(self.config.n_steps)

    def set_start_accuracy(self, accuracy: float) -> None:
        """Tell the agent the validation accuracy of the stage's start network."""
        if self.best_net is None:
            self.best_accuracy = float(accuracy)

    def child_train_overrides(self) -> dict[str, Any]:
        """``TrainConfig`` overrides for child training: SGDR over ``e_neigh`` epochs."""
        return {"epochs": int(self.config.e_neigh), "lr": float(self.config.lr_start),
                "lr_min": float(self.config.lr_end), "schedule": "cosine"}

    def final_train_overrides(self) -> dict[str, Any]:
        """``TrainConfig`` overrides for the final training: cosine over ``e_final`` epochs."""
        return {"epochs": int(self.config.e_final), "lr": float(self.config.lr_start),
                "lr_min": float(self.config.lr_end), "schedule": "cosine"}

    # ------------------------------------------------------------------ acting
    def _wants_parent_slot(self) -> bool:
        return bool(self.config.reevaluate_parent) or self.best_accuracy is None

    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """One network morphism per child (ApplyNetMorphs, one step of n_NM)."""
        ones, batched = split_obs(obs)
        actions = []
        for i, one in enumerate(ones):
            step = int(np.asarray(one.get("step", 0)))
            if i == 0 and step == 0:
                self._parent_slot = self._wants_parent_slot() and len(ones) > 1
            if i == 0 and self._parent_slot:
                if WIDER in allowed_kinds(one):
                    actions.append(empty_action(self.ctx.max_layers))  # no change
                    continue
                self._parent_slot = False  # cannot keep the parent unchanged: a normal child
            actions.append(self._morph(one))
        return stack_actions(actions, batched)

    def _options(self, one: dict[str, Any]) -> dict[int, Any]:
        """The NASH morphisms legal for one observation, by kind."""
        allowed = set(allowed_kinds(one))
        opts: dict[int, Any] = {}
        if WIDER in allowed:
            mask = np.asarray(one["wider_mask"]) != 0
            conv = mask & (np.asarray(one["wider_is_fc"]) == 0)
            if conv.any():
                opts[WIDER] = np.flatnonzero(conv)
        if DEEPER in allowed:
            legal = np.asarray(one["deeper_mask"]) != 0
            conv_pos = legal & (np.asarray(one["deeper_is_fc"]) == 0)
            if conv_pos.any():
                opts[DEEPER] = conv_pos
        if SKIP in allowed:
            skip = np.asarray(one["skip_mask"]) != 0
            if skip.any():
                opts[SKIP] = skip
        for kind, key in ((NARROW, "narrow_mask"), (REMOVE, "remove_mask")):  # shrinking on
            if kind in allowed and np.asarray(one[key]).any():
                opts[kind] = np.asarray(one[key]) != 0
        return opts

    def _morph(self, one: dict[str, Any]) -> dict[str, Any]:
        opts = self._options(one)
        if not opts:
            # Nothing NASH would do is legal: a random legal action of any kind (e.g. FC-only
            # growth), widening every widenable layer.
            return sample_legal_action(one, self.rng, wider_prob=None, kernel_for_fc=True)
        act = empty_action(self.ctx.max_layers)
        if "narrow_mask" in one:
            act["narrow"], act["remove"] = np.zeros(2, dtype=np.int64), np.int64(0)
        kinds = sorted(opts)
        kind = kinds[int(self.rng.integers(len(kinds)))]
        act["kind"] = np.int64(kind)
        if kind == WIDER:
            layers = opts[WIDER]
            wider = np.zeros(self.ctx.max_layers, dtype=np.int8)
            wider[int(layers[self.rng.integers(len(layers))])] = 1
            act["wider"] = wider
        elif kind == DEEPER:
            block, position = uniform_index(opts[DEEPER], self.rng)  # type: ignore[misc]
            act["deeper"] = np.asarray([block, position, self._kernel(one)], dtype=np.int64)
        elif kind == NARROW:
            act["narrow"] = np.asarray(uniform_index(opts[NARROW], self.rng), dtype=np.int64)
        elif kind == REMOVE:
            act["remove"] = np.int64(uniform_index(opts[REMOVE], self.rng)[0])  # type: ignore[index]
        else:
            skip = opts[SKIP]
            modes = [m for m in range(skip.shape[-1]) if skip[..., m].any()]
            mode = modes[int(self.rng.integers(len(modes)))]
            src, dst = uniform_index(skip[..., mode], self.rng)  # type: ignore[misc]
            act["skip"] = np.asarray([src, dst, mode], dtype=np.int64)
        return act

    def _kernel(self, one: dict[str, Any]) -> int:
        """Index of a kernel size drawn uniformly from ``deeper_kernels`` (those allowed)."""
        legal = np.flatnonzero(np.asarray(one["kernel_mask"]))
        preferred = [int(i) for i in legal
                     if i < len(self.ctx.kernel_sizes)
                     and self.ctx.kernel_sizes[i] in self.config.deeper_kernels]
        pool = preferred or [int(i) for i in legal]
        if not pool:
            return 0
        return pool[int(self.rng.integers(len(pool)))]

    # ---------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """Move to the best child if it beats the current best (the parent competes)."""
        if not results:
            return {}
        parent_slot, self._parent_slot = self._parent_slot, False
        children = list(results)
        if parent_slot:
            parent = children.pop(0)
            if parent.failed:
                if self.best_accuracy is None:
                    self.best_accuracy = -math.inf
            else:
                self.best_accuracy = float(parent.accuracy)
                if parent.net is not None:
                    self.best_net = parent.net
                    self.best_arch = parent.arch
        previous = self.best_accuracy if self.best_accuracy is not None else -math.inf
        ok = [r for r in children if not r.failed]
        improved = False
        if ok:
            top = max(ok, key=lambda r: r.accuracy)
            if top.accuracy > previous:
                improved = True
                self.best_accuracy = float(top.accuracy)
                self.best_arch = top.arch
                if top.net is None:
                    warnings.warn(
                        "hill_climbing: the evaluator kept no weights; the next round starts "
                        "from a freshly initialised network of the best architecture",
                        stacklevel=2)
                self.best_net = top.net if top.net is not None else top.arch
        self.round += 1
        rewards = np.asarray([r.reward for r in results], dtype=float)
        self.history.append({"round": self.round, "best_accuracy": self.best_accuracy,
                             "best_arch": self.best_arch, "improved": improved,
                             "children": [(r.arch, float(r.accuracy)) for r in children]})
        best = self.best_accuracy if self.best_accuracy is not None else 0.0
        return {
            "charts/mean_reward": float(rewards.mean()),
            "charts/best_reward": float(rewards.max()),
            "hill_climbing/best_accuracy": float(best if math.isfinite(best) else 0.0),
            "hill_climbing/improved": float(improved),
            "hill_climbing/round": float(self.round),
        }

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """RNG, round, the current best (architecture, accuracy and weights) and history."""
        net = self.best_net
        net_state = net if net is None or isinstance(net, str) else network_record(net)
        return {
            **super().state_dict(),
            "round": self.round,
            "best_accuracy": self.best_accuracy,
            "best_arch": self.best_arch,
            "best_net": net_state,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (rebuilding the best network)."""
        super().load_state_dict(state)
        self.round = int(state.get("round", 0))
        self.best_accuracy = state.get("best_accuracy")
        self.best_arch = state.get("best_arch")
        self.history = list(state.get("history", []))
        net_state = state.get("best_net")
        if isinstance(net_state, dict):
            if "weights" in net_state:  # written before network records were shared
                net_state = {**net_state, "state_dict": net_state["weights"]}
            self.best_net = network_from_record(net_state)
        else:
            self.best_net = net_state
        self._parent_slot = False

