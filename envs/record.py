"""The child record (:class:`EvalResult`): everything known about one trained child.

Light on purpose (numpy, no torch): the agents' interface and the configuration's
agent sections import it without loading the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["CLOCK_FIELDS", "EvalResult", "as_result"]

CLOCK_FIELDS: dict[str, str] = {"wall": "train_time", "cpu": "train_cpu_time"}
"""The record field a child-seconds budget sums, per clock (``search.child_clock``)."""


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
    train_cpu_time: float = 0.0
    """CPU seconds of the training process in that time (0 when cached or not measured)."""
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
