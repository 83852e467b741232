"""Building the search's agent: its environment settings, its context, the agent itself.

:func:`make_agent` is the one place an agent is constructed, used by the search
(:func:`eas.search.steps.build_agent`) and by preflight, which builds a plug-in
(``module:Class``) agent once on a trial basis before anything is written, so
a plug-in that cannot be built stops the run with one line naming it.
:class:`AgentError` is that line for failures at run time (``propose`` or
``learn`` raising).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from eas.agents.base import Agent, AgentContext
from eas.agents.registry import ALIASES, BUILTINS, get_agent_class
from eas.arch import Tokenizer
from eas.config.engine import search_space
from eas.config.sections import SearchConfig, schedule_tuple
from eas.kinds import kinds_for
from eas.search.failures import SearchFailed

__all__ = ["AgentError", "EpisodeSettings", "agent_calls", "episode_settings", "is_plugin",
           "make_agent", "restored_global_rng"]


class AgentError(SearchFailed):
    """A plug-in agent failed; ``str()`` is one line naming the plug-in and the method."""


def is_plugin(name: str) -> bool:
    """``name`` is a plug-in agent (``module:Class`` or an entry point), not a built-in."""
    key = name.strip()
    return ALIASES.get(key, key) not in BUILTINS


@dataclass(frozen=True)
class EpisodeSettings:
    """How the search's episodes run: ``[search]``'s settings, or what the agent asks for."""

    schedule: tuple[str, ...] | None
    """Kinds per episode (None: free mode)."""
    free_steps: int
    """Transformations per child in free mode."""
    children_per_step: int
    """Children per round unless the agent says otherwise."""
    requested: bool
    """The agent changed the settings (:meth:`~eas.agents.base.Agent.env_requirements`)."""

    @property
    def steps(self) -> int:
        """Transformations per child."""
        return len(self.schedule) if self.schedule is not None else self.free_steps

    def describe(self) -> str:
        """One line naming the settings (logged when the agent asked for them)."""
        sched = "free" if self.schedule is None else ",".join(self.schedule)
        return (f"schedule={sched}, free_steps={self.free_steps}, "
                f"children per round={self.children_per_step}")


def episode_settings(cfg: SearchConfig) -> EpisodeSettings:
    """The episode settings of ``cfg``'s search, with its agent's requirements applied
    (hill climbing: free mode, ...); resolved once, before the agent is built."""
    s = cfg.search
    reqs = get_agent_class(s.agent).env_requirements(cfg.agent_config())
    schedule, free_steps, children = schedule_tuple(s.schedule), s.free_steps, s.children_per_step
    if reqs:
        schedule = reqs.get("schedule", schedule)
        free_steps = int(reqs.get("free_steps", free_steps))
        children = int(reqs.get("children_per_round", children))
    return EpisodeSettings(schedule, free_steps, children, bool(reqs))


def make_agent(cfg: SearchConfig, episode: EpisodeSettings, *, input_shape: tuple[int, ...],
               num_classes: int, densenet: bool, start_accuracy: float | None) -> Agent:
    """Build ``cfg.search.agent`` with its config section for the episodes ``episode``."""
    s = cfg.search
    space = search_space(cfg)
    ctx = AgentContext(
        max_layers=cfg.space.max_layers,
        vocab_size=Tokenizer(space).vocab_size,
        kernel_sizes=tuple(space.kernel_sizes),
        kinds=kinds_for(s.shrink),
        schedule=episode.schedule,
        steps_per_episode=episode.steps,
        children_per_round=episode.children_per_step,
        seed=int(s.seed),
        extra={"input_shape": input_shape, "space": space, "num_classes": num_classes,
               "densenet": densenet, "start_accuracy": start_accuracy},
    )
    return get_agent_class(s.agent)(ctx, cfg.agent_config())


@contextmanager
def restored_global_rng() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's global RNG as they were (a trial build must not
    shift the run's randomness)."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


@contextmanager
def agent_calls(name: str, method: str) -> Iterator[None]:
    """Turn an exception of plug-in agent ``name``'s ``method`` into one :class:`AgentError`
    line naming both (built-in agents' errors pass through unchanged)."""
    try:
        yield
    except (KeyboardInterrupt, AgentError):
        raise
    except Exception as exc:
        if not is_plugin(name):
            raise
        text = " ".join(str(exc).split())[:300]
        raise AgentError(f"plug-in agent {name!r} failed in {method}(): "
                         f"{type(exc).__name__}: {text} (--debug shows the traceback)") from exc
