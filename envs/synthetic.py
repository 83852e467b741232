"""A cheap stand-in evaluator: a closed-form score of the architecture, no training.

:class:`SyntheticEvaluator` scores a child with :func:`synthetic_accuracy` in
microseconds, so searches, agent comparisons and benchmarks of the search
machinery run in seconds. It is a test and benchmark harness, not a proxy for
real accuracy. ``python -m eas.compare --evaluator cheap`` uses it.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from eas.arch import Architecture, Conv, Dense
from eas.envs.evaluators import EvalResult
from eas.network import ChildNet, build_network, count_flops, count_parameters

__all__ = ["SyntheticEvaluator", "synthetic_accuracy"]


def synthetic_accuracy(arch: str | Architecture | ChildNet,
                       input_shape: tuple[int, int, int] = (1, 28, 28),
                       params: int | None = None) -> float:
    """A deterministic stand-in for validation accuracy, computed from the architecture.

    With ``F`` the multiply-accumulates of one forward pass, ``D`` the number of
    conv/dense layers, ``S`` the number of skip connections, ``P`` the parameters
    and ``u`` in [-1, 1] a hash of the architecture string::

        acc = 0.70
            + 0.18 * (1 - exp(-(log10 F - 5.5)))      # compute, diminishing returns
            + 0.06 * (1 - exp(-(D - 2) / 3))          # depth, diminishing returns
            + 0.004 * min(S, 4)                       # a few skips help a little
            - 0.03 * max(0, log10 P - 6.5)            # over-parameterisation
            + 0.006 * u                               # deterministic "training noise"

    clipped to [0, 0.999]. The Fashion-MNIST start network scores about 0.84.
    """
    if isinstance(arch, ChildNet):
        net: ChildNet | None = arch
        input_shape = tuple(arch.input_shape)  # type: ignore[assignment]
        a = arch.arch
    else:
        net = None
        a = Architecture.parse(arch)
    if params is None:
        params = count_parameters(net if net is not None else build_network(a, input_shape))
    flops = max(count_flops(a, input_shape), 1)
    depth = sum(isinstance(layer, (Conv, Dense)) for layer in a.layers)
    skips = len(a.skips)
    digest = hashlib.sha256(str(a).encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64 * 2.0 - 1.0
    acc = (0.70
           + 0.18 * (1.0 - math.exp(-(math.log10(flops) - 5.5)))
           + 0.06 * (1.0 - math.exp(-(depth - 2) / 3.0))
           + 0.004 * min(skips, 4)
           - 0.03 * max(0.0, math.log10(max(params, 1)) - 6.5)
           + 0.006 * u)
    return float(min(max(acc, 0.0), 0.999))


class SyntheticEvaluator:
    """Evaluator returning :func:`synthetic_accuracy` (no training, no weights kept)."""

    def __call__(self, net: ChildNet) -> Any:
        """Score one child network."""
        t0 = time.perf_counter()
        acc = synthetic_accuracy(net)
        return EvalResult(accuracy=acc, train_time=time.perf_counter() - t0)
