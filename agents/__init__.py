"""Search agents: the EAS REINFORCE meta-controller, random search, hill climbing, plug-ins."""

from eas.agents.base import Agent, AgentContext
from eas.agents.hill_climbing import HillClimbingAgent
from eas.agents.random_search import RandomSearchAgent
from eas.agents.registry import available_agents, get_agent_class, make_agent

__all__ = [
    "Agent",
    "AgentContext",
    "HillClimbingAgent",
    "RandomSearchAgent",
    "available_agents",
    "get_agent_class",
    "make_agent",
]
