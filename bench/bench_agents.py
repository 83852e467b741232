"""The agent comparison study: every agent, several seeds, equal child-training time (Fashion-MNIST, CPU).

Runs :func:`eas.cli.compare.compare` with the ``train`` evaluator: the
default preset's start network (Table 1 narrowed) is trained once on a
10k-image subset of Fashion-MNIST (validation: 2,000 held-out training images)
and shared; then every agent searches from it, once per seed, until its
children's training time reaches ``--seconds`` (``--clock cpu``, the default: the sum
of their training CPU seconds, ``train_cpu_time``, which other load on the machine
does not inflate; ``wall``: of their ``train_time``). Every child gets the same recipe (the default preset's:
``--epochs`` full epoch of batches of 64, cosine from ``--lr``) and the same
search space and episode schedule (the preset's: up to 48 filters and 256 units;
wider, wider, deeper, deeper, deeper); hill climbing's children start at the same
learning rate. The output folder
gets the comparison's files (``comparison.md``, ``comparison.csv``, ``runs.csv``,
``curves.csv``, ``comparison.png``: best-so-far accuracy against children and
against child-training seconds, mean over seeds with the min-max band) plus
``machine.txt``. Every default not named here comes from configs/default.toml.

    python bench/bench_agents.py [--agents reinforce,random,hill_climbing,lemonade]
        [--seeds 0,1,2] [--seconds 120] [--budgets 120,360] [--out runs/study_fashion]
        [--threads 2] [--figure docs/study_fashion.png]

A run's best-so-far curve gives its best within every smaller budget, so
``--seconds 360 --budgets 120,360`` compares the agents at both budgets from one run
per seed and agent (each agent's trajectory does not depend on the budget it is
given); ``comparison.md`` then has one-sided permutation p-values per budget.

The figures in BENCHMARKS.md ("Agent comparison under equal child-training
time") and the README plot come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from eas.cli.compare import compare  # noqa: E402
from eas.config.engine import DEFAULT_CONFIG, load_config  # noqa: E402
from eas.reports.compare import record_from_summary, write_outputs  # noqa: E402

PRESET = load_config(DEFAULT_CONFIG)
"""The default preset (configs/default.toml): the study's defaults come from it."""


def rebuild(out: Path, agents: list[str], seeds: list[int], seconds: float,
            figure: str | None, budgets: list[float]) -> None:
    """Write the comparison files of ``out`` again from its runs' summary.json files."""
    records = []
    for agent in agents:
        for seed in seeds:
            summary = json.loads((out / "runs" / f"{agent}__seed{seed}" / "summary.json")
                                 .read_text())
            records.append(record_from_summary(agent, seed, summary,
                                               summary["start_accuracies"][0]))
    write_outputs(records, out, rank_by="accuracy", seconds=seconds, budgets=budgets)
    print((out / "comparison.md").read_text())
    if figure:
        shutil.copyfile(out / "comparison.png", figure)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", default="reinforce,random,hill_climbing,lemonade")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--seconds", type=float, default=120.0,
                    help="child-training seconds per run (the equal budget)")
    ap.add_argument("--budgets", default=None,
                    help="child-training budgets the report compares the agents at, with "
                         "one-sided permutation p-values (default: --seconds); e.g. 120,360 "
                         "with --seconds 360: one run per seed and agent serves both")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="what --seconds counts (search.child_clock): cpu = the children's "
                         "training CPU seconds, which other load on the machine does not "
                         "inflate (the default, for a shared CPU machine); wall = wall-clock")
    ap.add_argument("--children", type=int, default=10_000, help="cap on children per run")
    ap.add_argument("--epochs", type=int, default=PRESET.child.epochs, help="epochs per child")
    ap.add_argument("--max-batches", type=int, default=PRESET.child.max_batches_per_epoch,
                    help="batches per child epoch cap")
    ap.add_argument("--lr", type=float, default=PRESET.child.lr,
                    help="children's initial learning rate")
    ap.add_argument("--start-lr", type=float, default=PRESET.start.lr,
                    help="start network's learning rate")
    ap.add_argument("--start-epochs", type=int, default=PRESET.start.epochs)
    ap.add_argument("--train-subset", type=int, default=PRESET.data.train_subset)
    ap.add_argument("--val-size", type=int, default=PRESET.data.val_size)
    ap.add_argument("--per-round", type=int, default=PRESET.search.children_per_step)
    ap.add_argument("--start", default=PRESET.start.arch, help="start architecture")
    ap.add_argument("--filters", default=",".join(map(str, PRESET.space.filters)),
                    help="space.filters")
    ap.add_argument("--fc-units", default=",".join(map(str, PRESET.space.fc_units)),
                    help="space.fc_units")
    ap.add_argument("--schedule", default=PRESET.search.schedule, help="search.schedule")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="a config override for every run, e.g. controller.mode=pool (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/study_fashion")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the tables and plot of an existing --out from its run folders")
    ap.add_argument("--figure", default=None,
                    help="also copy comparison.png here (e.g. docs/study_fashion.png)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    agents = [a for a in args.agents.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = ([float(b) for b in args.budgets.split(",")] if args.budgets
               else [args.seconds])
    if args.report_only:
        rebuild(out, agents, seeds, args.seconds, args.figure, budgets)
        return
    if out.exists():
        sys.exit(f"bench_agents: {out} exists; choose another --out (nothing is overwritten)")
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    compare(agents, seeds, args.children, evaluator="train", dataset="fashion-mnist", out=out,
            per_round=args.per_round, train_subset=args.train_subset, val_size=args.val_size,
            epochs=args.epochs, max_batches=args.max_batches, start_epochs=args.start_epochs,
            seconds=args.seconds, lr=args.lr, start_lr=args.start_lr, rank_by="accuracy",
            start=args.start,
            overrides={"space.filters": args.filters, "space.fc_units": args.fc_units,
                       "search.schedule": args.schedule,
                       # NASH's children get the same learning rate as everyone else's
                       "hill_climbing.lr_start": args.lr,
                       "search.child_clock": args.clock,
                       **dict(item.split("=", 1) for item in args.set)})
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} torch threads, "
               f"Python {platform.python_version()}, torch {torch.__version__}; load average "
               f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
               f"total {time.perf_counter() - t0:.0f} s\n")
    (out / "machine.txt").write_text(machine)
    rebuild(out, agents, seeds, args.seconds, None, budgets)
    print(machine, end="")
    if args.figure:
        shutil.copyfile(out / "comparison.png", args.figure)
        print(f"copied the plot to {args.figure}")


if __name__ == "__main__":
    main()
