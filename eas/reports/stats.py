"""Small-sample tests for ranking agents and runs: exact where the sample allows.

* :func:`permutation_p`: one-sided p-value that group ``a``'s mean exceeds group
  ``b``'s (independent samples: agents under different seeds).
* :func:`sign_flip_p`: one-sided p-value that paired differences have a positive
  mean (paired samples: a final network and its control on the same seed).

Both count the observed arrangement among all arrangements, so the smallest
p-value is ``1 / C(n_a + n_b, n_a)`` (1/252 for 5 seeds against 5) or ``2^-n``.

>>> permutation_p([0.9, 0.8, 0.85], [0.7, 0.6, 0.65])  # the best split of 20
0.05
>>> sign_flip_p([0.1, 0.2, 0.3])
0.125
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["permutation_p", "sign_flip_p"]

EXACT_LIMIT = 200_000
"""Most arrangements enumerated exactly; beyond it a seeded Monte Carlo estimate is used."""

_TIE = 1e-12


def permutation_p(a: Sequence[float], b: Sequence[float], rounds: int = 20_000,
                  seed: int = 0) -> float:
    """One-sided permutation p-value of ``mean(a) > mean(b)``.

    Exact (every split of the pooled values into groups of ``len(a)`` and
    ``len(b)``) when there are at most :data:`EXACT_LIMIT` splits, else ``rounds``
    seeded random splits (``(count + 1) / (rounds + 1)``).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError(f"both groups need values, got {x.size} and {y.size}")
    pooled = np.concatenate([x, y])
    total = pooled.sum()
    observed = x.mean() - y.mean()
    n, m = x.size, y.size
    if math.comb(n + m, n) <= EXACT_LIMIT:
        hits = count = 0
        for idx in itertools.combinations(range(n + m), n):
            s = pooled[list(idx)].sum()
            hits += s / n - (total - s) / m >= observed - _TIE
            count += 1
        return float(hits / count)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(rounds):
        perm = rng.permutation(pooled)
        hits += perm[:n].mean() - perm[n:].mean() >= observed - _TIE
    return float((hits + 1) / (rounds + 1))


def sign_flip_p(diffs: Sequence[float]) -> float:
    """One-sided p-value of ``mean(diffs) > 0`` by flipping the signs of paired differences.

    Exact (all ``2^n`` sign patterns, the observed one included) for n <= 16.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or d.size > 16:
        raise ValueError(f"need 1 to 16 paired differences, got {d.size}")
    observed = d.mean()
    means = [float(np.mean(d * np.asarray(signs)))
             for signs in itertools.product((1.0, -1.0), repeat=d.size)]
    return float(sum(mu >= observed - _TIE for mu in means) / len(means))
