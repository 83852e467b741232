"""The architecture search: stages of rounds of children, with monitoring and checkpoints.

Read top to bottom, :func:`run_search` does what the EAS paper describes:

1. set up the run folder (``runs/<run name>/``), TensorBoard and the search's RNG;
2. build the start network and train it first when it has no trained weights
   (the paper's Table-1 start reached 87.07 % on CIFAR-10+);
3. build the child evaluator (:class:`envs.TrainerEvaluator`, wrapped in
   :class:`eas.envs.parallel.ParallelEvaluator` when several workers are asked for),
   the agent (``agents.registry.get_agent_class``) and the vector environment;
4. **stage 1**: rounds of ``children_per_step`` children until
   ``stage1_networks`` have been sampled. A round resets one environment per
   child from the round's start network, lets the agent propose transformations
   until the episodes end (the environment trains each child on the last step),
   and hands the children's records (:class:`~eas.envs.record.EvalResult`) to
   ``agent.learn``;
5. the best network so far is trained ``stage1_best_epochs`` longer and becomes
   the start of **stage 2** (``stage2_networks`` more children); ``search.stages``
   gives any number of stages (:mod:`eas.search.stages`), and at the start of
   each stage its start network is trained once as a child would be (the
   *parent control*, the search's baseline of plain further training);
6. the top ``final_top_k`` distinct architectures (by validation accuracy over
   the whole search) are trained ``final_epochs`` on train + validation with
   :func:`eas.training.final_train`, starting from their searched weights
   (``final_init = "weights"``, the paper's "further train") or from scratch,
   and their test accuracy is reported (with ``search.final_patience``: trained
   until validation accuracy plateaus, :mod:`eas.search.final`);
7. with ``search.no_search_control``, the start architecture is trained from
   scratch for the run's wall-clock so far: would plain training have won?
8. ``summary.json``/``summary.csv``, ``progress.png`` and a printed table.

Each step is a function of :mod:`eas.search.steps`; saving is a step too
(:func:`eas.search.state.save_progress`: the checkpoint; the round's journal is
opened and cleared here). What only observes the search (TensorBoard, progress
bar) are callbacks (:mod:`eas.search.callbacks`), and
``run_search(..., callbacks=[...])`` adds your own.

Nothing is lost: after every round ``checkpoint.pt`` is replaced atomically
(agent state with RNGs, evaluation cache, the search's RNG, counters, the
history of all children, the current stage's start network with weights and
the best networks), and while a round runs each finished child is written to
``journal/`` at once. ``--resume`` replays the interrupted round from the
restored RNG states; children already in the journal are not trained again, so
a kill loses at most the children being trained at that moment.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eas.config.sections import SearchConfig
from eas.network import ChildNet
from eas.search.agent_setup import agent_calls
from eas.search.callbacks import CallbackList, SearchCallback, default_callbacks
from eas.search.failures import check_chance, check_children
from eas.search.final import final_training, no_search_control
from eas.search.stages import parent_control
from eas.search.state import SearchOutcome, SearchRun, save_progress
from eas.search.steps import (
    build_agent,
    build_evaluator,
    build_start_network,
    end_stage,
    open_run,
    play_round,
    record_round,
    stage_is_over,
    write_reports,
)

__all__ = ["out_of_rounds", "run_search"]


def out_of_rounds(run: SearchRun) -> bool:
    """This invocation has run ``search.max_rounds`` rounds (resume to continue)."""
    limit = run.cfg.search.max_rounds
    return limit is not None and run.rounds_now >= limit


def run_search(
    cfg: SearchConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    evaluator: Callable[[ChildNet], Any] | None = None,
    data: Any = None,
    callbacks: Sequence[SearchCallback] = (),
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> SearchOutcome:
    """Run (or, with ``resume=True``, continue) the search described by ``cfg``.

    ``run_dir`` defaults to ``cfg.search.runs_dir / (run_name or default_run_name)``.
    ``evaluator`` replaces the default child trainer (any callable
    ``net -> accuracy | EvalResult``); ``data`` a preloaded :class:`eas.data.Data`;
    ``callbacks`` run after the built-in ones (folder guard, TensorBoard, progress), each
    hook after the loop's own saving step.
    """
    if cfg.search.progress and log is print:  # messages go above the progress bar, not through it
        log = tqdm.write
    with contextlib.ExitStack() as cleanup:  # closes TensorBoard, progress bar, worker pools
        run = open_run(cfg, run_dir=run_dir, resume=resume, data=data, evaluator=evaluator,
                       log=log, overwrite=overwrite)
        cleanup.callback(run.lock.release)
        cbs = CallbackList([*default_callbacks(run), *callbacks])
        cleanup.callback(cbs.close)
        build_start_network(run)
        run.agent, run.child_cfg = build_agent(run)  # the children's recipe: its overrides
        build_evaluator(run, evaluator, cbs, cleanup)
        save_progress(run)
        cbs.on_search_start(run)

        while not run.state.sampling_done:  # stages
            if not stage_is_over(run) and not out_of_rounds(run):
                parent_control(run, cbs)  # the stage's start trained as a child (once a stage)
            while not stage_is_over(run):  # rounds of children
                if out_of_rounds(run):
                    run.stopped = True
                    break
                run.lock.check()
                run.journal.begin_round(run.state.rounds)  # each finished child is journaled
                cbs.on_round_start(run)
                round_start = time.time()
                results = play_round(run)
                with agent_calls(cfg.search.agent, "learn"):
                    metrics = run.agent.learn(results)
                record_round(run, results, cbs)
                save_progress(run, best_files=True)
                run.journal.clear()  # the round is in the checkpoint now
                cbs.on_round_end(run, results, metrics, time.time() - round_start)
                check_children(run.state.history)  # every child so far failed: stop
            if run.stopped:
                break
            next_stage = end_stage(run)
            save_progress(run)
            cbs.on_stage_end(run, next_stage)
        cbs.on_sampling_end(run)

        if not run.stopped:
            check_chance(run.state.starts, run.state.history, run.num_classes)  # learned nothing
            final_training(run, cbs)
            no_search_control(run, cbs)  # search.no_search_control: would plain training win?
        run.lock.check()  # the folder is still ours before the reports go into it
        summary, table = write_reports(run)
        run.state.done = not run.stopped
        save_progress(run)
        cbs.on_search_end(run, summary)
        run.log(table)
        if run.stopped:
            run.log(f"stopped after {run.rounds_now} round(s) (search.max_rounds); continue "
                    f"with --resume {run.run_dir}")
        run.log(f"run folder: {run.run_dir}  (tensorboard --logdir {run.run_dir.parent})")
        return SearchOutcome(run_dir=run.run_dir, state=run.state, summary=summary,
                             finished=not run.stopped)
