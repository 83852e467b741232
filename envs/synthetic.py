"""A cheap stand-in evaluator: a closed-form score of the architecture, no training.

:class:`SyntheticEvaluator` scores a child with :func:`synthetic_accuracy` in
microseconds, so searches, agent comparisons and benchmarks of the search
machinery run in seconds. It is a test and benchmark harness, not a proxy for
real accuracy. ``python -m eas.compare --evaluator cheap`` uses it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eas.arch import Architecture
from eas.envs.record import EvalResult
from eas.layers import FC, Conv, Dense
from eas.network import ChildNet, build_network, count_parameters
from eas.shapes import count_flops

__all__ = [
    "SYNTHETIC_TASKS",
    "SyntheticEvaluator",
    "SyntheticTask",
    "SyntheticTaskEvaluator",
    "synthetic_accuracy",
]


def synthetic_accuracy(arch: str | Architecture | ChildNet,
                       input_shape: tuple[int, int, int] = (1, 28, 28),
                       params: int | None = None) -> float:
    """A deterministic stand-in for validation accuracy, computed from the architecture.

    With ``F`` the multiply-accumulates of one forward pass, ``D`` the number of
    conv/dense layers, ``S`` the number of skip connections, ``P`` the parameters
    and ``u`` in [-1, 1] a hash of the architecture string::

        acc = 0.70
            + 0.18 * (1 - exp(-(log10 F - 5.5)))      # compute, diminishing returns
            + 0.06 * (1 - exp(-(D - 2) / 3))          # depth, diminishing returns
            + 0.004 * min(S, 4)                       # a few skips help a little
            - 0.03 * max(0, log10 P - 6.5)            # over-parameterisation
            + 0.006 * u                               # deterministic "training noise"

    clipped to [0, 0.999]. The Fashion-MNIST start network scores about 0.84.
    """
    if isinstance(arch, ChildNet):
        net: ChildNet | None = arch
        input_shape = tuple(arch.input_shape)  # type: ignore[assignment]
        a = arch.arch
    else:
        net = None
        a = Architecture.parse(arch)
    if params is None:
        params = count_parameters(net if net is not None else build_network(a, input_shape))
    flops = max(count_flops(a, input_shape), 1)
    depth = sum(isinstance(layer, (Conv, Dense)) for layer in a.layers)
    skips = len(a.skips)
    digest = hashlib.sha256(str(a).encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64 * 2.0 - 1.0
    acc = (0.70
           + 0.18 * (1.0 - math.exp(-(math.log10(flops) - 5.5)))
           + 0.06 * (1.0 - math.exp(-(depth - 2) / 3.0))
           + 0.004 * min(skips, 4)
           - 0.03 * max(0.0, math.log10(max(params, 1)) - 6.5)
           + 0.006 * u)
    return float(min(max(acc, 0.0), 0.999))


class SyntheticEvaluator:
    """Evaluator returning :func:`synthetic_accuracy` (no training, no weights kept)."""

    def __call__(self, net: ChildNet) -> Any:
        """Score one child network."""
        t0 = time.perf_counter()
        acc = synthetic_accuracy(net)
        return EvalResult(accuracy=acc, train_time=time.perf_counter() - t0)


# ----------------------------------------------------------------- development tasks
@dataclass(frozen=True)
class SyntheticTask:
    """A closed-form score with a known optimum several episodes away from the start.

    The score of an architecture is ``optimum`` minus a distance to ``target``,
    computed block by block (``Architecture.blocks``: the conv blocks between
    poolings, then the FC block): per block, ``depth_cost`` for every layer too
    many or too few; per layer present in both (matched by position in its
    block), ``width_cost`` for every level of the search space's width list
    between its width and the target's, and ``kernel_cost`` when a conv's kernel
    differs; ``skip_cost`` per skip connection more or fewer than the target's.
    The target is the only architecture that scores ``optimum`` (up to skip
    placement). The default preset's start network
    (``C(16,3,1), P, C(16,3,1), P, C(32,3,1), P, C(32,3,1), P(3,3,AVG), FC(64)``)
    scores well below it, and every target needs several transformations per
    block, so it lies ``episodes`` episodes of the preset's schedule (2 wider + 3
    deeper) away: an agent reaches it only by starting episodes from networks it
    has already found.
    """

    name: str
    target: str
    """The optimal architecture (the classifier included)."""
    episodes: int
    """Fewest episodes of 5 transformations (the preset's schedule) from the preset's start."""
    optimum: float = 0.95
    depth_cost: float = 0.012
    width_cost: float = 0.008
    kernel_cost: float = 0.004
    skip_cost: float = 0.010
    filters: tuple[int, ...] = (16, 24, 32, 48)
    fc_units: tuple[int, ...] = (64, 128, 256)

    def score(self, arch: str | Architecture | ChildNet) -> float:
        """The task's accuracy of ``arch`` (deterministic, in [0, optimum])."""
        a = arch.arch if isinstance(arch, ChildNet) else Architecture.parse(arch)
        t = Architecture.parse(self.target)
        mine, want = _block_layers(a), _block_layers(t)
        penalty = self.depth_cost * abs(len(mine) - len(want))
        for i in range(max(len(mine), len(want))):
            got = mine[i] if i < len(mine) else []
            tgt = want[i] if i < len(want) else []
            penalty += self.depth_cost * abs(len(got) - len(tgt))
            for layer, goal in zip(got, tgt):
                penalty += self._layer_cost(layer, goal)
        penalty += self.skip_cost * abs(len(a.skips) - len(t.skips))
        return float(max(self.optimum - penalty, 0.0))

    def _layer_cost(self, layer: Any, goal: Any) -> float:
        if type(layer) is not type(goal):
            return self.depth_cost
        if isinstance(layer, Conv):
            cost = self.width_cost * abs(_level(layer.filters, self.filters)
                                         - _level(goal.filters, self.filters))
            return cost + self.kernel_cost * (layer.kernel != goal.kernel)
        if isinstance(layer, FC):
            return self.width_cost * abs(_level(layer.units, self.fc_units)
                                         - _level(goal.units, self.fc_units))
        return 0.0

    def reached(self, accuracy: float) -> bool:
        """Whether ``accuracy`` is the task's optimum."""
        return accuracy >= self.optimum - 1e-9


def _level(width: int, levels: tuple[int, ...]) -> float:
    """Position of ``width`` in ``levels`` (interpolated between, extrapolated beyond)."""
    if width in levels:
        return float(levels.index(width))
    if width > levels[-1]:
        return len(levels) - 1 + (width - levels[-1]) / max(levels[-1] - levels[-2], 1)
    below = [i for i, v in enumerate(levels) if v < width]
    if not below:
        return -1.0
    i = below[-1]
    return i + (width - levels[i]) / (levels[i + 1] - levels[i])


def _block_layers(a: Architecture) -> list[list[Any]]:
    """The layers of each block (conv blocks, then the FC block), skips ignored."""
    return [[a.layers[i] for i in block] for block in a.blocks()]


def _plain_target(blocks: Sequence[tuple[int, int]], fc: Sequence[int]) -> str:
    """A plain target network: per block ``(filters, count)`` 3x3 convolutions, max-pooled
    between blocks and average-pooled after the last, then FC layers of ``fc`` units."""
    convs = [", ".join([f"C({filters},3,1)"] * count) for filters, count in blocks]
    return ", ".join([", P(2,2,MAX), ".join(convs), "P(3,3,AVG)",
                      *(f"FC({units})" for units in fc), "SM(10)"])


SYNTHETIC_TASKS: dict[str, SyntheticTask] = {
    task.name: task for task in (
        SyntheticTask("deep", _plain_target([(16, 3), (24, 2), (48, 3), (48, 2)], [64]),
                      episodes=2),
        SyntheticTask("wide", _plain_target([(24, 2), (32, 2), (48, 3), (48, 2)], [256, 256]),
                      episodes=2),
        SyntheticTask("deeper", _plain_target([(16, 4), (24, 3), (32, 3), (48, 3)], [64]),
                      episodes=3),
        SyntheticTask(
            "skips",
            "C(24,3,1), C(24,3,1), S(0,1,ADD), P(2,2,MAX), C(32,3,1), C(32,3,1), P(2,2,MAX), "
            "C(48,3,1), C(48,3,1), S(6,7,ADD), P(2,2,MAX), C(48,3,1), C(48,3,1), P(3,3,AVG), "
            "FC(64), SM(10)",
            episodes=3),
    )
}
"""The development tasks by name: ``deep``, ``wide`` (2 episodes away), ``deeper`` (3) and
``skips`` (needs skip connections: free mode only; 3 episodes of 5 free steps)."""


class SyntheticTaskEvaluator:
    """Evaluator returning a :class:`SyntheticTask`'s score (no training, no weights kept)."""

    def __init__(self, task: SyntheticTask | str) -> None:
        self.task = SYNTHETIC_TASKS[task] if isinstance(task, str) else task

    def __call__(self, net: ChildNet) -> Any:
        """Score one child network."""
        t0 = time.perf_counter()
        acc = self.task.score(net)
        return EvalResult(accuracy=acc, train_time=time.perf_counter() - t0)
