"""The training recipes of a search and their precedence, in one place.

Every network a search trains follows ``[child]`` (:class:`eas.recipe.TrainConfig`),
changed as follows, later lines winning:

* **children**: ``[child]``, then the agent's :meth:`~eas.agents.base.Agent.child_train_overrides`
  (hill climbing: its SGDR over ``e_neigh`` epochs);
* **start networks** (stage 1's untrained start, each later stage's start):
  :meth:`eas.config.sections.StartConfig.recipe`: the children's recipe for the stage's
  epochs at ``start.lr`` when set;
* **final training**: ``[child]`` with ``search.final_epochs`` full epochs at
  ``search.final_lr`` (none: ``child.lr``), then the agent's
  :meth:`~eas.agents.base.Agent.final_train_overrides` (hill climbing: ``e_final`` epochs
  of cosine from ``lr_start``).

An agent's override is never silent: :func:`child_recipe` and :func:`final_recipe` log
each value it replaces, with the setting it replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from eas.recipe import TrainConfig

__all__ = ["child_recipe", "final_recipe", "with_agent_overrides"]


def with_agent_overrides(base: TrainConfig, overrides: dict[str, Any], *, agent: str,
                         what: str, sources: dict[str, str],
                         log: Callable[[str], None]) -> TrainConfig:
    """``base`` with the agent's ``overrides``; one log line names every value replaced.

    ``sources`` names where a field's base value came from (``{"epochs":
    "search.final_epochs"}``); unnamed fields came from ``child.<field>``.
    """
    changed = {k: v for k, v in overrides.items() if getattr(base, k) != v}
    if changed:
        parts = [f"{k} = {v!r} (instead of {sources.get(k, f'child.{k}')} = "
                 f"{getattr(base, k)!r})" for k, v in changed.items()]
        log(f"{agent} sets the {what}: {', '.join(parts)}")
    return dataclasses.replace(base, **overrides)


def child_recipe(child: TrainConfig, agent: Any, agent_name: str,
                 log: Callable[[str], None]) -> TrainConfig:
    """How the search's children are trained: ``[child]``, then the agent's overrides."""
    return with_agent_overrides(child, agent.child_train_overrides(), agent=agent_name,
                                what="children's training", sources={}, log=log)


def final_recipe(cfg: Any, agent: Any, log: Callable[[str], None]) -> TrainConfig:
    """How the best networks are finally trained (see the module docstring for the order)."""
    s = cfg.search
    base = dataclasses.replace(cfg.child, epochs=s.final_epochs, max_batches_per_epoch=None,
                               lr=s.final_lr if s.final_lr is not None else cfg.child.lr)
    sources = {"epochs": "search.final_epochs",
               "lr": "search.final_lr" if s.final_lr is not None else "child.lr"}
    return with_agent_overrides(base, agent.final_train_overrides(), agent=s.agent,
                                what="final training", sources=sources, log=log)
