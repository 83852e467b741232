"""Search agents: the EAS REINFORCE meta-controller, random search, hill climbing, plug-ins."""

from eas._lazy import lazy_exports

_HOMES: dict[str, str] = {
    "Agent": "eas.agents.base",
    "AgentContext": "eas.agents.base",
    "HillClimbingAgent": "eas.agents.hill_climbing",
    "RandomSearchAgent": "eas.agents.random_search",
    "available_agents": "eas.agents.registry",
    "get_agent_class": "eas.agents.registry",
    "make_agent": "eas.agents.registry",
}
"""Public name -> the module it lives in (imported on first use: :mod:`eas._lazy`)."""

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__all__ = sorted(_HOMES)
