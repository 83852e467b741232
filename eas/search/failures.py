"""Run-time failure checks: a diverged start network, a search in which every child failed,
a failed final training.

The first two raise :class:`SearchFailed` (exit code 1 on the command line) with one
line saying what happened and what to change, instead of searching on from NaN
weights and reporting an empty table with exit code 0. A failed final training
stops nothing (the other final networks and the summary are still written), but
:func:`final_training_failure` gives the command its one line and exit code 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CHANCE_MARGIN",
    "SearchFailed",
    "at_chance",
    "check_chance",
    "check_children",
    "check_start",
    "failure_counts",
    "final_training_failure",
]


class SearchFailed(RuntimeError):
    """The search cannot go on; ``str()`` is one line with the reasons."""


def check_start(accuracy: float | None, failed: bool = False, reason: str | None = None) -> None:
    """Stop when the start network's training diverged or gave a non-finite accuracy."""
    if failed or (accuracy is not None and not math.isfinite(accuracy)):
        why = reason or f"validation accuracy {accuracy}"
        raise SearchFailed(f"the start network diverged while training ({why}); lower child.lr "
                           "or child.weight_decay, or give trained start.weights")


def failure_counts(records: Iterable[dict[str, Any]]) -> Counter:
    """How often each failure reason occurs among failed child records."""
    return Counter(_short(r.get("reason")) for r in records if r.get("failed"))


def _short(reason: Any) -> str:
    text = " ".join(str(reason or "unknown reason").split())
    return text if len(text) <= 120 else text[:117] + "..."


def check_children(history: list[dict[str, Any]]) -> None:
    """Stop when every child evaluated so far failed (nothing to search from)."""
    if not history or not all(r.get("failed") for r in history):
        return
    counts = failure_counts(history)
    reasons = "; ".join(f"{n} x {why}" for why, n in counts.most_common(3))
    more = f"; and {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    raise SearchFailed(f"every child failed ({len(history)} of {len(history)}): "
                       f"{reasons}{more}")


CHANCE_MARGIN = 0.05
"""An accuracy is at chance level when it is at most 1/classes plus this share of the
rest (10 classes: 14.5 %; 2 classes: 52.5 %)."""


def at_chance(accuracy: float, classes: int) -> bool:
    """``accuracy`` is no better than guessing among ``classes`` (see :data:`CHANCE_MARGIN`)."""
    chance = 1.0 / max(2, classes)
    return accuracy <= chance + CHANCE_MARGIN * (1.0 - chance)


def check_chance(starts: list[dict[str, Any]], history: list[dict[str, Any]],
                 classes: int) -> None:
    """Stop when the start network and every child scored at chance level: nothing learned,
    so the final training and the reports would only dress up guesses."""
    start = [s.get("accuracy") for s in starts if s.get("accuracy") is not None]
    scored = [r.get("accuracy") for r in history if not r.get("failed")
              and r.get("accuracy") is not None]
    if not start or not scored or not all(at_chance(float(a), classes) for a in start + scored):
        return
    raise SearchFailed(f"the start network and every child scored at chance level (best "
                       f"{100 * max(start + scored):.1f} % with {classes} classes, chance "
                       f"{100 / max(2, classes):.1f} %): nothing was learned; check child.lr, "
                       "the data (data.name, data.root) and the start network")


def final_training_failure(final: list[dict[str, Any]]) -> str | None:
    """One line naming the final trainings that failed and why, or None if none did.

    ``final`` is the run's list of final-training entries (``state.final``); an
    entry failed when it says so (diverged: NaN/inf loss, out of memory) or its
    test accuracy is not finite.
    """
    bad = [f for f in final if f.get("failed") or (
        f.get("test_accuracy") is not None and not math.isfinite(f["test_accuracy"]))]
    if not bad:
        return None
    which = "; ".join(f"#{f.get('rank')} {f.get('arch')}: {_short(f.get('reason'))}"
                      for f in bad)
    return (f"the final training failed for {len(bad)} of {len(final)} network(s) ({which}); "
            "the summary was written; lower search.final_lr or child.lr")
