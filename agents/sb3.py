"""A Stable-Baselines3 algorithm as a search agent: sb3-contrib's MaskablePPO inside ``run_search``.

The agent owns an SB3 ``MaskablePPO`` (its ``MultiInputPolicy`` and its
``train()``, the clipped-surrogate PPO update), but not SB3's rollout loop: the
search loop drives the environment (run folders, journal, evaluation cache,
budgets, checkpoints, TensorBoard, ``eas compare``), so the agent

* **acts** (:meth:`SB3Agent.propose`): each child's observation becomes the flat
  view of :mod:`envs.flat` (numeric ``Dict`` observation, one ``Discrete`` action
  over every transformation, one flat legal mask, :class:`~envs.flat.FlatActions`);
  the policy's masked distribution is sampled with the agent's own seeded
  ``torch.Generator`` and the index decoded back into the environment's action;
* **learns** (:meth:`SB3Agent.learn`): a round of ``n`` children of ``T`` steps is one
  rollout of ``n`` parallel episodes; it goes into SB3's
  ``MaskableDictRolloutBuffer`` (reward 0 on every step but the last, where it is
  the child's reward), SB3 computes GAE returns and advantages, and
  ``MaskablePPO.train()`` runs ``n_epochs`` of minibatch updates. SB3 shuffles
  minibatches with numpy's global RNG: the agent seeds it (and torch's) from its
  own RNG for the update and restores both afterwards, so a seeded search is
  reproducible and leaves global RNGs alone.

One PPO update per round: nothing is pending between rounds, so a checkpoint
(:meth:`SB3Agent.state_dict`: the policy's parameters, its Adam state, the
generator and RNG states, counters) restores the agent exactly; a round
interrupted mid-way is replayed from the previous checkpoint like every agent's.
SB3's own ``model.save`` is not used (it pickles, and nothing read from a run
folder may execute code).

Needs the ``sb3`` extra: ``pip install 'eas[sb3]'``.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch

try:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import obs_as_tensor
except ImportError as exc:  # the optional extra
    raise ImportError("the sb3_ppo agent needs Stable-Baselines3 and sb3-contrib: "
                      "pip install 'eas[sb3]'") from exc
from gymnasium import spaces

from eas.agents.base import Agent, AgentContext
from eas.agents.settings import SB3Config
from eas.envs.flat import FlatActions, flat_observation, flat_observation_space
from eas.envs.observation import split_obs, stack_actions
from eas.envs.record import EvalResult
from eas.envs.spaces import observation_space
from eas.kinds import SHRINK_KINDS
from eas.morphisms.legal import narrow_levels

__all__ = ["SB3Agent"]


class SB3Agent(Agent):
    """sb3-contrib's ``MaskablePPO`` choosing every transformation from the flat action space.

    Works in schedule mode (the scheduled kind's actions are the legal ones) and
    free mode (any kind), with the shrink kinds when ``search.shrink`` is on, and
    on DenseNet starts.
    """

    name: ClassVar[str] = "sb3_ppo"
    shrink_actions: ClassVar[bool] = True
    Config: ClassVar[type] = SB3Config

    def __init__(self, ctx: AgentContext, config: Any = None) -> None:
        super().__init__(ctx, config)
        c = self.config
        space = ctx.extra.get("space")
        shrink = any(k in SHRINK_KINDS for k in ctx.kinds)
        if shrink and space is None:
            raise ValueError("sb3_ppo with shrink kinds needs ctx.extra['space'] (the search space)")
        width = narrow_levels(space) if shrink else None
        L, K = ctx.max_layers, len(ctx.kernel_sizes)
        self.codec = FlatActions(L, K, width)
        base_space = observation_space(L, K, ctx.steps_per_episode, ctx.vocab_size, width)
        self.observation_space = flat_observation_space(base_space)
        self.action_space = spaces.Discrete(self.codec.n)
        self.model = MaskablePPO(
            "MultiInputPolicy", env=None, learning_rate=c.learning_rate, n_steps=1,
            batch_size=c.batch_size, n_epochs=c.n_epochs, gamma=c.gamma,
            gae_lambda=c.gae_lambda, clip_range=c.clip_range, ent_coef=c.ent_coef,
            vf_coef=c.vf_coef, max_grad_norm=c.max_grad_norm, device="cpu",
            policy_kwargs={"net_arch": list(c.net_arch)}, _init_setup_model=False)
        self.model.observation_space, self.model.action_space = self.observation_space, self.action_space
        self.model.n_envs = 1
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
            torch.manual_seed(int(ctx.seed))
            self.model._setup_model()
        self.model.set_logger(configure(None, []))  # metrics come back through learn()
        self.policy = self.model.policy
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self.updates = 0
        self._memory: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ acting
    def _batch(self, ones: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        flats = [flat_observation(one) for one in ones]
        obs = {k: np.stack([np.asarray(f[k]) for f in flats]) for k in self.observation_space.spaces}
        masks = np.stack([self.codec.mask(one) for one in ones])
        return obs, masks

    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """One action per child: a draw from the policy's masked distribution."""
        ones, batched = split_obs(obs)
        flat, masks = self._batch(ones)
        self.policy.set_training_mode(False)
        with torch.no_grad():
            tensor = obs_as_tensor(flat, self.model.device)
            dist = self.policy.get_distribution(tensor, action_masks=masks)
            probs = dist.distribution.probs
            actions = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
            log_probs = dist.log_prob(actions)
            values = self.policy.predict_values(tensor).flatten()
        self._memory.append({"obs": flat, "masks": masks, "actions": actions.numpy().copy(),
                             "log_probs": log_probs.clone(), "values": values.clone()})
        chosen = [self.codec.decode(int(a), one) for a, one in zip(actions.tolist(), ones)]
        return stack_actions(chosen, batched)

    # ---------------------------------------------------------------- learning
    def _buffer(self, rewards: np.ndarray) -> MaskableDictRolloutBuffer:
        c, T, n = self.config, len(self._memory), len(rewards)
        buf = MaskableDictRolloutBuffer(T, self.observation_space, self.action_space,
                                        self.model.device, gae_lambda=c.gae_lambda,
                                        gamma=c.gamma, n_envs=n)
        for t, step in enumerate(self._memory):
            r = rewards if t == T - 1 else np.zeros(n, np.float32)
            start = np.full(n, 1.0 if t == 0 else 0.0, np.float32)
            buf.add(step["obs"], step["actions"].reshape(n, 1), r, start, step["values"],
                    step["log_probs"], action_masks=step["masks"])
        buf.compute_returns_and_advantage(last_values=torch.zeros(n), dones=np.ones(n))
        return buf

    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """One MaskablePPO update on the round's episodes (SB3's ``train()``)."""
        if not results or not self._memory:
            self._memory.clear()
            return {}
        rewards = np.asarray([r.reward for r in results], dtype=np.float32)
        if len(rewards) != self._memory[0]["actions"].shape[0]:
            raise RuntimeError(f"learn() got {len(rewards)} results for "
                               f"{self._memory[0]['actions'].shape[0]} episodes")
        total = len(self._memory) * len(rewards)
        batch = min(self.config.batch_size, total)
        while total % batch == 1 and batch < total:  # a minibatch of 1 has no advantage std
            batch += 1
        self.model.batch_size = batch
        self.model.rollout_buffer = self._buffer(rewards)
        state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                np.random.seed(int(self.rng.integers(2**31 - 1)))
                torch.manual_seed(int(self.rng.integers(2**31 - 1)))
                self.model.train()
        finally:
            np.random.set_state(state)
        self.model.num_timesteps += total
        self.updates += 1
        logged = dict(self.model.logger.name_to_value)
        self.model.logger.dump()
        self._memory.clear()
        out = {"charts/mean_reward": float(rewards.mean()), "charts/best_reward": float(rewards.max())}
        for src, dst in (("train/policy_gradient_loss", "losses/policy_loss"),
                         ("train/value_loss", "losses/value_loss"),
                         ("train/entropy_loss", "losses/entropy_loss"),
                         ("train/approx_kl", "losses/approx_kl"),
                         ("train/clip_fraction", "losses/clip_fraction"),
                         ("train/explained_variance", "losses/explained_variance")):
            if src in logged:
                out[dst] = float(logged[src])
        return out

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Policy parameters, Adam state, generator and RNG states, counters (deep copies).

        Nothing else needs saving: the rollout of a round is consumed by that round's
        update, so no transitions are pending at a checkpoint.
        """
        return {
            **super().state_dict(),
            "policy": copy.deepcopy(self.policy.state_dict()),
            "optimizer": copy.deepcopy(self.policy.optimizer.state_dict()),
            "generator": self.generator.get_state().clone(),
            "updates": self.updates,
            "num_timesteps": int(self.model.num_timesteps),
            "n_updates": int(self.model._n_updates),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the round in progress is forgotten)."""
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.policy.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).clone())
        self.updates = int(state.get("updates", 0))
        self.model.num_timesteps = int(state.get("num_timesteps", 0))
        self.model._n_updates = int(state.get("n_updates", 0))
        self._memory.clear()
