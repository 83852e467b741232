"""Pareto reports of a search: accuracy against parameters, FLOPs and latency.

Works for every agent: it reads only the search's history (one record per
evaluated child with ``step``, ``arch``, ``accuracy``, ``params``, ``flops``,
optionally ``latency_ms``, and ``failed``). For each cost the *front* is the set
of distinct architectures (each at its best evaluation) that no other one beats
in both accuracy and that cost. Written into the run folder:

* ``pareto.csv``: every child, its objectives and whether it is on each front;
* ``pareto.png``: one panel per cost, every child a point, the front drawn;
* :func:`pareto_summary` goes into ``summary.json`` as ``"pareto"``: per cost the
  front and its hypervolume.

The hypervolume is the area of the (error, cost) box up to a reference point
``(1.0, reference_cost)`` that the front dominates, divided by the box's area
(so it is in [0, 1]); ``reference_cost`` defaults to 1.1 x the largest cost of
the run's children, and :func:`front_hypervolume` takes a common one to compare
runs.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eas.checkpoint import atomic_write_text, network_record
from eas.objectives import COSTS
from eas.pareto import hypervolume_2d, non_dominated
from eas.reports.summary import save_figure

__all__ = ["PARETO_COLUMNS", "common_hypervolumes", "front_hypervolume", "front_records", "pareto_summary",
           "plot_pareto", "update_front_networks", "write_pareto_reports"]

PARETO_COLUMNS = ("step", "stage", "arch", "accuracy", "params", "flops", "latency_ms",
                  "failed") + tuple(f"on_front_{c}" for c in COSTS)
"""Columns of pareto.csv."""

_LABELS = {"params": "parameters", "flops": "FLOPs (multiply-accumulates)",
           "latency_ms": "latency (ms, median)"}


def _usable(rec: dict[str, Any], cost: str) -> bool:
    acc, value = rec.get("accuracy"), rec.get(cost)
    return (not rec.get("failed") and acc is not None and math.isfinite(float(acc))
            and value is not None and math.isfinite(float(value)))


def front_records(history: Sequence[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """The non-dominated children for (accuracy up, ``cost`` down), sorted by cost.

    One record per architecture (its best evaluation, the earlier on ties);
    failed children and children without that cost are left out.
    """
    best: dict[str, dict[str, Any]] = {}
    for rec in history:
        if not _usable(rec, cost):
            continue
        old = best.get(rec["arch"])
        if old is None or rec["accuracy"] > old["accuracy"]:
            best[rec["arch"]] = rec
    recs = list(best.values())
    keep = non_dominated([(1.0 - float(r["accuracy"]), float(r[cost])) for r in recs])
    return sorted((recs[i] for i in keep), key=lambda r: (float(r[cost]), -r["accuracy"]))


def front_hypervolume(front: Sequence[dict[str, Any]], cost: str, reference_cost: float) -> float:
    """Normalised hypervolume of a front (records) against ``(error 1.0, reference_cost)``."""
    if not reference_cost > 0:
        raise ValueError(f"reference_cost must be > 0, got {reference_cost}")
    pts = [(1.0 - float(r["accuracy"]), float(r[cost])) for r in front]
    return hypervolume_2d(pts, (1.0, float(reference_cost))) / float(reference_cost)


def common_hypervolumes(histories: dict[str, Sequence[dict[str, Any]]],
                        cost: str = "params") -> dict[str, float]:
    """Hypervolume of each run's front against one reference: 1.1 x the largest cost of all.

    For comparing agents (``eas compare``): ``histories`` maps a run name to its
    history; runs without that cost get NaN.
    """
    values = [float(r[cost]) for h in histories.values() for r in h if _usable(r, cost)]
    if not values:
        return {name: float("nan") for name in histories}
    ref = 1.1 * max(values)
    return {name: front_hypervolume(front_records(h, cost), cost, ref)
            if any(_usable(r, cost) for r in h) else float("nan")
            for name, h in histories.items()}


def pareto_summary(history: Sequence[dict[str, Any]],
                   reference: dict[str, float] | None = None) -> dict[str, Any]:
    """Per cost present in ``history``: the front (arch and objectives) and its hypervolume."""
    out: dict[str, Any] = {}
    for cost in COSTS:
        values = [float(r[cost]) for r in history if _usable(r, cost)]
        if not values:
            continue
        ref = (reference or {}).get(cost, 1.1 * max(values))
        front = front_records(history, cost)
        out[cost] = {
            "front": [{k: r.get(k) for k in ("step", "arch", "accuracy", "params", "flops",
                                             "latency_ms")} for r in front],
            "hypervolume": front_hypervolume(front, cost, ref),
            "reference": [1.0, ref],
        }
    return out


def _on_fronts(history: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    return {c: {id(r) for r in front_records(history, c)} for c in COSTS}


def update_front_networks(archive: dict[str, dict[str, Any]], history: Sequence[dict[str, Any]],
                          rec: dict[str, Any], net: Any) -> bool:
    """Keep network records (with weights) of the architectures on any front.

    Call after appending ``rec`` (the child just evaluated, trained ``net``) to
    ``history``: stores ``net`` under ``rec["arch"]`` when ``rec`` is on a front
    now, and drops archived architectures no longer on any front. Returns
    whether ``rec`` was stored. The archive is what ``eas.export`` exports for
    ``--which front``.
    """
    on = _on_fronts(history)
    on_any = set().union(*on.values())
    stored = False
    if id(rec) in on_any and net is not None and not rec.get("failed"):
        meta = {k: rec.get(k) for k in ("accuracy", "step", "stage", "params", "flops",
                                        "latency_ms")}
        archive[rec["arch"]] = network_record(net.cpu() if hasattr(net, "cpu") else net, **meta)
        stored = True
    front_archs = {r["arch"] for r in history if id(r) in on_any}
    for arch in [a for a in archive if a not in front_archs]:
        del archive[arch]
    return stored


def compact_number(value: float) -> str:
    """A short tick label: 950, 12k, 1.5M, 2G (two significant digits)."""
    value = float(f"{value:.2g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def readable_log_ticks(ax: Any, values: Sequence[float], most: int = 5) -> None:
    """At most ``most`` labelled x ticks on a log axis, spread over ``values``, with
    compact labels (1.5M, not 1.5 x 10^6) and no minor-tick labels (which overlap when
    the values span less than a decade or two)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = min(values), max(values)
    if hi <= lo:
        ticks = [lo]
    else:
        raw = [lo * (hi / lo) ** (i / (most - 1)) for i in range(most)]
        ticks = sorted({float(f"{t:.2g}") for t in raw})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_number(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_pareto(history: Sequence[dict[str, Any]], path: str | Path, *,
                title: str = "Accuracy against cost") -> Path:
    """One panel per cost present: every child a dot, the front as a step line (log x)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    costs = [c for c in COSTS if any(_usable(r, c) for r in history)] or ["params"]
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4.2), dpi=110,
                             squeeze=False)
    try:
        for ax, cost in zip(axes[0], costs):
            ok = [r for r in history if _usable(r, cost)]
            ax.scatter([r[cost] for r in ok], [100 * r["accuracy"] for r in ok], s=12,
                       alpha=0.5, label="children")
            front = front_records(history, cost)
            if front:
                xs = [r[cost] for r in front]
                ys = [100 * r["accuracy"] for r in front]
                ax.step(xs, ys, where="post", color="C3", linewidth=1.6)
                ax.scatter(xs, ys, s=28, color="C3", label=f"front ({len(front)})", zorder=3)
            if ok and min(r[cost] for r in ok) > 0:
                ax.set_xscale("log")
                readable_log_ticks(ax, [float(r[cost]) for r in ok])
            ax.set_xlabel(_LABELS[cost])
            ax.set_ylabel("validation accuracy (%)")
            ax.grid(alpha=0.3)
            if ok:
                ax.legend(loc="lower right", fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path = save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def write_pareto_reports(run_dir: str | Path, history: Sequence[dict[str, Any]], *,
                         title: str = "Accuracy against cost") -> dict[str, Any]:
    """Write ``pareto.csv`` and ``pareto.png`` into ``run_dir``; return :func:`pareto_summary`."""
    run_dir = Path(run_dir)
    on = _on_fronts(history)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PARETO_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in history:
        row = {k: ("" if r.get(k) is None else r.get(k)) for k in PARETO_COLUMNS[:8]}
        row.update({f"on_front_{c}": int(id(r) in on[c]) for c in COSTS})
        writer.writerow(row)
    atomic_write_text(buf.getvalue(), run_dir / "pareto.csv")
    plot_pareto(history, run_dir / "pareto.png", title=title)
    return pareto_summary(history)
