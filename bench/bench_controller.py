"""The controller study on the synthetic development tasks (``eas.envs.synthetic.SYNTHETIC_TASKS``).

Every agent searches each task from the default preset's start network
(configs/default.toml: its start, space and schedule, 5 children per round)
with the task's closed-form score as the evaluator, once per seed, for the
largest budget; the best accuracy after 50/100/200 children is read from the
same runs (the runs' histories). Reported per (task, agent, budget): mean +- std
of the best accuracy over seeds, the fraction of runs that reached the task's
optimum, the distinct-children fraction (new architectures / children), and
one-sided permutation p-values of the first agent against each other agent.

    python bench/bench_controller.py [--tasks deep,wide,deeper,skips]
        [--agents reinforce,reinforce_paper,random,hill_climbing] [--seeds 0,1,2,3,4]
        [--budgets 50,100,200] [--out /tmp/bench_controller] [--markdown FILE]

Agent names: any registered agent, or a variant of reinforce from
:data:`VARIANTS` (``reinforce_paper``: the EAS controller, ``reinforce_pool``: the
compounding one with its defaults, ``reinforce_schedule``: the pool mode on the
preset's schedule, as first built, ...); ``--set NAME:section.field=value`` adds an override to
one name (``reinforce_X`` with overrides of your own).
Seconds per run are a few (no training).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from eas.config.engine import DEFAULT_CONFIG, load_config
from eas.envs.synthetic import SYNTHETIC_TASKS, SyntheticTaskEvaluator
from eas.reports.stats import permutation_p  # noqa: E402
from eas.search.loop import run_search

VARIANTS: dict[str, dict[str, Any]] = {
    "reinforce_paper": {"controller.mode": "paper"},
    "reinforce_pool": {"controller.mode": "pool"},
    "reinforce_schedule": {"controller.mode": "pool", "controller.free": False,
                           "controller.wider_one": False, "controller.explore": False},
    "reinforce_ppo": {"controller.mode": "pool", "controller.ppo_epochs": 4},
    "reinforce_parent": {"controller.mode": "pool", "controller.baseline_mode": "parent"},
    "reinforce_nopool": {"controller.mode": "pool", "controller.pool_size": 0},
    "reinforce_repeats": {"controller.mode": "pool", "controller.no_repeat": False},
    "reinforce_shrink": {"controller.mode": "pool", "search.shrink": True,
                         "search.shrink_distill_steps": 0},
    "reinforce_screen": {"controller.mode": "pool", "controller.screen": 4},
}
"""Named agent variants: the search's agent with config overrides."""


def run_one(agent: str, task: str, seed: int, children: int, per_round: int = 5,
            extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One search on a synthetic task; returns its history (one dict per child)."""
    over: dict[str, Any] = {"search.agent": agent if agent == "hill_climbing"
                            else agent.split("_")[0]}
    over.update(VARIANTS.get(agent, {}))
    over.update(extra or {})
    preset = load_config(DEFAULT_CONFIG)
    n_steps = -(-children // per_round) + 2
    base = {
        "data.device": "cpu", "start.epochs": 0, "search.seed": seed,
        "search.children_per_step": per_round, "search.stages": [children],
        "search.parent_control": False, "search.no_search_control": False,
        "search.final_top_k": 0, "search.progress": False,
        # the tasks score accuracy: the paper's reward and accuracy ranking, whatever the
        # preset's [objectives] (its FLOPs-constrained reward would steer the agents away)
        "objectives.reward": "paper", "search.rank_by": "accuracy",
        "hill_climbing.n_steps": n_steps, "hill_climbing.n_neigh": per_round,
        "hill_climbing.n_nm": 3,
    }
    base.update(over)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(DEFAULT_CONFIG, {**base, "search.runs_dir": tmp})
        del preset
        res = run_search(cfg, run_dir=Path(tmp) / "run", evaluator=SyntheticTaskEvaluator(task),
                         log=lambda _m: None)
        return list(res.state.history)


def best_after(history: list[dict[str, Any]], n: int, start: float) -> float:
    """Best accuracy among the first ``n`` children (the start's score if none is better)."""
    accs = [h["accuracy"] for h in history[:n] if not h.get("failed")]
    return max([start, *accs])


def distinct(history: list[dict[str, Any]], n: int) -> float:
    """New architectures among the first ``n`` children, as a fraction."""
    archs = [h["arch"] for h in history[:n]]
    return len(set(archs)) / max(len(archs), 1)




def tables(runs: dict[str, list[list[Any]]], tasks: list[str], agents: list[str],
           seeds: list[int], budgets: list[int]) -> list[str]:
    """Markdown tables of the runs (``"task/agent/seed"`` -> ``[[arch, accuracy], ...]``)."""
    preset = load_config(DEFAULT_CONFIG)
    lines = []
    for task in tasks:
        t = SYNTHETIC_TASKS[task]
        start = t.score(preset.start.arch)
        table: dict[tuple[str, int], list[float]] = {}
        reach: dict[tuple[str, int], float] = {}
        dist: dict[tuple[str, int], float] = {}
        for agent in agents:
            hists = [[{"arch": a, "accuracy": acc} for a, acc in runs[f"{task}/{agent}/{seed}"]]
                     for seed in seeds]
            for b in budgets:
                vals = [best_after(h, b, start) for h in hists]
                table[agent, b] = vals
                reach[agent, b] = float(np.mean([t.reached(v) for v in vals]))
                dist[agent, b] = float(np.mean([distinct(h, b) for h in hists]))
        lines.append(f"\n**{task}** (start {100 * start:.1f} %, optimum {100 * t.optimum:.1f} %, "
                     f"{t.episodes} episodes away)\n")
        lines.append("| agent | children | best acc % (mean ± std) | reached optimum | distinct "
                     f"children | p ({agents[0]} > agent) |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for b in budgets:
            for agent in agents:
                v = np.asarray(table[agent, b]) * 100
                p = ("" if agent == agents[0]
                     else f"{permutation_p(table[agents[0], b], table[agent, b]):.3f}")
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                lines.append(f"| {agent} | {b} | {v.mean():.2f} ± {sd:.2f} "
                             f"| {reach[agent, b] * len(seeds):.0f}/{len(seeds)} "
                             f"| {100 * dist[agent, b]:.0f} % | {p} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="deep,wide,deeper,skips")
    ap.add_argument("--agents", default="reinforce_pool,reinforce_paper,random,hill_climbing")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--budgets", default="50,100,200")
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--set", action="append", default=[],
                    help="AGENT:section.field=value, an override for one agent (repeatable)")
    ap.add_argument("--out", default=None, help="write every run's children here (JSON)")
    ap.add_argument("--report", nargs="+", default=None,
                    help="only build the tables from these --out files (runs made apart)")
    ap.add_argument("--markdown", default=None, help="write the tables here")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    agents = args.agents.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    runs: dict[str, Any] = {}
    if args.report:
        for f in args.report:
            runs.update(json.loads(Path(f).read_text()))
        lines = tables(runs, tasks, agents, seeds, budgets)
        print("\n".join(lines))
        if args.markdown:
            Path(args.markdown).write_text("\n".join(lines) + "\n")
        return
    extra: dict[str, dict[str, Any]] = {a: {} for a in agents}
    for item in args.set:
        who, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        extra.setdefault(who, {})[key] = value
    load0, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.time()
    for task in tasks:
        for agent in agents:
            for seed in seeds:
                hist = run_one(agent, task, seed, max(budgets), args.per_round, extra.get(agent))
                runs[f"{task}/{agent}/{seed}"] = [[h["arch"], h["accuracy"]] for h in hist]
            if args.out:
                Path(args.out).write_text(json.dumps(runs))
    lines = tables(runs, tasks, agents, seeds, budgets)
    foot = (f"\nseeds {seeds}; per round {args.per_round}; load average {load0:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (shared 2-core machine); "
            f"{time.time() - t0:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU")
    lines.append(foot)
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
