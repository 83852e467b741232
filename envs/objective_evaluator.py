"""An evaluator wrapper that adds cost objectives (params, FLOPs, latency) to every result.

``ObjectivesEvaluator(inner, latency=True, device="cuda")`` evaluates children
with ``inner`` (any evaluator; it offers ``evaluate_many`` exactly when ``inner``
does, e.g. the parallel evaluator) and writes into each result's ``extra``: ``params`` and
``flops`` (exact counts) and, with ``latency``, ``latency_ms``: the median time
of ``repeats`` forward passes of a ``batch_size`` batch on ``device``
(:func:`eas.objectives.measure_latency`). Latency does not depend on the
weights, so it is measured on the child handed in, in this process, one child
after another (never while other children are being timed). A failed child gets
its counts but no latency; an exception of ``inner`` propagates (the caller
records the child as failed). ``extra`` is kept by the evaluation cache and the
journal, so cached and replayed children keep their objectives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from eas.envs.evaluators import EvalResult, as_result, evaluate_batch

from eas.network import ChildNet
from eas.objectives import cost_objectives, measure_latency

__all__ = ["ObjectivesEvaluator"]


class ObjectivesEvaluator:
    """Wrap an evaluator; every result's ``extra`` gains ``params``, ``flops`` [, ``latency_ms``]."""

    def __init__(self, inner: Callable[[ChildNet], Any], *, latency: bool = False,
                 batch_size: int = 1, repeats: int = 20, warmup: int = 3,
                 device: str = "cpu") -> None:
        if int(batch_size) < 1 or int(repeats) < 1 or int(warmup) < 0:
            raise ValueError(f"latency needs batch_size >= 1, repeats >= 1 and warmup >= 0, got "
                             f"{batch_size}, {repeats}, {warmup}")
        self.inner = inner
        self.latency = bool(latency)
        self.batch_size, self.repeats, self.warmup = int(batch_size), int(repeats), int(warmup)
        self.device = device
        if callable(getattr(inner, "evaluate_many", None)):
            # offered only when the inner evaluator trains batches itself, so that a
            # journal around this wrapper still stores each child the moment it finishes
            self.evaluate_many = self._evaluate_many

    def _with_objectives(self, net: ChildNet, result: EvalResult) -> EvalResult:
        extra = dict(result.extra)
        extra.update(cost_objectives(net))
        if self.latency and not result.failed:
            extra["latency_ms"] = measure_latency(
                net, net.input_shape, batch_size=self.batch_size, repeats=self.repeats,
                warmup=self.warmup, device=self.device)
        return replace(result, extra=extra)

    def _evaluate_many(self, nets: Sequence[ChildNet]) -> list[EvalResult]:
        """Evaluate with the inner evaluator's ``evaluate_many``, then add objectives."""
        nets = list(nets)
        results = evaluate_batch(self.inner, nets)
        return [self._with_objectives(n, r) for n, r in zip(nets, results)]

    def __call__(self, net: ChildNet) -> EvalResult:
        """Evaluate one child with the inner evaluator and add its objectives.

        Exceptions of the inner evaluator propagate (callers such as the journal
        and :func:`~envs.evaluators.evaluate_batch` turn them into failed children).
        """
        return self._with_objectives(net, as_result(self.inner(net)))

    def __getattr__(self, name: str) -> Any:
        # forward anything else (close, workers, ...) to the wrapped evaluator
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        lat = (f", latency(batch={self.batch_size}, repeats={self.repeats}, "
               f"device={self.device!r})" if self.latency else "")
        return f"ObjectivesEvaluator({self.inner!r}{lat})"
