"""An evaluator wrapper that adds cost objectives (params, FLOPs, latency) to every result.

``ObjectivesEvaluator(inner, latency=True, device="cuda")`` evaluates children
with ``inner`` (any evaluator, also one with ``evaluate_many`` such as the
parallel evaluator) and sets each result's ``params`` and ``flops`` (exact
counts) and, with ``latency``, ``latency_ms``: the median time
of ``repeats`` forward passes of a ``batch_size`` batch on ``device``
(:func:`eas.objectives.measure_latency`). Latency does not depend on the
weights, so it is measured on the child handed in, in this process, one child
after another (never while other children are being timed). A failed child gets
its counts but no latency. The evaluation cache and the journal keep the whole
result, so cached and replayed children keep their objectives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from eas.envs.evaluators import evaluate_batch
from eas.envs.record import EvalResult
from eas.network import ChildNet
from eas.objectives import cost_objectives, measure_latency

__all__ = ["ObjectivesEvaluator"]


class ObjectivesEvaluator:
    """Wrap an evaluator; every result gets ``params``, ``flops`` [and ``latency_ms``]."""

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

    def _with_objectives(self, net: ChildNet, result: EvalResult) -> EvalResult:
        latency = None
        if self.latency and not result.failed:
            latency = measure_latency(
                net, net.input_shape, batch_size=self.batch_size, repeats=self.repeats,
                warmup=self.warmup, device=self.device)
        return replace(result, **cost_objectives(net), latency_ms=latency,
                       extra=dict(result.extra))

    def evaluate_many(self, nets: Sequence[ChildNet],
                      on_result: Callable[[int, EvalResult], Any] | None = None
                      ) -> list[EvalResult]:
        """Evaluate with the inner evaluator (concurrently if it can), then add objectives.

        ``on_result(i, result)`` gets each child's result (with its objectives) the
        moment it is known, so the journal can record it at once.
        """
        nets = list(nets)
        done: dict[int, EvalResult] = {}

        def finish(i: int, result: EvalResult) -> None:
            done[i] = self._with_objectives(nets[i], result)
            if on_result is not None:
                on_result(i, done[i])

        results = evaluate_batch(self.inner, nets, on_result=finish)
        return [done[i] if i in done else self._with_objectives(n, r)
                for i, (n, r) in enumerate(zip(nets, results))]

    def __call__(self, net: ChildNet) -> EvalResult:
        """Evaluate one child and add its objectives."""
        return self.evaluate_many([net])[0]

    def __getattr__(self, name: str) -> Any:
        # forward anything else (close, workers, ...) to the wrapped evaluator
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        lat = (f", latency(batch={self.batch_size}, repeats={self.repeats}, "
               f"device={self.device!r})" if self.latency else "")
        return f"ObjectivesEvaluator({self.inner!r}{lat})"
