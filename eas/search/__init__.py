"""The search layer: the search loop, its configuration, reports, agent comparison and
the command-line entry points. It sits on top of every other layer of the project
(core -> morphisms -> envs -> agents -> search) and nothing below imports it."""

from eas.search.loop import SearchOutcome, run_search

__all__ = ["SearchOutcome", "run_search"]
