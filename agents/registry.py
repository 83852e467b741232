"""Find agent classes by name: built-ins, installed plug-ins, ``module:Class`` paths.

Resolution order of :func:`get_agent_class`:

1. the built-ins ``"reinforce"`` (alias ``"eas"``), ``"random"``, ``"hill_climbing"``,
   ``"lemonade"`` and ``"sb3_ppo"`` (needs the ``sb3`` extra; all imported lazily, so a
   broken or uninstalled optional agent does not break the others);
2. entry points in the group ``"eas.agents"`` of installed distributions, e.g. in
   a plug-in's ``pyproject.toml``::

       [project.entry-points."eas.agents"]
       my_agent = "my_package.agents:MyAgent"

3. a ``"module:Class"`` path (``"my_package.agents:MyAgent"``), imported directly.

Whatever is found must be a subclass of :class:`agents.base.Agent`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from eas.agents.base import Agent, AgentContext

__all__ = ["ENTRY_POINT_GROUP", "BUILTINS", "ALIASES", "available_agents", "get_agent_class",
           "make_agent"]

ENTRY_POINT_GROUP = "eas.agents"
"""The entry-point group plug-ins register their agent classes in."""

BUILTINS: dict[str, str] = {
    "reinforce": "eas.agents.reinforce:ReinforceAgent",
    "random": "eas.agents.random_search:RandomSearchAgent",
    "hill_climbing": "eas.agents.hill_climbing:HillClimbingAgent",
    "lemonade": "eas.agents.lemonade:LemonadeAgent",
    "sb3_ppo": "eas.agents.sb3:SB3Agent",  # needs the sb3 extra (stable-baselines3, sb3-contrib)
}
"""Built-in agents: name -> ``module:Class``."""

ALIASES: dict[str, str] = {"eas": "reinforce", "hill-climbing": "hill_climbing", "nash": "hill_climbing"}
"""Other names of built-in agents."""


def _plugin_entry_points() -> dict[str, EntryPoint]:
    """Installed ``eas.agents`` entry points by name (the first one wins on duplicates)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available_agents() -> list[str]:
    """Names :func:`get_agent_class` accepts: the built-ins, then installed plug-ins (sorted)."""
    plugins = sorted(n for n in _plugin_entry_points() if n not in BUILTINS)
    return list(BUILTINS) + plugins


def _check(obj: object, origin: str) -> type[Agent]:
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise TypeError(f"{origin} is {obj!r}, not a subclass of agents.base.Agent")
    return obj


def _load_path(path: str) -> type[Agent]:
    """Import ``module:Class`` (``Class`` may be dotted, e.g. ``module:Outer.Inner``)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:Class', got {path!r}")
    module = importlib.import_module(module_name)
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"agent path {path!r}: {module_name} has no attribute {attr!r}") from None
    return _check(obj, f"agent path {path!r}")


def get_agent_class(name: str) -> type[Agent]:
    """The agent class called ``name`` (built-in, plug-in entry point, or ``module:Class``).

    Raises ``ValueError`` listing the built-in and installed agent names when
    ``name`` is none of those, and ``TypeError`` when it resolves to something
    that is not an :class:`Agent` subclass.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"agent name must be a non-empty string, got {name!r}; "
                         f"available: {', '.join(available_agents())}")
    key = name.strip()
    key = ALIASES.get(key, key)
    if key in BUILTINS:
        return _load_path(BUILTINS[key])
    plugins = _plugin_entry_points()
    if key in plugins:
        return _check(plugins[key].load(), f"entry point {key!r} ({plugins[key].value})")
    if ":" in key:
        module_name = key.partition(":")[0]
        try:
            return _load_path(key)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ValueError(f"agent path {key!r}: no module named {exc.name!r}") from exc
            raise
    raise ValueError(
        f"unknown agent {name!r}; built-in: {', '.join(BUILTINS)} (alias eas = reinforce); "
        f"installed plug-ins: {', '.join(sorted(set(plugins) - set(BUILTINS))) or 'none'}; "
        "or give a 'module:Class' path"
    )


def make_agent(name: str, ctx: AgentContext, **overrides: object) -> Agent:
    """Build the agent called ``name`` with its ``Config`` overridden by ``overrides``."""
    cls = get_agent_class(name)
    return cls(ctx, cls.Config(**overrides))
