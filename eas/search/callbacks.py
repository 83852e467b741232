"""Callbacks: what the search shows besides searching (TensorBoard, progress, your own).

The search loop calls the hooks of :class:`SearchCallback` at fixed points;
every hook does nothing by default, so a callback overrides only what it
needs. The loop always runs :func:`default_callbacks` (folder guard, TensorBoard,
progress bar, in that order) and then the ones passed to
``run_search(..., callbacks=[...])``::

    class PrintBest(SearchCallback):
        def on_round_end(self, run, results, metrics, round_time):
            print(run.state.best[0]["accuracy"] if run.state.best else None)

Hooks receive the live :class:`~eas.search.state.SearchRun` (configuration,
state, agent, run folder, ...). Callbacks observe (and may stop the run by
raising); the search's results do not depend on them. What correctness depends
on is a named step of the loop, not a callback: the round's journal is opened
before ``on_round_start``, and ``checkpoint.pt`` (:func:`eas.search.state.save_progress`)
is saved and the journal cleared before ``on_round_end`` (and before the stage,
parent-control, final-network and search-end hooks), so every hook sees the saved run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm.auto import tqdm

from eas.config.agent_sections import agent_section
from eas.config.engine import config_to_dict
from eas.envs.record import EvalResult
from eas.reports.summary import retries
from eas.search.stages import stage_budgets
from eas.search.state import (
    SearchRun,
    is_number,
    mean,
    nan_if_none,
    pct,
)

__all__ = [
    "CallbackList",
    "ProgressCallback",
    "SearchCallback",
    "TensorBoardCallback",
    "default_callbacks",
]


class SearchCallback:
    """Base class of search callbacks: every hook is a no-op by default.

    Order of calls in a run: :meth:`on_search_start`; per round
    :meth:`on_round_start`, :meth:`on_child_trained` (as each child finishes
    training), :meth:`on_child` (per child, once the round is over),
    :meth:`on_round_end`; :meth:`on_stage_end` after each stage;
    :meth:`on_sampling_end`; :meth:`on_final_network` per finally trained
    network; :meth:`on_search_end`; :meth:`close` (always, also after an error).
    """

    def on_search_start(self, run: SearchRun) -> None:
        """Everything is built (start network, agent, environments); no round has run yet."""

    def on_round_start(self, run: SearchRun) -> None:
        """A round of children is about to be reset and stepped."""

    def on_child_trained(self, run: SearchRun) -> None:
        """One child of the running round finished training (called from the evaluator)."""

    def on_child(self, run: SearchRun, child: EvalResult, rank: int | None) -> None:
        """A child's record was added to the history (as ``child.to_dict()``).

        ``rank`` is its place in the best list (0 = new best), None when it did not enter.
        """

    def on_round_end(self, run: SearchRun, results: list[EvalResult],
                     metrics: dict[str, Any], round_time: float) -> None:
        """The round is recorded; ``metrics`` are what ``agent.learn`` returned."""

    def on_stage_end(self, run: SearchRun, next_stage: int | None) -> None:
        """A stage ended; ``next_stage`` is the stage now starting, None when sampling is done."""

    def on_parent_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        """The stage's start network was trained as a child (``entry``: stage, accuracy, ...)."""

    def on_sampling_end(self, run: SearchRun) -> None:
        """No more children will be sampled in this invocation."""

    def on_final_network(self, run: SearchRun, entry: dict[str, Any]) -> None:
        """One of the best networks finished its final training (``entry`` = its result)."""

    def on_no_search_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        """The no-search control finished (``entry``: budget, epochs, val/test accuracy, seconds)."""

    def on_search_end(self, run: SearchRun, summary: dict[str, Any]) -> None:
        """The reports are written; ``summary`` is the content of summary.json."""

    def close(self) -> None:
        """Release resources (files, bars); called once, also when the search fails."""


class CallbackList(SearchCallback):
    """Calls each callback's hook in order."""

    def __init__(self, callbacks: Sequence[SearchCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_search_start(self, run: SearchRun) -> None:
        for cb in self.callbacks:
            cb.on_search_start(run)

    def on_round_start(self, run: SearchRun) -> None:
        for cb in self.callbacks:
            cb.on_round_start(run)

    def on_child_trained(self, run: SearchRun) -> None:
        for cb in self.callbacks:
            cb.on_child_trained(run)

    def on_child(self, run: SearchRun, child: EvalResult, rank: int | None) -> None:
        for cb in self.callbacks:
            cb.on_child(run, child, rank)

    def on_round_end(self, run: SearchRun, results: list[EvalResult],
                     metrics: dict[str, Any], round_time: float) -> None:
        for cb in self.callbacks:
            cb.on_round_end(run, results, metrics, round_time)

    def on_stage_end(self, run: SearchRun, next_stage: int | None) -> None:
        for cb in self.callbacks:
            cb.on_stage_end(run, next_stage)

    def on_parent_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_parent_control(run, entry)

    def on_sampling_end(self, run: SearchRun) -> None:
        for cb in self.callbacks:
            cb.on_sampling_end(run)

    def on_final_network(self, run: SearchRun, entry: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_final_network(run, entry)

    def on_no_search_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_no_search_control(run, entry)

    def on_search_end(self, run: SearchRun, summary: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_search_end(run, summary)

    def close(self) -> None:
        with contextlib.ExitStack() as stack:  # close every one, even if one fails
            for cb in reversed(self.callbacks):
                stack.callback(cb.close)


# ---------------------------------------------------------------------- TensorBoard
class TensorBoardCallback(SearchCallback):
    """TensorBoard events in the run folder: per child, per round, the configuration.

    Scalars go under ``charts/`` (per child every number of its record as
    ``charts/child_<field>``: accuracy, reward, params, FLOPs, train time, epochs, ...; per round the best, mean and round-best accuracy, stage, round time,
    cached fraction and the agent's own metrics); the configuration is logged
    as a markdown table and as TensorBoard hparams (metric: ``charts/best_accuracy``).
    How each child was trained: ``charts/child_cuda_graph`` (1 = replayed CUDA
    graph), the text ``child_precision`` (whenever the precision changes) and
    ``child_notes`` (e.g. why a CUDA graph fell back to eager steps).
    A resumed run appends to the same folder and drops events logged after
    the last checkpoint.
    """

    def __init__(self) -> None:
        self.writer: SummaryWriter | None = None
        self._precision: str | None = None  # the last child precision written

    def on_search_start(self, run: SearchRun) -> None:
        step = run.state.global_step
        self.writer = SummaryWriter(str(run.run_dir),
                                    purge_step=step + 1 if run.checkpoint else None)
        if run.checkpoint is None:  # once per run, not again on every resume
            self.writer.add_text("hyperparameters", _config_markdown(run), step)
            self._write_hparams(run)
        if run.new_start_accuracy is not None:
            self.writer.add_scalar("charts/start_accuracy", run.new_start_accuracy, 0)

    def _write_hparams(self, run: SearchRun) -> None:
        """The configuration as TensorBoard hparams (the HPARAMS tab compares runs)."""
        assert self.writer is not None
        values: dict[str, Any] = {}
        for section, fields in _config_sections(run).items():
            for key, value in fields.items():
                ok = isinstance(value, (bool, str)) or (is_number(value) and math.isfinite(value))
                values[f"{section}.{key}"] = value if ok else str(value)
        exp, ssi, sei = hparams(values, {"charts/best_accuracy": float("nan")})
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)

    def on_child(self, run: SearchRun, child: EvalResult, rank: int | None) -> None:
        w, step = self.writer, run.state.global_step
        assert w is not None
        for name, value in child.to_dict().items():  # every number of the record
            if is_number(value) and name not in _NOT_CHARTED:
                w.add_scalar(f"charts/child_{name}", value, step)
        w.add_scalar("charts/child_cuda_graph", float(child.cuda_graph), step)
        if child.precision is not None and child.precision != self._precision:
            w.add_text("child_precision", f"child {step} on: {child.precision}", step)
            self._precision = child.precision
        if child.note:
            w.add_text("child_notes", f"child {step}: {child.note}", step)
        if rank == 0:
            w.add_text("best_architecture",
                       f"`{child.arch}` — val acc {100 * child.accuracy:.2f}% "
                       f"(child {step}, stage {run.state.stage})", step)

    def on_round_end(self, run: SearchRun, results: list[EvalResult],
                     metrics: dict[str, Any], round_time: float) -> None:
        w, state = self.writer, run.state
        assert w is not None
        step = state.global_step
        for key, value in metrics.items():
            if is_number(value):
                w.add_scalar(key if "/" in key else f"charts/{key}", float(value), step)
        accs = [r.accuracy for r in results if not r.failed]
        w.add_scalar("charts/best_accuracy", _best_accuracy(run), step)
        w.add_scalar("charts/round_mean_accuracy", mean(accs), step)
        w.add_scalar("charts/round_best_accuracy", max(accs, default=0.0), step)
        w.add_scalar("charts/stage", state.stage, step)
        w.add_scalar("charts/round_time", round_time, step)
        w.add_scalar("charts/cached_fraction", mean([r.cached for r in results]), step)
        # a counter: the search's failed-and-retried child attempts so far (worker death,
        # node loss, out of memory, timeout); each child's own count is charts/child_attempts
        w.add_scalar("charts/retries", retries(state.history)["failed_attempts"], step)

    def on_stage_end(self, run: SearchRun, next_stage: int | None) -> None:
        if next_stage is not None:
            assert self.writer is not None
            self.writer.add_scalar(f"charts/stage{next_stage}_start_accuracy",
                                   nan_if_none(run.state.starts[-1].get("accuracy")),
                                   run.state.global_step)

    def on_parent_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.add_scalar("charts/parent_control_accuracy", nan_if_none(entry["accuracy"]),
                               run.state.global_step)

    def on_final_network(self, run: SearchRun, entry: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.add_scalar(f"charts/final_test_accuracy_{entry['rank']}",
                               nan_if_none(entry["test_accuracy"]), run.state.global_step)
        if "trained_val_accuracy" in entry:
            self.writer.add_scalar(f"charts/final_val_accuracy_{entry['rank']}",
                                   nan_if_none(entry["trained_val_accuracy"]),
                                   run.state.global_step)

    def on_no_search_control(self, run: SearchRun, entry: dict[str, Any]) -> None:
        assert self.writer is not None
        step = run.state.global_step
        self.writer.add_scalar("charts/no_search_control_val_accuracy",
                               nan_if_none(entry["val_accuracy"]), step)
        self.writer.add_scalar("charts/no_search_control_test_accuracy",
                               nan_if_none(entry["test_accuracy"]), step)
        self.writer.add_scalar("charts/no_search_control_epochs", entry["epochs"], step)
        self.writer.add_scalar("charts/no_search_control_seconds", entry["seconds"], step)

    def on_search_end(self, run: SearchRun, summary: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_NOT_CHARTED = ("step", "stage", "round")
"""Numbers of a child's record that are its place in the search, not facts to chart."""


def _config_sections(run: SearchRun) -> dict[str, dict[str, Any]]:
    """The configuration's sections, without the sections of agents not in use."""
    own = agent_section(run.cfg.search.agent)
    return {section: values for section, values in config_to_dict(run.cfg).items()
            if section not in ("controller", "random", "hill_climbing", "lemonade", "agent")
            or section == own}


def _config_markdown(run: SearchRun) -> str:
    rows = ["|section.field|value|", "|-|-|"]
    for section, values in _config_sections(run).items():
        rows += [f"|{section}.{k}|{v}|" for k, v in values.items()]
    return "\n".join(rows)


def _best_accuracy(run: SearchRun) -> float:
    return run.state.best[0]["accuracy"] if run.state.best else float("nan")


# ---------------------------------------------------------------------- progress
class ProgressCallback(SearchCallback):
    """A tqdm bar over the children (``search.progress``); without it, one line per round.

    Either way the log gets one line the first time a child's CUDA graph fell
    back to eager steps (the child's record keeps the reason; later ones are not logged).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.fallback_logged = False

    def on_child(self, run: SearchRun, child: EvalResult, rank: int | None) -> None:
        if child.fallback is not None and not self.fallback_logged:
            self.fallback_logged = True
            run.log(f"note: child {child.step} fell back to eager steps ({child.note}); "
                    "later fallbacks are only recorded (summary.json history, TensorBoard "
                    "child_notes)")

    def on_search_start(self, run: SearchRun) -> None:
        if not self.enabled:
            return
        s = run.cfg.search
        self.bar = tqdm(total=sum(stage_budgets(s)),
                        initial=run.state.global_step, desc="children", unit="child",
                        dynamic_ncols=True)

    def on_child_trained(self, run: SearchRun) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_round_end(self, run: SearchRun, results: list[EvalResult],
                     metrics: dict[str, Any], round_time: float) -> None:
        state, best = run.state, _best_accuracy(run)
        if self.bar is not None:
            self.bar.n = state.global_step
            self.bar.set_postfix(stage=state.stage, best=f"{100 * best:.2f}%")
            self.bar.refresh()
        else:
            accs = [r.accuracy for r in results if not r.failed]
            run.log(f"round {state.rounds} (stage {state.stage}): children "
                    f"{state.global_step}, round best {pct(max(accs, default=float('nan')))}, "
                    f"best {pct(best)}")

    def on_sampling_end(self, run: SearchRun) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------------- saving
class FolderGuard(SearchCallback):
    """Before every other callback writes: the run folder is still this run's
    (:meth:`eas.search.rundir.RunLock.check`), else the run stops with one line."""

    def on_round_start(self, run: SearchRun) -> None:  # noqa: D102
        run.lock.check()

    def on_child_trained(self, run: SearchRun) -> None:  # noqa: D102
        run.lock.check()

    def on_round_end(self, run: SearchRun, results: list[EvalResult],  # noqa: D102
                     metrics: dict[str, Any], round_time: float) -> None:
        run.lock.check()

    def on_stage_end(self, run: SearchRun, next_stage: int | None) -> None:  # noqa: D102
        run.lock.check()

    def on_parent_control(self, run: SearchRun, entry: dict[str, Any]) -> None:  # noqa: D102
        run.lock.check()

    def on_final_network(self, run: SearchRun, entry: dict[str, Any]) -> None:  # noqa: D102
        run.lock.check()

    def on_search_end(self, run: SearchRun, summary: dict[str, Any]) -> None:  # noqa: D102
        run.lock.check()


def default_callbacks(run: SearchRun) -> list[SearchCallback]:
    """The callbacks every search runs: the folder guard, TensorBoard, progress."""
    return [FolderGuard(), TensorBoardCallback(), ProgressCallback(bool(run.cfg.search.progress))]
