"""Compare search agents on the same start network, evaluator and budget.

::

    python -m eas.compare --agents reinforce,random,hill_climbing --seeds 0,1,2 \\
        --children 30 [--evaluator cheap|train] [--out runs/compare_<timestamp>]

Every agent searches from the same start network with the same evaluator for
the same number of children (its budget), once per seed. Per agent the output
folder gets a row in

* ``comparison.csv`` / ``comparison.md``: best validation accuracy (mean ± std
  and min/max over seeds), children evaluated (and how many were actually
  trained, i.e. not answered by the cache), wall time per run, best architecture;
* ``runs.csv``: one row per (agent, seed); ``curves.csv``: every child's accuracy
  and the best-so-far accuracy after it;
* ``comparison.png``: best-so-far validation accuracy against children evaluated,
  the mean over seeds as a line and the min-max range as a shaded band (cf. the
  EAS paper's Figure 5 and NASH's Table 1).

Evaluators:

* ``cheap``: :func:`synthetic_accuracy`, a deterministic closed-form score of the
  architecture (no training), so a comparison runs in seconds. It rewards
  compute and depth with diminishing returns, skips a little, and adds a small
  deterministic per-architecture perturbation, so the landscape is neither flat
  nor trivially monotone. It is a test harness, not a proxy for real accuracy.
* ``train``: the real trainer (:class:`envs.TrainerEvaluator`) on a small slice of
  Fashion-MNIST on the CPU. The start network is trained once first and shared
  by all agents and seeds; every agent's children get the same training recipe
  (hill climbing's SGDR learning-rate overrides are applied, its epoch count is
  capped to the common ``--epochs`` so budgets stay equal).

By default every run goes through the project's search loop
(:func:`eas.search.run_search`: one stage of ``--children`` children, no final
training; each run's folder with TensorBoard events and checkpoint lands in
``<out>/runs/<agent>__seed<k>``). ``--loop minimal`` uses :func:`run_agent`
instead, a small self-contained round loop over the SPEC's protocol (per round
``start_network`` -> ``reset`` -> ``propose``/``step`` until the episodes end ->
``learn``), handy in tests. Budgets are equalised by children: hill climbing gets
enough rounds (``n_steps``) for the budget and, with ``train``, ``e_neigh`` = the
common ``--epochs``. With the cheap evaluator under the search loop the start
network's accuracy is unknown to the agents (nothing is trained), so hill
climbing spends child 0 of its first round re-evaluating the start (its parent
slot); the best-so-far curves start at the start network's score.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eas import envs
from eas.agents.base import Agent, AgentContext, ChildResult
from eas.agents.registry import get_agent_class
from eas.arch import Architecture, Conv, Dense, SearchSpace, Tokenizer
from eas.data import load_dataset
from eas.envs.evaluators import EvalResult
from eas.network import ChildNet, build_network, count_flops, count_parameters
from eas.search.config import agent_section, load_config
from eas.search.loop import run_search as search_loop
from eas.training import TrainConfig, train_child

__all__ = [
    "RunRecord",
    "SyntheticEvaluator",
    "compare",
    "main",
    "run_agent",
    "synthetic_accuracy",
    "write_outputs",
]


# --------------------------------------------------------------------------- cheap
def synthetic_accuracy(arch: str | Architecture | ChildNet,
                       input_shape: tuple[int, int, int] = (1, 28, 28),
                       params: int | None = None) -> float:
    """A deterministic stand-in for validation accuracy, computed from the architecture.

    With ``F`` the multiply-accumulates of one forward pass, ``D`` the number of
    conv/dense layers, ``S`` the number of skip connections, ``P`` the parameters
    and ``u`` in [-1, 1] a hash of the architecture string::

        acc = 0.70
            + 0.18 * (1 - exp(-(log10 F - 5.5)))      # compute, diminishing returns
            + 0.06 * (1 - exp(-(D - 2) / 3))          # depth, diminishing returns
            + 0.004 * min(S, 4)                       # a few skips help a little
            - 0.03 * max(0, log10 P - 6.5)            # over-parameterisation
            + 0.006 * u                               # deterministic "training noise"

    clipped to [0, 0.999]. The Fashion-MNIST start network scores about 0.84.
    """
    if isinstance(arch, ChildNet):
        net: ChildNet | None = arch
        input_shape = tuple(arch.input_shape)  # type: ignore[assignment]
        a = arch.arch
    else:
        net = None
        a = Architecture.parse(arch)
    if params is None:
        params = count_parameters(net if net is not None else build_network(a, input_shape))
    flops = max(count_flops(a, input_shape), 1)
    depth = sum(isinstance(layer, (Conv, Dense)) for layer in a.layers)
    skips = len(a.skips)
    digest = hashlib.sha256(str(a).encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64 * 2.0 - 1.0
    acc = (0.70
           + 0.18 * (1.0 - math.exp(-(math.log10(flops) - 5.5)))
           + 0.06 * (1.0 - math.exp(-(depth - 2) / 3.0))
           + 0.004 * min(skips, 4)
           - 0.03 * max(0.0, math.log10(max(params, 1)) - 6.5)
           + 0.006 * u)
    return float(min(max(acc, 0.0), 0.999))


class SyntheticEvaluator:
    """Evaluator returning :func:`synthetic_accuracy` (no training, no weights kept)."""

    def __call__(self, net: ChildNet) -> Any:
        """Score one child network."""
        t0 = time.perf_counter()
        acc = synthetic_accuracy(net)
        return EvalResult(accuracy=acc, train_time=time.perf_counter() - t0)


# ------------------------------------------------------------------------ the loop
@dataclass
class RunRecord:
    """One agent's search under one seed."""

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

    @property
    def best_so_far(self) -> list[float]:
        """Best accuracy after 0, 1, ..., n children (index 0 = the start network)."""
        out = [self.start_accuracy]
        for acc in self.accuracies:
            out.append(max(out[-1], acc))
        return out

    @property
    def best_accuracy(self) -> float:
        """Best validation accuracy seen (the start network included)."""
        return self.best_so_far[-1]


def _env_settings(cls: type[Agent], config: Any, per_round: int,
                  schedule: tuple[str, ...] | None, free_steps: int) -> dict[str, Any]:
    """Schedule / free_steps / children per round for an agent class (its requirements win)."""
    settings: dict[str, Any] = {"schedule": schedule, "free_steps": free_steps,
                                "children_per_round": per_round}
    req = getattr(cls, "env_requirements", None)
    if callable(req):
        settings.update(req(config))
    elif getattr(cls, "required_mode", None) == "free":
        settings["schedule"] = None
    return settings


def _results_from_finals(finals: Sequence[dict[str, Any] | None], rewards: np.ndarray,
                         actions: list[list[dict[str, Any]]]) -> list[ChildResult]:
    out = []
    for i, info in enumerate(finals):
        info = info or {}
        out.append(ChildResult(
            arch=str(info.get("arch", "")),
            accuracy=float(info.get("accuracy", 0.0) or 0.0),
            reward=float(rewards[i]),
            failed=bool(info.get("failed", False)),
            params=int(info.get("params", 0) or 0),
            flops=int(info.get("flops", 0) or 0),
            train_time=float(info.get("train_time", 0.0) or 0.0),
            cached=bool(info.get("cached", False)),
            net=info.get("net"),
            actions=actions[i],
        ))
    return out


def _slice_action(action: dict[str, Any], i: int) -> dict[str, Any]:
    return {k: np.asarray(v)[i].copy() for k, v in action.items()}


class _SerialVectorEnv:
    """Fallback when ``envs.VectorNetTransformEnv`` is unavailable: n envs stepped in turn.

    Offers the part of the vector-env protocol :func:`run_agent` uses: stacked
    observations (``"arch"`` a tuple of strings), ``infos["final"]`` on the last
    step, no autoreset.
    """

    def __init__(self, num_envs: int, **env_kwargs: Any) -> None:
        self.num_envs = num_envs
        self.envs = [envs.NetTransformEnv(**env_kwargs) for _ in range(num_envs)]

    @staticmethod
    def _stack(obs: list[dict[str, Any]]) -> dict[str, Any]:
        return {k: (tuple(o[k] for o in obs) if k == "arch" else np.stack([o[k] for o in obs]))
                for k in obs[0]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs = [e.reset(seed=None if seed is None else seed + i, options=options)[0]
               for i, e in enumerate(self.envs)]
        return self._stack(obs), {}

    def step(self, action: dict[str, Any]) -> tuple[Any, ...]:
        out = [e.step(_slice_action(action, i)) for i, e in enumerate(self.envs)]
        terminated = np.asarray([o[2] for o in out])
        infos: dict[str, Any] = {"final": [o[4] if o[2] else None for o in out]}
        return (self._stack([o[0] for o in out]), np.asarray([o[1] for o in out], dtype=float),
                terminated, np.asarray([o[3] for o in out]), infos)

    def close(self) -> None:
        for e in self.envs:
            e.close()


def run_agent(agent_name: str, *,
               evaluator: Callable[[ChildNet], Any] | Callable[[Agent], Callable[[ChildNet], Any]],
               children: int,
               seed: int = 0, start: str | ChildNet | None = None,
               start_accuracy: float | None = None, per_round: int = 5,
               schedule: Sequence[str] | None = ("wider",) * 4 + ("deeper",) * 5,
               free_steps: int = 5, max_layers: int = 50, space: SearchSpace | None = None,
               input_shape: tuple[int, int, int] = (1, 28, 28),
               agent_overrides: dict[str, Any] | None = None,
               tell_start_accuracy: bool = True,
               on_round: Callable[[Agent, list[ChildResult], dict[str, float]], None] | None = None,
               ) -> tuple[RunRecord, Agent]:
    """Run one agent for ``children`` children through the environment (minimal round loop).

    Per round: ``agent.start_network()`` (None = the env's start), reset a vector
    env of ``min(agent.children_this_round(), children left)`` copies, step with
    ``agent.propose`` until the episodes end, and ``agent.learn`` the results.
    The agent's :meth:`env_requirements` (if any) decide free/schedule mode,
    steps and children per round. ``evaluator`` is the env's evaluator, or a
    factory ``evaluator(agent) -> evaluator`` when it is a function taking a
    parameter named ``agent`` (so it can apply e.g. hill climbing's
    ``child_train_overrides``). ``start_accuracy`` (default: the synthetic score
    of the start) starts the best-so-far curve and, with ``tell_start_accuracy``,
    is passed to the agent as ``ctx.extra["start_accuracy"]``. Returns the run's
    record and the agent.
    """
    cls = get_agent_class(agent_name)
    config = cls.Config(**(agent_overrides or {}))
    space = space or SearchSpace()
    sched = None if schedule is None else tuple(schedule)
    settings = _env_settings(cls, config, per_round, sched, free_steps)
    sched = None if settings["schedule"] is None else tuple(settings["schedule"])
    steps = len(sched) if sched is not None else int(settings["free_steps"])
    if start is None:
        start = envs.FASHION_START
    start_net = start if isinstance(start, ChildNet) else build_network(start, input_shape, seed=0)
    if start_accuracy is None:
        start_accuracy = synthetic_accuracy(start_net)
    ctx = AgentContext(
        max_layers=max_layers,
        vocab_size=Tokenizer(space).vocab_size,
        kernel_sizes=tuple(space.kernel_sizes),
        kinds=tuple(envs.KINDS),
        schedule=sched,
        steps_per_episode=steps,
        children_per_round=int(settings["children_per_round"]),
        seed=seed,
        extra={"input_shape": tuple(input_shape),
               **({"start_accuracy": float(start_accuracy)} if tell_start_accuracy else {})},
    )
    agent = cls(ctx, config)
    if "agent" in inspect.signature(evaluator).parameters:
        evaluator = evaluator(agent=agent)
    cache = envs.EvalCache()
    env_kwargs = dict(start=start_net, input_shape=tuple(input_shape), evaluator=evaluator,
                      space=space, schedule=sched, free_steps=steps, max_layers=max_layers,
                      cache=cache)
    record = RunRecord(agent=cls.name, seed=seed, start_accuracy=float(start_accuracy))
    venvs: dict[int, Any] = {}
    t0 = time.perf_counter()
    round_idx = 0
    try:
        while len(record.accuracies) < children:
            n = max(1, min(int(agent.children_this_round()), children - len(record.accuracies)))
            if n not in venvs:
                vec_cls = getattr(envs, "VectorNetTransformEnv", _SerialVectorEnv)
                venvs[n] = vec_cls(n, **env_kwargs)
            venv = venvs[n]
            round_start = agent.start_network()
            options = {"start": round_start} if round_start is not None else None
            obs, _ = venv.reset(seed=seed * 100_003 + round_idx, options=options)
            actions: list[list[dict[str, Any]]] = [[] for _ in range(n)]
            finals: list[dict[str, Any] | None] = [None] * n
            rewards = np.zeros(n)
            for _ in range(steps):
                action = agent.propose(obs)
                for i in range(n):
                    actions[i].append(_slice_action(action, i))
                obs, reward, terminated, truncated, infos = venv.step(action)
                if np.all(np.asarray(terminated) | np.asarray(truncated)):
                    finals = list(infos.get("final") or finals)
                    rewards = np.asarray(reward, dtype=float)
                    break
            results = _results_from_finals(finals, rewards, actions)
            metrics = agent.learn(results)
            for r in results:
                record.accuracies.append(0.0 if r.failed else float(r.accuracy))
                record.archs.append(r.arch)
                record.cached += int(r.cached)
                record.failed += int(r.failed)
            if on_round is not None:
                on_round(agent, results, metrics)
            round_idx += 1
    finally:
        for venv in venvs.values():
            venv.close()
    record.wall_time = time.perf_counter() - t0
    _set_best_arch(record, str(start_net.arch))
    return record, agent


def _set_best_arch(record: RunRecord, start_arch: str) -> None:
    """The best child's architecture, or the start's when no child beat it."""
    best = int(np.argmax(record.accuracies)) if record.accuracies else -1
    if best >= 0 and record.accuracies[best] > record.start_accuracy:
        record.best_arch = record.archs[best]
    else:
        record.best_arch = start_arch


# ------------------------------------------------------------------- the compare
def _train_setup(train_subset: int, epochs: int, max_batches: int | None) -> tuple[Any, Any]:
    """Data (a Fashion-MNIST slice on the CPU) and the common child TrainConfig."""
    data = load_dataset("fashion-mnist", val_size=1000, seed=0, train_subset=train_subset,
                        device="cpu")
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.02,
                         max_batches_per_epoch=max_batches, amp=False, channels_last=False)
    return data, config


def _agent_overrides(name: str, children: int, epochs: int | None) -> dict[str, Any]:
    """Per-agent settings that equalise budgets (hill climbing: enough rounds, same epochs)."""
    cls = get_agent_class(name)
    fields = getattr(cls.Config, "__dataclass_fields__", {})
    over: dict[str, Any] = {}
    if "n_steps" in fields and "n_neigh" in fields:
        # the budget is the number of children, not NASH's n_steps rounds
        over["n_steps"] = -(-children // int(cls.Config().n_neigh)) + 1
    if epochs is not None and "e_neigh" in fields:
        over["e_neigh"] = epochs  # same training epochs per child for every agent
    return over


def _record_from_search(name: str, seed: int, outcome: Any, start_accuracy: float) -> RunRecord:
    """A :class:`RunRecord` from an ``eas.search.run_search`` outcome."""
    hist = outcome.state.history
    record = RunRecord(
        agent=name, seed=seed, start_accuracy=start_accuracy,
        accuracies=[0.0 if h.get("failed") else float(h["accuracy"]) for h in hist],
        archs=[str(h["arch"]) for h in hist],
        cached=sum(bool(h.get("cached")) for h in hist),
        failed=sum(bool(h.get("failed")) for h in hist),
        wall_time=float(outcome.summary.get("elapsed_seconds", 0.0)),
    )
    _set_best_arch(record, str(outcome.state.starts[0]["arch"]))
    return record


def compare(agents: Sequence[str], seeds: Sequence[int], children: int, *,
            evaluator: str = "cheap", out: str | Path | None = None, per_round: int = 5,
            start: str | None = None, loop: str = "search",
            train_subset: int = 2000, epochs: int = 1, max_batches: int | None = 20,
            start_epochs: int = 2, progress: bool = True) -> list[RunRecord]:
    """Run every agent under every seed with the same start, evaluator and budget; write outputs.

    ``start`` is the start architecture (default ``envs.FASHION_START``, 28x28
    grey-scale inputs). ``loop="search"`` drives each run through
    :func:`eas.search.run_search` (its run folder, TensorBoard events and
    checkpoint go to ``out/runs/<agent>__seed<k>``; stage 2 and final training
    off); ``loop="minimal"`` uses this module's :func:`run_agent`. With the
    ``train`` evaluator the start network is trained once (``start_epochs``)
    and shared by every run. Returns one :class:`RunRecord` per (agent, seed).
    """
    if evaluator not in ("cheap", "train"):
        raise ValueError(f"unknown evaluator {evaluator!r}; allowed: cheap, train")
    if loop not in ("search", "minimal"):
        raise ValueError(f"unknown loop {loop!r}; allowed: search, minimal")
    out_dir = Path(out) if out else Path("runs") / f"compare_{datetime.now():%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    start_arch = str(Architecture.parse(start or envs.FASHION_START))
    start_net = build_network(start_arch, (1, 28, 28), seed=0)
    data = base_config = None
    weights_path: Path | None = None
    if evaluator == "cheap":
        start_accuracy = synthetic_accuracy(start_net)
    else:
        data, base_config = _train_setup(train_subset, epochs, max_batches)
        res = train_child(start_net, data, replace(base_config, epochs=start_epochs,
                                                   max_batches_per_epoch=None),
                          device="cpu", seed=0)
        start_accuracy = float(res.val_accuracy)
        weights_path = out_dir / "start_weights.pt"
        torch.save(start_net.state_dict(), weights_path)
    if progress:
        print(f"start network: {start_arch}  val acc {start_accuracy:.4f}  "
              f"({evaluator} evaluator, {loop} loop)")
    records: list[RunRecord] = []
    for name in agents:
        over = _agent_overrides(name, children, epochs if evaluator == "train" else None)
        for seed in seeds:
            if loop == "search":
                rec = _run_search_loop(name, seed, children, evaluator=evaluator,
                                       start_arch=start_arch, start_accuracy=start_accuracy,
                                       weights_path=weights_path, data=data,
                                       base_config=base_config, per_round=per_round,
                                       agent_overrides=over, train_subset=train_subset,
                                       run_dir=out_dir / "runs" / f"{_safe(name)}__seed{seed}")
            else:
                ev: Any = SyntheticEvaluator()
                if evaluator == "train":
                    ev = _trainer_factory(data, base_config, seed)
                rec, _ = run_agent(name, evaluator=ev, children=children, seed=seed,
                                   start=start_net, start_accuracy=start_accuracy,
                                   per_round=per_round, agent_overrides=over)
            rec.agent = name
            records.append(rec)
            if progress:
                print(f"{name:>14s} seed {seed}: best {rec.best_accuracy:.4f} after "
                      f"{len(rec.accuracies)} children ({rec.cached} cached) "
                      f"in {rec.wall_time:.1f}s")
    write_outputs(records, out_dir)
    if progress:
        print((out_dir / "comparison.md").read_text())
        print(f"wrote {out_dir}/comparison.csv, comparison.md, comparison.png, runs.csv, "
              "curves.csv")
    return records


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in name)


def _trainer_factory(data: Any, base_config: Any, seed: int) -> Callable[[Agent], Any]:
    """``agent -> TrainerEvaluator`` applying the agent's child-training overrides."""
    def factory(agent: Agent) -> Any:
        over = getattr(agent, "child_train_overrides", None)
        cfg = replace(base_config, **over()) if callable(over) else base_config
        return envs.TrainerEvaluator(data, cfg, device="cpu", seed=seed)

    return factory


def _run_search_loop(name: str, seed: int, children: int, *, evaluator: str, start_arch: str,
                     start_accuracy: float, weights_path: Path | None, data: Any,
                     base_config: Any, per_round: int, agent_overrides: dict[str, Any],
                     run_dir: Path, train_subset: int | None = None) -> RunRecord:
    """One run through ``eas.search.run_search`` (one stage, no final training)."""
    overrides: dict[str, Any] = {
        "search.agent": name, "search.seed": seed, "search.children_per_step": per_round,
        "search.stage1_networks": children, "search.stage2_networks": 0,
        "search.final_top_k": 0, "search.final_epochs": 0, "search.progress": False,
        "search.keep_best": 1, "data.name": "fashion-mnist", "data.device": "cpu",
        "start.arch": start_arch, "start.epochs": 0,
    }
    section = agent_section(name)
    for key, value in agent_overrides.items():
        overrides[f"{section}.{key}"] = value
    if evaluator == "train":
        overrides["start.weights"] = str(weights_path)
        overrides["data.val_size"] = 1000
        overrides["data.train_subset"] = train_subset
        for f in ("epochs", "batch_size", "lr", "max_batches_per_epoch", "amp",
                  "channels_last"):
            overrides[f"child.{f}"] = getattr(base_config, f)
    cfg = load_config(overrides=overrides)
    outcome = search_loop(cfg, run_dir=run_dir, data=data, log=lambda _msg: None,
                          evaluator=SyntheticEvaluator() if evaluator == "cheap" else None)
    return _record_from_search(name, seed, outcome, start_accuracy)


def _summary(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(r.agent for r in records):
        runs = [r for r in records if r.agent == name]
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
            "failed": float(np.mean([r.failed for r in runs])),
            "wall_time_s": float(np.mean([r.wall_time for r in runs])),
            "best_arch": top.best_arch,
        })
    return rows


def write_outputs(records: Sequence[RunRecord], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write comparison.csv/.md/.png, runs.csv and curves.csv; return the summary rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _summary(records)
    with open(out_dir / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out_dir / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "seed", "best_accuracy", "children", "cached", "failed",
                    "wall_time_s", "best_arch"])
        for r in records:
            w.writerow([r.agent, r.seed, f"{r.best_accuracy:.6f}", len(r.accuracies), r.cached,
                        r.failed, f"{r.wall_time:.3f}", r.best_arch])
    with open(out_dir / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "seed", "child", "accuracy", "best_so_far", "arch"])
        for r in records:
            best = r.best_so_far
            w.writerow([r.agent, r.seed, 0, f"{r.start_accuracy:.6f}", f"{best[0]:.6f}", "<start>"])
            for i, (acc, arch) in enumerate(zip(r.accuracies, r.archs), start=1):
                w.writerow([r.agent, r.seed, i, f"{acc:.6f}", f"{best[i]:.6f}", arch])
    lines = [
        "| agent | best val. accuracy (mean ± std) | min – max | seeds | children | trained "
        "| wall time / run | best architecture |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['agent']} | {row['best_acc_mean']:.4f} ± {row['best_acc_std']:.4f} "
            f"| {row['best_acc_min']:.4f} – {row['best_acc_max']:.4f} | {row['seeds']} "
            f"| {row['children']} | {row['trained']:.1f} | {row['wall_time_s']:.1f} s "
            f"| `{row['best_arch']}` |")
    lines.append("")
    lines.append(f"Start network accuracy: {rows[0]['start_acc']:.4f}.")
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n")
    _plot(records, out_dir / "comparison.png")
    return rows


def _plot(records: Sequence[RunRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.agent for r in records):
        curves = [r.best_so_far for r in records if r.agent == name]
        n = min(len(c) for c in curves)
        arr = np.asarray([c[:n] for c in curves])
        x = np.arange(n)
        (line,) = ax.plot(x, arr.mean(0), label=f"{name} (n={len(curves)})")
        ax.fill_between(x, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("children evaluated")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("Search agents: mean over seeds, band = min–max")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- CLI
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eas.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="reinforce,random,hill_climbing",
                   help="comma-separated agent names or module:Class paths")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    p.add_argument("--children", type=int, default=30, help="children evaluated per run (budget)")
    p.add_argument("--evaluator", choices=("cheap", "train"), default="cheap",
                   help="cheap: deterministic synthetic score; train: real CPU training")
    p.add_argument("--out", default=None, help="output folder (default runs/compare_<timestamp>)")
    p.add_argument("--start", default=None,
                   help="start architecture (default: the Fashion-MNIST Table-1 network)")
    p.add_argument("--loop", choices=("search", "minimal"), default="search",
                   help="search: eas.search.run_search per run; minimal: this module's loop")
    p.add_argument("--per-round", type=int, default=5,
                   help="children per round for agents that do not fix it (hill climbing: n_neigh)")
    p.add_argument("--train-subset", type=int, default=2000,
                   help="train: Fashion-MNIST training images used")
    p.add_argument("--epochs", type=int, default=1, help="train: epochs per child")
    p.add_argument("--max-batches", type=int, default=20, help="train: batches per epoch cap")
    p.add_argument("--start-epochs", type=int, default=2, help="train: epochs for the start network")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    args.agent_list = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not args.agent_list or not args.seed_list:
        p.error("need at least one agent and one seed")
    if args.children < 1:
        p.error("--children must be >= 1")
    for name in args.agent_list:
        try:
            get_agent_class(name)
        except (ValueError, TypeError, ImportError) as exc:
            p.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parse_args(argv)
    compare(args.agent_list, args.seed_list, args.children, evaluator=args.evaluator,
            out=args.out, per_round=args.per_round, start=args.start, loop=args.loop, train_subset=args.train_subset,
            epochs=args.epochs, max_batches=args.max_batches, start_epochs=args.start_epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
