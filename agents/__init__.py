"""Search agents: the EAS REINFORCE meta-controller, random search, hill climbing, plug-ins."""

from agents.base import Agent, AgentContext, ChildResult

__all__ = ["Agent", "AgentContext", "ChildResult"]
