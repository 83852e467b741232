"""What a running search holds: its state (checkpointed), the live run, the best-network list.

:class:`SearchState` is everything about the search's progress a checkpoint
restores; :class:`SearchRun` is the live search (configuration, run folder,
state, RNG, agent, environments, evaluator, callbacks' log) that the loop's
steps and the callbacks share. :func:`save_checkpoint` writes it atomically.
"""

from __future__ import annotations

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

from eas.agents.base import Agent
from eas.checkpoint import atomic_save, network_record
from eas.config.engine import config_to_dict
from eas.config.sections import SearchConfig
from eas.data import Data
from eas.envs.cache import EvalCache
from eas.envs.journal import Journal
from eas.envs.objective_evaluator import ObjectivesEvaluator
from eas.envs.vector import VectorNetTransformEnv
from eas.network import ChildNet
from eas.recipe import TrainConfig
from eas.search.agent_setup import EpisodeSettings
from eas.search.rundir import RunLock

__all__ = [
    "CHECKPOINT",
    "CONFIG_FILE",
    "JOURNAL_DIR",
    "SearchOutcome",
    "SearchRun",
    "SearchState",
    "default_run_name",
    "resolve_device",
    "save_checkpoint",
    "save_progress",
    "update_best",
    "write_best_files",
]

CHECKPOINT = "checkpoint.pt"
"""File name of the search checkpoint in the run folder."""
CONFIG_FILE = "config.toml"
"""File name of the saved configuration in the run folder (read by --resume)."""
JOURNAL_DIR = "journal"
"""Folder in the run folder holding the journal of the round in progress (``envs.journal``)."""
CHECKPOINT_VERSION = 1


@dataclass
class SearchState:
    """Everything about the search's progress that a checkpoint must restore."""

    stage: int = 1
    """Current stage (1, 2, ...)."""
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
    parent_controls: list[dict[str, Any]] = field(default_factory=list)
    """Per stage: its start network trained as a child (``eas.search.stages.parent_control``)."""
    front_nets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Architectures on a Pareto front -> network record with weights (for ``eas.export``)."""
    search_seconds: float | None = None
    """The run's seconds before its final training (start, children, stage starts, controls)."""
    search_cpu_seconds: float | None = None
    """The same in process CPU seconds (all threads)."""
    cpu_seconds: float = 0.0
    """Process CPU seconds (all threads) spent in earlier invocations (for resumed runs)."""
    no_search_control: dict[str, Any] | None = None
    """The start architecture trained from scratch for the run's seconds (``eas.search.final``)."""


@dataclass
class SearchOutcome:
    """What :func:`eas.search.loop.run_search` returns."""

    run_dir: Path
    """The run folder."""
    state: SearchState
    """The final (or interrupted) search state."""
    summary: dict[str, Any]
    """The content of summary.json."""
    finished: bool
    """False when stopped early by ``search.max_rounds`` (resume to continue)."""


@dataclass
class SearchRun:
    """The live search that the loop's steps and the callbacks share."""

    cfg: SearchConfig
    """The configuration."""
    run_dir: Path
    """The run folder."""
    state: SearchState
    """Progress (what the checkpoint restores)."""
    rng: np.random.Generator
    """The search's own RNG (one environment seed per round)."""
    get_data: Callable[..., Data]
    """The dataset, loaded on first use (``full=True``: ignore data.train_subset)."""
    device: str
    """Where children are trained."""
    episode: EpisodeSettings
    """How the episodes run (``[search]``'s settings or the agent's), resolved before the loop."""
    child_cfg: TrainConfig
    """The children's training recipe: ``cfg.child``, then the agent's overrides
    (:func:`eas.search.recipes.child_recipe`, applied once when the agent is built)."""
    lock: RunLock
    """The run folder's lock, released when the run ends."""
    log: Callable[[str], None] = print
    """Where messages go (the progress callback swaps in ``tqdm.write``)."""
    checkpoint: dict[str, Any] | None = None
    """The checkpoint this invocation resumed from (None: a fresh run)."""
    input_shape: tuple[int, int, int] = (3, 32, 32)
    """Input shape of the networks (C, H, W)."""
    num_classes: int = 10
    """Classes of the dataset."""
    start_net: ChildNet | None = None
    """The current stage's start network (None until it is built)."""
    new_start_accuracy: float | None = None
    """Accuracy of a start network built in this invocation (logged once), else None."""
    agent: Agent | None = None
    """The search strategy (None until it is built)."""
    evaluator: ObjectivesEvaluator | None = None
    """Trains and scores one child (the journal wraps it; None until it is built)."""
    journal: Journal | None = None
    """The round's journal of finished children (None until the evaluator is built)."""
    cache: EvalCache | None = None
    """The evaluation cache shared by all environments (None: off)."""
    deeper_batch: torch.Tensor | None = None
    """Training images Net2Deeper fits new layers' BatchNorm to (None: not fitted)."""
    venvs: dict[int, VectorNetTransformEnv] = field(default_factory=dict)
    """Vector environments by number of children (built on first use)."""
    stopped: bool = False
    """True when ``search.max_rounds`` stopped the run early."""
    rounds_now: int = 0
    """Rounds run in this invocation."""
    wall_start: float = field(default_factory=time.time)
    """When this invocation started."""
    elapsed_before: float = 0.0
    """Seconds spent in earlier invocations."""
    cpu_start: float = field(default_factory=time.process_time)
    """Process CPU time when this invocation started."""
    cpu_before: float = 0.0
    """Process CPU seconds spent in earlier invocations."""

    def elapsed(self) -> float:
        """Seconds the run has taken in all invocations so far."""
        return self.elapsed_before + time.time() - self.wall_start

    def cpu_elapsed(self) -> float:
        """Process CPU seconds (all threads) the run has taken in all invocations so far."""
        return self.cpu_before + time.process_time() - self.cpu_start


def save_checkpoint(run: SearchRun) -> None:
    """Atomically replace ``checkpoint.pt`` with the current state of everything."""
    run.state.elapsed = run.elapsed()
    run.state.cpu_seconds = run.cpu_elapsed()
    state = run.state
    atomic_save({
        "version": CHECKPOINT_VERSION,
        "config": config_to_dict(run.cfg),
        "state": {f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
        "agent": run.agent.state_dict() if run.agent is not None else {},
        "cache": run.cache.state_dict() if run.cache is not None else None,
        "rng": run.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }, run.run_dir / CHECKPOINT)


def save_progress(run: SearchRun, *, best_files: bool = False) -> None:
    """The loop's saving step: check the folder is still this run's, then replace
    ``checkpoint.pt`` (and, with ``best_files``, ``best_<k>.pt``) atomically.

    Called before the first round, after every round, stage end, parent control,
    final network and no-search control, and at the end (``--resume`` continues
    from the last save); callbacks run after it and only observe.
    """
    if run.lock is not None:
        run.lock.check()
    if best_files:
        write_best_files(run.run_dir, run.state.best)
    save_checkpoint(run)


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


def update_best(best: list[dict[str, Any]], rec: dict[str, Any], net: ChildNet,
                keep: int, key: str = "accuracy") -> int | None:
    """Insert ``rec`` (with ``net``'s weights) into the top-``keep`` list; return its rank or None.

    Ordered by ``rec[key]`` (``"accuracy"`` or ``"reward"``: ``search.rank_by``).
    One entry per architecture (its best evaluation); ties keep the earlier child.
    """
    for i, old in enumerate(best):
        if old["arch"] == rec["arch"]:
            if rec[key] <= old[key]:
                return None
            del best[i]
            break
    rank = sum(1 for old in best if old[key] >= rec[key])
    if rank >= keep:
        return None
    best.insert(rank, {**rec, "network": network_record(net.cpu(), accuracy=rec["accuracy"])})
    del best[keep:]
    return rank


def write_best_files(run_dir: Path, best: list[dict[str, Any]]) -> None:
    """best_<k>.pt for every kept network (k = 1 is the best), atomically."""
    for k, rec in enumerate(best, 1):
        meta = {key: rec[key] for key in ("accuracy", "step", "stage", "params", "flops")}
        atomic_save({**rec["network"], **meta, "rank": k}, run_dir / f"best_{k}.pt")


def record_meta(record: dict[str, Any]) -> dict[str, Any]:
    """A network record's metadata (everything but the network itself)."""
    return {k: v for k, v in record.items()
            if k not in ("state_dict", "arch", "input_shape", "dropout", "format")}


def is_number(v: Any) -> bool:
    """True for ints and floats (numpy's too), not for bools."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def mean(values: list[Any]) -> float:
    """The mean, or NaN for no values."""
    return float(np.mean([float(v) for v in values])) if values else float("nan")


def nan_if_none(v: float | None) -> float:
    """``v`` as a float, NaN for None."""
    return float("nan") if v is None else float(v)


def pct(v: float | None) -> str:
    """A percentage with two decimals, ``n/a`` for None/NaN."""
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"
