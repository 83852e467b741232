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
   and hands the :class:`~agents.base.ChildResult` list to ``agent.learn``;
5. the best stage-1 network is trained ``stage1_best_epochs`` longer and becomes
   the start of **stage 2** (``stage2_networks`` more children);
6. the top ``final_top_k`` distinct architectures (by validation accuracy over
   the whole search) are trained ``final_epochs`` on train + validation with
   :func:`eas.training.final_train`, starting from their searched weights
   (``final_init = "weights"``, the paper's "further train") or from scratch,
   and their test accuracy is reported;
7. ``summary.json``/``summary.csv``, ``progress.png`` and a printed table.

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
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from eas import envs
from eas.agents.base import AgentContext, ChildResult
from eas.agents.registry import get_agent_class
from eas.arch import Tokenizer
from eas.checkpoint import (
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    network_from_record,
    network_record,
    save_network,
)
from eas.data import load_dataset
from eas.envs.journal import Journal
from eas.envs.parallel import ParallelEvaluator
from eas.network import ChildNet, build_network
from eas.search.config import (
    DATASET_SHAPES,
    ConfigError,
    SearchConfig,
    agent_section,
    config_to_dict,
    dump_toml,
    resolve_start_arch,
    schedule_tuple,
    search_space,
)
from eas.search.report import (
    format_table,
    plot_progress,
    summary_rows,
    top_architectures,
    write_summary,
)
from eas.training import TrainConfig, final_train, train_child
from eas.training import evaluate as evaluate_net

__all__ = ["CHECKPOINT", "SearchOutcome", "SearchState", "default_run_name", "run_search"]

CHECKPOINT = "checkpoint.pt"
"""File name of the search checkpoint in the run folder."""
CONFIG_FILE = "config.toml"
"""File name of the saved configuration in the run folder (read by --resume)."""
_VERSION = 1


# ---------------------------------------------------------------------- state
@dataclass
class SearchState:
    """Everything about the search's progress that a checkpoint must restore."""

    stage: int = 1
    """Current stage (1 or 2)."""
    rounds: int = 0
    """Rounds completed so far (all stages)."""
    global_step: int = 0
    """Children evaluated so far (the TensorBoard global step)."""
    stage_children: int = 0
    """Children evaluated in the current stage."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per evaluated child (step, stage, round, arch, accuracy, reward, ...)."""
    starts: list[dict[str, Any]] = field(default_factory=list)
    """Start network of each stage reached so far (network records with weights)."""
    best: list[dict[str, Any]] = field(default_factory=list)
    """The best distinct networks so far (history record + ``network`` with weights)."""
    final: list[dict[str, Any]] = field(default_factory=list)
    """Final-training results (arch, test_accuracy, epochs, train_time)."""
    sampling_done: bool = False
    """All stages have sampled their children."""
    done: bool = False
    """The whole run (incl. final training and reports) finished."""
    elapsed: float = 0.0
    """Seconds spent in earlier invocations (for resumed runs)."""


@dataclass
class SearchOutcome:
    """What :func:`run_search` returns."""

    run_dir: Path
    """The run folder."""
    state: SearchState
    """The final (or interrupted) search state."""
    summary: dict[str, Any]
    """The content of summary.json."""
    finished: bool
    """False when stopped early by ``search.max_rounds`` (resume to continue)."""


def default_run_name(cfg: SearchConfig) -> str:
    """``{dataset}__{agent}__{seed}__{timestamp}`` (agent ``module:Class`` made path-safe)."""
    agent = cfg.search.agent.replace(":", "-").replace("/", "-").replace(".", "-")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{cfg.data.name}__{agent}__{cfg.search.seed}__{stamp}"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ---------------------------------------------------------------------- the search
def run_search(
    cfg: SearchConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    evaluator: Callable[[ChildNet], Any] | None = None,
    data: Any = None,
    log: Callable[[str], None] = print,
) -> SearchOutcome:
    """Run (or, with ``resume=True``, continue) the search described by ``cfg``.

    ``run_dir`` defaults to ``cfg.search.runs_dir / (run_name or default_run_name)``.
    ``evaluator`` replaces the default child trainer (any callable
    ``net -> accuracy | EvalResult``); ``data`` a preloaded :class:`eas.data.Data`.
    """
    with contextlib.ExitStack() as cleanup:  # closes TensorBoard, progress bar, worker pools
        return _search(cfg, cleanup, run_dir=run_dir, resume=resume, evaluator=evaluator,
                       data=data, log=log)


def _search(
    cfg: SearchConfig,
    cleanup: contextlib.ExitStack,
    *,
    run_dir: str | Path | None,
    resume: bool,
    evaluator: Callable[[ChildNet], Any] | None,
    data: Any,
    log: Callable[[str], None],
) -> SearchOutcome:
    """The body of :func:`run_search`; resources to release are registered on ``cleanup``."""
    wall_start = time.time()
    s = cfg.search
    # ------------------------------------------------------------------ data
    # Loaded on first use (a run with a stand-in evaluator may need none), but
    # before the run folder exists when children will be trained, so a missing
    # dataset stops the run before it leaves anything behind.
    device = resolve_device(cfg.data.device)
    loaded: dict[str, Any] = {"search": data}

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
        return loaded[key]

    if evaluator is None:
        get_data()

    # ------------------------------------------------------------------ run folder
    if run_dir is None:
        run_dir = Path(s.runs_dir) / (s.run_name or default_run_name(cfg))
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    checkpoint = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if resume and checkpoint is None:
        log(f"no {CHECKPOINT} in {run_dir}; starting the run from the beginning")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dump_toml(cfg), run_dir / CONFIG_FILE)
    state = SearchState()
    if checkpoint is not None:
        state = SearchState(**checkpoint["state"])

    # TensorBoard: a resumed run appends to the same folder; purge_step drops the
    # events of children that were logged after the last checkpoint.
    writer = SummaryWriter(str(run_dir), purge_step=state.global_step + 1 if checkpoint else None)
    cleanup.callback(writer.close)
    writer.add_text("hyperparameters", _config_markdown(cfg), state.global_step)

    # ------------------------------------------------------------------ seeding
    seed = int(s.seed)
    rng = np.random.default_rng(seed)  # the search's own RNG: per-round env seeds
    if checkpoint is not None:
        rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])

    dataset_key = cfg.data.name.lower().replace("_", "-")
    if dataset_key in DATASET_SHAPES:
        input_shape = DATASET_SHAPES[dataset_key]
        num_classes = 100 if dataset_key == "cifar100" else 10
    else:
        input_shape, num_classes = get_data().input_shape, get_data().num_classes
    child_cfg: TrainConfig = cfg.child

    # ------------------------------------------------------------------ start network
    if state.starts:
        start_net = network_from_record(state.starts[-1])
    else:
        arch = resolve_start_arch(cfg.start.arch, input_shape, num_classes)
        start_net = build_network(arch, input_shape, dropout=cfg.start.dropout, seed=seed)
        start_acc: float | None = None
        if cfg.start.weights:
            _load_start_weights(start_net, cfg.start.weights)
            start_acc = evaluate_net(start_net, get_data().val_x, get_data().val_y, get_data())
            log(f"start network loaded from {cfg.start.weights}: val acc {start_acc:.4f}")
        elif cfg.start.epochs > 0:
            log(f"training the start network {arch} for {cfg.start.epochs} epochs ...")
            res = train_child(start_net, get_data(),
                              dataclasses.replace(child_cfg, epochs=cfg.start.epochs,
                                                  max_batches_per_epoch=None),
                              device=device, seed=seed, progress=s.progress)
            start_acc = res.val_accuracy
            start_net.cpu()
            log(f"start network: val acc {start_acc:.4f} in {res.train_time:.1f}s")
        state.starts.append(network_record(start_net, accuracy=start_acc, stage=1,
                                           epochs=cfg.start.epochs))
        save_network(start_net, run_dir / "start_1.pt", accuracy=start_acc, stage=1)
        if start_acc is not None:
            writer.add_scalar("charts/start_accuracy", start_acc, 0)
    log(f"stage {state.stage} start: {start_net.arch} "
        f"(val acc {_pct(state.starts[-1].get('accuracy'))})")

    # ------------------------------------------------------------------ agent
    # An agent may bring its own environment settings (hill climbing: free mode,
    # n_NM steps, n_neigh children) and child-training recipe (NASH's SGDR).
    agent_cls = get_agent_class(s.agent)
    agent_cfg = cfg.agent_config()
    space = search_space(cfg)
    schedule = schedule_tuple(s.schedule)
    free_steps, children_per_step = s.free_steps, s.children_per_step
    if hasattr(agent_cls, "env_requirements"):
        reqs = agent_cls.env_requirements(agent_cfg)
        schedule = reqs.get("schedule", schedule)
        free_steps = int(reqs.get("free_steps", free_steps))
        children_per_step = int(reqs.get("children_per_round", children_per_step))
        log(f"{s.agent} sets: schedule={'free' if schedule is None else ','.join(schedule)}, "
            f"free_steps={free_steps}, children per round={children_per_step}")
    steps = len(schedule) if schedule is not None else free_steps
    ctx = AgentContext(
        max_layers=cfg.space.max_layers,
        vocab_size=Tokenizer(space).vocab_size,
        kernel_sizes=tuple(space.kernel_sizes),
        kinds=tuple(envs.KINDS),
        schedule=schedule,
        steps_per_episode=steps,
        children_per_round=children_per_step,
        seed=seed,
        extra={"input_shape": tuple(input_shape), "space": space, "num_classes": num_classes,
               "densenet": start_net.arch.is_densenet,
               "start_accuracy": state.starts[-1].get("accuracy")},
    )
    agent = agent_cls(ctx, agent_cfg)
    if checkpoint is not None:
        agent.load_state_dict(checkpoint["agent"])
    elif state.starts[-1].get("accuracy") is not None and hasattr(agent, "set_start_accuracy"):
        agent.set_start_accuracy(state.starts[-1]["accuracy"])
    if hasattr(agent, "child_train_overrides"):
        child_cfg = dataclasses.replace(child_cfg, **agent.child_train_overrides())

    # ------------------------------------------------------------------ evaluator
    if evaluator is None:
        evaluator = envs.TrainerEvaluator(get_data(), child_cfg, device=device, seed=seed)
        if s.workers != 1 or s.backend in ("process", "ray"):
            evaluator = ParallelEvaluator(evaluator, workers=s.workers, backend=s.backend,
                                          device="cpu" if device == "cpu" else None,
                                          ray_address=s.ray_address)
            cleanup.callback(evaluator.close)
    bar = _progress_bar(s.progress, s.stage1_networks + s.stage2_networks, state.global_step)
    if bar is not None:
        cleanup.callback(bar.close)
        if log is print:  # keep messages from breaking the progress bar

            log = tqdm.write
    journal = Journal(run_dir / "journal", evaluator, on_child=lambda: bar and bar.update(1))

    # ------------------------------------------------------------------ environments
    cache = envs.EvalCache(max_weights=children_per_step) if s.cache else None
    if cache is not None and checkpoint is not None and checkpoint.get("cache"):
        cache.load_state_dict(checkpoint["cache"])
    venvs: dict[int, Any] = {}

    def vector_env(n: int) -> Any:
        """A vector env of ``n`` children (all share one evaluation cache)."""
        if n not in venvs:
            venvs[n] = envs.VectorNetTransformEnv(
                n, start=start_net, input_shape=tuple(input_shape), evaluator=journal,
                space=space, schedule=schedule, free_steps=free_steps,
                max_layers=cfg.space.max_layers, noise=s.noise,
                cache=cache if cache is not None else False,
            )
        return venvs[n]

    def save_checkpoint() -> None:
        """Atomically replace checkpoint.pt with the current state of everything."""
        state.elapsed = elapsed_before + time.time() - wall_start
        atomic_save({
            "version": _VERSION,
            "config": config_to_dict(cfg),
            "state": {f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
            "agent": agent.state_dict(),
            "cache": cache.state_dict() if cache is not None else None,
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }, ckpt_path)

    elapsed_before = state.elapsed
    budgets = {1: s.stage1_networks, 2: s.stage2_networks}
    keep = max(s.keep_best, s.final_top_k, 1)
    rounds_now = 0
    stopped = False
    save_checkpoint()

    # ------------------------------------------------------------------ stages and rounds
    while not state.sampling_done:
        budget = budgets.get(state.stage, 0)
        if state.stage_children >= budget or getattr(agent, "finished", False):
            # ---- end of a stage: the best network, trained longer, starts stage 2
            if state.stage == 1 and s.stage2_networks > 0 and state.best:
                start_net = _next_stage_start(state, s, child_cfg, get_data, device, seed,
                                              train_child, log)
                save_network(start_net, run_dir / "start_2.pt", **_meta(state.starts[-1]))
                writer.add_scalar("charts/stage2_start_accuracy",
                                  _nan(state.starts[-1].get("accuracy")), state.global_step)
                state.stage, state.stage_children = 2, 0
            else:
                state.sampling_done = True
            save_checkpoint()
            continue
        if s.max_rounds is not None and rounds_now >= s.max_rounds:
            stopped = True
            break

        # ---- one round: reset n children from the round's start, act until done
        n = min(max(int(agent.children_this_round()), 1), budget - state.stage_children)
        venv = vector_env(n)
        start = agent.start_network()
        start = start_net if start is None else start
        round_seed = int(rng.integers(2**31 - 1))
        journal.begin_round(state.rounds)
        round_start = time.time()
        obs, _ = venv.reset(seed=round_seed, options={"start": start})
        actions: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        for _ in range(steps + 1):
            action = agent.propose(obs)
            for i in range(n):
                actions[i].append({k: np.array(v[i], copy=True) for k, v in action.items()})
            obs, reward, terminated, truncated, infos = venv.step(action)
            if np.all(np.logical_or(terminated, truncated)):
                break
        else:
            raise RuntimeError(f"episodes did not end after {steps + 1} steps")
        finals = infos["final"]
        results = [
            ChildResult(
                arch=str(f["arch"]), accuracy=float(f["accuracy"]), reward=float(reward[i]),
                failed=bool(f.get("failed", False)), params=int(f.get("params", 0)),
                flops=int(f.get("flops", 0)), train_time=float(f.get("train_time", 0.0)),
                cached=bool(f.get("cached", False)), net=f.get("net"), actions=actions[i],
            )
            for i, f in enumerate(finals)
        ]
        metrics = agent.learn(results)

        # ---- bookkeeping and per-child logging (global step = children evaluated)
        for i, r in enumerate(results):
            state.global_step += 1
            state.stage_children += 1
            rec = {
                "step": state.global_step, "stage": state.stage, "round": state.rounds + 1,
                "arch": r.arch, "accuracy": r.accuracy, "reward": r.reward,
                "params": r.params, "flops": r.flops, "train_time": r.train_time,
                "failed": r.failed, "reason": finals[i].get("reason"), "cached": r.cached,
            }
            state.history.append(rec)
            writer.add_scalar("charts/child_accuracy", r.accuracy, state.global_step)
            writer.add_scalar("charts/child_reward", r.reward, state.global_step)
            writer.add_scalar("charts/child_params", r.params, state.global_step)
            writer.add_scalar("charts/child_flops", r.flops, state.global_step)
            writer.add_scalar("charts/child_train_time", r.train_time, state.global_step)
            if r.net is not None and not r.failed:
                improved = _update_best(state.best, rec, r.net, keep)
                if improved == 0:
                    writer.add_text("best_architecture",
                                    f"`{r.arch}` — val acc {100 * r.accuracy:.2f}% "
                                    f"(child {state.global_step}, stage {state.stage})",
                                    state.global_step)
        state.rounds += 1
        rounds_now += 1

        # ---- per-round logging: the agent's metrics and the search's own
        for key, value in metrics.items():
            if _is_number(value):
                writer.add_scalar(key if "/" in key else f"charts/{key}", float(value),
                                  state.global_step)
        accs = [r.accuracy for r in results if not r.failed]
        best_acc = state.best[0]["accuracy"] if state.best else float("nan")
        writer.add_scalar("charts/best_accuracy", best_acc, state.global_step)
        writer.add_scalar("charts/round_mean_accuracy", _mean(accs), state.global_step)
        writer.add_scalar("charts/round_best_accuracy", max(accs, default=0.0),
                          state.global_step)
        writer.add_scalar("charts/stage", state.stage, state.global_step)
        writer.add_scalar("charts/round_time", time.time() - round_start, state.global_step)
        writer.add_scalar("charts/cached_fraction", _mean([r.cached for r in results]),
                          state.global_step)
        if bar is not None:
            bar.n = state.global_step
            bar.set_postfix(stage=state.stage, best=f"{100 * best_acc:.2f}%")
            bar.refresh()
        else:
            log(f"round {state.rounds} (stage {state.stage}): children {state.global_step}, "
                f"round best {_pct(max(accs, default=float('nan')))}, best {_pct(best_acc)}")

        # ---- save everything, then forget the round's journal
        _write_best_files(run_dir, state.best)
        save_checkpoint()
        journal.clear()
    if bar is not None:
        bar.close()

    # ------------------------------------------------------------------ final training
    if not stopped and s.final_top_k > 0 and s.final_epochs > 0:
        done_archs = {f["arch"] for f in state.final}
        final_cfg = dataclasses.replace(
            cfg.child, epochs=s.final_epochs, max_batches_per_epoch=None,
            lr=s.final_lr if s.final_lr is not None else cfg.child.lr)
        if hasattr(agent, "final_train_overrides"):
            final_cfg = dataclasses.replace(final_cfg, **agent.final_train_overrides())
        for k, rec in enumerate(state.best[: s.final_top_k], 1):
            if rec["arch"] in done_archs:
                continue
            if s.final_init == "scratch":
                net = build_network(rec["arch"], input_shape, dropout=cfg.start.dropout,
                                    seed=seed)
            else:
                net = network_from_record(rec["network"])
            log(f"final training of #{k} ({final_cfg.epochs} epochs, {s.final_init}): "
                f"{rec['arch']}")
            res = final_train(net, get_data(full=s.final_full_data), final_cfg, device=device,
                              seed=seed, progress=s.progress)
            net.cpu()
            entry = {"rank": k, "arch": rec["arch"], "val_accuracy": rec["accuracy"],
                     "test_accuracy": res.test_accuracy, "failed": res.failed,
                     "epochs": final_cfg.epochs, "train_time": res.train_time,
                     "init": s.final_init}
            state.final.append(entry)
            save_network(net, run_dir / f"final_{k}.pt", **entry)
            writer.add_scalar(f"charts/final_test_accuracy_{k}", _nan(res.test_accuracy),
                              state.global_step)
            log(f"  test accuracy {_pct(res.test_accuracy)} "
                f"(test error {_pct(None if res.test_accuracy is None else 1 - res.test_accuracy)})")
            save_checkpoint()

    # ------------------------------------------------------------------ reports
    top = top_architectures(state.history, max(s.keep_best, s.final_top_k))
    rows = summary_rows(top, {f["arch"]: f for f in state.final})
    start_accs = [st.get("accuracy") for st in state.starts]
    summary = {
        "run_name": run_dir.name,
        "dataset": cfg.data.name,
        "agent": s.agent,
        "seed": seed,
        "finished": not stopped,
        "children": state.global_step,
        "rounds": state.rounds,
        "elapsed_seconds": elapsed_before + time.time() - wall_start,
        "start_accuracies": start_accs,
        "stage_starts": [st["arch"] for st in state.starts],
        "best_accuracy": top[0]["accuracy"] if top else None,
        "best_arch": top[0]["arch"] if top else None,
        "final": state.final,
        "config": config_to_dict(cfg),
    }
    write_summary(run_dir, summary, rows)
    plot_progress(state.history, run_dir / "progress.png", start_accuracies=start_accs,
                  title=f"{cfg.data.name} — {s.agent} (seed {seed})")
    if not stopped:
        state.done = True
    save_checkpoint()
    writer.flush()
    log(format_table(rows))
    if stopped:
        log(f"stopped after {rounds_now} round(s) (search.max_rounds); continue with "
            f"--resume {run_dir}")
    log(f"run folder: {run_dir}  (tensorboard --logdir {run_dir.parent})")
    return SearchOutcome(run_dir=run_dir, state=state, summary=summary, finished=not stopped)


# ---------------------------------------------------------------------- helpers
def _next_stage_start(state: SearchState, s: Any, child_cfg: Any, get_data: Callable,
                      device: str, seed: int, train_child: Callable,
                      log: Callable[[str], None]) -> ChildNet:
    """Train the best network so far ``stage1_best_epochs`` longer; it starts stage 2."""
    best = state.best[0]
    net = network_from_record(best["network"])
    acc = best["accuracy"]
    if s.stage1_best_epochs > 0:
        log(f"stage 1 best ({100 * acc:.2f}%): training it {s.stage1_best_epochs} more epochs "
            f"to start stage 2: {best['arch']}")
        longer = dataclasses.replace(child_cfg, epochs=s.stage1_best_epochs,
                                     max_batches_per_epoch=None)
        res = train_child(net, get_data(), longer, device=device, seed=seed, progress=s.progress)
        net.cpu()
        if not res.failed:
            acc = res.val_accuracy
        else:  # keep the searched weights rather than a diverged network
            log(f"  retraining failed ({res.reason}); stage 2 starts from the searched weights")
            net = network_from_record(best["network"])
        log(f"  stage 2 start: val acc {100 * acc:.2f}%")
    state.starts.append(network_record(net, accuracy=acc, stage=2, epochs=s.stage1_best_epochs))
    return net


def _update_best(best: list[dict[str, Any]], rec: dict[str, Any], net: ChildNet,
                 keep: int) -> int | None:
    """Insert ``rec`` (with ``net``'s weights) into the top-``keep`` list; return its rank or None.

    One entry per architecture (its best evaluation); ties keep the earlier child.
    """
    for i, old in enumerate(best):
        if old["arch"] == rec["arch"]:
            if rec["accuracy"] <= old["accuracy"]:
                return None
            del best[i]
            break
    rank = sum(1 for old in best if old["accuracy"] >= rec["accuracy"])
    if rank >= keep:
        return None
    best.insert(rank, {**rec, "network": network_record(net.cpu() if hasattr(net, "cpu") else net,
                                                        accuracy=rec["accuracy"])})
    del best[keep:]
    return rank


def _write_best_files(run_dir: Path, best: list[dict[str, Any]]) -> None:
    """best_<k>.pt for every kept network (k = 1 is the best), atomically."""
    for k, rec in enumerate(best, 1):
        meta = {key: rec[key] for key in ("accuracy", "step", "stage", "params", "flops")}
        atomic_save({**rec["network"], **meta, "rank": k}, run_dir / f"best_{k}.pt")


def _load_start_weights(net: ChildNet, path: str) -> None:
    """Load start weights from a network file (best_k.pt) or a plain state_dict."""
    obj = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and "arch" in obj:
        if str(obj["arch"]) != str(net.arch):
            raise ValueError(f"start.weights {path} holds {obj['arch']}, not the start "
                             f"architecture {net.arch}; set start.arch to match")
        obj = obj["state_dict"]
    net.load_state_dict(obj)


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None

    return tqdm(total=total, initial=initial, desc="children", unit="child", dynamic_ncols=True)


def _config_markdown(cfg: SearchConfig) -> str:
    rows = ["|section.field|value|", "|-|-|"]
    for section, values in config_to_dict(cfg).items():
        if section in ("controller", "random", "hill_climbing", "agent") and \
                section != agent_section(cfg.search.agent):
            continue
        rows += [f"|{section}.{k}|{v}|" for k, v in values.items()]
    return "\n".join(rows)


def _meta(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items()
            if k not in ("state_dict", "arch", "input_shape", "dropout", "format")}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _mean(values: list[Any]) -> float:
    return float(np.mean([float(v) for v in values])) if values else float("nan")


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"
