"""The training recipes' precedence (eas.search.recipes): agent overrides win, never silently."""

from __future__ import annotations

from eas.agents.base import Agent
from eas.agents.hill_climbing import HillClimbingAgent
from eas.config.engine import load_config
from eas.search.recipes import child_recipe, final_recipe


class _Overrides:
    """An agent that overrides what hill climbing overrides (its recipe, no context needed)."""

    def __init__(self, cfg) -> None:
        self.config = cfg.agent_config()

    child_train_overrides = HillClimbingAgent.child_train_overrides
    final_train_overrides = HillClimbingAgent.final_train_overrides


def test_final_recipe_is_the_search_settings_unless_the_agent_says_otherwise() -> None:
    cfg = load_config(None, {"search.final_epochs": "5", "search.final_lr": "0.07"})
    lines: list[str] = []
    plain = type("Plain", (), {"final_train_overrides": Agent.final_train_overrides})()
    recipe = final_recipe(cfg, plain, lines.append)  # the base agent overrides nothing
    assert (recipe.epochs, recipe.lr, recipe.max_batches_per_epoch) == (5, 0.07, None)
    assert lines == []


def test_hill_climbing_overrides_are_logged_with_what_they_replace() -> None:
    cfg = load_config(None, {"search.agent": "hill_climbing", "search.final_epochs": "5",
                             "hill_climbing.e_final": "9", "hill_climbing.e_neigh": "2"})
    agent, lines = _Overrides(cfg), []
    final = final_recipe(cfg, agent, lines.append)
    child = child_recipe(cfg.child, agent, "hill_climbing", lines.append)
    assert final.epochs == 9 and child.epochs == 2
    assert len(lines) == 2
    assert "final training" in lines[0] and "epochs = 9 (instead of search.final_epochs = 5)" \
        in lines[0] and "lr = 0.05 (instead of child.lr" in lines[0]
    assert "children's training" in lines[1] and "epochs = 2 (instead of child.epochs" in lines[1]
