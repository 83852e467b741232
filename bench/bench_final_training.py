"""Final training: from the searched weights or from scratch, for the same epochs?

Takes a finished run's best network (``best_1.pt``) and trains its architecture
with the final-training rule (:func:`eas.plateau.train_to_plateau`: cosine cycles
of ``--first-epochs`` doubling, patience ``--patience``, at most ``--max-epochs``)
twice in one process, side by side: once from the searched (inherited) weights,
once from scratch (same seed, same data order, same learning rate). The same
architecture costs the same per epoch, so equal epochs are equal compute; the
seconds are printed too. Data: the run's subset and validation split.

    python bench/bench_final_training.py RUN_DIR [--max-epochs 24] [--first-epochs 4]
        [--lr 0.02] [--threads 2] [--out result.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from eas.checkpoint import load_network  # noqa: E402
from eas.config.engine import load_config  # noqa: E402
from eas.data import load_dataset  # noqa: E402
from eas.network import build_network  # noqa: E402
from eas.plateau import train_to_plateau  # noqa: E402


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--first-epochs", type=int, default=4)
    ap.add_argument("--max-epochs", type=int, default=24)
    ap.add_argument("--patience", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.run / "config.toml")
    d = cfg.data
    data = load_dataset(d.name, d.root, val_size=d.val_size, seed=d.seed,
                        train_subset=d.train_subset, device="cpu")
    recipe = dataclasses.replace(cfg.child, lr=args.lr, max_batches_per_epoch=None)
    searched = load_network(args.run / "best_1.pt")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; load {os.getloadavg()[0]:.2f} (shared machine)")
    print(f"{searched.arch}\ncycles of {args.first_epochs} epochs doubling, patience "
          f"{args.patience}, <= {args.max_epochs} epochs, lr {args.lr}")
    out = {}
    for init in ("weights", "scratch"):
        net = (searched if init == "weights" else
               build_network(searched.arch, data.input_shape, seed=args.seed))
        cpu0, t0 = time.process_time(), time.time()
        res = train_to_plateau(net, data, recipe, first_epochs=args.first_epochs, growth=2.0,
                               patience=args.patience, max_epochs=args.max_epochs,
                               seed=args.seed)
        out[init] = {"val_accuracy": res.val_accuracy, "test_accuracy": res.test_accuracy,
                     "epochs": res.epochs, "best_epochs": res.best_epochs,
                     "stopped_by": res.stopped_by, "seconds": time.time() - t0,
                     "cpu_seconds": time.process_time() - cpu0, "load": os.getloadavg()[0],
                     "cycles": [(c["epochs"], c["val_accuracy"]) for c in res.cycles]}
        o = out[init]
        print(f"{init:>8}: val {100 * o['val_accuracy']:.2f}%  test {100 * o['test_accuracy']:.2f}%"
              f"  {o['epochs']} epochs (best after {o['best_epochs']}, {o['stopped_by']})  "
              f"{o['seconds']:.0f}s wall, {o['cpu_seconds']:.0f}s CPU, load {o['load']:.2f}  "
              f"cycles {o['cycles']}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"arch": str(searched.arch), **out}, indent=2))


if __name__ == "__main__":
    main()
