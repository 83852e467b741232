"""N stages, the parent control and the compute budget of a search.

* **Stages.** ``search.stages = [35, 20, 20]`` runs three stages of that many
  children; each starts from the best network so far, trained
  ``search.stage_start_epochs`` longer (one value for all stages or one per
  stage after the first; none = ``stage1_best_epochs``). Unset, the stages are
  the paper's two: ``[stage1_networks, stage2_networks]`` (a 0 drops stage 2).
  The agent is the same object throughout, so the EAS controller keeps
  learning across stages and, with many short stages, compounds changes the
  way hill climbing does.
* **Parent control** (``search.parent_control``). At the start of each stage the
  start network is trained once more by the children's evaluator (same recipe,
  same extra budget a child gets). A child that beats its start only because it
  was trained longer does not beat this control; the report shows the search's
  gain over plain further training.
* **Compute budget** (``search.max_child_seconds``). The sampling ends once the
  children's training time (the sum of ``train_time``) reaches the budget, so
  agents whose children cost more get fewer of them (``eas compare --budget
  seconds``).
"""

from __future__ import annotations

from typing import Any

from eas.checkpoint import network_from_record
from eas.envs.record import CLOCK_FIELDS, EvalResult
from eas.search.state import SearchRun, pct, save_progress

__all__ = [
    "child_seconds",
    "format_stage_report",
    "parent_control",
    "seconds_spent",
    "stage_budgets",
    "stage_report",
    "stage_start_epochs",
]


def stage_budgets(s: Any) -> tuple[int, ...]:
    """Children per stage of search section ``s`` (``stages``, else the two stage fields)."""
    if s.stages is not None:
        return tuple(int(n) for n in s.stages)
    return (int(s.stage1_networks), int(s.stage2_networks))


def stage_start_epochs(s: Any, stage: int) -> int:
    """Extra epochs for the start network of ``stage`` (2, 3, ...)."""
    e = s.stage_start_epochs
    if e is None:
        return int(s.stage1_best_epochs)
    return int(e[0] if len(e) == 1 else e[stage - 2])


def child_seconds(history: list[dict[str, Any]], clock: str = "wall") -> float:
    """Seconds spent training children so far: the sum of their ``train_time`` (``clock``
    "wall") or ``train_cpu_time`` ("cpu")."""
    key = CLOCK_FIELDS[clock]
    return float(sum(float(h.get(key) or 0.0) for h in history))


def seconds_spent(run: SearchRun) -> bool:
    """True when ``search.max_child_seconds`` is set and the children have used it up."""
    limit = run.cfg.search.max_child_seconds
    return limit is not None and child_seconds(
        run.state.history, run.cfg.search.child_clock) >= float(limit)


def parent_control(run: SearchRun, callbacks: Any) -> None:
    """Train the current stage's start network as a child would be trained, once per stage.

    The accuracy goes into ``run.state.parent_controls`` (checkpointed), the
    log and ``callbacks.on_parent_control``. Does nothing when
    ``search.parent_control`` is off or this stage's control is done.
    """
    state = run.state
    if not run.cfg.search.parent_control or any(
            c["stage"] == state.stage for c in state.parent_controls):
        return
    start = state.starts[-1]
    result = run.evaluator(network_from_record(start))
    if not isinstance(result, EvalResult):
        result = EvalResult(accuracy=float(result))
    entry = {"stage": state.stage, "start_accuracy": start.get("accuracy"),
             "accuracy": None if result.failed else float(result.accuracy),
             "train_time": float(result.train_time), "failed": bool(result.failed)}
    state.parent_controls.append(entry)
    run.log(f"stage {state.stage} parent control (start network trained as a child): "
            f"val acc {pct(entry['accuracy'])} (start {pct(entry['start_accuracy'])})")
    save_progress(run)
    callbacks.on_parent_control(run, entry)


def stage_report(state: Any) -> list[dict[str, Any]]:
    """Per stage: start accuracy, parent control, best child and the gains over both."""
    rows = []
    controls = {c["stage"]: c for c in state.parent_controls}
    for k, start in enumerate(state.starts, 1):
        accs = [h["accuracy"] for h in state.history
                if h["stage"] == k and not h.get("failed")]
        best = max(accs) if accs else None
        ctrl = controls.get(k, {}).get("accuracy")
        s_acc = start.get("accuracy")
        rows.append({
            "stage": k, "children": sum(1 for h in state.history if h["stage"] == k),
            "start_accuracy": s_acc, "parent_control_accuracy": ctrl,
            "best_child_accuracy": best,
            "gain_over_start": None if best is None or s_acc is None else best - s_acc,
            "gain_over_parent_control": None if best is None or ctrl is None else best - ctrl,
        })
    return rows


def format_stage_report(rows: list[dict[str, Any]]) -> str:
    """The per-stage table printed at the end of a search."""
    lines = ["stage  children  start      parent control  best child  gain vs control"]
    for r in rows:
        gain = r["gain_over_parent_control"]
        lines.append(f"{r['stage']:>5}  {r['children']:>8}  {pct(r['start_accuracy']):>9}  "
                     f"{pct(r['parent_control_accuracy']):>14}  "
                     f"{pct(r['best_child_accuracy']):>10}  "
                     f"{'n/a' if gain is None else f'{100 * gain:+.2f} pts':>15}")
    return "\n".join(lines)
