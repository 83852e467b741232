"""Training until validation accuracy stops improving, within an epoch and a time budget.

:func:`train_to_plateau` trains a network in *cycles*: each cycle is one call of
:func:`eas.training.train_child` (a cosine schedule from the recipe's learning rate
down to ``lr_min``, so every cycle ends annealed), the first ``first_epochs``
long and each next one ``growth`` times longer (SGDR's warm restarts with
``T_mult = growth``). After every cycle the validation accuracy is checked by a
:class:`PlateauRule` (``patience`` cycles without a gain of at least
``min_delta``); training stops at the plateau, at ``max_epochs`` or when the next
cycle would not fit ``max_seconds`` (a cycle is shortened to what still fits,
at the rate the previous cycles measured); a cycle after which the next one
would not fit in full takes the whole rest of the budget instead (one long
annealed cycle rather than a cut-off one), and the best cycle's weights are
kept. The final networks of a search and its no-search control are trained
with it (:mod:`eas.search.final`).

:func:`epochs_for_seconds` is the epoch-equivalent rule that turns a wall-clock
budget into a number of epochs at a measured rate; it is a pure function so
the budget accounting can be tested without a clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from eas.data import Data
from eas.evaluation import evaluate
from eas.recipe import TrainConfig
from eas.training import TrainResult, train_child

__all__ = ["PlateauResult", "PlateauRule", "epochs_for_seconds", "train_to_plateau"]


@dataclass
class PlateauRule:
    """Stop after ``patience`` checks in a row without a gain of at least ``min_delta``.

    ``update(acc)`` returns True when ``acc`` is a new best (higher, and by at least
    ``min_delta``, than the best so far; the first value always is); ``stop`` is then True once
    ``patience`` updates in a row were not.
    """

    patience: int = 1
    """Checks without improvement tolerated before stopping (>= 1)."""
    min_delta: float = 0.0
    """Smallest gain (accuracy, 0-1) that counts as an improvement."""
    best: float = -math.inf
    """Best value so far that counted as an improvement."""
    bad: int = 0
    """Checks in a row without improvement."""

    def __post_init__(self) -> None:
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"patience must be an integer >= 1, got {self.patience!r}")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")

    def update(self, value: float) -> bool:
        """Record one check; True when ``value`` improved on the best by ``min_delta``."""
        if math.isfinite(value) and value > self.best and (
                self.best == -math.inf or value >= self.best + self.min_delta):
            self.best, self.bad = value, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        """True once ``patience`` checks in a row brought no improvement."""
        return self.bad >= self.patience


def epochs_for_seconds(seconds: float, epoch_seconds: float, *, at_least: int = 1,
                       at_most: int | None = None) -> int:
    """Whole epochs that fit ``seconds`` at ``epoch_seconds`` each (the epoch-equivalent rule).

    At least ``at_least`` and at most ``at_most`` (None: no cap).
    """
    if not (epoch_seconds > 0 and math.isfinite(epoch_seconds)):
        raise ValueError(f"epoch_seconds must be a finite number > 0, got {epoch_seconds!r}")
    n = max(int(at_least), math.floor(max(seconds, 0.0) / epoch_seconds + 1e-9))
    return n if at_most is None else min(n, int(at_most))


@dataclass
class PlateauResult:
    """What :func:`train_to_plateau` did."""

    val_accuracy: float
    """Validation accuracy of the kept (best) weights."""
    test_accuracy: float | None
    """Test accuracy of the kept weights (None when not asked for or failed)."""
    epochs: int
    """Epochs trained in all cycles."""
    best_epochs: int
    """Epochs trained up to the end of the kept cycle."""
    train_time: float
    """Seconds spent training (all cycles; evaluation excluded)."""
    stopped_by: str
    """Why it stopped: "plateau", "epochs", "seconds" or "failed"."""
    cycles: list[dict[str, Any]] = field(default_factory=list)
    """Per cycle: epochs, total epochs, val accuracy, seconds, improved."""
    failed: bool = False
    """True when no cycle finished (the first diverged)."""
    reason: str | None = None
    """Why a cycle failed, else None."""


Trainer = Callable[..., TrainResult]


def train_to_plateau(
    network: nn.Module,
    data: Data,
    recipe: TrainConfig,
    *,
    first_epochs: int,
    growth: float = 2.0,
    patience: int = 1,
    min_delta: float = 0.0,
    max_epochs: int | None = None,
    max_seconds: float | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    test: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    train: Trainer = train_child,
    clock: Callable[[], float] | None = None,
) -> PlateauResult:
    """Train ``network`` IN PLACE in growing cosine cycles until validation accuracy plateaus.

    ``recipe`` is the training recipe (its ``epochs`` is ignored); cycle ``k``
    (0-based) is ``ceil(first_epochs * growth**k)`` epochs, shortened to what is
    left of ``max_epochs`` and of ``max_seconds`` (at the seconds per epoch the
    cycles so far took; the first cycle always runs), or lengthened to all that
    is left when the next cycle would not fit in full. Cycle ``k`` uses seed
    ``seed + k`` (a new data order). The network ends holding the weights of
    the cycle with the best validation accuracy; its test accuracy is measured
    when ``test``. ``train`` replaces :func:`eas.training.train_child` (tests).
    ``clock`` (e.g. ``time.process_time``) measures each cycle's seconds for the
    ``max_seconds`` budget, validation pass included; None counts the trainer's
    own ``train_time`` (wall-clock training seconds, evaluation excluded).
    """
    if first_epochs < 1:
        raise ValueError(f"first_epochs must be >= 1, got {first_epochs!r}")
    if not growth >= 1:
        raise ValueError(f"growth must be >= 1, got {growth!r}")
    rule = PlateauRule(patience=patience, min_delta=min_delta)
    best_state: dict[str, torch.Tensor] | None = None
    best_val, best_epochs, epochs, seconds = -math.inf, 0, 0, 0.0
    cycles: list[dict[str, Any]] = []
    stopped_by, reason = "plateau", None
    length = float(first_epochs)
    for k in range(10_000):
        n = math.ceil(length - 1e-9)
        left = None if max_epochs is None else max_epochs - epochs  # what the budgets allow
        if left is not None and left <= 0:
            stopped_by = "epochs"
            break
        if max_seconds is not None and epochs > 0:
            fit = math.floor((max_seconds - seconds) / (seconds / epochs) + 1e-9)
            if fit <= 0:
                stopped_by = "seconds"
                break
            left = fit if left is None else min(left, fit)
        if left is not None and left - n < math.ceil(length * growth - 1e-9):
            n = left  # shortened to what fits, or the next would not fit: this takes the rest
        began = None if clock is None else clock()
        res = train(network, data, dataclasses.replace(recipe, epochs=n), device=device,
                    seed=seed + k, progress=progress)
        epochs += n
        seconds += float(res.train_time) if began is None else clock() - began
        if res.failed:
            stopped_by, reason = "failed", res.reason
            cycles.append({"epochs": n, "total_epochs": epochs, "val_accuracy": None,
                           "seconds": float(res.train_time), "improved": False,
                           "kept": False})
            break
        val = float(res.val_accuracy)
        improved = rule.update(val)
        kept = val > best_val  # the best weights are kept even for a gain below min_delta
        cycles.append({"epochs": n, "total_epochs": epochs, "val_accuracy": val,
                       "seconds": float(res.train_time), "improved": improved, "kept": kept})
        if log is not None:
            log(f"  cycle {k + 1}: {n} epochs (total {epochs}), val acc {100 * val:.2f}%"
                f"{' (kept)' if kept else ''}, {res.train_time:.1f}s")
        if kept:
            best_state = {name: t.detach().clone() for name, t in network.state_dict().items()}
            best_val, best_epochs = val, epochs
        if rule.stop:
            stopped_by = "plateau"
            break
        length *= growth
    if best_state is None:
        return PlateauResult(val_accuracy=0.0, test_accuracy=None, epochs=epochs, best_epochs=0,
                             train_time=seconds, stopped_by="failed", cycles=cycles,
                             failed=True, reason=reason)
    network.load_state_dict(best_state)
    network.eval()
    test_acc = None
    if test:
        kwargs = {"batch_size": recipe.eval_batch_size, "amp": recipe.amp,
                  "channels_last": recipe.channels_last}
        test_acc = evaluate(network, data.test_x, data.test_y, data, **kwargs)
    return PlateauResult(val_accuracy=best_val, test_accuracy=test_acc, epochs=epochs,
                         best_epochs=best_epochs, train_time=seconds, stopped_by=stopped_by,
                         cycles=cycles, reason=reason)
