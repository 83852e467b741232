"""The EAS meta-controller trained with REINFORCE (Williams 1992), as in Cai et al. 2018.

Per round (one controller step) the search loop runs B children in lockstep:
:meth:`ReinforceAgent.propose` samples one transformation for each child from
the :class:`~agents.controller.Controller` (the state is re-encoded every step)
and remembers the observation and the sampled actions; when the episodes end,
:meth:`ReinforceAgent.learn` rescores every remembered decision with gradients
and takes one Adam step on

    loss = - 1/B * sum_children sum_steps log pi(a_t | s_t) * (R - b)
           - entropy_coef * 1/B * sum_children sum_steps H(pi(. | s_t))

where R = tan(acc * pi / 2) (0 for a failed child) and b is the baseline.

Baselines, modes and every setting: :mod:`agents.reinforce_config`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from eas.agents.base import Agent, AgentContext
from eas.agents.controller import Controller, controller_weights
from eas.agents.controller_pool import (
    Episode,
    EpisodePlanner,
    NetworkPool,
    start_rewards,
    uniform_actions,
)
from eas.agents.predictor import AccuracyPredictor
from eas.agents.reinforce_config import ReinforceConfig, baseline_step
from eas.arch import SearchSpace
from eas.envs.record import EvalResult
from eas.kinds import SHRINK_KINDS
from eas.morphisms.legal import narrow_levels

__all__ = ["ReinforceAgent"]

_NDIM = {
    "tokens": 1,
    "length": 0,
    "kind_mask": 1,
    "wider_mask": 1,
    "deeper_mask": 2,
    "deeper_is_fc": 2,
    "kernel_mask": 1,
    "skip_mask": 3,
    "narrow_mask": 2,
    "remove_mask": 1,
}
"""Dimensions of one (unbatched) observation entry, for stacking rescoring batches."""


def _rows(value: Any, batch: int, ndim: int) -> np.ndarray:
    """``value`` as an array of ``batch`` rows of its trailing ``ndim`` dimensions."""
    arr = np.asarray(value)
    return arr.reshape(batch, *arr.shape[arr.ndim - ndim:])


def _copy_obs(obs: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of a (batched) observation, so later env steps cannot alter it."""
    return {k: (np.array(v, copy=True) if k != "arch" else v) for k, v in obs.items()}


class ReinforceAgent(Agent):
    """The EAS meta-controller: BiLSTM encoder + Net2Wider/Net2Deeper actors, REINFORCE.

    All sampling uses ``self.generator`` (a ``torch.Generator`` seeded from
    ``ctx.seed``); the controller's weights are initialised from the same seed
    without touching torch's global RNG.
    """

    name: ClassVar[str] = "reinforce"
    shrink_actions: ClassVar[bool] = True
    Config: ClassVar[type] = ReinforceConfig

    def __init__(self, ctx: AgentContext, config: ReinforceConfig | None = None) -> None:
        super().__init__(ctx, (config if config is not None else ReinforceConfig()).resolved())
        cfg: ReinforceConfig = self.config
        shrink = any(k in SHRINK_KINDS for k in ctx.kinds)
        space = (ctx.extra or {}).get("space") or SearchSpace()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.controller = Controller(
                ctx.vocab_size,
                ctx.max_layers,
                len(ctx.kernel_sizes),
                max(len(ctx.kinds), 1),
                embed_dim=int(cfg.embed_dim),
                hidden_size=int(cfg.hidden_size),
                decoder_hidden=int(cfg.decoder_hidden),
                wider_one=bool(cfg.wider_one),
                num_levels=narrow_levels(space) if shrink else 0,
            )
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=float(cfg.lr))
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self.baseline: float | None = (
            None if cfg.baseline_init is None else float(cfg.baseline_init)
        )
        self.updates = 0
        self._memory: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
        self.pool: NetworkPool | None = (
            NetworkPool(int(cfg.pool_size), cfg.pool_select) if int(cfg.pool_size) > 0 else None)
        self.seen: set[str] = set()
        """Architectures evaluated so far (and the pool's): a proposal leading to one is a repeat."""
        self.children = 0
        self.distinct_children = 0
        self.start_accuracy: float | None = None
        self._starts: list[dict[str, Any] | None] | None = None
        self._plans: list[Episode] | None = None
        self._resampled = 0
        self._repeats = 0
        self._planner: EpisodePlanner | None = None
        self.predictor: AccuracyPredictor | None = (
            AccuracyPredictor(ctx.vocab_size, int(ctx.seed), steps=int(cfg.predictor_steps))
            if int(cfg.screen) > 1 else None)
        if cfg.init:
            self.warm_start(cfg.init)

    @classmethod
    def env_requirements(cls, config: Any = None) -> dict[str, Any]:
        """Free mode when ``config.free`` (the controller then picks each step's kind), with
        ``config.free_steps`` steps per episode when set."""
        config = (config if config is not None else cls.Config()).resolved()
        if not config.free:
            return {}
        if config.free_steps is None:
            return {"schedule": None}
        return {"schedule": None, "free_steps": int(config.free_steps)}

    @property
    def planning(self) -> bool:
        """Whether episodes are planned ahead (a pool or the no-repeat rule is on)."""
        cfg: ReinforceConfig = self.config
        return self.pool is not None or bool(cfg.no_repeat) or self.predictor is not None

    def warm_start(self, path: str | Path) -> None:
        """Load the controller's weights from a run's ``checkpoint.pt`` (or the run folder)."""
        try:
            weights, p = controller_weights(path)
        except ValueError as exc:
            raise ValueError(f"controller.init: {exc}") from None
        try:
            self.controller.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"controller.init: {p} has a controller of another shape "
                             f"(search space or sizes differ): {str(exc).splitlines()[0]}") from exc

    def _param_groups(self) -> list[dict[str, Any]]:
        """One Adam group (the paper), or two when ``wider_lr_scale`` != 1: the Net2Wider head apart."""
        cfg: ReinforceConfig = self.config
        if float(cfg.wider_lr_scale) == 1.0:
            return [{"params": list(self.controller.parameters())}]
        wider = list(self.controller.wider_head.parameters())
        ids = {id(p) for p in wider}
        rest = [p for p in self.controller.parameters() if id(p) not in ids]
        return [{"params": rest},
                {"params": wider, "lr": float(cfg.lr) * float(cfg.wider_lr_scale)}]

    # ----------------------------------------------------------------- acting
    def set_start_accuracy(self, accuracy: float) -> None:
        """The stage start's accuracy ranks it in the pool (unknown: it is only a fallback)."""
        self.start_accuracy = float(accuracy)

    def start_network(self) -> Any:
        """Pool mode: one start per child, drawn from the pool (None = the stage's start)."""
        self._plans = None
        if self.pool is None:
            return None
        if not len(self.pool):
            acc = -1.0 if self.start_accuracy is None else self.start_accuracy
            self.pool.add("", acc, 0, None)  # the stage start, arch learnt at its first obs
        picks = self.pool.draw(self.children_this_round(), self.rng)
        self._starts = list(picks)
        if all(m["arch"] for m in picks):
            # every start is known: plan now, so that a child whose proposals all repeat
            # can move to another pool member (:meth:`_plan`)
            self._plans = self._plan([m["arch"] for m in picks], redraw=True)
        if all(m["net"] is None for m in self._starts):
            return None
        return [m["net"] for m in self._starts]

    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Sample one transformation per child; remember (obs, actions) for :meth:`learn`.

        When planning (pool or no-repeat), the round's episodes are planned whole at
        its first step and replayed.
        """
        if self.planning:
            return self._replay(obs)
        with torch.no_grad():
            out = self.controller.act(obs, self.generator)
        if self._memory:
            prev = len(next(iter(self._memory[0][1].values())))
            if prev != len(out.actions["kind"]):
                raise ValueError(
                    f"propose got a batch of {len(out.actions['kind'])} observations in an "
                    f"episode of {prev} children"
                )
        self._memory.append((_copy_obs(obs), {k: v.copy() for k, v in out.actions.items()}))
        return out.actions

    def _score(self, episodes: list[Episode]) -> np.ndarray:
        """The predictor's accuracies of the episodes' children (zeros without a predictor)."""
        if self.predictor is None:
            return np.zeros(len(episodes))
        tokens = np.stack([np.asarray(e.final_obs["tokens"]) for e in episodes])
        lengths = np.asarray([int(np.asarray(e.final_obs["length"])) for e in episodes])
        return self.predictor.predict(tokens, lengths)

    def _sample(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return self.controller.act(obs, self.generator).actions

    def _uniform(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Legal actions drawn uniformly (``explore``), in the controller's action format."""
        return uniform_actions(obs, self.rng, bool(self.config.wider_one))

    def _replay(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """The planned actions of this step (planning the round first at step 0)."""
        steps = np.asarray(obs["step"]).reshape(-1)
        batch = len(steps)
        archs = obs["arch"] if not isinstance(obs["arch"], str) else [obs["arch"]]
        if int(steps[0]) == 0 and self._plans is None:
            self._plans = self._plan([str(a) for a in archs])
        assert self._plans is not None
        t = int(steps[0])
        out = {k: np.stack([p.actions[t][k] for p in self._plans[:batch]])
               for k in self._plans[0].actions[t]}
        if t == len(self._plans[0].actions) - 1:
            p0 = self._plans[0]
            self._memory = [(
                {k: (np.stack([np.asarray(p.obs[j][k]) for p in self._plans[:batch]]))
                 for k in _NDIM if k in p0.obs[j]},
                {k: np.stack([p.actions[j][k] for p in self._plans[:batch]])
                 for k in self._plans[0].actions[j]})
                for j in range(len(self._plans[0].actions))]
        return out

    def _plan(self, start_archs: list[str], redraw: bool = False) -> list[Episode]:
        """Plan one episode per child; repeats resampled (``no_repeat``). With ``redraw``
        (the starts are pool members not yet handed to the environment), a child still
        repeating after half of ``resample_tries`` draws a new pool member to start from;
        with ``explore`` it then gets ``resample_tries`` more tries of uniformly drawn
        legal steps before a repeat is allowed."""
        cfg: ReinforceConfig = self.config
        starts: list[Any] = []
        for i, arch in enumerate(start_archs):
            member = self._starts[i] if self._starts is not None and i < len(self._starts) else None
            if member is not None and member["net"] is None and not member["arch"]:
                member["arch"] = arch  # the stage start, now known
            starts.append(member["net"] if member is not None and member["net"] is not None
                          else arch)
            self.seen.add(arch)
        if self._planner is None:
            extra = self.ctx.extra or {}
            self._planner = EpisodePlanner(
                tuple(extra.get("input_shape", (1, 28, 28))), extra.get("space") or SearchSpace(),
                self.ctx.schedule, self.ctx.steps_per_episode, self.ctx.max_layers,
                shrink=any(k in ("narrow", "remove") for k in self.ctx.kinds))
        n, screen = len(starts), max(int(cfg.screen), 1)
        first = self._planner.rollout(list(starts) * screen, self._sample)
        if not cfg.no_repeat and self.predictor is None:
            return first
        cands = [[first[c * n + i] for c in range(screen)] for i in range(n)]
        chosen: list[Episode | None] = [None] * n
        taken: set[str] = set()
        tries = int(cfg.resample_tries)
        total = 2 * tries if cfg.explore else tries
        for attempt in range(total + 1):
            missing = []
            for i in range(n):
                if chosen[i] is not None:
                    continue
                ok = [e for e in cands[i] if not cfg.no_repeat
                      or (e.arch not in self.seen and e.arch not in taken)]
                if ok:
                    chosen[i] = ok[int(np.argmax(self._score(ok)))] if len(ok) > 1 else ok[0]
                    taken.add(chosen[i].arch)  # type: ignore[union-attr]
                elif attempt == total:  # give up: allow the repeat
                    chosen[i] = cands[i][0]
                    self._repeats += 1
                else:
                    missing.append(i)
            if not missing:
                break
            self._resampled += len(missing)
            if redraw and self.pool is not None and attempt >= tries // 2:
                for i in missing:
                    member = self.pool.draw(1, self.rng)[0]
                    self._starts[i] = member  # type: ignore[index]
                    starts[i] = member["net"] if member["net"] is not None else member["arch"]
                    self.seen.add(member["arch"])
            again = self._planner.rollout([starts[i] for i in missing],
                                          self._sample if attempt < tries else self._uniform)
            for i, e in zip(missing, again):
                cands[i] = [e]
        return [e for e in chosen if e is not None]

    # --------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """One REINFORCE step on the finished round; clears the episode memory."""
        cfg: ReinforceConfig = self.config
        rewards = np.array(
            [0.0 if r.failed else float(r.reward) for r in results], dtype=np.float64
        )
        rewards = np.where(np.isfinite(rewards), rewards, 0.0)
        parents = self._parent_rewards(len(results))
        extra = self._note(results)
        if not self._memory:
            return {
                "charts/mean_reward": float(rewards.mean()) if rewards.size else 0.0,
                "charts/best_reward": float(rewards.max()) if rewards.size else 0.0,
                **extra,
            }
        batch = len(self._memory[0][1]["kind"])
        if len(results) != batch:
            self._memory.clear()
            raise ValueError(
                f"learn got {len(results)} results for an episode of {batch} children"
            )
        prev_baseline = self.baseline
        adv_np, new_baseline = baseline_step(
            cfg.baseline_mode, prev_baseline, rewards, float(cfg.baseline_decay), parents
        )
        if cfg.advantage_norm and rewards.size > 1:
            adv_np = adv_np / (float(rewards.std()) + 1e-8)
        advantages = torch.as_tensor(adv_np, dtype=torch.float32)

        self.controller.train()
        if int(cfg.ppo_epochs) == 1:  # REINFORCE (the paper's update)
            log_prob, entropy, pooled = self.episode_log_prob()
            policy_loss = -(log_prob * advantages).sum() / batch
            mean_entropy = entropy.sum() / batch
            loss = policy_loss - float(cfg.entropy_coef) * mean_entropy
            grad_norm = self._gradient_step(loss)
        else:  # PPO-style passes: per-decision-step ratios, clipped
            with torch.no_grad():
                old, _, _ = self.episode_log_prob(per_step=True)
            low, high = 1.0 - float(cfg.clip), 1.0 + float(cfg.clip)
            for _ in range(int(cfg.ppo_epochs)):
                new, entropy, pooled = self.episode_log_prob(per_step=True)
                ratio = torch.exp(new - old)
                surrogate = torch.minimum(ratio * advantages, ratio.clamp(low, high) * advantages)
                policy_loss = -surrogate.sum() / batch
                mean_entropy = entropy.sum() / batch
                loss = policy_loss - float(cfg.entropy_coef) * mean_entropy
                grad_norm = self._gradient_step(loss)
            extra["charts/clip_fraction"] = float(((ratio - 1).abs() > float(cfg.clip))
                                                  .float().mean())
        self.baseline = float(new_baseline)
        self.updates += 1
        steps = len(self._memory)
        self._memory.clear()

        metrics = {
            "losses/policy_loss": float(policy_loss.detach()),
            "losses/entropy": float(mean_entropy.detach()),
            "losses/loss": float(loss.detach()),
            "charts/baseline": self.baseline,
            "charts/advantage_mean": float(adv_np.mean()),
            "charts/mean_reward": float(rewards.mean()),
            "charts/best_reward": float(rewards.max()),
            "charts/failed_fraction": float(np.mean([bool(r.failed) for r in results])),
            "charts/grad_norm": grad_norm,
            "charts/episode_steps": float(steps),
        }
        for key, (total, count) in pooled.items():
            if count > 0:
                metrics[f"charts/{key}"] = total / count
        metrics.update(extra)
        return metrics

    def _parent_rewards(self, n: int) -> list[float | None]:
        """The reward of each of the round's ``n`` children's start (None where unknown)."""
        starts = (self._starts if self._starts is not None
                  else [{"accuracy": self.start_accuracy}] * n)
        return start_rewards(starts, n)

    def _gradient_step(self, loss: torch.Tensor) -> float:
        """Backpropagate ``loss``, clip (``grad_clip``), one Adam step; the gradient's norm."""
        cfg: ReinforceConfig = self.config
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.controller.parameters() if p.grad is not None]
        max_norm = float(cfg.grad_clip) if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        self.optimizer.step()
        return grad_norm

    def _note(self, results: list[EvalResult]) -> dict[str, float]:
        """Count distinct children; add the round's children to the pool and the seen set;
        the predictor checks its held-out predictions of them, then learns from them."""
        out: dict[str, float] = {}
        if self.predictor is not None and self._plans is not None and results:
            plans = self._plans[:len(results)]
            tokens = np.stack([np.asarray(p.final_obs["tokens"]) for p in plans])
            lengths = np.asarray([int(np.asarray(p.final_obs["length"])) for p in plans])
            out.update(self.predictor.observe(
                tokens, lengths, np.asarray([0.0 if r.failed else r.accuracy for r in results])))
        for r in results:
            self.children += 1
            self.distinct_children += int(r.arch not in self.seen)
            self.seen.add(r.arch)
            if self.pool is not None and not r.failed and r.net is not None:
                self.pool.add(r.arch, float(r.accuracy), int(r.params), r.net,
                              reward=float(r.reward))
        self._plans, self._starts = None, None
        out["charts/distinct_fraction"] = self.distinct_children / max(self.children, 1)
        if self.planning:
            out["charts/resampled"] = float(self._resampled)
            out["charts/repeats_allowed"] = float(self._repeats)
        if self.pool is not None and len(self.pool):
            out["charts/pool_best_accuracy"] = max(m["accuracy"] for m in self.pool.members)
        return out

    def episode_log_prob(self, per_step: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[float, float]]]:
        """Rescore the remembered episode with gradients, all steps in one batched pass.

        Returns ``(log_prob [B], entropy [B], stats)``: per child, the sums over
        the episode's steps of the log-probabilities and entropies of every
        decision, and the controller's diagnostics pooled over the steps
        (``per_step``: ``[steps, B]``, not summed).
        """
        if not self._memory:
            raise ValueError("no remembered decisions: call propose() first")
        batch = len(self._memory[0][1]["kind"])
        steps = len(self._memory)
        obs_all = {
            k: np.concatenate([_rows(o[k], batch, _NDIM[k]) for o, _ in self._memory])
            for k in _NDIM if k in self._memory[0][0]
        }
        act_all = {
            k: np.concatenate([np.asarray(a[k]).reshape(batch, -1) for _, a in self._memory])
            for k in self._memory[0][1]
        }
        out = self.controller.evaluate(obs_all, act_all)
        log_prob = out.log_prob.reshape(steps, batch)
        entropy = out.entropy.reshape(steps, batch)
        if per_step:
            return log_prob, entropy, out.stats
        return log_prob.sum(0), entropy.sum(0), out.stats

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Controller weights, Adam state, baseline, both RNG states (deep copies), and in
        pool mode the pool (with weights), the evaluated architectures and the counters."""
        state = {
            "controller": copy.deepcopy(self.controller.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "updates": self.updates,
            "generator": self.generator.get_state().clone(),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }
        if self.planning or self.children:
            state.update({
                "pool": None if self.pool is None else self.pool.state_dict(),
                "seen": sorted(self.seen),
                "counts": [self.children, self.distinct_children, self._resampled,
                           self._repeats],
                "start_accuracy": self.start_accuracy,
                "predictor": None if self.predictor is None else self.predictor.state_dict(),
            })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the episode memory is cleared)."""
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state.get("baseline") is None else float(state["baseline"])
        self.updates = int(state.get("updates", 0))
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).clone())
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._memory.clear()
        self._plans, self._starts = None, None
        if self.pool is not None and state.get("pool") is not None:
            self.pool.load_state_dict(state["pool"])
        self.seen = set(state.get("seen", []))
        counts = list(state.get("counts", [0, 0, 0, 0]))
        self.children, self.distinct_children, self._resampled, self._repeats = map(int, counts)
        if self.predictor is not None and state.get("predictor") is not None:
            self.predictor.load_state_dict(state["predictor"])
        acc = state.get("start_accuracy")
        self.start_accuracy = None if acc is None else float(acc)
