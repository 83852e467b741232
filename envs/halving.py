"""Successive halving: train a round's children cheaply, give the full budget to the best.

EAS trains every child the same amount. Successive halving (Jamieson & Talwalkar;
the inner loop of Hyperband; used on top of NASH hill climbing in the Freiburg
"NAS with network morphisms and successive halving" slides) spends most of the
budget on the promising children instead. :class:`HalvingEvaluator` wraps any
evaluator and, for the children of one round (one ``evaluate_many`` call):

1. trains all ``n`` children at the first rung's budget ``rungs[0]``;
2. keeps the best ``max(1, floor(n / eta))`` of them (by validation accuracy;
   ties go to the earlier child, failed children are never promoted) and trains
   them further, **from the weights trained so far**, up to ``rungs[1]``;
3. repeats until the survivors have reached the last rung, the full budget.

Rungs are *cumulative* budgets in the base evaluator's unit: for
:class:`~eas.envs.evaluators.TrainerEvaluator` (and a
:class:`~eas.envs.parallel.ParallelEvaluator` around it) a budget is child-training
epochs, each of ``child.max_batches_per_epoch`` batches when that is set. A child
promoted from rung ``k-1`` to rung ``k`` is trained ``rungs[k] - rungs[k-1]`` more
epochs starting from its rung-``k-1`` weights, with a fresh learning-rate schedule
over those epochs (a warm restart, as in SGDR), so a child that reached the last
rung has seen the same number of batches as one trained ``rungs[-1]`` epochs in one
go, but not the same schedule. When the base evaluator keeps no weights
(``EvalResult.state_dict`` is None, e.g. a synthetic score), a promoted child is
evaluated again from its untrained weights at the rung's whole budget.

With ``rungs = (1, 3, 9)`` and ``eta = 3``, 10 children cost 10*1 + 3*2 + 1*6 = 22
epochs instead of 10*9 = 90.

What every child's :class:`~eas.envs.record.EvalResult` carries
-------------------------------------------------------------------
``accuracy`` is the validation accuracy at the highest rung the child reached
and ``train_time`` the sum over its rungs. It also sets:

* ``fidelity``: the budget it reached (``rungs[rung]``);
* ``rung``: the index of that rung (0 = eliminated first);
* ``rung_accuracies``: its accuracy at each rung it was trained at;
* ``reward``: the **rank reward**, a number in [0, 1] comparable across fidelities
  (see below). :class:`~eas.envs.net_transform.NetTransformEnv` uses a
  result's ``reward`` as the child's reward instead of ``tan(acc * pi / 2)``.

The reward: ranks, not accuracies
---------------------------------
Accuracies after one epoch and after nine are not comparable: a child stopped
at rung 0 would look bad because it was trained less, not because it is worse.
Successive halving itself already defines a comparable order of the round's
children: a child that reached a higher rung beat every child eliminated
before it, and children stopped at the same rung are ordered by their accuracy
there. The rank reward is that order mapped to [0, 1]: with ``n`` children and
0-based rank ``i`` (0 = best; ties in (rung, accuracy) share their mean rank,
failed children come last), ``reward = 1 - i / (n - 1)`` (0.5 for a lone child).
REINFORCE subtracts its baseline from it as from any reward; the baseline of
rank rewards settles at 0.5, so the controller is pushed towards children that
win their round's tournament. What is lost is the magnitude: a child far ahead
of the second gets the same reward as one barely ahead. That is the price of
not mixing fidelities; the accuracies themselves are still logged and kept.

Duplicates and the cache: the environment's evaluation cache answers repeated
architectures before the evaluator is called, so the tournament runs among the
round's distinct, not yet evaluated children; a cached child keeps the reward and
fidelity of the round that trained it.

Around a :class:`ParallelEvaluator`, each rung increment gets its own copy of it
(:func:`at_budget`), so the ``process`` back-end keeps one pool of workers per
distinct increment (e.g. three pools for rungs 1, 3, 9), each started on first
use and stopped by :meth:`HalvingEvaluator.close`.

Order of wrappers: the search wraps ``Journal(HalvingEvaluator(base))``. The
journal then stores a round's results once the whole tournament is decided, so
a search killed in the middle of a round trains that round's tournament again
on ``--resume`` (a completed round is answered from the journal without
training; the results, fidelities and rewards are the same).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from eas.envs.evaluators import evaluate_batch
from eas.envs.parallel import ParallelEvaluator
from eas.envs.record import EvalResult, as_result
from eas.envs.settings import HalvingConfig
from eas.recipe import TrainConfig

__all__ = ["HalvingEvaluator", "at_budget", "rank_rewards", "survivors"]


def survivors(n: int, eta: float) -> int:
    """How many of ``n`` children go on to the next rung: ``max(1, floor(n / eta))``."""
    return max(1, int(math.floor(n / eta))) if n > 0 else 0


def at_budget(evaluator: Any, budget: int) -> Any:
    """A copy of ``evaluator`` that trains a child for ``budget`` units (epochs).

    Uses ``evaluator.at_budget(budget)`` when the evaluator has that method; a
    :class:`ParallelEvaluator` becomes an equal one around its budgeted base; an
    evaluator with a :class:`~eas.recipe.TrainConfig` in ``config`` (e.g.
    :class:`~eas.envs.evaluators.TrainerEvaluator`) gets ``config.epochs = budget``.
    Raises TypeError for an evaluator without a notion of budget.
    """
    method = getattr(evaluator, "at_budget", None)
    if callable(method):
        return method(budget)
    if isinstance(evaluator, ParallelEvaluator):
        moved = copy.copy(evaluator)
        moved.base = at_budget(evaluator.base, budget)
        moved._pool = None  # noqa: SLF001 - a new pool for the new base
        moved._payload = None  # noqa: SLF001
        return moved
    config = getattr(evaluator, "config", None)
    if isinstance(config, TrainConfig):
        moved = copy.copy(evaluator)
        moved.config = dataclasses.replace(config, epochs=int(budget))
        return moved
    raise TypeError(
        f"successive halving cannot set a training budget on {type(evaluator).__name__}: "
        "give it an at_budget(budget) method or a TrainConfig in .config"
    )


def rank_rewards(rungs: Sequence[int], accuracies: Sequence[float],
                 failed: Sequence[bool]) -> list[float]:
    """The rank reward of each child (see the module docstring), in [0, 1].

    Children are ordered by (rung reached, accuracy there), highest first, failed
    children last; ties share their mean rank. ``reward = 1 - rank / (n - 1)``,
    0.5 for a single child.
    """
    n = len(accuracies)
    if n == 0:
        return []
    if n == 1:
        return [0.5]
    keys = [(-1, -1.0) if bad else (int(r), float(a))
            for r, a, bad in zip(rungs, accuracies, failed)]
    order = sorted(range(n), key=lambda i: keys[i], reverse=True)
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and keys[order[end + 1]] == keys[order[start]]:
            end += 1
        mean_rank = (start + end) / 2.0
        for j in range(start, end + 1):
            ranks[order[j]] = mean_rank
        start = end + 1
    return [1.0 - r / (n - 1) for r in ranks]


class HalvingEvaluator:
    """Evaluator wrapper running successive halving over each ``evaluate_many`` batch.

    Args:
        base: the evaluator that trains one child at a budget; :func:`at_budget`
            derives one evaluator per rung increment from it (created on first use
            and kept, so a :class:`ParallelEvaluator` keeps its worker pools).
        rungs: cumulative budgets, strictly increasing (at least one).
        eta: reduction factor (> 1).
    """

    def __init__(self, base: Callable[[nn.Module], Any], rungs: Sequence[int],
                 eta: float = 3.0) -> None:
        cfg = HalvingConfig(rungs=tuple(rungs), eta=float(eta))
        if not cfg.rungs:
            raise ValueError("successive halving needs at least one rung")
        self.base = base
        self.rungs = cfg.rungs
        self.eta = cfg.eta
        self.seed = getattr(base, "seed", 0)
        self._budgeted: dict[int, Any] = {}

    def _evaluator(self, budget: int) -> Any:
        if budget not in self._budgeted:
            self._budgeted[budget] = at_budget(self.base, budget)
        return self._budgeted[budget]

    def budgets(self, n: int) -> list[int]:
        """Children trained at each rung for a round of ``n`` children (e.g. 10 -> [10, 3, 1])."""
        out, alive = [], n
        for _ in self.rungs:
            out.append(alive)
            alive = survivors(alive, self.eta)
        return out

    def __call__(self, net: nn.Module) -> EvalResult:
        """Evaluate one child (a tournament of one: it gets the full budget)."""
        return self.evaluate_many([net])[0]

    def evaluate_many(self, nets: Sequence[nn.Module]) -> list[EvalResult]:
        """Run the tournament over ``nets``; results in input order (see the module docstring)."""
        nets = list(nets)
        n = len(nets)
        if n == 0:
            return []
        results: list[EvalResult | None] = [None] * n
        reached = [0] * n
        history: list[list[float]] = [[] for _ in range(n)]
        times = [0.0] * n
        retried: list[list[str]] = [[] for _ in range(n)]  # failed tries over all rungs
        alive = list(range(n))
        for k, budget in enumerate(self.rungs):
            if k > 0:
                ok = [i for i in alive if not results[i].failed]  # type: ignore[union-attr]
                ranked = sorted(ok, key=lambda i: (-results[i].accuracy, i))  # type: ignore[union-attr]
                alive = sorted(ranked[: survivors(len(alive), self.eta)])
                if not alive:
                    break
            prev = [results[i] for i in alive]
            resume = k > 0 and all(r is not None and r.state_dict is not None for r in prev)
            if resume:  # continue from the weights of the previous rung
                step = budget - self.rungs[k - 1]
                batch = []
                for r, i in zip(prev, alive):
                    child = copy.deepcopy(nets[i])
                    child.load_state_dict(r.state_dict)  # type: ignore[union-attr]
                    batch.append(child)
            else:  # first rung, or no weights to continue from: the rung's whole budget
                step, batch = budget, [nets[i] for i in alive]
            fresh = [as_result(r) for r in evaluate_batch(self._evaluator(step), batch)]
            for i, res in zip(alive, fresh):
                results[i] = res
                reached[i] = k
                history[i].append(0.0 if res.failed else float(res.accuracy))
                times[i] += float(res.train_time)
                retried[i] += res.retried
        final: list[EvalResult] = [r for r in results if r is not None]
        rewards = rank_rewards(reached, [r.accuracy for r in final], [r.failed for r in final])
        for i, res in enumerate(final):
            res.train_time = times[i]
            res.retried, res.attempts = retried[i], max(res.attempts, 1 + len(retried[i]))
            res.fidelity, res.rung = self.rungs[reached[i]], reached[i]
            res.rung_accuracies, res.reward = history[i], rewards[i]
        return final

    def close(self) -> None:
        """Stop the worker pools of the per-rung evaluators (if any)."""
        for ev in self._budgeted.values():
            closer = getattr(ev, "close", None)
            if callable(closer) and ev is not self.base:
                closer()
        self._budgeted.clear()

    def __repr__(self) -> str:
        return f"HalvingEvaluator({self.base!r}, rungs={list(self.rungs)}, eta={self.eta})"
