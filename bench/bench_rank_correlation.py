"""Does the search's cheap child accuracy rank architectures like their converged accuracy?

Takes a run (the history in its ``summary.json``, or in ``checkpoint.pt`` for an
unfinished run, and its ``config.toml``), picks
``--children`` distinct architectures spread evenly over the run's range of child
accuracies, and trains each **from scratch** (the start's recipe) until validation
accuracy plateaus (:func:`eas.plateau.train_to_plateau`: cosine cycles of
``--first-epochs``, doubling, patience 1, at most ``--max-epochs``), on the run's
own data subset and validation split. Optionally also a cheap proxy per child:
``--proxy-epochs`` epochs from scratch. Then it reports Kendall's tau-b and
Spearman's rho (:mod:`eas.ranking`) between the converged accuracy and

* the child accuracy the search recorded (its recipe: inherited weights, ``child.*``);
* each proxy;
* the architecture's parameter count and FLOPs (a search-free baseline ranking).

    python bench/bench_rank_correlation.py RUN_DIR [--children 10] [--max-epochs 9]
        [--first-epochs 3] [--proxy-epochs 1] [--threads 2] [--out result.json]

The table, the correlations, the machine, ``uptime``'s load and the process CPU
time are printed and written to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from eas.checkpoint import load_checkpoint  # noqa: E402
from eas.config.engine import load_config  # noqa: E402
from eas.data import load_dataset  # noqa: E402
from eas.network import build_network  # noqa: E402
from eas.plateau import train_to_plateau  # noqa: E402
from eas.ranking import kendall_tau, spearman_rho  # noqa: E402
from eas.search.state import CHECKPOINT  # noqa: E402
from eas.training import train_child  # noqa: E402


def spread(history: list[dict], n: int) -> list[dict]:
    """``n`` distinct, successful children evenly spaced over the range of accuracies."""
    best: dict[str, dict] = {}
    for h in history:
        if h.get("failed") or h.get("accuracy") is None:
            continue
        if h["arch"] not in best or h["accuracy"] > best[h["arch"]]["accuracy"]:
            best[h["arch"]] = h
    ranked = sorted(best.values(), key=lambda h: h["accuracy"])
    if len(ranked) <= n:
        return ranked
    idx = sorted({int(round(i)) for i in np.linspace(0, len(ranked) - 1, n)})
    return [ranked[i] for i in idx]


def load() -> str:
    """``uptime``'s load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished run folder (summary.json, config.toml)")
    ap.add_argument("--children", type=int, default=10)
    ap.add_argument("--first-epochs", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=9)
    ap.add_argument("--proxy-epochs", type=str, default="1",
                    help="comma-separated proxies: epochs from scratch (empty: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if (args.run / "summary.json").is_file():
        history = json.loads((args.run / "summary.json").read_text())["history"]
    else:  # an unfinished run: the children its last checkpoint holds
        history = load_checkpoint(args.run / CHECKPOINT)["state"]["history"]
    cfg = load_config(args.run / "config.toml")
    d = cfg.data
    data = load_dataset(d.name, d.root, val_size=d.val_size, seed=d.seed,
                        train_subset=d.train_subset, device="cpu")
    recipe = cfg.start.recipe(cfg.child, 1)
    proxies = [int(p) for p in args.proxy_epochs.split(",") if p.strip()]
    picked = spread(history, args.children)
    # evens then odds of the accuracy order: a run cut short still spans the whole range
    picked = picked[::2] + picked[1::2]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads, Python {platform.python_version()}; load {load()}")
    print(f"run {args.run.name}: {len(picked)} children; converged = from scratch, cycles of "
          f"{args.first_epochs} epochs doubling, patience 1, <= {args.max_epochs} epochs; "
          f"recipe lr {recipe.lr}, batch {recipe.batch_size}, {len(data.train_y)} train images")
    rows = []
    cpu0, wall0 = time.process_time(), time.time()
    for h in picked:
        net = build_network(h["arch"], data.input_shape, dropout=cfg.start.dropout, seed=args.seed)
        params = sum(p.numel() for p in net.parameters())
        row = {"arch": h["arch"], "stage": h["stage"], "child_accuracy": h["accuracy"],
               "params": params, "flops": h.get("flops")}
        for e in proxies:
            probe = build_network(h["arch"], data.input_shape, dropout=cfg.start.dropout,
                                  seed=args.seed)
            res = train_child(probe, data, dataclasses.replace(recipe, epochs=e),
                              seed=args.seed)
            row[f"scratch_{e}"] = res.val_accuracy
        t = time.time()
        plat = train_to_plateau(net, data, recipe, first_epochs=args.first_epochs, growth=2.0,
                                patience=1, min_delta=0.0, max_epochs=args.max_epochs,
                                seed=args.seed, test=False)
        row.update(converged=plat.val_accuracy, epochs=plat.epochs, stopped_by=plat.stopped_by,
                   seconds=time.time() - t, train_time=plat.train_time)
        rows.append(row)
        print(f"  child {100 * row['child_accuracy']:.2f}%  "
              + "".join(f"scratch{e} {100 * row[f'scratch_{e}']:.2f}%  " for e in proxies)
              + f"converged {100 * row['converged']:.2f}% ({row['epochs']} ep, "
              f"{row['seconds']:.0f}s)  {params / 1e3:.0f}k params  {h['arch']}", flush=True)
    conv = [r["converged"] for r in rows]
    scores = {"child accuracy (search recipe)": [r["child_accuracy"] for r in rows],
              **{f"{e} epoch(s) from scratch": [r[f"scratch_{e}"] for r in rows]
                 for e in proxies},
              "parameters": [float(r["params"]) for r in rows]}
    if all(r["flops"] is not None for r in rows):
        scores["FLOPs"] = [float(r["flops"]) for r in rows]
    corr = {name: {"kendall_tau": kendall_tau(v, conv), "spearman_rho": spearman_rho(v, conv)}
            for name, v in scores.items()}
    print(f"\nrank correlation with the converged accuracy ({len(rows)} children):")
    for name, c in corr.items():
        print(f"  {name:<32} Kendall tau {c['kendall_tau']:+.3f}  "
              f"Spearman rho {c['spearman_rho']:+.3f}")
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    print(f"wall {wall:.0f}s, process CPU {cpu:.0f}s, load {load()} (shared machine)")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "correlation": corr, "wall_seconds": wall,
                                        "cpu_seconds": cpu, "load": load(),
                                        "machine": cpu_model()}, indent=2))


if __name__ == "__main__":
    main()
