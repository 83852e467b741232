"""Which child training makes transformed children beat their start network? (Fashion-MNIST, CPU)

The default preset's search trains the start network 3 epochs on a 10k-image
subset, then trains every child 30 batches of 64 with the learning rate restarted
at 0.02; its children scored below their start. This script measures, without
the search loop, what child fidelity and learning rate let children gain:

1. train the start network (Table 1 fitted to 28x28) ``--start-epochs`` on the
   subset (the preset's recipe) and measure its validation accuracy;
2. draw ``--children`` children from it with the environment and random legal
   actions (the preset's episode: wider, wider, deeper, deeper, deeper; noise on);
3. for every (budget, lr) setting, train a copy of every child and, as the
   *parent control*, a copy of the start network itself, with that budget and
   learning rate (cosine to 0), all with the same data order;
4. print start / parent control / best child / mean child per setting.

    python bench/bench_child_fidelity.py [--budgets 30,156,312] [--lrs 0.02,0.005]
        [--children 4] [--threads 2]

A budget is SGD steps of 64 images (156 = one epoch of the 10k subset).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eas import envs  # noqa: E402
from eas.arch import SearchSpace, resolve_start_arch  # noqa: E402
from eas.data import load_dataset  # noqa: E402
from eas.envs import EvalResult  # noqa: E402
from eas.network import build_network  # noqa: E402
from eas.recipe import TrainConfig
from eas.training import train_child

SCHEDULE = ("wider", "wider", "deeper", "deeper", "deeper")
SPACE = SearchSpace(filters=(16, 32, 48, 64, 96, 128),
                    fc_units=(64, 128, 256, 384, 512))
"""The default preset's space (capped at 128 filters / 512 units)."""


def draw_children(start: torch.nn.Module, n: int, seed: int) -> list[torch.nn.Module]:
    """``n`` children of ``start`` from random legal episodes (untrained, weights inherited)."""
    caught: list[torch.nn.Module] = []

    def catch(net: torch.nn.Module) -> EvalResult:
        caught.append(copy.deepcopy(net))
        return EvalResult(0.5)

    env = envs.NetTransformEnv(start=start, input_shape=(1, 28, 28), evaluator=catch,
                               space=SPACE, schedule=SCHEDULE, cache=False)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    for k in range(n):
        obs, _ = env.reset(seed=seed * 1000 + k)
        done = False
        while not done:
            obs, _, done, _, _ = env.step(envs.sample_legal_action(obs, rng))
    return caught


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="30,156,312", help="child SGD steps (comma-separated)")
    ap.add_argument("--lrs", default="0.02,0.005", help="child peak learning rates")
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--start-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_dataset("fashion-mnist", val_size=2000, seed=0, train_subset=10000)
    steps_per_epoch = len(data.train_y) // 64
    arch = resolve_start_arch("default", (1, 28, 28), 10)
    start = build_network(arch, (1, 28, 28), seed=args.seed)
    base = TrainConfig(epochs=args.start_epochs, batch_size=64, lr=0.02)
    res = train_child(start, data, base, seed=args.seed)
    start_acc = res.val_accuracy
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} torch "
          f"threads, torch {torch.__version__}; {steps_per_epoch} steps per epoch")
    print(f"start network {arch}: {args.start_epochs} epochs, val {100 * start_acc:.2f}% "
          f"({res.train_time:.0f}s)")
    children = draw_children(start, args.children, args.seed)
    print("children:", *(str(c.arch) for c in children), sep="\n  ")
    print("\n| child steps | lr | start | parent control | best child | mean child "
          "| children > start | children > control | s per child |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for budget in (int(b) for b in args.budgets.split(",")):
        epochs = max(1, -(-budget // steps_per_epoch))
        per_epoch = -(-budget // epochs)
        for lr in (float(v) for v in args.lrs.split(",")):
            cfg = dataclasses.replace(base, epochs=epochs, lr=lr,
                                      max_batches_per_epoch=per_epoch)
            control = train_child(copy.deepcopy(start), data, cfg, seed=args.seed).val_accuracy
            accs, secs = [], []
            for child in children:
                r = train_child(copy.deepcopy(child), data, cfg, seed=args.seed)
                accs.append(0.0 if r.failed else r.val_accuracy)
                secs.append(r.train_time)
            print(f"| {epochs * per_epoch} | {lr:g} | {100 * start_acc:.2f} | "
                  f"{100 * control:.2f} | {100 * max(accs):.2f} | {100 * np.mean(accs):.2f} | "
                  f"{sum(a > start_acc for a in accs)}/{len(accs)} | "
                  f"{sum(a > control for a in accs)}/{len(accs)} | {np.mean(secs):.1f} |",
                  flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
