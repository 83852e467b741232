"""How close shrunk children stay to their parent, before and after distillation.

A small parent is trained one epoch on 4000 Fashion-MNIST images; each
shrinking morphism is applied and the child is distilled for ``--steps``
steps. Agreement with the parent (same top-1 class, mean KL) is measured on
1000 validation images. CPU, one thread.

    python bench/shrink_distill.py [--steps 200]
"""

from __future__ import annotations

import argparse

import torch

from eas.data import load_dataset
from eas.distill import DistillConfig, agreement, distill
from eas.evaluation import evaluate
from eas.morphisms.narrow import narrow
from eas.morphisms.remove_layer import remove_layer
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.training import train_child

ARCH = "C(8,3,1), P(2,2,MAX), C(8,3,1), P(2,2,MAX), FC(32), FC(32), SM(10)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="distillation steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", val_size=1000, train_subset=4000, seed=0)
    parent = build_network(ARCH, seed=0)
    train_child(parent, data, TrainConfig(epochs=1, batch_size=64, channels_last=False), seed=0)
    acc = evaluate(parent, data.val_x, data.val_y, data)
    print(f"parent {ARCH}: val acc {100 * acc:.2f}%, {parent.num_parameters()} params")
    print("| child | params | top-1 agreement before | after | KL before | after | val acc after |")
    print("|-|-|-|-|-|-|-|")
    cases = {"narrow conv 0: 8 -> 3": narrow(parent, 0, 3),
             "narrow conv 2: 8 -> 3": narrow(parent, 2, 3),
             "narrow FC 4: 32 -> 8": narrow(parent, 4, 8),
             "remove FC 5": remove_layer(parent, 5)}
    for name, child in cases.items():
        before = agreement(parent, child, data.val_x, data)
        res = distill(child, parent, data, DistillConfig(steps=args.steps), seed=0)
        after = agreement(parent, res.net, data.val_x, data)
        acc_after = evaluate(res.net, data.val_x, data.val_y, data)
        print(f"| {name} | {child.num_parameters()} | {100 * before['top1']:.1f}% | "
              f"{100 * after['top1']:.1f}% | {before['kl']:.3f} | {after['kl']:.3f} | "
              f"{100 * acc_after:.2f}% |")


if __name__ == "__main__":
    main()
