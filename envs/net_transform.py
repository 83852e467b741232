"""The network-transformation environment (skeleton; full behaviour follows)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from eas.arch import Architecture, SearchSpace, Tokenizer
from eas.network import ChildNet, build_network
from envs.cache import EvalCache, fingerprint
from envs.evaluators import EvalResult

__all__ = ["FASHION_START", "KINDS", "InvalidActionError", "NetTransformEnv", "reward_of"]

KINDS: tuple[str, ...] = ("wider", "deeper", "skip")
"""Transformation kinds, in the index order of the ``kind`` action and ``kind_mask``."""

FASHION_START = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(3,3,AVG), FC(256), SM(10)"
)
"""The EAS Table-1 start network adapted to 28x28 inputs (Fashion-MNIST)."""

DEFAULT_SCHEDULE: tuple[str, ...] = ("wider",) * 4 + ("deeper",) * 5
"""The EAS schedule: 4 Net2Wider steps, then 5 Net2Deeper steps."""

MAX_ACCURACY = 0.999
"""Accuracies are clamped to this before tan(acc*pi/2), so the reward stays finite."""

_CHARSET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789(), ")


class InvalidActionError(ValueError):
    """An action the current masks rule out; the environment state is left unchanged."""


def reward_of(accuracy: float, failed: bool = False) -> float:
    """The EAS reward tan(min(acc, 0.999) * pi/2); 0.0 for a failed child."""
    if failed or not math.isfinite(accuracy):
        return 0.0
    acc = min(max(float(accuracy), 0.0), MAX_ACCURACY)
    return float(math.tan(acc * math.pi / 2))


class NetTransformEnv(gym.Env):
    """Placeholder docstring; see the full implementation."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        start: str | Architecture | ChildNet = FASHION_START,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        evaluator: Callable[[ChildNet], float | EvalResult] | None = None,
        space: SearchSpace | None = None,
        schedule: Sequence[str] | None = DEFAULT_SCHEDULE,
        free_steps: int = 5,
        max_layers: int = 50,
        noise: bool = True,
        cache: EvalCache | bool = True,
        *,
        defer_evaluation: bool = False,
    ) -> None:
        self.space = space or SearchSpace()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.max_layers = int(max_layers)
        self.schedule = None if schedule is None else tuple(schedule)
        self.free_steps = int(free_steps)
        self.steps = len(self.schedule) if self.schedule is not None else self.free_steps
        self.noise = bool(noise)
        self.evaluator = evaluator
        self.defer_evaluation = defer_evaluation
        if cache is True:
            cache = EvalCache()
        self.cache: EvalCache | None = cache or None
        if isinstance(start, ChildNet):
            self.start = start
        else:
            self.start = build_network(start, self.input_shape, seed=0)
        self.tokenizer = Tokenizer(self.space)
        L, K = self.max_layers, len(self.space.kernel_sizes)
        self.observation_space = spaces.Dict({
            "arch": spaces.Text(32 * (L + 1) + 20 * L * (L - 1) // 2, charset=_CHARSET),
            "tokens": spaces.Box(0, self.tokenizer.vocab_size - 1, (L,), np.int64),
            "length": spaces.Discrete(L + 1),
            "step": spaces.Discrete(self.steps + 1),
            "kind_mask": spaces.MultiBinary(len(KINDS)),
            "wider_mask": spaces.MultiBinary(L),
            "deeper_mask": spaces.MultiBinary((L, L + 1)),
            "deeper_is_fc": spaces.MultiBinary((L, L + 1)),
            "kernel_mask": spaces.MultiBinary(K),
            "skip_mask": spaces.MultiBinary((L, L, 2)),
        })
        self.action_space = spaces.Dict({
            "kind": spaces.Discrete(len(KINDS)),
            "wider": spaces.MultiBinary(L),
            "deeper": spaces.MultiDiscrete([L, L + 1, K]),
            "skip": spaces.MultiDiscrete([L, L, 2]),
        })
        self._fingerprint = fingerprint
