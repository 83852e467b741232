"""Pareto bookkeeping: dominance, non-dominated fronts and the 2-D hypervolume.

Every objective is *minimised*: use ``(1 - accuracy, cost)`` (or ``-accuracy``)
for accuracy-versus-cost trade-offs. A point ``a`` dominates ``b`` when it is no
worse in every objective and better in at least one; equal points dominate
neither, and a front keeps only the first of equal points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["ParetoFront", "dominates", "hypervolume_2d", "kde_density", "non_dominated"]

Point = Sequence[float]


def _check(point: Point, dims: int | None = None) -> tuple[float, ...]:
    p = tuple(float(v) for v in point)
    if not p:
        raise ValueError("a point needs at least one objective")
    if any(math.isnan(v) for v in p):
        raise ValueError(f"point {p} has a NaN objective")
    if dims is not None and len(p) != dims:
        raise ValueError(f"point {p} has {len(p)} objectives, expected {dims}")
    return p


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    pa, pb = _check(a), _check(b, len(a))
    return all(x <= y for x, y in zip(pa, pb)) and any(x < y for x, y in zip(pa, pb))


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; of equal points the first."""
    pts = [_check(p) for p in points]
    if pts:
        dims = len(pts[0])
        for p in pts:
            _check(p, dims)
    if pts and len(pts[0]) == 2:  # sweep in O(n log n): ascending x, keep strict new minima of y
        keep, best_y = [], math.inf
        for i in sorted(range(len(pts)), key=lambda k: (pts[k], k)):
            if pts[i][1] < best_y:
                keep.append(i)
                best_y = pts[i][1]
        return sorted(keep)
    keep = []
    for i, p in enumerate(pts):
        if any(dominates(q, p) for q in pts):
            continue
        if any(pts[j] == p for j in range(i)):
            continue
        keep.append(i)
    return keep


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """Area dominated by ``points`` (both objectives minimised) and bounded by ``reference``.

    Points not strictly better than the reference in both objectives add
    nothing. Returns 0.0 for no points. ``ValueError`` for points that are not
    2-D or have NaN objectives.
    """
    rx, ry = _check(reference, 2)
    pts = sorted(p for p in (_check(q, 2) for q in points) if p[0] < rx and p[1] < ry)
    area, best_y = 0.0, ry
    for x, y in pts:  # ascending x: each point adds the strip below the best y so far
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    return float(area)


def kde_density(samples: Sequence[float], at: Sequence[float],
                bandwidth: float | None = None) -> list[float]:
    """Gaussian kernel density of 1-D ``samples`` evaluated at the points ``at``.

    ``bandwidth`` defaults to Silverman's rule of thumb ``1.06 * std * n ** (-1/5)``, or 0.25
    when the samples do not spread (one sample, or all equal). No samples: a
    density of 0 everywhere.
    """
    xs = [float(v) for v in samples]
    if not xs:
        return [0.0 for _ in at]
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / n)
    h = float(bandwidth) if bandwidth is not None else (1.06 * std * n ** -0.2 if std > 0 else 0.25)
    if not h > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    norm = 1.0 / (n * h * math.sqrt(2 * math.pi))
    return [norm * sum(math.exp(-0.5 * ((float(a) - x) / h) ** 2) for x in xs) for a in at]


class ParetoFront:
    """A non-dominated set of points, each carrying an item (a record, a network, ...).

    :meth:`add` inserts a point unless a kept point dominates or equals it, and
    drops the kept points it dominates. ``state_dict`` / ``load_state_dict``
    round-trip the front (items must be picklable for checkpoints).
    """

    def __init__(self, dims: int = 2) -> None:
        if int(dims) < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        self.dims = int(dims)
        self._points: list[tuple[float, ...]] = []
        self._items: list[Any] = []

    def would_accept(self, point: Point) -> bool:
        """True when :meth:`add` would insert ``point`` (no kept point dominates or equals it)."""
        p = _check(point, self.dims)
        return not any(q == p or dominates(q, p) for q in self._points)

    def add(self, point: Point, item: Any = None) -> bool:
        """Insert ``point`` with ``item`` if non-dominated; returns whether it was inserted."""
        p = _check(point, self.dims)
        if not self.would_accept(p):
            return False
        kept = [(q, it) for q, it in zip(self._points, self._items) if not dominates(p, q)]
        kept.append((p, item))
        kept.sort(key=lambda qi: qi[0])
        self._points = [q for q, _ in kept]
        self._items = [it for _, it in kept]
        return True

    @property
    def points(self) -> list[tuple[float, ...]]:
        """The kept points, sorted ascending by their objectives."""
        return list(self._points)

    @property
    def items(self) -> list[Any]:
        """The kept items, in the order of :attr:`points`."""
        return list(self._items)

    def hypervolume(self, reference: Point) -> float:
        """The 2-D hypervolume of the front (see :func:`hypervolume_2d`)."""
        return hypervolume_2d(self._points, reference)

    def __len__(self) -> int:
        return len(self._points)

    def state_dict(self) -> dict[str, Any]:
        """Points and items, for checkpoints."""
        return {"dims": self.dims, "points": [list(p) for p in self._points],
                "items": list(self._items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a front saved by :meth:`state_dict`."""
        self.dims = int(state["dims"])
        self._points = [tuple(float(v) for v in p) for p in state["points"]]
        self._items = list(state["items"])

    def __repr__(self) -> str:
        return f"ParetoFront(dims={self.dims}, size={len(self)})"
