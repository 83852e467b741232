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
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import nn

from eas.data import load_dataset
from eas.training import TrainConfig, train_child

__all__ = ["EvalResult", "Evaluator", "StopSearch", "TrainerEvaluator", "as_result",
           "evaluate_batch"]


def _runtime(default: Any = None) -> Any:
    """A field that lives only in memory: left out of :meth:`EvalResult.to_dict`."""
    return field(default=default, repr=False, compare=False, metadata={"runtime": True})


def _plain(value: Any) -> Any:
    """``value`` in plain Python types (numpy scalars -> Python numbers, tuples -> lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class StopSearch(Exception):  # noqa: N818 - a signal to stop, not an error type to handle
    """Raised while evaluating children to stop the whole search (the run folder vanished,
    the journal cannot be written) rather than to fail those children; the wrappers that
    turn a child's exception into a failed child let it through."""


@dataclass
class EvalResult:
    """Everything known about one child: the one record from the evaluator to ``summary.json``.

    The evaluator makes it (accuracy, training facts), the environment completes
    it (architecture, size, cache, reward), the search numbers it (step, stage,
    round) and hands it to ``agent.learn``; :meth:`to_dict` is the child's entry
    in the history, the checkpoint, the journal, ``summary.json`` and the
    TensorBoard scalars. A new fact about a child is one field here (with a
    plain-typed default); every stage after the one that sets it carries it.

    >>> r = EvalResult(0.9, epochs=1, note="eager")
    >>> d = r.to_dict()
    >>> d["accuracy"], d["note"], "state_dict" in d
    (0.9, 'eager', False)
    >>> EvalResult.from_dict(d) == r
    True
    """

    # ----------------------------------------------------------- the evaluator
    accuracy: float
    """Validation accuracy in [0, 1] (0 when the child failed)."""
    failed: bool = False
    """True when training diverged or crashed; the child then gets the lowest reward."""
    reason: str | None = None
    """Why it failed, if it did."""
    train_time: float = 0.0
    """Seconds spent training/evaluating the child (0 when the result came from the cache)."""
    epochs: int | None = None
    """Epochs the child was trained."""
    steps: int | None = None
    """SGD steps the child was trained."""
    images_per_second: float | None = None
    """Training throughput."""
    train_loss: float | None = None
    """Mean training loss of the last epoch."""
    train_accuracy: float | None = None
    """Accuracy on the training batches of the last epoch."""
    cuda_graph: bool = False
    """True when the training steps were replays of a captured CUDA graph."""
    note: str | None = None
    """Anything worth knowing that is not a failure (e.g. why no CUDA graph was used)."""
    precision: str | None = None
    """Autocast precision of the training steps (``fp32``, ``bf16``, ``fp16``), when known."""
    fallback: str | None = None
    """Stage of the CUDA-graph path that failed before the eager retraining, else None."""
    # ------------------------------------------------------------ the back-end
    attempts: int = 1
    """Tries it took (``eas.envs.parallel``: a worker death, Ray node loss, out of memory,
    timeout or sticky CUDA error is retried on a fresh worker)."""
    retried: list[str] = field(default_factory=list)
    """Why each earlier try failed, in order (empty when the first try settled it)."""
    worker: str | None = None
    """Who ran the last try (``serial``, a process worker's name, ``ray``), when known."""
    params: int = 0
    """Trainable parameters (``envs.ObjectivesEvaluator``, then the environment)."""
    flops: int = 0
    """Multiply-accumulates of one forward pass."""
    latency_ms: float | None = None
    """Measured inference latency (``objectives.latency``), else None."""
    fidelity: int | None = None
    """The training budget the child reached under successive halving, else None."""
    rung: int | None = None
    """The halving rung the child reached (0 = first), else None."""
    rung_accuracies: list[float] | None = None
    """The child's accuracy at each rung it reached (successive halving), else None."""
    reward: float | None = None
    """The child's reward. An evaluator may set it (successive halving's rank reward,
    comparable across fidelities); the environment sets the reward it returns."""
    # ---------------------------------------------------------- the environment
    arch: str = ""
    """Architecture string of the child."""
    cached: bool = False
    """True when the accuracy came from the evaluation cache."""
    shrunk: bool | None = None
    """Made with a shrink action (``search.shrink``), else None (shrinking off)."""
    distilled: bool | None = None
    """Distilled from the episode's start network after shrinking, else None."""
    distill_error: str | None = None
    """Why distilling a shrunk child failed (it was trained undistilled), else None."""
    # ---------------------------------------------------------------- the search
    step: int | None = None
    """The child's number in the search (the TensorBoard global step)."""
    stage: int | None = None
    """The stage the child was sampled in."""
    round: int | None = None
    """The round the child was sampled in."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else an evaluator reports (plain types: numbers, strings, lists, dicts)."""
    # ------------------------------------------------------- in memory only
    state_dict: dict[str, Any] | None = _runtime()
    """The trained child's weights (CPU tensors), when the evaluator keeps them."""
    net: Any = _runtime()
    """The child network (trained when the evaluator kept its weights), set by the environment."""
    actions: list[dict[str, Any]] = _runtime(None)
    """The actions of the child's episode, in order (set by the environment)."""

    def to_dict(self) -> dict[str, Any]:
        """The record in plain types (no weights, network or actions)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if not f.metadata.get("runtime")}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **runtime: Any) -> EvalResult:
        """The record of :meth:`to_dict` output (``runtime``: ``state_dict``, ``net``, ``actions``).

        Keys that are not fields go into ``extra`` (and an ``extra`` entry named like a
        field fills that field), so records written by older versions still load.
        """
        names = {f.name for f in fields(cls) if not f.metadata.get("runtime")}
        extra = dict(data.get("extra") or {})
        known = {k: extra.pop(k) for k in list(extra) if k in names and k != "extra"}
        for key, value in data.items():
            if key in names:
                known[key] = value
            elif key != "extra":
                extra[key] = value
        return cls(**{**known, "extra": extra}, **runtime)


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
