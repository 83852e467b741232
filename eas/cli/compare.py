"""Compare search agents on the same dataset, start network, evaluator and budget.

::

    eas compare --agents reinforce,random,hill_climbing --seeds 0,1,2 --children 30 \\
        [--evaluator cheap|train|module:callable] [--dataset fashion-mnist] \\
        [--start default] [--out runs/compare_<timestamp>]

(``python -m eas.compare`` is the same command.) Every agent searches from the
same start network with the same evaluator for the same number of children
(its budget), once per seed. Every run is an ordinary search
(:func:`eas.search.loop.run_search`: one stage of ``--children`` children, no final
training), with its own run folder (TensorBoard events, checkpoint,
``summary.json``) in ``<out>/runs/<agent>__seed<k>``; the comparison is built
from those runs' summaries. Per agent the output folder gets a row in

* ``comparison.csv`` / ``comparison.md``: best validation accuracy (mean ± std
  and min/max over seeds), children evaluated (and how many were actually
  trained, i.e. not answered by the cache), wall time per run, best architecture,
  and the hypervolume of the (accuracy, parameters) Pareto front (mean over
  seeds, every run against one common reference: 1.1 x the largest child of all
  runs; see :mod:`eas.reports.pareto`); ``--rank-by accuracy|hypervolume``
  orders the rows by either (default: the ``--agents`` order);
* ``runs.csv``: one row per (agent, seed); ``curves.csv``: every child's accuracy,
  the best-so-far accuracy after it and the child-training seconds spent so far;
* ``comparison.png``: best-so-far validation accuracy against children evaluated
  and against child-training seconds, the mean over seeds as a line and the
  min-max range as a shaded band (cf. the EAS paper's Figure 5 and NASH's Table 1).

(The records, tables and plot are in :mod:`eas.reports.compare`.)

Evaluators:

* ``cheap``: :class:`eas.envs.synthetic.SyntheticEvaluator`, a deterministic
  closed-form score of the architecture (no training), so a comparison runs in
  seconds. A test harness, not a proxy for real accuracy.
* ``train``: the search's own child trainer on a slice (``--train-subset``) of
  ``--dataset`` on the CPU. The start network is trained once first
  (``--start-epochs``) and shared by all agents and seeds; every agent's
  children get the same recipe (``--epochs``, ``--max-batches``).
* ``module:callable``: your own evaluator, any callable ``net -> accuracy`` or
  ``net -> EvalResult`` (a class is instantiated without arguments).

Budgets are equalised by children (default): hill climbing gets enough rounds
(``n_steps``) for the budget and, with ``train``, ``e_neigh`` = ``--epochs``.
With ``--seconds S`` they are equalised by compute instead: every run samples
until its children's training time (the sum of their ``train_time``; GPU
seconds on a GPU) reaches ``S`` (``search.max_child_seconds``), so an agent
whose children grow larger gets fewer of them; ``--children`` is then only a
cap (default 10000). Every table reports both children and child seconds.
When the start network is not trained (``cheap`` or a custom evaluator) its
accuracy is unknown to the agents, so hill climbing spends child 0 of its first
round evaluating the start (its parent slot); the best-so-far curves start at
the evaluator's score of the start network.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from eas._cli import OneLineParser, creation_root, fail, output_folder_problem, remove_new
from eas.agents.registry import available_agents, get_agent_class
from eas.arch import resolve_start_arch
from eas.config.agent_sections import agent_section
from eas.config.engine import load_config
from eas.config.sections import ConfigError, SearchConfig
from eas.data import DatasetNotFoundError, load_dataset
from eas.datasets import DATASET_NAMES, dataset_facts
from eas.envs.record import as_result
from eas.envs.synthetic import SyntheticEvaluator
from eas.network import ChildNet, build_network
from eas.reports.compare import RANK_BY, RunRecord, record_from_summary, write_outputs
from eas.search.loop import run_search
from eas.training import train_child

__all__ = [
    "EVALUATORS",
    "compare",
    "load_evaluator",
    "main",
]

EVALUATORS = ("cheap", "train")
"""Built-in evaluator names (or give a ``module:callable`` path)."""


def load_evaluator(spec: str) -> Callable[[ChildNet], Any] | None:
    """The evaluator called ``spec``: ``cheap``, ``train`` (None: the search's trainer) or
    a ``module:callable`` path (a class is instantiated without arguments).

    Raises ``ValueError`` with one line naming the problem.
    """
    if spec == "cheap":
        return SyntheticEvaluator()
    if spec == "train":
        return None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"evaluator {spec!r}: expected one of {', '.join(EVALUATORS)} "
                         "or a 'module:callable' path")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"evaluator {spec!r}: cannot import {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"evaluator {spec!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise ValueError(f"evaluator {spec!r} is {obj!r}, not a callable net -> accuracy")
    return obj


def _budget_overrides(name: str, children: int, epochs: int | None) -> dict[str, Any]:
    """Per-agent settings that equalise budgets (hill climbing: enough rounds, same epochs)."""
    config_cls = get_agent_class(name).Config
    fields = {f.name for f in dataclasses.fields(config_cls)} \
        if dataclasses.is_dataclass(config_cls) else set()
    over: dict[str, Any] = {}
    if {"n_steps", "n_neigh"} <= fields:
        # the budget is the number of children, not NASH's n_steps rounds
        over["n_steps"] = -(-children // int(config_cls().n_neigh)) + 1
    if epochs is not None and "e_neigh" in fields:
        over["e_neigh"] = epochs  # same training epochs per child for every agent
    return over


def _base_overrides(dataset: str, data_root: str | None, start: str, children: int,
                    per_round: int, train: bool, train_subset: int, val_size: int,
                    epochs: int, max_batches: int | None, seconds: float | None = None,
                    lr: float = 0.02) -> dict[str, Any]:
    """The configuration every run shares: one stage of ``children`` (or of ``seconds`` of
    child training), no final training, no parent control."""
    over: dict[str, Any] = {
        "search.max_child_seconds": seconds, "search.parent_control": False, "search.stages": None,
        "data.name": dataset, "data.device": "cpu", "start.arch": start, "start.epochs": 0,
        "search.children_per_step": per_round, "search.stage1_networks": children,
        "search.stage2_networks": 0, "search.final_top_k": 0, "search.final_epochs": 0,
        "search.progress": False, "search.keep_best": 1,
    }
    if data_root is not None:
        over["data.root"] = data_root
    if train:
        over.update({"data.val_size": val_size, "data.train_subset": train_subset,
                     "child.epochs": epochs, "child.batch_size": 64, "child.lr": lr,
                     "child.max_batches_per_epoch": max_batches, "child.amp": False,
                     "child.channels_last": False})
    return over


def _start(cfg: SearchConfig, data: Any) -> ChildNet:
    """The shared start network (as ``run_search`` builds it: seed 0 weights)."""
    facts = dataset_facts(cfg.data.name)
    shape, classes = facts if facts is not None else (data.input_shape, data.num_classes)
    arch = resolve_start_arch(cfg.start.arch, shape, classes)
    return build_network(arch, shape, dropout=cfg.start.dropout, seed=0)


def compare(agents: Sequence[str], seeds: Sequence[int], children: int, *,
            evaluator: str = "cheap", dataset: str = "fashion-mnist",
            data_root: str | None = None, start: str = "default",
            out: str | Path | None = None, per_round: int = 5, train_subset: int = 2000,
            val_size: int = 1000, epochs: int = 1, max_batches: int | None = 20,
            start_epochs: int = 2, progress: bool = True,
            rank_by: str | None = None, seconds: float | None = None,
            lr: float = 0.02, start_lr: float = 0.02,
            overrides: dict[str, Any] | None = None) -> list[RunRecord]:
    """Run every agent under every seed with the same start, evaluator and budget; write outputs.

    Every run is :func:`eas.search.loop.run_search` with one stage of ``children``
    children (run folders in ``out/runs/<agent>__seed<k>``). ``evaluator`` is
    ``cheap``, ``train`` or a ``module:callable`` path (see :func:`load_evaluator`);
    ``start`` a start architecture (``default`` = the paper's Table-1 network
    fitted to the dataset). With ``train`` the start network is trained once
    (``start_epochs`` at ``start_lr``) and shared by every run; children train at
    ``lr``. Returns one :class:`RunRecord`
    per (agent, seed), in order; ``rank_by`` orders the table (see :data:`RANK_BY`).
    ``seconds`` equalises compute instead of children (``children`` is then a
    cap). ``overrides`` (``"section.field"`` -> value) go into every run's
    config. Bad settings raise ``ValueError`` (a :class:`ConfigError` names the
    field) before anything is written.
    """
    ev = load_evaluator(evaluator)
    train = ev is None
    base = _base_overrides(dataset, data_root, start, children, per_round, train,
                           train_subset, val_size, epochs, max_batches, seconds, lr)
    base["start.lr"] = start_lr  # the shared start's training (the runs load its weights)
    base.update(overrides or {})  # e.g. {"space.filters": "16,32,48,64"}: every run
    cfg = load_config(overrides=base)  # bad dataset / start architecture / field: stop here
    agent_over = {name: _budget_overrides(name, children, epochs if train else None)
                  for name in agents}
    data = None
    if train or dataset_facts(cfg.data.name) is None:
        d = cfg.data
        data = load_dataset(d.name, d.root, val_size=d.val_size, seed=d.seed,
                            train_subset=d.train_subset, device="cpu")
    out_dir = Path(out) if out else Path("runs") / f"compare_{datetime.now():%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    start_net = _start(cfg, data)
    if train:
        res = train_child(start_net, data, cfg.start.recipe(cfg.child, start_epochs),
                          device="cpu", seed=0)
        start_accuracy = float(res.val_accuracy)
        weights_path = out_dir / "start_weights.pt"
        torch.save(start_net.state_dict(), weights_path)
        base["start.weights"] = str(weights_path)
    else:
        start_accuracy = float(as_result(ev(start_net)).accuracy)
    if progress:
        print(f"start network: {start_net.arch}  val acc {start_accuracy:.4f}  "
              f"({evaluator} evaluator)")
    records: list[RunRecord] = []
    for name in agents:
        section = agent_section(name)
        for seed in seeds:
            run_cfg = load_config(overrides={
                **base, "search.agent": name, "search.seed": seed,
                **{f"{section}.{k}": v for k, v in agent_over[name].items()}})
            outcome = run_search(run_cfg, run_dir=out_dir / "runs" / f"{_safe(name)}__seed{seed}",
                                 data=data, evaluator=ev, log=lambda _msg: None)
            rec = record_from_summary(name, seed, outcome.summary, start_accuracy)
            records.append(rec)
            if progress:
                print(f"{name:>14s} seed {seed}: best {rec.best_accuracy:.4f} after "
                      f"{len(rec.accuracies)} children ({rec.cached} cached), "
                      f"{rec.child_seconds:.1f} child s, in {rec.wall_time:.1f}s")
    write_outputs(records, out_dir, rank_by, seconds)
    if progress:
        print((out_dir / "comparison.md").read_text())
        print(f"wrote {out_dir}/comparison.csv, comparison.md, comparison.png, runs.csv, "
              "curves.csv")
    return records


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in name)


# ---------------------------------------------------------------------------- CLI
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it already says what it is)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.option_strings and "default" not in text and action.default is not None
                and action.default is not argparse.SUPPRESS and action.default != []
                and not isinstance(action.default, bool)):
            text += " (default: %(default)s)"
        return text


def build_parser(prog: str = "eas compare") -> argparse.ArgumentParser:
    """The command line of ``eas compare`` (also ``python -m eas.compare``)."""
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0],
                      formatter_class=_HelpFormatter)
    p.add_argument("--agents", default="reinforce,random,hill_climbing",
                   help="comma-separated agent names (" + ", ".join(available_agents())
                        + ") or module:Class paths")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    p.add_argument("--children", type=int, default=None,
                   help="children evaluated per run: the budget (default 30), or with --seconds "
                        "a cap (default 10000)")
    p.add_argument("--seconds", type=float, default=None,
                   help="equal compute instead: child-training seconds per run (sum of the "
                        "children's train_time, GPU seconds on a GPU; their CPU seconds with "
                        "--set search.child_clock=cpu)")
    p.add_argument("--evaluator", default="cheap",
                   help="cheap: deterministic synthetic score; train: real CPU training; "
                        "or module:callable (net -> accuracy)")
    p.add_argument("--dataset", default="fashion-mnist",
                   help=f"dataset name ({', '.join(DATASET_NAMES)})")
    p.add_argument("--data-root", default=None, help="dataset folder (default: search paths)")
    p.add_argument("--start", default="default",
                   help="start architecture (default: the paper's Table-1 network for the dataset)")
    p.add_argument("--out", default=None, help="output folder (default runs/compare_<timestamp>)")
    p.add_argument("--per-round", type=int, default=5,
                   help="children per round for agents that do not fix it (hill climbing: n_neigh)")
    p.add_argument("--train-subset", type=int, default=2000, help="train: training images used")
    p.add_argument("--val-size", type=int, default=1000, help="train: validation images")
    p.add_argument("--epochs", type=int, default=1, help="train: epochs per child")
    p.add_argument("--max-batches", type=int, default=20, help="train: batches per epoch cap")
    p.add_argument("--start-epochs", type=int, default=2, help="train: epochs for the start network")
    p.add_argument("--lr", type=float, default=0.02,
                   help="train: children's initial learning rate (cosine to 0)")
    p.add_argument("--start-lr", type=float, default=0.02,
                   help="train: the start network's initial learning rate (cosine to 0)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="a setting for every run, e.g. --set space.filters=16,32,48,64 "
                        "(repeatable)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (default: off, one line)")
    p.add_argument("--rank-by", choices=RANK_BY, default=None,
                   help="order the table best first by mean best accuracy or by the mean "
                        "hypervolume of the (accuracy, parameters) fronts (default: --agents order)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "eas compare") -> int:
    """Command-line entry point; bad input prints one line and exits with code 2."""
    p = build_parser(prog)
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not agents or not seeds:
        p.error("need at least one agent and one seed")
    if args.children is None:
        args.children = 30 if args.seconds is None else 10_000
    if args.children < 1:
        p.error("--children must be >= 1")
    if args.seconds is not None and not (0 < args.seconds < float("inf")):
        p.error(f"--seconds must be a positive number of seconds, got {args.seconds}")
    overrides: dict[str, str] = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            p.error(f"--set takes SECTION.FIELD=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    for flag, value in (("--lr", args.lr), ("--start-lr", args.start_lr)):
        if not (0 < value < float("inf")):
            p.error(f"{flag} must be a positive learning rate, got {value}")
    for name in agents:
        try:
            get_agent_class(name)
        except (ValueError, TypeError, ImportError) as exc:
            p.error(str(exc))
    out = Path(args.out) if args.out else None
    if out is not None:
        problem = output_folder_problem(out)
        if problem is None and (out / "comparison.csv").exists():
            problem = f"{out} already holds a comparison (comparison.csv); choose another folder"
        taken = [out / "runs" / f"{_safe(a)}__seed{s}" for a in agents for s in seeds]
        taken = [r for r in taken if r.exists()]
        if problem is None and taken:
            problem = f"{taken[0]} already exists; choose another folder"
        if problem is not None:
            p.error(f"--out: {problem}")
    before = {q.name for q in out.iterdir()} if out is not None and out.is_dir() else None
    top = creation_root(out) if out is not None else None
    try:
        load_evaluator(args.evaluator)
        compare(agents, seeds, args.children, evaluator=args.evaluator, dataset=args.dataset,
                data_root=args.data_root, start=args.start, out=args.out,
                per_round=args.per_round, train_subset=args.train_subset,
                val_size=args.val_size, epochs=args.epochs, max_batches=args.max_batches,
                start_epochs=args.start_epochs, rank_by=args.rank_by, seconds=args.seconds,
                lr=args.lr, start_lr=args.start_lr, overrides=overrides)
    except (ConfigError, DatasetNotFoundError, ValueError) as exc:
        if out is not None and top is not None:
            remove_new(out, before, top)  # bad input: take back what was written
        if args.debug:
            raise
        p.error(" ".join(str(exc).split()))
    except OSError as exc:
        if args.debug:
            raise
        return fail(p.prog, f"cannot write {exc.filename or args.out}: {exc.strerror or exc}", 1)
    return 0

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m eas.compare"))
