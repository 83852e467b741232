"""Scoring a trained network: top-1 accuracy on uint8 images, in eval mode, batched.

:func:`evaluate` is what :func:`eas.training.train_child` reports as the validation
and test accuracy of a child; it is also usable on its own (``eas.evaluate``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from eas.accel import autocast, choose_precision
from eas.data import Data, normalize_batch

__all__ = ["evaluate"]


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return autocast(device, choose_precision(device, enabled))


def evaluate(
    network: nn.Module,
    x_uint8: Tensor,
    y: Tensor,
    stats: Data | tuple[Tensor, Tensor],
    *,
    batch_size: int = 1024,
    normalize: bool | None = None,
    amp: bool = True,
    channels_last: bool = True,
) -> float:
    """Top-1 accuracy of ``network`` on ``uint8`` images ``x_uint8`` with labels ``y``.

    ``stats`` is a :class:`Data` (its mean/std/augment.normalize are used) or a
    ``(mean, std)`` pair. Runs in eval mode under ``no_grad`` (autocast on CUDA
    in the precision of :func:`eas.accel.choose_precision` and channels-last
    inputs when enabled) and restores the previous train/eval mode.
    Batches are moved to the network's device. Returns NaN for an empty set.
    """
    if isinstance(stats, Data):
        mean, std = stats.mean, stats.std
        normalize = stats.augment.normalize if normalize is None else normalize
    else:
        mean, std = stats
        normalize = True if normalize is None else normalize
    n = len(y)
    if n == 0:
        return float("nan")
    param = next(network.parameters(), None)
    device = param.device if param is not None else x_uint8.device
    was_training = network.training
    network.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        with torch.no_grad(), _autocast(device, amp):
            for i in range(0, n, batch_size):
                xb = normalize_batch(
                    x_uint8[i : i + batch_size].to(device, non_blocking=True),
                    mean,
                    std,
                    normalize=normalize,
                )
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                logits = network(xb)
                correct += (logits.argmax(1) == y[i : i + batch_size].to(device)).sum()
    finally:
        network.train(was_training)
    return correct.item() / n
