"""A short distillation of a shrunk child from its parent (after approximate morphisms).

Shrinking morphisms (``morphisms.narrow``, ``morphisms.remove_layer``) do not
preserve the parent's function exactly. :func:`distill` trains a *copy* of the
child for a few hundred steps to match the parent's softened outputs
(Hinton et al., 2015), mixed with the labels' cross-entropy::

    loss = alpha * T^2 * KL(softmax(parent / T) || softmax(child / T))
           + (1 - alpha) * CE(child, labels)

with SGD (Nesterov momentum) and a cosine learning rate over the steps, on
augmented training batches drawn with a seeded ``torch.Generator``.
:func:`agreement` measures how close two networks are on a set of images.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eas.data import Data, augment_batch, normalize_batch

__all__ = ["DistillConfig", "DistillResult", "agreement", "distill"]


@dataclass
class DistillConfig:
    """How a shrunk child is distilled from its parent."""

    steps: int = 300
    """SGD steps (0 = no distillation)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 0.01
    """Peak learning rate (cosine to 0 over ``steps``)."""
    momentum: float = 0.9
    """SGD (Nesterov) momentum."""
    weight_decay: float = 0.0
    """L2 weight decay."""
    temperature: float = 2.0
    """Softening temperature T of both networks' outputs."""
    alpha: float = 0.9
    """Weight of the distillation term; 1 - alpha goes to the labels' cross-entropy."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


@dataclass
class DistillResult:
    """What :func:`distill` returns."""

    net: nn.Module
    """The distilled copy of the child (eval mode, on the training device)."""
    steps: int
    """Steps taken."""
    first_loss: float
    """Loss of the first step (NaN for 0 steps)."""
    last_loss: float
    """Mean loss of the last 10 % of the steps (NaN for 0 steps)."""
    train_time: float
    """Seconds spent."""


def distill(child: nn.Module, parent: nn.Module, data: Data, config: DistillConfig | None = None,
            *, device: str | torch.device | None = None, seed: int = 0) -> DistillResult:
    """Train a copy of ``child`` to match ``parent`` on ``data``'s training images.

    ``child`` and ``parent`` are not modified (the parent is run on a copy in
    eval mode). ``device`` defaults to the data's device; ``seed`` fixes the
    batch order and augmentation, so CPU runs are reproducible.
    """
    config = config if config is not None else DistillConfig()
    dev = torch.device(device) if device is not None else data.device
    data = data.to(dev)
    student = copy.deepcopy(child).to(dev).train()
    teacher = copy.deepcopy(parent).to(dev).eval()
    n = len(data.train_y)
    if n == 0 and config.steps > 0:
        raise ValueError("distill: the data has no training images")
    bs = min(config.batch_size, max(n, 1))
    opt = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=config.momentum,
                          nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    t, a = float(config.temperature), float(config.alpha)
    losses: list[float] = []
    start = time.perf_counter()
    perm, pos = torch.randperm(n, generator=gen, device=dev), 0
    for step in range(config.steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen, device=dev), 0
        idx = perm[pos:pos + bs]
        pos += bs
        xb = augment_batch(data.train_x[idx], data.augment, data.mean, data.std, gen)
        yb = data.train_y[idx]
        for group in opt.param_groups:
            group["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * step / config.steps))
        with torch.no_grad():
            target = F.log_softmax(teacher(xb) / t, dim=1)
        logits = student(xb)
        kd = F.kl_div(F.log_softmax(logits / t, dim=1), target, log_target=True,
                      reduction="batchmean") * t * t
        loss = a * kd + (1 - a) * F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    student.eval()
    tail = losses[-max(1, len(losses) // 10):] if losses else []
    return DistillResult(net=student, steps=config.steps,
                         first_loss=losses[0] if losses else float("nan"),
                         last_loss=sum(tail) / len(tail) if tail else float("nan"),
                         train_time=time.perf_counter() - start)


def agreement(a: nn.Module, b: nn.Module, x_uint8: Tensor, data: Data,
              batch_size: int = 512) -> dict[str, float]:
    """How close networks ``a`` and ``b`` are on images ``x_uint8`` (both in eval mode).

    Returns ``top1``: the fraction of images with the same predicted class, and
    ``kl``: the mean KL divergence of ``b``'s class distribution from ``a``'s.
    The networks' train/eval modes are restored.
    """
    modes = (a.training, b.training)
    a.eval()
    b.eval()
    same, kl, n = 0, 0.0, len(x_uint8)
    dev = next(a.parameters()).device
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                xb = normalize_batch(x_uint8[i:i + batch_size].to(dev), data.mean, data.std,
                                     normalize=data.augment.normalize)
                la = F.log_softmax(a(xb), dim=1)
                lb = F.log_softmax(b(xb.to(next(b.parameters()).device)).to(dev), dim=1)
                same += int((la.argmax(1) == lb.argmax(1)).sum())
                kl += float(F.kl_div(lb, la, log_target=True, reduction="sum"))
    finally:
        a.train(modes[0])
        b.train(modes[1])
    return {"top1": same / max(n, 1), "kl": kl / max(n, 1)}
