"""The outputs of ``eas compare``: one record per run, the tables and the plot.

* :class:`RunRecord`: one (agent, seed) search, read from its run's
  ``summary.json`` (:func:`record_from_summary`).
* :func:`write_outputs`: ``comparison.csv``/``.md`` (per agent: best accuracy
  mean ± std and min/max over seeds, children, child seconds, wall time, front
  hypervolume), ``runs.csv``, ``curves.csv`` (every child's accuracy, the
  best-so-far accuracy and the child-training seconds spent so far) and
  ``comparison.png`` (best-so-far accuracy against children and against
  child-training seconds, mean over seeds with the min-max range).
* :func:`budget_rows`: with ``budgets``, each agent's best accuracy within each
  child-training budget and the one-sided permutation p-value that it beats each
  other agent there (``budgets.csv`` and a table in ``comparison.md``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from eas.envs.record import CLOCK_FIELDS
from eas.reports.pareto import front_hypervolume
from eas.reports.stats import permutation_p
from eas.reports.summary import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only back-end)

__all__ = ["RANK_BY", "RunRecord", "budget_rows", "record_from_summary", "write_outputs"]

RANK_BY = ("accuracy", "hypervolume")
"""How ``--rank-by`` may order the comparison's rows (best accuracy or front hypervolume)."""


@dataclass
class RunRecord:
    """One agent's search under one seed (read from its run's summary)."""

    agent: str
    seed: int
    start_accuracy: float
    accuracies: list[float] = field(default_factory=list)
    """Validation accuracy of every child, in evaluation order (0 for failed children)."""
    archs: list[str] = field(default_factory=list)
    cached: int = 0
    """Children answered by the evaluation cache (not trained again)."""
    failed: int = 0
    wall_time: float = 0.0
    best_arch: str = ""
    front: dict[str, Any] = field(default_factory=dict, repr=False)
    """The run's (accuracy, params) Pareto front: its summary's ``pareto["params"]``
    (``front`` records and ``reference``); empty if the run recorded no parameters."""
    child_seconds: float = 0.0
    """Seconds spent training children (on the run's ``child_clock``: see ``clock``)."""
    train_times: list[float] = field(default_factory=list)
    """Training seconds of every child, in evaluation order (0 for cached children)."""
    clock: str = "wall"
    """What ``train_times`` count: "wall" (``train_time``) or "cpu" (``train_cpu_time``)."""

    @property
    def best_so_far(self) -> list[float]:
        """Best accuracy after 0, 1, ..., n children (index 0 = the start network)."""
        out = [self.start_accuracy]
        for acc in self.accuracies:
            out.append(max(out[-1], acc))
        return out

    @property
    def seconds_so_far(self) -> list[float]:
        """Child-training seconds spent after 0, 1, ..., n children (index 0: 0.0)."""
        return [0.0, *np.cumsum(self.train_times or [0.0] * len(self.accuracies)).tolist()]

    def best_within(self, seconds: float) -> float:
        """Best accuracy among the children finished within ``seconds`` of child training
        (the start network included): the runs' budgets are checked once per round, so a
        run may overshoot; this reads every run at the same point."""
        return max(b for b, t in zip(self.best_so_far, self.seconds_so_far) if t <= seconds)

    @property
    def best_accuracy(self) -> float:
        """Best validation accuracy seen (the start network included)."""
        return self.best_so_far[-1]


def record_from_summary(agent: str, seed: int, summary: dict[str, Any],
                        start_accuracy: float) -> RunRecord:
    """A :class:`RunRecord` from a run's ``summary.json`` content (its ``history``); child
    seconds on the run's own ``child_clock`` (wall-clock for runs that predate it)."""
    hist = summary["history"]
    clock = str(summary.get("child_clock", "wall"))
    record = RunRecord(
        agent=agent, seed=seed, start_accuracy=float(start_accuracy),
        accuracies=[0.0 if h.get("failed") else float(h["accuracy"]) for h in hist],
        archs=[str(h["arch"]) for h in hist],
        cached=sum(bool(h.get("cached")) for h in hist),
        failed=sum(bool(h.get("failed")) for h in hist),
        wall_time=float(summary.get("elapsed_seconds", 0.0)),
        front=dict((summary.get("pareto") or {}).get("params") or {}),
        child_seconds=float(summary.get("child_seconds", 0.0)),
        train_times=[float(h.get(CLOCK_FIELDS[clock]) or 0.0) for h in hist], clock=clock,
    )
    best = int(np.argmax(record.accuracies)) if record.accuracies else -1
    if best >= 0 and record.accuracies[best] > record.start_accuracy:
        record.best_arch = record.archs[best]
    else:  # no child beat the start
        record.best_arch = str(summary["stage_starts"][0])
    return record



def _hypervolumes(records: Sequence[RunRecord]) -> list[float]:
    """Each run's front hypervolume against one reference for all runs (NaN without a front).

    The reference cost is the largest of the runs' own references, i.e. 1.1 x the
    largest parameter count of any child of any run (as in
    :func:`eas.reports.pareto.common_hypervolumes`).
    """
    refs = [float(r.front["reference"][1]) for r in records if r.front.get("front")]
    if not refs:
        return [float("nan")] * len(records)
    return [front_hypervolume(r.front["front"], "params", max(refs)) if r.front.get("front")
            else float("nan") for r in records]


def _summary(records: Sequence[RunRecord], rank_by: str | None = None,
             seconds: float | None = None) -> list[dict[str, Any]]:
    hv = _hypervolumes(records)
    rows = []
    for name in dict.fromkeys(r.agent for r in records):
        runs = [r for r in records if r.agent == name]
        hvs = [h for h, r in zip(hv, records) if r.agent == name]
        best = np.asarray([r.best_accuracy for r in runs])
        top = max(runs, key=lambda r: r.best_accuracy)
        rows.append({
            "agent": name,
            "seeds": len(runs),
            "best_acc_mean": float(best.mean()),
            "best_acc_std": float(best.std(ddof=1)) if len(best) > 1 else 0.0,
            "best_acc_min": float(best.min()),
            "best_acc_max": float(best.max()),
            "start_acc": float(runs[0].start_accuracy),
            "children": int(np.mean([len(r.accuracies) for r in runs])),
            "trained": float(np.mean([len(r.accuracies) - r.cached for r in runs])),
            "distinct": float(np.mean([len(set(r.archs)) / max(len(r.archs), 1)
                                       for r in runs])),
            "failed": float(np.mean([r.failed for r in runs])),
            "wall_time_s": float(np.mean([r.wall_time for r in runs])),
            "child_seconds": float(np.mean([r.child_seconds for r in runs])),
            "best_arch": top.best_arch,
            "hypervolume_params": float(np.mean(hvs)),
        })
        if seconds is not None:
            within = np.asarray([r.best_within(seconds) for r in runs])
            rows[-1].update({
                "best_within_budget_mean": float(within.mean()),
                "best_within_budget_std": float(within.std(ddof=1)) if len(within) > 1 else 0.0,
            })
    if rank_by is not None:
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}, got {rank_by!r}")
        key = "best_acc_mean" if rank_by == "accuracy" else "hypervolume_params"
        rows.sort(key=lambda row: -row[key] if np.isfinite(row[key]) else np.inf)
    return rows


def budget_rows(records: Sequence[RunRecord], budgets: Sequence[float]) -> list[dict[str, Any]]:
    """Per budget and agent: best accuracy within the budget (mean, std over seeds) and, for
    every other agent, the one-sided permutation p-value that this agent's mean is higher
    (``p_vs_<agent>``; exact over all splits of the seeds, :func:`~eas.reports.stats.permutation_p`)."""
    agents = list(dict.fromkeys(r.agent for r in records))
    rows = []
    for budget in budgets:
        within = {a: [r.best_within(budget) for r in records if r.agent == a] for a in agents}
        for agent in agents:
            vals = np.asarray(within[agent])
            row: dict[str, Any] = {
                "budget_s": float(budget), "agent": agent, "seeds": int(vals.size),
                "mean": float(vals.mean()),
                "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            }
            for other in agents:
                if other != agent:
                    row[f"p_vs_{other}"] = permutation_p(within[agent], within[other])
            rows.append(row)
    return rows


def _budget_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    fewest = min(r["seeds"] for r in rows)
    lines = ["| child-training budget | agent | best val. accuracy (mean ± std) | "
             + " | ".join(f"p (beats {a})" for a in agents) + " |",
             "|---|---|---|" + "---|" * len(agents)]
    for r in rows:
        ps = " | ".join("" if a == r["agent"] else f"{r[f'p_vs_{a}']:.3f}" for a in agents)
        lines.append(f"| {r['budget_s']:g} s | {r['agent']} | {r['mean']:.4f} ± {r['std']:.4f} "
                     f"| {ps} |")
    lines.append("")
    lines.append("p: one-sided permutation p-value that the row's agent has the higher mean "
                 "(exact over every split of the seeds"
                 + (f"; {fewest} seeds per agent: suggestive only" if fewest < 5 else "")
                 + "). A run counts the children finished within the budget.")
    return lines


def write_outputs(records: Sequence[RunRecord], out_dir: str | Path,
                  rank_by: str | None = None,
                  seconds: float | None = None,
                  budgets: Sequence[float] = ()) -> list[dict[str, Any]]:
    """Write comparison.csv/.md/.png, runs.csv and curves.csv; return the summary rows.

    The rows are in agent order, or ranked best first by ``rank_by`` ("accuracy":
    mean best accuracy; "hypervolume": mean hypervolume of the (accuracy,
    parameters) fronts). With ``seconds`` (the equal child-training budget) the
    rows also hold the best accuracy reached within it (:meth:`RunRecord.best_within`).
    With ``budgets`` it also writes ``budgets.csv`` and a table of :func:`budget_rows`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _summary(records, rank_by, seconds)
    with open(out_dir / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out_dir / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "seed", "best_accuracy", "children", "cached", "failed",
                    "wall_time_s", "best_arch", "child_seconds"])
        for r in records:
            w.writerow([r.agent, r.seed, f"{r.best_accuracy:.6f}", len(r.accuracies), r.cached,
                        r.failed, f"{r.wall_time:.3f}", r.best_arch, f"{r.child_seconds:.3f}"])
    with open(out_dir / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "seed", "child", "accuracy", "best_so_far", "child_seconds",
                    "arch"])
        for r in records:
            best, secs = r.best_so_far, r.seconds_so_far
            w.writerow([r.agent, r.seed, 0, f"{r.start_accuracy:.6f}", f"{best[0]:.6f}",
                        "0.000", "<start>"])
            for i, (acc, arch) in enumerate(zip(r.accuracies, r.archs), start=1):
                w.writerow([r.agent, r.seed, i, f"{acc:.6f}", f"{best[i]:.6f}",
                            f"{secs[i]:.3f}", arch])
    lines = [
        "| agent | best val. accuracy (mean ± std) | min – max | seeds | children | trained "
        "| distinct | child s / run | wall time / run | hypervolume (params) | best architecture |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['agent']} | {row['best_acc_mean']:.4f} ± {row['best_acc_std']:.4f} "
            f"| {row['best_acc_min']:.4f} – {row['best_acc_max']:.4f} | {row['seeds']} "
            f"| {row['children']} | {row['trained']:.1f} | {row['distinct']:.0%} "
            f"| {row['child_seconds']:.1f} s "
            f"| {row['wall_time_s']:.1f} s "
            f"| {row['hypervolume_params']:.4f} | `{row['best_arch']}` |")
    lines.append("")
    if seconds is not None:
        lines.append(f"Best within the budget of {seconds:g} child-training seconds (runs "
                     "stop at the end of the round that reaches it, so they may overshoot): "
                     + ", ".join(f"{row['agent']} {row['best_within_budget_mean']:.4f} ± "
                                 f"{row['best_within_budget_std']:.4f}" for row in rows) + ".")
        lines.append("")
    if budgets:
        brows = budget_rows(records, budgets)
        with open(out_dir / "budgets.csv", "w", newline="") as f:
            names = list(dict.fromkeys(k for row in brows for k in row))
            w = csv.DictWriter(f, fieldnames=names, restval="")
            w.writeheader()
            w.writerows(brows)
        lines.extend(_budget_lines(brows))
        lines.append("")
    lines.append(f"Start network accuracy: {rows[0]['start_acc']:.4f}.")
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n")
    _plot(records, out_dir / "comparison.png")
    return rows


def _step_at(x: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """The step function through (xs[i], ys[i]) (right-continuous) evaluated at ``x``."""
    idx = np.searchsorted(np.asarray(xs), x, side="right") - 1
    return np.asarray(ys)[np.clip(idx, 0, len(ys) - 1)]


def _plot(records: Sequence[RunRecord], path: Path) -> None:
    """Best-so-far accuracy against children (left) and child-training seconds (right).

    Per agent: the mean over seeds as a line, the min-max range as a band. On the
    seconds axis each run is a step function of its cumulative ``train_time``,
    drawn up to the shortest run of that agent.
    """
    fig, (ax_n, ax_s) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for name in dict.fromkeys(r.agent for r in records):
        runs = [r for r in records if r.agent == name]
        n = min(len(r.best_so_far) for r in runs)
        arr = np.asarray([r.best_so_far[:n] for r in runs])
        x = np.arange(n)
        (line,) = ax_n.plot(x, arr.mean(0), label=f"{name} (n={len(runs)})")
        color = line.get_color()
        ax_n.fill_between(x, arr.min(0), arr.max(0), color=color, alpha=0.2, lw=0)
        t_end = min(r.seconds_so_far[-1] for r in runs)
        t = np.linspace(0.0, t_end, 200) if t_end > 0 else np.zeros(1)
        arr = np.asarray([_step_at(t, r.seconds_so_far, r.best_so_far) for r in runs])
        ax_s.plot(t, arr.mean(0), color=color, label=f"{name} (n={len(runs)})")
        ax_s.fill_between(t, arr.min(0), arr.max(0), color=color, alpha=0.2, lw=0)
    ax_n.set_xlabel("children evaluated")
    ax_n.set_ylabel("best validation accuracy so far")
    fields = sorted({CLOCK_FIELDS.get(r.clock, "train_time") for r in records})
    ax_s.set_xlabel(f"child-training seconds (sum of {' / '.join(fields)})")
    for ax in (ax_n, ax_s):
        ax.grid(alpha=0.3)
    ax_n.legend()
    fig.suptitle("Search agents: mean over seeds, band = min-max")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
