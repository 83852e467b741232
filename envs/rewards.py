"""Reward functions of the environment: the EAS paper's, or one constrained by a cost.

A reward function is any callable ``reward(accuracy, failed, objectives) -> float``
where ``objectives`` is the last step's info (``params``, ``flops`` and, when the
evaluator measured it, ``latency_ms``). :class:`NetTransformEnv` takes
one as ``reward=``; the default is :class:`PaperReward`, so nothing changes for
the paper's agents.

:class:`ConstrainedReward` is MnasNet's soft or hard constraint (Tan et al.,
"MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019)::

    reward = base(acc) * (cost / target) ** w,   w = alpha if cost <= target else beta

with ``base`` the accuracy itself (as in MnasNet) or the paper's ``tan(acc * pi/2)``.
``alpha = beta = -0.07`` is MnasNet's soft constraint (a network twice as big
loses about 5 % of its reward); ``alpha = 0, beta = -1`` a hard one.

>>> round(paper_reward(0.5), 6), paper_reward(0.9, failed=True)
(1.0, 0.0)
>>> soft = ConstrainedReward(cost="params", target=1000, alpha=-0.07, beta=-0.07)
>>> round(soft(0.9, False, {"params": 2000}), 4)  # twice the target: ~5 % less
0.8574

:class:`ObjectivesConfig` is the ``[objectives]`` section of a search
configuration, and :func:`make_reward` turns it into a reward function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ACCURACY", "REWARDS", "REWARD_BASES", "ConstrainedReward", "ObjectivesConfig",
           "PaperReward", "cost_of", "make_reward", "paper_reward"]

REWARDS: tuple[str, ...] = ("paper", "constrained")
"""Names of the built-in reward functions (``objectives.reward``)."""
REWARD_BASES: tuple[str, ...] = ("accuracy", "tan")
"""What the constrained reward's cost factor multiplies: the accuracy, or tan(acc*pi/2)."""
_COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
MAX_ACCURACY = 0.999
"""Accuracies are clamped to this before ``tan(acc * pi/2)`` so the reward stays
finite: the largest reward is ``tan(0.999 * pi/2) ~= 636.6``."""


def paper_reward(accuracy: float, failed: bool = False) -> float:
    """The EAS reward ``tan(min(acc, 0.999) * pi/2)``; 0.0 (the lowest) for a failed child.

    The clamp keeps the reward finite (at most ~636.6) when a child reaches 100 %.
    """
    if failed or not math.isfinite(accuracy):
        return 0.0
    acc = min(max(float(accuracy), 0.0), MAX_ACCURACY)
    return float(math.tan(acc * math.pi / 2))


def cost_of(objectives: Mapping[str, Any], cost: str) -> float:
    """The value of ``cost`` in a step info / history record (a child's ``to_dict()``)."""
    value = objectives.get(cost)
    if value is None:
        hint = " (measure it: objectives.latency = true)" if cost == "latency_ms" else ""
        raise ValueError(f"the child has no {cost!r} objective{hint}")
    return float(value)


class PaperReward:
    """The EAS reward ``tan(min(acc, 0.999) * pi/2)`` (0.0 for a failed child)."""

    def __call__(self, accuracy: float, failed: bool = False,
                 objectives: Mapping[str, Any] | None = None) -> float:
        return paper_reward(accuracy, failed)

    def __repr__(self) -> str:
        return "PaperReward()"


class ConstrainedReward:
    """``base(acc) * (cost / target) ** w`` with ``w = alpha`` within the target, else ``beta``.

    ``cost`` is one of ``params``, ``flops``, ``latency_ms``; ``target`` > 0;
    ``base`` is ``"accuracy"`` (MnasNet) or ``"tan"`` (the paper's reward).
    A failed child gets 0.0.
    """

    def __init__(self, cost: str, target: float, *, alpha: float = -0.07, beta: float = -0.07,
                 base: str = "accuracy") -> None:
        if cost not in _COSTS:
            raise ValueError(f"unknown cost {cost!r}; allowed values: {', '.join(_COSTS)}")
        if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
            raise ValueError(f"the target of a constrained reward must be > 0, got {target!r}")
        if base not in REWARD_BASES:
            raise ValueError(f"unknown base {base!r}; allowed values: {', '.join(REWARD_BASES)}")
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not math.isfinite(v) or v > 0:
                raise ValueError(f"{name} must be a finite number <= 0, got {v}")
        self.cost, self.target = cost, float(target)
        self.alpha, self.beta, self.base = float(alpha), float(beta), base

    def factor(self, cost: float) -> float:
        """The multiplier ``(cost / target) ** w`` for a cost value."""
        ratio = max(float(cost), 1e-12) / self.target
        return float(ratio ** (self.alpha if ratio <= 1.0 else self.beta))

    def __call__(self, accuracy: float, failed: bool = False,
                 objectives: Mapping[str, Any] | None = None) -> float:
        if failed or not math.isfinite(accuracy):
            return 0.0
        acc = min(max(float(accuracy), 0.0), 1.0)
        base = acc if self.base == "accuracy" else paper_reward(acc)
        return base * self.factor(cost_of(objectives or {}, self.cost))

    def __repr__(self) -> str:
        return (f"ConstrainedReward(cost={self.cost!r}, target={self.target:g}, "
                f"alpha={self.alpha:g}, beta={self.beta:g}, base={self.base!r})")


def _field_error(field: str, message: str) -> ValueError:
    """A ``ValueError`` that names the field to blame (read by the config loader as ``.field``)."""
    err = ValueError(message)
    err.field = field  # type: ignore[attr-defined]
    return err


@dataclass
class ObjectivesConfig:
    """Which objectives a search records and what the environment rewards."""

    reward: str = "paper"
    """"paper": tan(acc*pi/2); "constrained": base(acc) * (cost/target)^w (MnasNet)."""
    cost: str = "params"
    """The constrained cost: params, flops or latency_ms (latency_ms needs latency = true)."""
    target: float | None = None
    """The cost budget of the constrained reward (required for reward = "constrained")."""
    alpha: float = -0.07
    """Exponent w when the cost is within the target (MnasNet soft: -0.07; hard: 0)."""
    beta: float = -0.07
    """Exponent w when the cost exceeds the target (MnasNet soft: -0.07; hard: -1)."""
    base: str = "accuracy"
    """What the cost factor multiplies: "accuracy" (MnasNet) or "tan" (the paper's reward)."""
    latency: bool = False
    """Measure every child's inference latency (median ms) on the search's device."""
    latency_batch_size: int = 1
    """Images per timed forward pass."""
    latency_repeats: int = 20
    """Timed forward passes per child (the median is recorded)."""
    latency_warmup: int = 3
    """Untimed forward passes before timing."""

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise _field_error("reward", f"unknown reward {self.reward!r}; allowed values: "
                               f"{', '.join(REWARDS)}")
        if self.cost not in _COSTS:
            raise _field_error("cost", f"unknown cost {self.cost!r}; allowed values: "
                               f"{', '.join(_COSTS)}")
        if self.base not in REWARD_BASES:  # checked whichever reward is chosen
            raise _field_error("base", f"unknown base {self.base!r}; allowed values: "
                               f"{', '.join(REWARD_BASES)}")
        if self.target is None and self.reward == "constrained":
            raise _field_error("target", "reward = 'constrained' needs a target (its cost "
                               "budget), which is not set")
        if self.target is not None and not (math.isfinite(self.target) and self.target > 0):
            raise _field_error("target", f"target must be a number > 0 (the cost budget of the "
                               f"constrained reward), got {self.target}")  # even unused
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v <= 0):
                raise _field_error(name, f"{name} must be a finite number <= 0, got {v}")
        if self.reward == "constrained" and self.cost == "latency_ms" and not self.latency:
            raise _field_error("latency", "cost = 'latency_ms' needs latency = true")
        for name, low in (("latency_batch_size", 1), ("latency_repeats", 1),
                          ("latency_warmup", 0)):
            if getattr(self, name) < low:
                raise _field_error(name, f"{name} must be >= {low}, got {getattr(self, name)}")


def make_reward(cfg: ObjectivesConfig) -> PaperReward | ConstrainedReward:
    """The reward function an :class:`ObjectivesConfig` describes."""
    if cfg.reward == "paper":
        return PaperReward()
    return ConstrainedReward(cfg.cost, float(cfg.target), alpha=cfg.alpha,  # type: ignore[arg-type]
                             beta=cfg.beta, base=cfg.base)
