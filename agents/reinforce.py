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

Baseline (``Config.baseline_mode``):

* ``"ema"`` (default, the paper's text): b is an exponential moving average of
  the previous rounds' mean rewards, used *before* the current round updates it:
  ``A = R - b;  b <- decay * b + (1 - decay) * mean(R)``.
* ``"batch"`` (the original EAS code): the baseline first moves ``decay`` (95%)
  of the way towards the current round's mean reward, and the moved value is
  subtracted: ``b <- b + decay * (mean(R) - b);  A = R - b``.

* ``"loo"`` (opt-in, not in EAS): leave-one-out, each child's baseline is the mean
  reward of the *other* children of its round, ``A_i = R_i - mean_{j != i} R_j``
  (unbiased, and it does not lag behind a policy that improves); ``b`` is still
  tracked as the "ema" average, for logging only.

Without a previous round (and ``baseline_init`` None) the modes start from the
first round's mean reward.

``advantage_norm`` (opt-in, not in EAS) divides the round's advantages by the
standard deviation of its rewards, so a round whose children differ by 0.1 %
pushes the controller as hard as one where they differ by 5 %.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from eas.agents.base import Agent, AgentContext
from eas.agents.controller import Controller
from eas.envs.evaluators import EvalResult

__all__ = ["BASELINE_MODES", "ReinforceAgent", "ReinforceConfig", "baseline_step"]

BASELINE_MODES: tuple[str, ...] = ("ema", "batch", "loo")


@dataclass
class ReinforceConfig:
    """Hyperparameters of the EAS REINFORCE meta-controller (defaults as in EAS)."""

    lr: float = 2e-3
    """Adam learning rate of the controller (2e-3 as in the EAS code)."""
    baseline_decay: float = 0.95
    """Decay of the reward baseline (0.95 in EAS)."""
    baseline_mode: str = "ema"
    """"ema" (default; the paper: moving average of previous rewards), "batch" (the EAS code) or "loo" (leave-one-out)."""
    baseline_init: float | None = None
    """Initial baseline; None = the first round's mean reward."""
    entropy_coef: float = 1e-5
    """Weight of the entropy bonus (1e-5 as in the EAS code)."""
    wider_lr_scale: float = 1.0
    """Learning rate of the Net2Wider head = lr * this (1 = the paper: one learning rate for all)."""
    advantage_norm: bool = False
    """Divide each round's advantages by the std of its rewards (not in EAS; off = the paper)."""
    grad_clip: float | None = None
    """Clip the gradient's global norm to this value; None = no clipping."""
    embed_dim: int = 16
    """Size of the token embedding (and of the Net2Deeper decoder's input embeddings)."""
    hidden_size: int = 50
    """Units per direction of the bidirectional LSTM encoder."""
    decoder_hidden: int = 100
    """Units of the Net2Deeper LSTM decoder (2 * hidden_size = the encoder's final state)."""

    def __post_init__(self) -> None:
        if self.baseline_mode not in BASELINE_MODES:
            raise ValueError(
                f"baseline_mode must be one of {list(BASELINE_MODES)}, "
                f"got {self.baseline_mode!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.baseline_decay <= 1.0:
            raise ValueError(
                f"baseline_decay must be in [0, 1], got {self.baseline_decay}"
            )
        if self.entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {self.entropy_coef}")
        if not self.wider_lr_scale > 0:
            raise ValueError(f"wider_lr_scale must be > 0, got {self.wider_lr_scale}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("embed_dim", "hidden_size", "decoder_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def baseline_step(
    mode: str, baseline: float | None, rewards: Sequence[float] | np.ndarray, decay: float
) -> tuple[np.ndarray, float]:
    """Advantages of a round's rewards and the updated baseline.

    Args:
        mode: "ema" (subtract the previous baseline, then update it), "batch"
            (move the baseline ``decay`` of the way to the batch mean, then subtract)
            or "loo" (subtract the mean of the round's other rewards; the baseline is
            updated as in "ema").
        baseline: the baseline before this round, or None if there is none yet
            (then the batch mean is used as the previous baseline).
        rewards: the round's rewards.
        decay: the baseline decay (0.95 in EAS).

    Returns:
        ``(advantages, new_baseline)``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    mean = float(r.mean()) if r.size else 0.0
    prev = mean if baseline is None else float(baseline)
    if mode == "ema":
        return r - prev, decay * prev + (1.0 - decay) * mean
    if mode == "batch":
        new = prev + decay * (mean - prev)
        return r - new, new
    if mode == "loo":
        if r.size < 2:
            return r - prev, decay * prev + (1.0 - decay) * mean
        others = (r.sum() - r) / (r.size - 1)
        return r - others, decay * prev + (1.0 - decay) * mean
    raise ValueError(f"baseline mode must be one of {list(BASELINE_MODES)}, got {mode!r}")


_NDIM = {
    "tokens": 1,
    "length": 0,
    "kind_mask": 1,
    "wider_mask": 1,
    "deeper_mask": 2,
    "deeper_is_fc": 2,
    "kernel_mask": 1,
    "skip_mask": 3,
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
    Config: ClassVar[type] = ReinforceConfig

    def __init__(self, ctx: AgentContext, config: ReinforceConfig | None = None) -> None:
        super().__init__(ctx, config)
        cfg: ReinforceConfig = self.config
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
            )
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=float(cfg.lr))
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self.baseline: float | None = (
            None if cfg.baseline_init is None else float(cfg.baseline_init)
        )
        self.updates = 0
        self._memory: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []

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
    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Sample one transformation per child; remember (obs, actions) for :meth:`learn`."""
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

    # --------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """One REINFORCE step on the finished round; clears the episode memory."""
        cfg: ReinforceConfig = self.config
        rewards = np.array(
            [0.0 if r.failed else float(r.reward) for r in results], dtype=np.float64
        )
        rewards = np.where(np.isfinite(rewards), rewards, 0.0)
        if not self._memory:
            return {
                "charts/mean_reward": float(rewards.mean()) if rewards.size else 0.0,
                "charts/best_reward": float(rewards.max()) if rewards.size else 0.0,
            }
        batch = len(self._memory[0][1]["kind"])
        if len(results) != batch:
            self._memory.clear()
            raise ValueError(
                f"learn got {len(results)} results for an episode of {batch} children"
            )
        prev_baseline = self.baseline
        adv_np, new_baseline = baseline_step(
            cfg.baseline_mode, prev_baseline, rewards, float(cfg.baseline_decay)
        )
        if cfg.advantage_norm and rewards.size > 1:
            adv_np = adv_np / (float(rewards.std()) + 1e-8)
        advantages = torch.as_tensor(adv_np, dtype=torch.float32)

        self.controller.train()
        log_prob, entropy, pooled = self.episode_log_prob()
        policy_loss = -(log_prob * advantages).sum() / batch
        mean_entropy = entropy.sum() / batch
        loss = policy_loss - float(cfg.entropy_coef) * mean_entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.controller.parameters() if p.grad is not None]
        max_norm = float(cfg.grad_clip) if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        self.optimizer.step()
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
        return metrics

    def episode_log_prob(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[float, float]]]:
        """Rescore the remembered episode with gradients, all steps in one batched pass.

        Returns ``(log_prob [B], entropy [B], stats)``: per child, the sums over
        the episode's steps of the log-probabilities and entropies of every
        decision, and the controller's diagnostics pooled over the steps.
        """
        if not self._memory:
            raise ValueError("no remembered decisions: call propose() first")
        batch = len(self._memory[0][1]["kind"])
        steps = len(self._memory)
        obs_all = {
            k: np.concatenate([_rows(o[k], batch, _NDIM[k]) for o, _ in self._memory])
            for k in _NDIM
        }
        act_all = {
            k: np.concatenate([np.asarray(a[k]).reshape(batch, -1) for _, a in self._memory])
            for k in self._memory[0][1]
        }
        out = self.controller.evaluate(obs_all, act_all)
        log_prob = out.log_prob.reshape(steps, batch).sum(0)
        entropy = out.entropy.reshape(steps, batch).sum(0)
        return log_prob, entropy, out.stats

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Controller weights, Adam state, baseline, both RNG states (deep copies)."""
        return {
            "controller": copy.deepcopy(self.controller.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "updates": self.updates,
            "generator": self.generator.get_state().clone(),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the episode memory is cleared)."""
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state.get("baseline") is None else float(state["baseline"])
        self.updates = int(state.get("updates", 0))
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).clone())
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._memory.clear()
