"""How many children a search trains at once, and with which back-end.

The search section's ``workers`` and ``backend`` are resolved here, once, from
what the machine has: with CUDA a round's children train concurrently by
default (``GPUs x children_per_gpu`` process workers), on CPU one child at a
time gets all cores (concurrent CPU children gain little, see BENCHMARKS.md,
and a different thread count changes a child's floating-point results). An
explicit ``workers`` above 1 never silently stays serial: ``backend = "auto"``
(the default) becomes ``"process"``, and ``"serial"`` with several workers is
refused when the configuration is validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Concurrency", "gpu_count", "parallel_options", "resolve_concurrency"]


def gpu_count(device: str) -> int:
    """GPUs children may use: 0 when ``device`` is the CPU or CUDA is absent."""
    if device == "cpu" or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.device_count())


@dataclass(frozen=True)
class Concurrency:
    """The resolved setting: ``workers`` children at once through ``backend``."""

    workers: int | None
    """Concurrent children (None only for Ray, whose cluster decides)."""
    backend: str
    """"serial", "process" or "ray"."""

    @property
    def parallel(self) -> bool:
        """Whether children go through a :class:`~eas.envs.parallel.ParallelEvaluator`."""
        return self.backend != "serial"


def resolve_concurrency(workers: int | None, backend: str, children_per_gpu: int,
                        device: str) -> Concurrency:
    """Resolve ``search.workers`` / ``search.backend`` for a search on ``device``.

    ``workers=None``: ``GPUs x children_per_gpu`` with CUDA, else 1. ``backend``
    ``"auto"``: ``"process"`` when more than one worker, else ``"serial"``.
    """
    if backend == "ray":
        return Concurrency(workers, "ray")
    gpus = gpu_count(device)
    if workers is None:
        workers = gpus * children_per_gpu if gpus else 1
    if backend == "auto":
        backend = "process" if workers > 1 else "serial"
    return Concurrency(int(workers), backend)


def parallel_options(section: Any) -> dict[str, Any]:
    """The :class:`~eas.envs.parallel.ParallelEvaluator` keyword arguments of a search section."""
    return {
        "max_retries": section.max_retries,
        "gpu_memory_fraction": section.gpu_memory_fraction,
        "children_per_gpu": section.children_per_gpu,
        "ray_address": section.ray_address,
        "ray_gpus_per_child": section.ray_gpus_per_child,
        "child_timeout": section.child_timeout,
    }
