"""Settings of the REINFORCE meta-controller (:class:`ReinforceConfig`, its mode table)
and its baseline rule (:func:`baseline_step`); the agent is :mod:`agents.reinforce`.

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
* ``"parent"`` (opt-in, for the pool mode): each child's baseline is the reward of
  the network its episode started from (its pool member's accuracy), so the
  advantage is what the episode's transformations gained or lost, not which
  member it started from; a start of unknown accuracy falls back to "loo".

Without a previous round (and ``baseline_init`` None) the modes start from the
first round's mean reward.

``advantage_norm`` divides the round's advantages by the
standard deviation of its rewards, so a round whose children differ by 0.1 %
pushes the controller as hard as one where they differ by 5 %.

**Modes** (``Config.mode``). ``"paper"`` is the EAS controller: every episode
starts from the stage's start network, the configured schedule, one update per
round, EMA baseline, lr 2e-3 (the default). ``"pool"`` compounds:

* every child's episode starts from a network drawn from a
  :class:`~agents.controller_pool.NetworkPool` of the best networks found so
  far, with their weights (``pool_size``, ``pool_select``);
* episodes are short steps in free mode (``free = true``, ``free_steps = 1``): the
  controller's kind head chooses wider, deeper or skip, the action set of hill
  climbing, and each child is its pool member plus one transformation; a
  Net2Wider step widens one layer (``wider_one``). The paper's schedule adds
  three layers per episode, so episodes from already deep members overshoot;
* whole episodes are planned first in private copies of the environment
  (:class:`~agents.controller_pool.EpisodePlanner`); a proposal whose
  architecture was already evaluated, or already planned in the round, is
  resampled (``resample_tries`` times: ``no_repeat``; after half of them from
  another pool member), then (``explore``) replaced by uniformly drawn legal
  steps, and only then allowed;
* learning: leave-one-out baseline, advantages normalised, lr 1e-2; opt-in
  ``ppo_epochs`` passes per round with a clipped probability ratio (the first
  pass is the REINFORCE gradient) and the ``"parent"`` baseline.

The synthetic-task study behind these defaults is in BENCHMARKS.md ("The compounding
controller on the synthetic development tasks").

Fields left at None take their mode's value (:data:`MODE_DEFAULTS`); any field
set explicitly wins. ``init`` warm-starts the controller's weights from an
earlier run's ``checkpoint.pt`` (or its run folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BASELINE_MODES", "MODES", "MODE_DEFAULTS", "POOL_SELECTIONS", "ReinforceConfig", "baseline_step"]

BASELINE_MODES: tuple[str, ...] = ("ema", "batch", "loo", "parent")
MODES: tuple[str, ...] = ("paper", "pool")
POOL_SELECTIONS: tuple[str, ...] = ("best", "pareto")
"""How the pool of episode starts is chosen: the best networks, or a Pareto front."""
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"lr": 2e-3, "baseline_mode": "ema", "advantage_norm": False, "pool_size": 0,
              "no_repeat": False, "ppo_epochs": 1, "free": False, "free_steps": None,
              "wider_one": False, "explore": False, "screen": 1},
    "pool": {"lr": 1e-2, "baseline_mode": "loo", "advantage_norm": True, "pool_size": 5,
             "no_repeat": True, "ppo_epochs": 1, "free": True, "free_steps": 1,
             "wider_one": True, "explore": True, "screen": 1},
}
"""The value of every mode-dependent field left at None, per mode."""


@dataclass
class ReinforceConfig:
    """Hyperparameters of the REINFORCE meta-controller (None = the mode's value)."""

    mode: str = "paper"
    """paper (EAS: episodes from the stage start) or pool (compounding: episodes from the best networks so far, no repeats)."""
    lr: float | None = None
    """Adam learning rate of the controller; none = the mode's (paper 2e-3 as in the EAS code, pool 1e-2)."""
    baseline_decay: float = 0.95
    """Decay of the reward baseline (0.95 in EAS)."""
    baseline_mode: str | None = None
    """ema (the paper: moving average of previous rewards), batch (the EAS code) loo (leave-one-out) or parent (the episode's start's reward); none = the mode's (paper ema, pool loo)."""
    baseline_init: float | None = None
    """Initial baseline; None = the first round's mean reward."""
    entropy_coef: float = 1e-5
    """Weight of the entropy bonus (1e-5 as in the EAS code)."""
    wider_lr_scale: float = 1.0
    """Learning rate of the Net2Wider head = lr * this (1 = the paper: one learning rate for all)."""
    advantage_norm: bool | None = None
    """Divide each round's advantages by the std of its rewards (not in EAS); none = the mode's (paper off, pool on)."""
    grad_clip: float | None = None
    """Clip the gradient's global norm to this value; None = no clipping."""
    embed_dim: int = 16
    """Size of the token embedding (and of the Net2Deeper decoder's input embeddings)."""
    hidden_size: int = 50
    """Units per direction of the bidirectional LSTM encoder."""
    decoder_hidden: int = 100
    """Units of the Net2Deeper LSTM decoder (2 * hidden_size = the encoder's final state)."""
    pool_size: int | None = None
    """Networks in the pool episodes start from (0 = the stage start, as in EAS); none = the mode's (paper 0, pool 5)."""
    pool_select: str = "best"
    """How the pool is kept: best (the pool_size most accurate) or pareto (accuracy/params front, drawn by inverse density)."""
    no_repeat: bool | None = None
    """Resample a proposal whose architecture was already evaluated or planned this round; none = the mode's (paper off, pool on)."""
    resample_tries: int = 10
    """Resampling attempts per child before a repeat is allowed."""
    explore: bool | None = None
    """When resample_tries proposals of the controller all repeat, try as many uniformly drawn legal steps (as random search takes) before allowing a repeat; none = the mode's (paper off, pool on)."""
    ppo_epochs: int | None = None
    """Gradient passes per round (more than 1: PPO-style clipped ratio); none = the mode's (1)."""
    clip: float = 0.2
    """Clip range of the probability ratio when ppo_epochs > 1."""
    free: bool | None = None
    """Let the controller choose every step's kind (wider, deeper, skip: the env's free mode, search.free_steps steps) instead of search.schedule; none = the mode's (paper off, pool on)."""
    free_steps: int | None = None
    """Steps per episode in free mode (each child is its start plus this many transformations); none = the mode's (paper: search.free_steps, pool 1)."""
    wider_one: bool | None = None
    """A Net2Wider step widens one layer (a softmax over the layers) instead of each layer by its own coin (the paper); none = the mode's (paper off, pool on)."""
    screen: int | None = None
    """Candidate episodes planned per child, of which an accuracy predictor picks the one to train (1 = no predictor); none = the mode's (1)."""
    predictor_steps: int = 50
    """Full-batch Adam steps of the accuracy predictor per round (screen > 1)."""
    init: str | None = None
    """Warm start: load the controller's weights from an earlier run's checkpoint.pt (or its run folder)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.pool_select not in POOL_SELECTIONS:
            raise ValueError(f"pool_select must be one of {list(POOL_SELECTIONS)}, "
                             f"got {self.pool_select!r}")
        if self.free_steps is not None and int(self.free_steps) < 1:
            raise ValueError(f"free_steps must be >= 1, got {self.free_steps}")
        for name in ("pool_size", "resample_tries"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.init is not None:
            p = Path(self.init)
            if not (p.is_file() or (p / "checkpoint.pt").is_file()):
                raise ValueError(f"no checkpoint at {self.init} (give a run folder or "
                                 "its checkpoint.pt)")
        if self.screen is not None and int(self.screen) < 1:
            raise ValueError(f"screen must be >= 1, got {self.screen}")
        if self.ppo_epochs is not None and int(self.ppo_epochs) < 1:
            raise ValueError(f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.baseline_mode is not None and self.baseline_mode not in BASELINE_MODES:
            raise ValueError(
                f"baseline_mode must be one of {list(BASELINE_MODES)}, "
                f"got {self.baseline_mode!r}"
            )
        if self.lr is not None and not self.lr > 0:
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

    def resolved(self) -> ReinforceConfig:
        """A copy with every field left at None set to its mode's value (MODE_DEFAULTS)."""
        return replace(self, **{k: v for k, v in MODE_DEFAULTS[self.mode].items()
                                if getattr(self, k) is None})


def baseline_step(
    mode: str, baseline: float | None, rewards: Sequence[float] | np.ndarray, decay: float,
    parents: Sequence[float | None] | None = None,
) -> tuple[np.ndarray, float]:
    """Advantages of a round's rewards and the updated baseline.

    Args:
        mode: "ema" (subtract the previous baseline, then update it), "batch"
            (move the baseline ``decay`` of the way to the batch mean, then subtract)
            or "loo" (subtract the mean of the round's other rewards; the baseline is
            updated as in "ema") or "parent" (subtract ``parents[i]``, the reward of
            child i's start; "loo" where it is None; the baseline as in "ema").
        baseline: the baseline before this round, or None if there is none yet
            (then the batch mean is used as the previous baseline).
        rewards: the round's rewards.
        decay: the baseline decay (0.95 in EAS).
        parents: per child, the reward of its episode's start ("parent" only).

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
    if mode == "parent":
        loo, new = baseline_step("loo", baseline, r, decay)
        known = [None] * r.size if parents is None else list(parents)
        if len(known) != r.size:
            raise ValueError(f"parents has {len(known)} values for {r.size} rewards")
        adv = np.asarray([loo[i] if p is None else r[i] - float(p)
                          for i, p in enumerate(known)], dtype=np.float64)
        return adv, new
    if mode == "loo":
        if r.size < 2:
            return r - prev, decay * prev + (1.0 - decay) * mean
        others = (r.sum() - r) / (r.size - 1)
        return r - others, decay * prev + (1.0 - decay) * mean
    raise ValueError(f"baseline mode must be one of {list(BASELINE_MODES)}, got {mode!r}")
