"""End-of-search reporting: the summary table (text, JSON, CSV) and the progress plot.

``history`` is the search's list of per-child records (dicts with at least
``step`` (1-based index of the child), ``stage``, ``arch``, ``accuracy``,
``params``, ``flops``, ``failed``). The plot mirrors Figure 4 of the EAS paper:
the validation accuracy of every sampled network against the number of
networks sampled, with the running best and the stage boundaries.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from eas.checkpoint import atomic_write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only back-end)

__all__ = ["SUMMARY_COLUMNS", "format_table", "plot_progress", "retries", "save_figure",
           "top_architectures", "write_summary"]

SUMMARY_COLUMNS = ("rank", "arch", "val_accuracy", "params", "flops", "stage", "step",
                   "test_accuracy")
"""Columns of summary.csv and of the printed table."""


def retries(history: list[dict[str, Any]]) -> dict[str, int]:
    """Children that needed more than one try and the failed tries, over ``history``
    (cached children are copies of a trained one and do not count)."""
    counted = [h for h in history if not h.get("cached")]
    return {"children": sum(1 for h in counted if int(h.get("attempts") or 1) > 1),
            "failed_attempts": sum(max(0, int(h.get("attempts") or 1) - 1) for h in counted)}


def top_architectures(history: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct architectures by validation accuracy (failed children excluded).

    For an architecture sampled several times the best evaluation counts; ties
    go to the earlier child.
    """
    best: dict[str, dict[str, Any]] = {}
    for rec in history:
        if rec.get("failed") or not math.isfinite(rec.get("accuracy", float("nan"))):
            continue
        old = best.get(rec["arch"])
        if old is None or rec["accuracy"] > old["accuracy"]:
            best[rec["arch"]] = rec
    ranked = sorted(best.values(), key=lambda r: (-r["accuracy"], r["step"]))
    return ranked[:k]


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if pct:
        return f"{100 * value:.2f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.2f}M"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], max_arch: int = 90) -> str:
    """A fixed-width text table of summary rows (accuracies in %, params/FLOPs in millions)."""
    head = ["#", "val acc %", "test acc %", "params", "FLOPs", "stage", "child", "architecture"]
    body = []
    for r in rows:
        arch = r["arch"] if len(r["arch"]) <= max_arch else r["arch"][: max_arch - 3] + "..."
        body.append([
            str(r["rank"]), _fmt(r["val_accuracy"], True), _fmt(r.get("test_accuracy"), True),
            _fmt(r["params"]), _fmt(r["flops"]), str(r["stage"]), str(r["step"]), arch,
        ])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    return "\n".join(lines)


def summary_rows(top: Sequence[dict[str, Any]],
                 final: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows of the summary table; ``final`` maps arch -> final-training record (test accuracy)."""
    final = final or {}
    rows = []
    for i, rec in enumerate(top, 1):
        fin = final.get(rec["arch"], {})
        rows.append({
            "rank": i,
            "arch": rec["arch"],
            "val_accuracy": rec["accuracy"],
            "params": rec.get("params", 0),
            "flops": rec.get("flops", 0),
            "stage": rec.get("stage", 1),
            "step": rec["step"],
            "test_accuracy": fin.get("test_accuracy"),
        })
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_summary(run_dir: str | Path, summary: dict[str, Any],
                  rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``summary.json`` (``summary`` plus ``top`` = ``rows``) and ``summary.csv`` (rows)."""
    run_dir = Path(run_dir)
    data = dict(summary)
    data["top"] = list(rows)
    json_path = atomic_write_text(json.dumps(_jsonable(data), indent=2) + "\n",
                                  run_dir / "summary.json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SUMMARY_COLUMNS})
    csv_path = atomic_write_text(buf.getvalue(), run_dir / "summary.csv")
    return json_path, csv_path


def plot_progress(
    history: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    start_accuracies: Sequence[float | None] = (),
    control_accuracies: Sequence[float | None] = (),
    final_accuracy: float | None = None,
    no_search_accuracy: float | None = None,
    title: str = "Architecture search progress",
) -> Path:
    """Plot every child's validation accuracy against networks sampled (EAS Figure 4 style).

    Dots: sampled networks (failed ones as crosses at 0); line: running best per
    stage; dashed vertical lines: stage boundaries; dotted horizontal lines: the
    start network of each stage (``start_accuracies[i]`` for stage ``i + 1``);
    dash-dotted horizontal lines: each stage's parent control (``control_accuracies``);
    across the whole plot, solid black: the final network's validation accuracy after
    its final training (``final_accuracy``), dashed black: the no-search control's
    (the start architecture trained from scratch for the run's time).
    """
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        stages = sorted({int(r.get("stage", 1)) for r in history}) or [1]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for si, stage in enumerate(stages):
            recs = [r for r in history if int(r.get("stage", 1)) == stage]
            color = colors[si % len(colors)]
            ok = [r for r in recs if not r.get("failed")]
            bad = [r for r in recs if r.get("failed")]
            ax.scatter([r["step"] for r in ok], [100 * r["accuracy"] for r in ok], s=10,
                       alpha=0.6, color=color, label=f"stage {stage} networks")
            if bad:
                ax.scatter([r["step"] for r in bad], [0.0] * len(bad), marker="x", s=14,
                           color=color, alpha=0.6)
            best, xs, ys = -math.inf, [], []
            for r in ok:
                best = max(best, r["accuracy"])
                xs.append(r["step"])
                ys.append(100 * best)
            if xs:
                ax.step(xs, ys, where="post", color=color, linewidth=1.6,
                        label=f"stage {stage} best")
            start = start_accuracies[stage - 1] if stage - 1 < len(start_accuracies) else None
            if start is not None and math.isfinite(start) and recs:
                ax.hlines(100 * start, recs[0]["step"], recs[-1]["step"], colors=color,
                          linestyles=":", linewidth=1.2, label=f"stage {stage} start")
            ctrl = control_accuracies[stage - 1] if stage - 1 < len(control_accuracies) else None
            if ctrl is not None and math.isfinite(ctrl) and recs:
                ax.hlines(100 * ctrl, recs[0]["step"], recs[-1]["step"], colors=color,
                          linestyles="-.", linewidth=1.2, label=f"stage {stage} parent control")
            if si > 0 and recs:
                ax.axvline(recs[0]["step"] - 0.5, color="grey", linestyle="--", linewidth=1)
        if history:
            x0, x1 = history[0]["step"], history[-1]["step"]
            for acc, style, label in ((final_accuracy, "-", "final network (trained)"),
                                      (no_search_accuracy, "--", "no-search control")):
                if acc is not None and math.isfinite(acc):
                    ax.hlines(100 * acc, x0, x1, colors="black", linestyles=style,
                              linewidth=1.4, label=label)
        accs = [100 * r["accuracy"] for r in history if not r.get("failed")]
        accs += [100 * a for a in (*start_accuracies, *control_accuracies, final_accuracy,
                                   no_search_accuracy)
                 if a is not None and math.isfinite(a)]
        if accs:
            lo, hi = min(accs), max(accs)
            pad = max(0.5, 0.1 * (hi - lo))
            ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        ax.set_xlabel("networks sampled")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if history:
            ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path
