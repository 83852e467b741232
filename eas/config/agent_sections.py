"""Which config section holds each agent's hyperparameters, and that section's ``Config`` class.

Built-in agents have their own section (``[controller]`` for reinforce, ...); a custom
``module:Class`` agent gets ``[agent]``. Used by :mod:`eas.config.sections` and
:mod:`eas.config.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass
from functools import cache

from eas.agents.registry import ALIASES, get_agent_class
from eas.agents.reinforce_config import ReinforceConfig
from eas.agents.settings import HillClimbingConfig, LemonadeConfig, RandomConfig, SB3Config

__all__ = ["AGENT_SECTIONS", "BUILTIN_CONFIGS", "agent_config_cls", "agent_section",
           "loadable_agent_class"]

AGENT_SECTIONS: dict[str, str] = {
    "reinforce": "controller",
    "random": "random",
    "hill_climbing": "hill_climbing",
    "lemonade": "lemonade",
    "sb3_ppo": "sb3",
}
"""Built-in agent name -> its config section."""

BUILTIN_CONFIGS: dict[str, type] = {
    "reinforce": ReinforceConfig,
    "random": RandomConfig,
    "hill_climbing": HillClimbingConfig,
    "lemonade": LemonadeConfig,
    "sb3_ppo": SB3Config,
}
"""Built-in agent name -> its ``Config`` class, read from the light settings modules so
the schema never imports agent code (each agent class names the same class as ``Config``)."""


@dataclass
class _Unavailable:
    """This agent could not be imported, so it has no configurable fields here."""


@cache
def loadable_agent_class(name: str) -> type | None:
    """The agent class called ``name``, or None when it cannot be loaded (it then has no
    section fields, and the search says why when it builds the agent)."""
    try:
        return get_agent_class(name)
    except Exception:  # noqa: BLE001 - an agent that cannot be loaded has no section
        return None


def agent_config_cls(name: str) -> type:
    """The ``Config`` dataclass of agent ``name`` (an empty one if it cannot be loaded);
    built-in agents' without importing them."""
    key = ALIASES.get(name, name)
    if key in BUILTIN_CONFIGS:
        return BUILTIN_CONFIGS[key]
    cls = loadable_agent_class(name)
    cfg = getattr(cls, "Config", None)
    return cfg if cfg is not None and is_dataclass(cfg) else _Unavailable


def agent_section(agent: str) -> str:
    """The config section holding ``agent``'s hyperparameters (``agent`` for custom ones)."""
    key = ALIASES.get(agent, agent)
    if key in AGENT_SECTIONS:
        return AGENT_SECTIONS[key]
    cls = loadable_agent_class(agent)
    for name, section in AGENT_SECTIONS.items():
        if cls is not None and cls is loadable_agent_class(name):
            return section
    return "agent"
