"""The search layer: the search loop, its configuration, callbacks, reports, agent comparison
and the command-line entry points. It sits on top of every other layer of the project
(core -> morphisms -> envs -> agents -> search) and nothing below imports it."""

from eas.search.callbacks import SearchCallback
from eas.search.loop import run_search
from eas.search.state import SearchOutcome, SearchRun, SearchState

__all__ = ["SearchCallback", "SearchOutcome", "SearchRun", "SearchState", "run_search"]
