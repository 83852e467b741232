"""Random search: uniformly random legal transformations, the simplest baseline.

Each child is built exactly like an EAS child (same start network, same number
of transformation steps, same child training by the environment's evaluator),
but every decision is drawn uniformly from the environment's action masks
instead of by a learned controller:

* **kind** (free mode only): uniform over the kinds allowed now (``kind_mask``);
  in schedule mode the scheduled kind (the only one set in ``kind_mask``).
* **wider**: every widenable layer (``wider_mask``) is marked independently with
  probability ``Config.wider_prob`` (0.5: the EAS Net2Wider actor's untrained
  sigmoid output). All-zero is a legal "no change".
* **deeper**: a legal ``(block, position)`` uniformly from ``deeper_mask``, the
  kernel uniformly from ``kernel_mask`` (ignored where the new layer is FC).
* **skip**: a legal ``(src, dst, mode)`` uniformly from ``skip_mask``.
* **narrow**, **remove** (only with ``search.shrink``): a legal ``(layer, width
  level)`` from ``narrow_mask`` / a legal layer from ``remove_mask``, uniformly.

The draws are :func:`eas.envs.observation.sample_legal_action` (the one
definition of a random legal action, shared with ``env.action_space.sample()``).
:meth:`RandomSearchAgent.learn` only records results.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from eas.agents.base import Agent, AgentContext
from eas.agents.settings import RandomConfig
from eas.envs.observation import sample_legal_action, split_obs, stack_actions
from eas.envs.record import EvalResult

__all__ = ["RandomSearchAgent"]

class RandomSearchAgent(Agent):
    """Uniformly random legal transformations under the same budget as EAS.

    Works in schedule mode (the EAS budget: 4 Net2Wider + 5 Net2Deeper steps per
    child) and in free mode (kind drawn uniformly too).
    """

    name: ClassVar[str] = "random"
    shrink_actions: ClassVar[bool] = True
    Config: ClassVar[type] = RandomConfig

    def __init__(self, ctx: AgentContext, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.children_seen = 0
        self.best_accuracy: float | None = None
        self.best_arch: str | None = None
        self.best_reward: float | None = None
        self.history: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- acting
    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """One uniformly random legal action per environment in the batch."""
        ones, batched = split_obs(obs)
        actions = [sample_legal_action(one, self.rng, self.config.wider_prob) for one in ones]
        return stack_actions(actions, batched)

    # --------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """Record the round's children (random search does not adapt)."""
        if not results:
            return {}
        rewards = np.asarray([r.reward for r in results], dtype=float)
        for r in results:
            self.children_seen += 1
            self.history.append({"arch": r.arch, "accuracy": float(r.accuracy),
                                 "reward": float(r.reward), "failed": bool(r.failed)})
            if not r.failed and (self.best_accuracy is None or r.accuracy > self.best_accuracy):
                self.best_accuracy = float(r.accuracy)
                self.best_arch = r.arch
                self.best_reward = float(r.reward)
        return {
            "charts/mean_reward": float(rewards.mean()),
            "charts/best_reward": float(rewards.max()),
            "charts/best_accuracy_so_far": float(self.best_accuracy or 0.0),
        }

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """RNG state plus the record of children seen so far."""
        return {
            **super().state_dict(),
            "children_seen": self.children_seen,
            "best_accuracy": self.best_accuracy,
            "best_arch": self.best_arch,
            "best_reward": self.best_reward,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.children_seen = int(state.get("children_seen", 0))
        self.best_accuracy = state.get("best_accuracy")
        self.best_arch = state.get("best_arch")
        self.best_reward = state.get("best_reward")
        self.history = list(state.get("history", []))
