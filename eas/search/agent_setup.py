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
from typing import Any

import numpy as np
import torch

from eas.agents.base import AgentContext
from eas.agents.registry import ALIASES, BUILTINS, get_agent_class
from eas.arch import Tokenizer
from eas.config.engine import search_space
from eas.config.sections import SearchConfig, schedule_tuple
from eas.morphisms.legal import kinds_for
from eas.search.failures import SearchFailed

__all__ = ["AgentError", "AgentPlan", "agent_calls", "is_plugin", "make_agent",
           "restored_global_rng"]


class AgentError(SearchFailed):
    """A plug-in agent failed; ``str()`` is one line naming the plug-in and the method."""


def is_plugin(name: str) -> bool:
    """``name`` is a plug-in agent (``module:Class`` or an entry point), not a built-in."""
    key = name.strip()
    return ALIASES.get(key, key) not in BUILTINS


@dataclass
class AgentPlan:
    """The agent and the episode settings it asked for."""

    agent: Any
    schedule: tuple[str, ...] | None
    free_steps: int
    children_per_step: int
    steps: int
    requested: bool
    """The agent changed the settings (env_requirements)."""


def make_agent(cfg: SearchConfig, *, input_shape: tuple[int, ...], num_classes: int,
               densenet: bool, start_accuracy: float | None) -> AgentPlan:
    """Build ``cfg.search.agent`` with its config section and the environment it will drive."""
    s = cfg.search
    agent_cls = get_agent_class(s.agent)
    agent_cfg = cfg.agent_config()
    space = search_space(cfg)
    schedule, free_steps, children = schedule_tuple(s.schedule), s.free_steps, s.children_per_step
    reqs = agent_cls.env_requirements(agent_cfg)
    if reqs:
        schedule = reqs.get("schedule", schedule)
        free_steps = int(reqs.get("free_steps", free_steps))
        children = int(reqs.get("children_per_round", children))
    steps = len(schedule) if schedule is not None else free_steps
    ctx = AgentContext(
        max_layers=cfg.space.max_layers,
        vocab_size=Tokenizer(space).vocab_size,
        kernel_sizes=tuple(space.kernel_sizes),
        kinds=kinds_for(s.shrink),
        schedule=schedule,
        steps_per_episode=steps,
        children_per_round=children,
        seed=int(s.seed),
        extra={"input_shape": input_shape, "space": space, "num_classes": num_classes,
               "densenet": densenet, "start_accuracy": start_accuracy},
    )
    return AgentPlan(agent_cls(ctx, agent_cfg), schedule, free_steps, children, steps,
                     bool(reqs))


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
