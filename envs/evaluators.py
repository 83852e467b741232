"""Evaluators: how a child network is turned into a validation accuracy.

An evaluator is any callable ``evaluator(net) -> float | EvalResult``: the
default one trains the child with :func:`eas.train_child`; a lower-fidelity
trainer, a learned predictor or a table lookup can replace it. An evaluator may
also offer ``evaluate_many(nets) -> list[EvalResult]`` to train a batch of
children concurrently (see ``eas.envs.parallel``); :func:`evaluate_batch` uses it when
present and falls back to one call per child otherwise.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from torch import nn

from eas.data import load_dataset
from eas.envs.record import EvalResult, as_result
from eas.recipe import TrainConfig
from eas.training import train_child

__all__ = ["Evaluator", "StopSearch", "TrainerEvaluator", "evaluate_batch"]


class StopSearch(Exception):  # noqa: N818 - a signal to stop, not an error type to handle
    """Raised while evaluating children to stop the whole search (the run folder vanished,
    the journal cannot be written) rather than to fail those children; the wrappers that
    turn a child's exception into a failed child let it through."""


@runtime_checkable
class Evaluator(Protocol):
    """The evaluator interface: a callable from a network to an accuracy."""

    def __call__(self, net: nn.Module) -> float | EvalResult:  # pragma: no cover - protocol
        ...


def evaluate_batch(evaluator: Callable[[nn.Module], float | EvalResult],
                   nets: Sequence[nn.Module],
                   on_result: Callable[[int, EvalResult], Any] | None = None) -> list[EvalResult]:
    """Evaluate several children, concurrently when the evaluator supports it.

    An exception raised by a plain callable for one child is recorded as a
    failed result for that child instead of stopping the batch. ``on_result(i,
    result)`` is called the moment child ``i`` has its final result (when the
    evaluator's ``evaluate_many`` takes ``on_result`` too, or one child after
    another for a plain callable), so a caller can journal it at once.
    """
    many = getattr(evaluator, "evaluate_many", None)
    if callable(many):
        if on_result is not None and "on_result" in inspect.signature(many).parameters:
            return [as_result(r) for r in many(
                list(nets), on_result=lambda i, r: on_result(i, as_result(r)))]
        results = [as_result(r) for r in many(list(nets))]
        if on_result is not None:
            for i, r in enumerate(results):
                on_result(i, r)
        return results
    results = []
    for i, net in enumerate(nets):
        try:
            result = as_result(evaluator(net))
        except StopSearch:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken child must not stop a search
            result = EvalResult(0.0, failed=True, reason=f"{type(exc).__name__}: {exc}")
        results.append(result)
        if on_result is not None:
            on_result(i, result)
    return results


class TrainerEvaluator:
    """The default evaluator: train a copy of the child with :func:`eas.training.train_child`.

    Each call deep-copies the child (the environment's network is never
    trained in place), trains the copy on ``data`` with ``config`` and returns
    an :class:`EvalResult` with the validation accuracy, the training time and,
    with ``keep_weights``, the trained weights as CPU tensors. Every child is
    trained with the same ``seed`` (batch order, augmentation), so equal
    children get equal results on CPU. A diverging or out-of-memory run comes
    back as a failed result; other exceptions propagate (the environment turns
    them into failed children).
    """

    def __init__(self, data: Any, config: Any = None, *, device: Any = None, seed: int = 0,
                 keep_weights: bool = True) -> None:
        self.data = data
        self.config = config if config is not None else TrainConfig()
        self.device = device
        self.seed = int(seed)
        self.keep_weights = bool(keep_weights)

    @classmethod
    def fashion_mnist(cls, **kwargs: Any) -> TrainerEvaluator:
        """A trainer on Fashion-MNIST (``eas.data.load_dataset()``) with the default ``TrainConfig``."""
        return cls(load_dataset("fashion-mnist"), **kwargs)

    def __call__(self, net: nn.Module) -> EvalResult:
        """Train a copy of ``net`` and report its validation accuracy."""
        child = copy.deepcopy(net)
        res = train_child(child, self.data, self.config, device=self.device, seed=self.seed)
        failed = bool(res.failed)
        reason = res.reason
        acc = float(res.val_accuracy)
        if not failed and not math.isfinite(acc):
            failed, reason = True, "no validation accuracy (the data has no validation split?)"
        state = None
        if self.keep_weights and not failed:
            state = {k: v.detach().to("cpu", copy=True) for k, v in child.state_dict().items()}
        return EvalResult(
            accuracy=0.0 if failed else acc,
            failed=failed,
            reason=reason,
            train_time=float(res.train_time),
            train_cpu_time=float(res.cpu_time),
            epochs=res.epochs,
            steps=res.steps,
            images_per_second=float(res.images_per_second),
            train_loss=float(res.train_loss),
            train_accuracy=float(res.train_accuracy),
            cuda_graph=bool(res.cuda_graph),
            note=res.note,
            precision=res.precision,
            fallback=res.fallback,
            state_dict=state,
        )

    def __repr__(self) -> str:
        return (f"TrainerEvaluator(config={self.config!r}, device={self.device!r}, "
                f"seed={self.seed}, keep_weights={self.keep_weights})")
