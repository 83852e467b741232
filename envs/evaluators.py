"""Evaluators: how a child network is turned into a validation accuracy.

An evaluator is any callable ``evaluator(net) -> float | EvalResult``: the
default one trains the child with :func:`eas.train_child`; a lower-fidelity
trainer, a learned predictor or a table lookup can replace it. An evaluator may
also offer ``evaluate_many(nets) -> list[EvalResult]`` to train a batch of
children concurrently (see ``eas.parallel``); :func:`evaluate_batch` uses it when
present and falls back to one call per child otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import nn

__all__ = ["EvalResult", "Evaluator", "as_result", "evaluate_batch"]


@dataclass
class EvalResult:
    """What an evaluator reports about one child."""

    accuracy: float
    """Validation accuracy in [0, 1]."""
    failed: bool = False
    """True when training diverged or crashed; the child then gets the lowest reward."""
    reason: str | None = None
    """Why it failed, if it did."""
    train_time: float = 0.0
    """Seconds spent training/evaluating the child."""
    state_dict: dict[str, Any] | None = None
    """The trained child's weights (CPU tensors), when the evaluator keeps them."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth logging (epochs, images/s, attempts, ...)."""


@runtime_checkable
class Evaluator(Protocol):
    """The evaluator interface: a callable from a network to an accuracy."""

    def __call__(self, net: nn.Module) -> float | EvalResult:  # pragma: no cover - protocol
        ...


def as_result(value: float | EvalResult) -> EvalResult:
    """Normalise an evaluator's return value to an :class:`EvalResult`."""
    if isinstance(value, EvalResult):
        return value
    try:
        acc = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"an evaluator must return a float accuracy or an EvalResult, got {value!r}"
        ) from None
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"an evaluator returned accuracy {acc}, outside [0, 1]")
    return EvalResult(accuracy=acc)


def evaluate_batch(evaluator: Callable[[nn.Module], float | EvalResult],
                   nets: Sequence[nn.Module]) -> list[EvalResult]:
    """Evaluate several children, concurrently when the evaluator supports it.

    An exception raised by a plain callable for one child is recorded as a
    failed result for that child instead of stopping the batch.
    """
    many = getattr(evaluator, "evaluate_many", None)
    if callable(many):
        return [as_result(r) for r in many(list(nets))]
    results = []
    for net in nets:
        try:
            results.append(as_result(evaluator(net)))
        except Exception as exc:  # noqa: BLE001 - a broken child must not stop a search
            results.append(EvalResult(0.0, failed=True, reason=f"{type(exc).__name__}: {exc}"))
    return results
