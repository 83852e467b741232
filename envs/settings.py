"""The environment's settings that the configuration schema holds: the episode schedule,
the evaluation back-ends and successive halving's rungs.

Light on purpose (no torch): :mod:`eas.config.sections` reads them without loading
the environment; :mod:`eas.envs.net_transform`, :mod:`eas.envs.parallel` and
:mod:`eas.envs.halving` use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BACKENDS", "DEFAULT_SCHEDULE", "HalvingConfig"]

DEFAULT_SCHEDULE: tuple[str, ...] = ("wider",) * 4 + ("deeper",) * 5
"""The EAS schedule: 4 Net2Wider steps, then 5 Net2Deeper steps."""

BACKENDS: tuple[str, ...] = ("auto", "serial", "process", "ray")
"""Accepted values of ``ParallelEvaluator(backend=...)`` (and of the ``search.backend`` config field)."""


@dataclass
class HalvingConfig:
    """Successive halving of each round's children (off unless ``rungs`` is set)."""

    rungs: tuple[int, ...] = ()
    """Cumulative child-training budgets in child epochs (they replace child.epochs), increasing, e.g. [1, 3, 9]; empty = off."""
    eta: float = 3.0
    """Reduction factor: the best max(1, floor(n / eta)) children of a rung go on to the next."""

    def __post_init__(self) -> None:
        rungs = tuple(self.rungs)
        if any(isinstance(r, bool) or int(r) != r or r < 1 for r in rungs):
            raise ValueError(f"rungs must be whole numbers >= 1, got {list(rungs)}")
        if len(rungs) == 1:
            raise ValueError(f"rungs must be empty (off) or hold at least two budgets, got {list(rungs)}")
        if any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ValueError(f"rungs must be strictly increasing, got {list(rungs)}")
        if not (math.isfinite(self.eta) and self.eta > 1):
            raise ValueError(f"eta must be > 1, got {self.eta}")
        self.rungs = tuple(int(r) for r in rungs)

    @property
    def enabled(self) -> bool:
        """Whether successive halving is on (rungs given)."""
        return bool(self.rungs)
