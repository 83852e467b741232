"""The named steps of the search loop (:func:`eas.search.loop.run_search` calls them in order).

Setting up: :func:`open_run` (data check, run folder, state, RNG),
:func:`build_start_network`, :func:`build_agent`, :func:`build_evaluator`.
Searching: :func:`stage_is_over` / :func:`end_stage`, :func:`play_round`,
:func:`record_round`. Finishing: :func:`final_training`, :func:`write_reports`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eas.agents.base import Agent
from eas.arch import resolve_start_arch
from eas.checkpoint import (
    atomic_write_text,
    network_from_record,
    network_record,
    read_torch_file,
    save_network,
)
from eas.config.checks import check_loaded_data
from eas.config.engine import config_to_dict, dump_toml, search_space
from eas.config.sections import ConfigError, SearchConfig
from eas.data import DATA_FILE, Data, fitting_batch, input_contract, load_dataset
from eas.datasets import dataset_facts
from eas.distill import DistillConfig
from eas.envs.cache import EvalCache
from eas.envs.evaluators import TrainerEvaluator
from eas.envs.halving import HalvingEvaluator
from eas.envs.journal import Journal
from eas.envs.objective_evaluator import ObjectivesEvaluator
from eas.envs.parallel import RETRY_LOG, ParallelEvaluator
from eas.envs.record import EvalResult
from eas.envs.rewards import make_reward
from eas.envs.shrink import ShrinkDistiller
from eas.envs.vector import VectorNetTransformEnv
from eas.evaluation import evaluate as evaluate_net
from eas.network import ChildNet, build_network
from eas.recipe import TrainConfig
from eas.reports.pareto import update_front_networks, write_pareto_reports
from eas.reports.summary import (
    format_table,
    plot_progress,
    retries,
    summary_rows,
    top_architectures,
    write_summary,
)
from eas.search.agent_setup import agent_calls, episode_settings, make_agent
from eas.search.callbacks import SearchCallback
from eas.search.concurrency import parallel_options, resolve_concurrency
from eas.search.failures import check_start
from eas.search.final import format_control
from eas.search.preflight import preflight
from eas.search.recipes import child_recipe
from eas.search.rundir import claim_run_dir
from eas.search.stages import (
    child_seconds,
    format_stage_report,
    seconds_spent,
    stage_budgets,
    stage_report,
    stage_start_epochs,
)
from eas.search.state import (
    CONFIG_FILE,
    JOURNAL_DIR,
    SearchRun,
    SearchState,
    pct,
    record_meta,
    resolve_device,
    update_best,
)
from eas.training import train_child

__all__ = [
    "build_agent",
    "build_evaluator",
    "build_start_network",
    "end_stage",
    "open_run",
    "play_round",
    "record_round",
    "stage_is_over",
    "write_reports",
]


# ---------------------------------------------------------------------- setting up
def open_run(cfg: SearchConfig, *, run_dir: str | Path | None, resume: bool, data: Any,
             evaluator: Any, log: Callable[[str], None], overwrite: bool = False) -> SearchRun:
    """Check everything, claim (or reopen) the run folder, restore the state and the RNG.

    :func:`eas.search.preflight.preflight` checks the whole configuration before
    any work and before anything is written; the run folder is then claimed
    (:func:`eas.search.rundir.claim_run_dir`: refused when it holds another run,
    unless ``resume`` or ``overwrite``; locked while this run is live).

    The dataset is loaded on first use (a run with a stand-in evaluator may need
    none), but before the run folder exists when children will be trained, so a
    missing dataset stops the run before it leaves anything behind.
    """
    plan = preflight(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite,
                     needs_data=evaluator is None and data is None)
    with agent_calls(cfg.search.agent, "env_requirements"):
        episode = episode_settings(cfg)  # the agent's environment settings, once
    device = resolve_device(cfg.data.device)
    loaded: dict[str, Any] = {"search": data}
    folder: list[Path] = []  # the run folder, once claimed

    def get_data(full: bool = False) -> Any:
        """The dataset (loaded on first use); ``full`` ignores data.train_subset."""
        key = "full" if full and cfg.data.train_subset is not None else "search"
        if loaded.get(key) is None:
            d = cfg.data
            try:
                loaded[key] = load_dataset(
                    d.name, d.root, val_size=d.val_size, seed=d.seed,
                    train_subset=None if key == "full" else d.train_subset, device=device,
                    use_extra=d.use_extra, download=d.download,
                )
            except ValueError as exc:  # sizes that do not fit this dataset
                name = next((f for f in ("train_subset", "val_size") if f in str(exc)), None)
                raise ConfigError(f"data.{name}" if name else "data", str(exc)) from None
            if key == "search" and folder:
                _write_data_file(folder[0], loaded[key])
        return loaded[key]

    if evaluator is None:
        check_loaded_data(cfg, get_data())  # every class present, a batch fits: before writing
    s = cfg.search
    deeper_batch = None  # fitted to the training data when the run has it (EAS code)
    if s.deeper_batch_size > 0 and isinstance(loaded.get("search"), Data):
        deeper_batch = fitting_batch(loaded["search"], s.deeper_batch_size, seed=int(s.seed))
    run_dir, lock = claim_run_dir(plan.run_dir, resume=resume, overwrite=overwrite,
                                  auto_name=plan.auto_name)
    checkpoint = plan.checkpoint  # preflight: a resumed run has one
    atomic_write_text(dump_toml(cfg), run_dir / CONFIG_FILE)
    folder.append(run_dir)
    if loaded.get("search") is not None:
        _write_data_file(run_dir, loaded["search"])
    state = SearchState(**checkpoint["state"]) if checkpoint is not None else SearchState()

    rng = np.random.default_rng(int(s.seed))  # the search's own RNG: per-round env seeds
    if checkpoint is not None:
        rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])

    facts = dataset_facts(cfg.data.name)
    if facts is not None:
        input_shape, num_classes = facts
    else:
        input_shape, num_classes = get_data().input_shape, get_data().num_classes
    return SearchRun(cfg=cfg, run_dir=run_dir, state=state, rng=rng, get_data=get_data,
                     device=device, episode=episode, log=log, checkpoint=checkpoint,
                     input_shape=tuple(input_shape), num_classes=num_classes,
                     child_cfg=cfg.child, elapsed_before=state.elapsed,
                     cpu_before=state.cpu_seconds, lock=lock, deeper_batch=deeper_batch)


def _contract(data: Any) -> dict[str, Any] | None:
    """:func:`eas.data.input_contract` of an :class:`eas.data.Data` (None for other data)."""
    return input_contract(data) if isinstance(data, Data) else None


def _write_data_file(run_dir: Path, data: Any) -> None:
    """Record what the networks expect as input (``data.json``; see ``eas export``)."""
    contract = _contract(data)
    if contract is not None:
        atomic_write_text(json.dumps(contract, indent=2) + "\n", run_dir / DATA_FILE)


def build_start_network(run: SearchRun) -> None:
    """The stage's start network: restored, loaded from ``start.weights``, or trained first.

    The paper's Table-1 start reached 87.07 % on CIFAR-10+ before the search.
    """
    cfg, state, seed = run.cfg, run.state, int(run.cfg.search.seed)
    if state.starts:
        run.start_net = network_from_record(state.starts[-1])
    else:
        arch = resolve_start_arch(cfg.start.arch, run.input_shape, run.num_classes)
        net = build_network(arch, run.input_shape, dropout=cfg.start.dropout, seed=seed)
        acc: float | None = None
        if cfg.start.weights:
            _load_start_weights(net, cfg.start.weights)
            data = run.get_data()
            acc = evaluate_net(net, data.val_x, data.val_y, data)
            run.log(f"start network loaded from {cfg.start.weights}: val acc {acc:.4f}")
        elif cfg.start.epochs > 0:
            run.log(f"training the start network {arch} for {cfg.start.epochs} epochs ...")
            res = train_child(net, run.get_data(),
                              cfg.start.recipe(cfg.child, cfg.start.epochs),
                              device=run.device, seed=seed, progress=cfg.search.progress)
            acc = res.val_accuracy
            check_start(acc, res.failed, res.reason)
            net.cpu()
            run.log(f"start network: val acc {acc:.4f} in {res.train_time:.1f}s")
        state.starts.append(network_record(net, accuracy=acc, stage=1, epochs=cfg.start.epochs))
        save_network(net, run.run_dir / "start_1.pt", accuracy=acc, stage=1)
        run.start_net, run.new_start_accuracy = net, acc
    run.log(f"stage {state.stage} start: {run.start_net.arch} "
            f"(val acc {pct(state.starts[-1].get('accuracy'))})")


def build_agent(run: SearchRun) -> tuple[Agent, TrainConfig]:
    """The agent for ``run.episode``, and the children's recipe with its overrides.

    On a fresh run the agent hears the start network's accuracy; on a resumed
    one it gets its checkpointed state back. Its child-training overrides
    (NASH's SGDR) are applied to ``cfg.child`` (:func:`eas.search.recipes.child_recipe`,
    which logs each value replaced).
    """
    cfg, s = run.cfg, run.cfg.search
    start_accuracy = run.state.starts[-1].get("accuracy")
    with agent_calls(s.agent, "__init__"):
        agent = make_agent(cfg, run.episode, input_shape=run.input_shape,
                           num_classes=run.num_classes,
                           densenet=run.start_net.arch.is_densenet,
                           start_accuracy=start_accuracy)
    if run.episode.requested:
        run.log(f"{s.agent} sets: {run.episode.describe()}")
    with agent_calls(s.agent, "load_state_dict" if run.checkpoint is not None
                     else "set_start_accuracy"):
        if run.checkpoint is not None:
            agent.load_state_dict(run.checkpoint["agent"])
        elif start_accuracy is not None:
            agent.set_start_accuracy(start_accuracy)
    return agent, child_recipe(cfg.child, agent, s.agent, run.log)


class _RunLogHandler(logging.Handler):
    """Forwards log records (the back-ends' retry lines) to the search's ``run.log``."""

    def __init__(self, run: SearchRun) -> None:
        super().__init__(logging.WARNING)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.run.log(record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never break the search
            self.handleError(record)


def build_evaluator(run: SearchRun, evaluator: Callable[[ChildNet], Any] | None,
                    callbacks: SearchCallback, cleanup: contextlib.ExitStack) -> None:
    """The child evaluator, its journal and the evaluation cache.

    Default: :class:`TrainerEvaluator` on the search data, wrapped in a
    :class:`~eas.envs.parallel.ParallelEvaluator` when several workers (or the
    process/ray back-end) are asked for. The journal records each finished
    child at once (and tells ``callbacks.on_child_trained``).
    """
    s = run.cfg.search
    handler = _RunLogHandler(run)  # each retry of a child: one line, in the search's log only
    RETRY_LOG.addHandler(handler)
    cleanup.callback(setattr, RETRY_LOG, "propagate", RETRY_LOG.propagate)
    cleanup.callback(RETRY_LOG.removeHandler, handler)
    RETRY_LOG.propagate = False
    if evaluator is None:
        evaluator = TrainerEvaluator(run.get_data(), run.child_cfg, device=run.device,
                                          seed=int(s.seed))
        conc = resolve_concurrency(s.workers, s.backend, s.children_per_gpu, run.device)
        if conc.parallel:
            evaluator = ParallelEvaluator(evaluator, workers=conc.workers, backend=conc.backend,
                                          device="cpu" if run.device == "cpu" else None,
                                          **parallel_options(s))
            cleanup.callback(evaluator.close)
    if run.cfg.halving.enabled:  # successive halving of each round's children (eas.envs.halving)
        evaluator = HalvingEvaluator(evaluator, run.cfg.halving.rungs, run.cfg.halving.eta)
        cleanup.callback(evaluator.close)
    o = run.cfg.objectives  # params/FLOPs (and latency) into every result
    evaluator = ObjectivesEvaluator(evaluator, latency=o.latency,
                                         batch_size=o.latency_batch_size,
                                         repeats=o.latency_repeats, warmup=o.latency_warmup,
                                         device=run.device)
    run.evaluator = evaluator
    run.journal = Journal(run.run_dir / JOURNAL_DIR, evaluator,
                          on_child=lambda: callbacks.on_child_trained(run),
                          guard=run.lock.check)  # never recreate a vanished run folder
    run.cache = EvalCache(max_weights=run.episode.children_per_step) if s.cache else None
    if run.cache is not None and run.checkpoint is not None and run.checkpoint.get("cache"):
        run.cache.load_state_dict(run.checkpoint["cache"])


# ---------------------------------------------------------------------- stages
def stage_is_over(run: SearchRun) -> bool:
    """The stage's budget of children (or the search's child seconds) is spent, or the agent
    is finished with it."""
    budgets = stage_budgets(run.cfg.search)
    budget = budgets[run.state.stage - 1] if run.state.stage <= len(budgets) else 0
    return (run.state.stage_children >= budget or bool(run.agent.finished)
            or seconds_spent(run))


def end_stage(run: SearchRun) -> int | None:
    """Move to the next stage (from the best network so far, trained longer) or end the sampling.

    Returns the stage now starting, or None when all stages are done (or
    ``search.max_child_seconds`` is spent).
    """
    state = run.state
    budgets = stage_budgets(run.cfg.search)
    more = state.stage < len(budgets) and budgets[state.stage] > 0 and not seconds_spent(run)
    if more and state.best:
        nxt = state.stage + 1
        run.start_net = _next_stage_start(run, nxt)
        save_network(run.start_net, run.run_dir / f"start_{nxt}.pt",
                     **record_meta(state.starts[-1]))
        state.stage, state.stage_children = nxt, 0
        return nxt
    if more:
        run.log(f"stage {state.stage + 1} cannot start: no child of stage {state.stage} "
                "trained successfully")
    state.sampling_done = True
    return None


def _next_stage_start(run: SearchRun, stage: int) -> ChildNet:
    """Train the best network so far ``stage_start_epochs`` longer; it starts ``stage``."""
    s, state = run.cfg.search, run.state
    best = state.best[0]
    net = network_from_record(best["network"])
    acc = best["accuracy"]
    epochs = stage_start_epochs(s, stage)
    if epochs > 0:
        run.log(f"best so far ({100 * acc:.2f}%): training it {epochs} more "
                f"epochs to start stage {stage}: {best['arch']}")
        longer = run.cfg.start.recipe(run.child_cfg, epochs)
        res = train_child(net, run.get_data(), longer, device=run.device, seed=int(s.seed),
                          progress=s.progress)
        net.cpu()
        if not res.failed:
            acc = res.val_accuracy
        else:  # keep the searched weights rather than a diverged network
            run.log(f"  retraining failed ({res.reason}); stage {stage} starts from the "
                    "searched weights")
            net = network_from_record(best["network"])
        run.log(f"  stage {stage} start: val acc {100 * acc:.2f}%")
    state.starts.append(network_record(net, accuracy=acc, stage=stage, epochs=epochs))
    return net


# ---------------------------------------------------------------------- one round
def _vector_env(run: SearchRun, n: int) -> Any:
    """A vector env of ``n`` children (all share one evaluation cache).

    With ``search.shrink`` the shrink actions are on and a shrunk child is distilled
    from the round's start network (``search.shrink_distill_steps``; ``envs.shrink``).
    """
    s = run.cfg.search
    if n not in run.venvs:
        distiller = (ShrinkDistiller(run.get_data, DistillConfig(steps=s.shrink_distill_steps),
                                          device=run.device)
                     if s.shrink and s.shrink_distill_steps > 0 else None)
        run.venvs[n] = VectorNetTransformEnv(
            n, start=run.start_net, input_shape=run.input_shape, evaluator=run.journal,
            space=search_space(run.cfg), schedule=run.episode.schedule, free_steps=run.episode.free_steps,
            max_layers=run.cfg.space.max_layers, noise=run.cfg.search.noise,
            cache=run.cache if run.cache is not None else False,
            reward=make_reward(run.cfg.objectives), shrink=s.shrink, distill=distiller,
            deeper_batch=run.deeper_batch,
        )
    return run.venvs[n]


def play_round(run: SearchRun) -> list[EvalResult]:
    """Reset ``n`` children from the round's start and let the agent act until they are trained.

    ``n`` is what the agent asks for, capped by the stage's remaining budget;
    the start is the agent's choice or the stage's start network. Returns the
    children's records (the environments' ``info["child"]``), numbered with
    their step, stage and round, for ``agent.learn`` and :func:`record_round`.
    """
    s, state, agent = run.cfg.search, run.state, run.agent
    budget = stage_budgets(s)[state.stage - 1]
    n = min(max(int(agent.children_this_round()), 1), budget - state.stage_children)
    venv = _vector_env(run, n)
    start = agent.start_network()
    start = run.start_net if start is None else start
    if isinstance(start, (list, tuple)):  # one start per child (None = the stage's start)
        start = [run.start_net if s is None else s for s in start[:n]]
    obs, _ = venv.reset(seed=int(run.rng.integers(2**31 - 1)), options={"start": start})
    for _ in range(run.episode.steps + 1):
        with agent_calls(s.agent, "propose"):
            action = agent.propose(obs)
        obs, _, terminated, truncated, infos = venv.step(action)
        if np.all(np.logical_or(terminated, truncated)):
            break
    else:
        raise RuntimeError(f"episodes did not end after {run.episode.steps + 1} steps")
    results = [final["child"] for final in infos["final"]]
    for i, child in enumerate(results, 1):
        child.step, child.stage, child.round = state.global_step + i, state.stage, state.rounds + 1
    return results


def record_round(run: SearchRun, results: list[EvalResult], callbacks: SearchCallback) -> None:
    """Add the round's children to the history (their records' ``to_dict()``) and the best list."""
    s, state = run.cfg.search, run.state
    keep = max(s.keep_best, s.final_top_k, 1)
    for r in results:
        state.global_step += 1
        state.stage_children += 1
        rec = r.to_dict()
        state.history.append(rec)
        rank = None
        if r.net is not None and not r.failed:
            update_front_networks(state.front_nets, state.history, rec, r.net)
            rank = update_best(state.best, rec, r.net, keep, s.rank_by)
        callbacks.on_child(run, r, rank)
    state.rounds += 1
    run.rounds_now += 1


# ---------------------------------------------------------------------- finishing
def write_reports(run: SearchRun) -> tuple[dict[str, Any], str]:
    """summary.json/summary.csv and progress.png; returns the summary and the printed table."""
    cfg, s, state = run.cfg, run.cfg.search, run.state
    top = top_architectures(state.history, max(s.keep_best, s.final_top_k))
    rows = summary_rows(top, {f["arch"]: f for f in state.final})
    start_accs = [st.get("accuracy") for st in state.starts]
    summary = {
        "run_name": run.run_dir.name,
        "dataset": cfg.data.name,
        "agent": s.agent,
        "seed": int(s.seed),
        "finished": not run.stopped,
        "children": state.global_step,
        "distinct_children": len({h["arch"] for h in state.history}),
        "rounds": state.rounds,
        "elapsed_seconds": run.elapsed(),
        "start_accuracies": start_accs,
        "stage_starts": [st["arch"] for st in state.starts],
        "child_seconds": child_seconds(state.history, s.child_clock),
        "child_clock": s.child_clock,
        "retries": retries(state.history),
        "stages": stage_report(state),
        "parent_controls": state.parent_controls,
        "best_accuracy": top[0]["accuracy"] if top else None,
        "best_arch": top[0]["arch"] if top else None,
        "final": state.final,
        "search_seconds": state.search_seconds,
        "search_cpu_seconds": state.search_cpu_seconds,
        "cpu_seconds": run.cpu_elapsed(),
        "no_search_control": state.no_search_control,
        "history": state.history,
        "config": config_to_dict(cfg),
    }
    summary["pareto"] = write_pareto_reports(run.run_dir, state.history,
                                             title=f"{cfg.data.name} — {s.agent} (seed {s.seed})")
    write_summary(run.run_dir, summary, rows)
    controls = {c["stage"]: c["accuracy"] for c in state.parent_controls}
    nsc = state.no_search_control or {}
    plot_progress(state.history, run.run_dir / "progress.png", start_accuracies=start_accs,
                  control_accuracies=[controls.get(k) for k in range(1, len(start_accs) + 1)],
                  final_accuracy=(state.final[0].get("trained_val_accuracy")
                                  if state.final else None),
                  no_search_accuracy=nsc.get("val_accuracy"),
                  title=f"{cfg.data.name} — {s.agent} (seed {s.seed})")
    table = f"{format_table(rows)}\n{format_stage_report(summary['stages'])}"
    versus = format_control(state.final, state.no_search_control, state.search_seconds,
                            state.search_cpu_seconds)
    return summary, f"{table}\n{versus}" if versus else table


def _load_start_weights(net: ChildNet, path: str) -> None:
    """Load start weights from a network file (best_k.pt) or a plain state_dict."""
    obj = read_torch_file(path)  # weights-only: tensors and plain data, never code
    if isinstance(obj, dict) and "state_dict" in obj and "arch" in obj:
        if str(obj["arch"]) != str(net.arch):
            raise ValueError(f"start.weights {path} holds {obj['arch']}, not the start "
                             f"architecture {net.arch}; set start.arch to match")
        obj = obj["state_dict"]
    net.load_state_dict(obj)
