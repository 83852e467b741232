"""Objectives of a child network besides accuracy: size, compute and measured latency.

Parameters and FLOPs are exact counts (:func:`eas.network.count_parameters`,
:func:`eas.shapes.count_flops`); latency is measured: the median wall time of
``repeats`` forward passes of a batch of ``batch_size`` zero images on a device,
after ``warmup`` untimed passes, in eval mode under ``torch.no_grad``.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from eas.network import ChildNet, count_parameters
from eas.shapes import count_flops

__all__ = ["COSTS", "cost_objectives", "measure_latency"]

COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
"""Names of the cost objectives (all minimised), as they appear in records and reports."""


def measure_latency(net: nn.Module, input_shape: tuple[int, int, int], *, batch_size: int = 1,
                    repeats: int = 20, warmup: int = 3, device: str | torch.device = "cpu") -> float:
    """Median milliseconds of one forward pass of ``batch_size`` images on ``device``.

    A copy of ``net`` is timed (``net`` itself is not moved or switched to eval
    mode). CUDA is synchronised around every timed pass. ``repeats`` >= 1 and
    ``batch_size`` >= 1, else ``ValueError``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"latency batch_size must be >= 1, got {batch_size}")
    if int(repeats) < 1:
        raise ValueError(f"latency repeats must be >= 1, got {repeats}")
    if int(warmup) < 0:
        raise ValueError(f"latency warmup must be >= 0, got {warmup}")
    dev = torch.device(device)
    model = copy.deepcopy(net).to(dev).eval()
    x = torch.zeros((int(batch_size), *(int(v) for v in input_shape)), device=dev)
    cuda = dev.type == "cuda"
    times: list[float] = []
    with torch.no_grad():
        for k in range(int(warmup) + int(repeats)):
            if cuda:
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(dev)
            if k >= int(warmup):
                times.append(1000.0 * (time.perf_counter() - t0))
    return float(statistics.median(times))


def cost_objectives(net: ChildNet) -> dict[str, Any]:
    """``{"params": ..., "flops": ...}`` of a child network (exact counts)."""
    return {"params": int(count_parameters(net)),
            "flops": int(count_flops(net.arch, net.input_shape))}
