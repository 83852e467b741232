"""The agent interface every search strategy implements.

A search runs in rounds. In each round the search loop

1. asks the agent how many children the round has
   (:meth:`Agent.children_this_round`) and where they start
   (:meth:`Agent.start_network`; ``None`` means the stage's start network),
2. resets a batch of ``NetTransformEnv`` copies (one per child) from that start,
3. calls :meth:`Agent.propose` with the batched observation until every
   episode ends (the environment trains and evaluates each child on its last
   step),
4. hands the finished children (their records, :class:`~eas.envs.record.EvalResult`)
   to :meth:`Agent.learn`,

and ends a stage early when :attr:`Agent.finished` says so.

Every hook the search loop calls is declared here with a default, so a new
agent only writes :meth:`~Agent.propose` and :meth:`~Agent.learn`:

* before the agent exists: :meth:`Agent.env_requirements` (environment
  settings the strategy needs, e.g. free mode);
* once built: :meth:`Agent.set_start_accuracy`,
  :meth:`Agent.child_train_overrides`, :meth:`Agent.final_train_overrides`;
* every round: :meth:`Agent.children_this_round`, :meth:`Agent.start_network`,
  :meth:`Agent.propose`, :meth:`Agent.learn`, :attr:`Agent.finished`;
* checkpoints: :meth:`Agent.state_dict` / :meth:`Agent.load_state_dict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from eas.envs.record import EvalResult

__all__ = ["Agent", "AgentContext", "NoConfig"]


@dataclass(frozen=True)
class AgentContext:
    """What an agent knows about the environment it will drive."""

    max_layers: int
    """Length of the padded token sequence and of per-layer masks/actions."""
    vocab_size: int
    """Number of distinct architecture token ids (padding included)."""
    kernel_sizes: tuple[int, ...]
    """Kernel sizes a Net2Deeper action may choose (index into this tuple)."""
    kinds: tuple[str, ...]
    """Names of the action kinds, in the order of the ``kind`` action (e.g. wider, deeper, skip)."""
    schedule: tuple[str, ...] | None
    """The fixed order of kinds per episode, or None in free mode (the agent picks)."""
    steps_per_episode: int
    """Transformations per child."""
    children_per_round: int
    """Children sampled per round (per controller step)."""
    seed: int = 0
    """Seed the agent should derive all its randomness from."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the environment wants to tell agents (input shape, densenet, ...)."""


@dataclass
class NoConfig:
    """An agent without hyperparameters."""


class Agent(ABC):
    """Base class of search strategies (RL controller, random search, hill climbing, ...).

    Subclasses set ``name`` and ``Config`` (a dataclass of hyperparameters with
    defaults, one documented field each); they are built as
    ``cls(ctx, cls.Config(**overrides))``.
    """

    name: ClassVar[str] = "agent"
    Config: ClassVar[type] = NoConfig
    shrink_actions: ClassVar[bool] = False
    """Whether :meth:`propose` can pick the shrink kinds (``narrow``, ``remove``) of an
    environment with shrinking on (``search.shrink``); the config refuses shrinking
    for agents that cannot."""

    def __init__(self, ctx: AgentContext, config: Any = None) -> None:
        self.ctx = ctx
        self.config = config if config is not None else self.Config()
        self.rng = np.random.default_rng(ctx.seed)

    # ----------------------------------------------------------- before the search
    @classmethod
    def env_requirements(cls, config: Any = None) -> dict[str, Any]:
        """Environment settings this strategy needs, decided before the agent is built.

        Keys the search loop reads (any subset; absent keys keep the configured
        value): ``"schedule"`` (a tuple of kinds, or None for free mode),
        ``"free_steps"`` (transformations per child in free mode) and
        ``"children_per_round"``. Default: nothing (the configuration decides).
        """
        return {}

    def set_start_accuracy(self, accuracy: float) -> None:
        """Hear the validation accuracy of the start network (when it is known).

        Called once on a fresh search, after the agent is built. Default: ignore it.
        """
        return None

    def child_train_overrides(self) -> dict[str, Any]:
        """``TrainConfig`` field overrides for training the children (default: none)."""
        return {}

    def final_train_overrides(self) -> dict[str, Any]:
        """``TrainConfig`` field overrides for the final training of the best networks."""
        return {}

    # ------------------------------------------------------------------ every round
    @property
    def finished(self) -> bool:
        """True when the strategy has nothing more to do in this stage (default: never).

        The search loop then ends the stage even if its budget of children is not spent.
        """
        return False

    def start_network(self) -> Any:
        """The network the next round's children start from; None for the env's start."""
        return None

    def children_this_round(self) -> int:
        """How many children the next round samples (default: ``ctx.children_per_round``)."""
        return self.ctx.children_per_round

    @abstractmethod
    def propose(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Actions for a batch of observations (leading dimension = children)."""

    @abstractmethod
    def learn(self, results: list[EvalResult]) -> dict[str, float]:
        """Update from a finished round; return scalar metrics to log (name -> value).

        Each result is a child's whole record (:class:`~eas.envs.record.EvalResult`):
        ``arch``, ``accuracy``, ``reward``, ``failed``, ``params``, ``flops``,
        ``net`` (the trained child when the evaluator kept its weights), ``actions``, ...
        """

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the agent (must include the RNG state).

        Plain data only: tensors, numbers, strings, ``None`` and lists, tuples,
        dicts and sets of them (numpy scalars are converted; anything else stops
        the checkpoint with a ``TypeError`` naming it), because checkpoints are
        read weights-only so that a shared run folder cannot run code.
        """
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rng.bit_generator.state = state["rng"]
