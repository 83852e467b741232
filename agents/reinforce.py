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

``advantage_norm`` divides the round's advantages by the
standard deviation of its rewards, so a round whose children differ by 0.1 %
pushes the controller as hard as one where they differ by 5 %.

**Modes** (``Config.mode``). ``"paper"`` is the EAS controller: every episode
starts from the stage's start network, the configured schedule, one update per
round, EMA baseline, lr 2e-3 (the default). ``"pool"`` compounds:

* every child's episode starts from a network drawn from a
  :class:`~agents.controller_pool.NetworkPool` of the best networks found so
  far, with their weights (``pool_size``, ``pool_select``);
* whole episodes are planned first in private copies of the environment
  (:class:`~agents.controller_pool.EpisodePlanner`); a proposal whose
  architecture was already evaluated, or already planned in the round, is
  resampled (``resample_tries`` times, then allowed: ``no_repeat``);
* learning: leave-one-out baseline, advantages normalised, lr 1e-2, and
  ``ppo_epochs`` passes per round with a clipped probability ratio (the first
  pass is the REINFORCE gradient);
* ``free = true`` lets the controller choose each step's kind (wider, deeper,
  skip) itself, the action set of hill climbing (the env's free mode).

Fields left at None take their mode's value (:data:`MODE_DEFAULTS`); any field
set explicitly wins. ``init`` warm-starts the controller's weights from an
earlier run's ``checkpoint.pt`` (or its run folder).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from eas.agents.base import Agent, AgentContext
from eas.agents.controller import Controller
from eas.agents.controller_pool import POOL_SELECTIONS, Episode, EpisodePlanner, NetworkPool
from eas.agents.predictor import AccuracyPredictor
from eas.arch import SearchSpace
from eas.checkpoint import load_checkpoint
from eas.envs.evaluators import EvalResult

__all__ = ["BASELINE_MODES", "MODES", "MODE_DEFAULTS", "ReinforceAgent", "ReinforceConfig",
           "baseline_step", "controller_weights"]

BASELINE_MODES: tuple[str, ...] = ("ema", "batch", "loo")
MODES: tuple[str, ...] = ("paper", "pool")
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"lr": 2e-3, "baseline_mode": "ema", "advantage_norm": False, "pool_size": 0,
              "no_repeat": False, "ppo_epochs": 1, "free": False, "screen": 1},
    "pool": {"lr": 1e-2, "baseline_mode": "loo", "advantage_norm": True, "pool_size": 5,
             "no_repeat": True, "ppo_epochs": 1, "free": False, "screen": 1},
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
    """ema (the paper: moving average of previous rewards), batch (the EAS code) or loo (leave-one-out); none = the mode's (paper ema, pool loo)."""
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
    ppo_epochs: int | None = None
    """Gradient passes per round (more than 1: PPO-style clipped ratio); none = the mode's (1)."""
    clip: float = 0.2
    """Clip range of the probability ratio when ppo_epochs > 1."""
    free: bool | None = None
    """Let the controller choose every step's kind (wider, deeper, skip: the env's free mode, search.free_steps steps) instead of search.schedule; none = the mode's (off)."""
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


def controller_weights(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The controller weights in a run's ``checkpoint.pt`` (or run folder) and the file's path.

    Read weights-only (:func:`eas.checkpoint.load_checkpoint`); ``ValueError`` (one line
    naming the file) when there is no checkpoint, it cannot be read, it holds objects eas
    does not load, or it holds no controller weights.
    """
    p = Path(path).expanduser()
    p = p / "checkpoint.pt" if p.is_dir() else p
    if not p.is_file():
        raise ValueError(f"no checkpoint at {p}")
    state = load_checkpoint(p)
    agent = state.get("agent", state)
    weights = agent.get("controller") if isinstance(agent, dict) else None
    if not isinstance(weights, Mapping):
        raise ValueError(f"{p} holds no controller weights (not a reinforce run)")
    return dict(weights), p


class ReinforceAgent(Agent):
    """The EAS meta-controller: BiLSTM encoder + Net2Wider/Net2Deeper actors, REINFORCE.

    All sampling uses ``self.generator`` (a ``torch.Generator`` seeded from
    ``ctx.seed``); the controller's weights are initialised from the same seed
    without touching torch's global RNG.
    """

    name: ClassVar[str] = "reinforce"
    Config: ClassVar[type] = ReinforceConfig

    def __init__(self, ctx: AgentContext, config: ReinforceConfig | None = None) -> None:
        super().__init__(ctx, (config if config is not None else ReinforceConfig()).resolved())
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
        """Free mode when ``config.free`` (the controller then picks each step's kind)."""
        config = (config if config is not None else cls.Config()).resolved()
        return {"schedule": None} if config.free else {}

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
        if all(m["net"] is None for m in picks):
            return None
        return [m["net"] for m in picks]

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
            self._memory = [(
                {k: (np.stack([np.asarray(p.obs[j][k]) for p in self._plans[:batch]]))
                 for k in _NDIM},
                {k: np.stack([p.actions[j][k] for p in self._plans[:batch]])
                 for k in self._plans[0].actions[j]})
                for j in range(len(self._plans[0].actions))]
        return out

    def _plan(self, start_archs: list[str]) -> list[Episode]:
        """Plan one episode per child; repeats resampled (``no_repeat``)."""
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
        for attempt in range(int(cfg.resample_tries) + 1):
            missing = []
            for i in range(n):
                if chosen[i] is not None:
                    continue
                ok = [e for e in cands[i] if not cfg.no_repeat
                      or (e.arch not in self.seen and e.arch not in taken)]
                if ok:
                    chosen[i] = ok[int(np.argmax(self._score(ok)))] if len(ok) > 1 else ok[0]
                    taken.add(chosen[i].arch)  # type: ignore[union-attr]
                elif attempt == int(cfg.resample_tries):  # give up: allow the repeat
                    chosen[i] = cands[i][0]
                    self._repeats += 1
                else:
                    missing.append(i)
            if not missing:
                break
            self._resampled += len(missing)
            again = self._planner.rollout([starts[i] for i in missing], self._sample)
            for i, e in zip(missing, again):
                cands[i] = [e]
        plans = [e for e in chosen if e is not None]
        return plans
        for attempt in range(int(cfg.resample_tries) + 1):
            taken: set[str] = set()
            bad = []
            for i, plan in enumerate(plans):
                if plan.arch in self.seen or plan.arch in taken:
                    bad.append(i)
                else:
                    taken.add(plan.arch)
            if not bad or attempt == int(cfg.resample_tries):
                self._repeats += len(bad)
                break
            self._resampled += len(bad)
            for i, plan in zip(bad, self._planner.rollout([starts[i] for i in bad],
                                                          self._sample)):
                plans[i] = plan
        return plans

    # --------------------------------------------------------------- learning
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """One REINFORCE step on the finished round; clears the episode memory."""
        cfg: ReinforceConfig = self.config
        rewards = np.array(
            [0.0 if r.failed else float(r.reward) for r in results], dtype=np.float64
        )
        rewards = np.where(np.isfinite(rewards), rewards, 0.0)
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
            cfg.baseline_mode, prev_baseline, rewards, float(cfg.baseline_decay)
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
                self.pool.add(r.arch, float(r.accuracy), int(r.params), r.net)
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
            for k in _NDIM
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
