"""The ``"ray"`` back-end of :class:`eas.envs.parallel.ParallelEvaluator` (Ray imported lazily:
an optional third-party back-end)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from eas.envs._parallel_common import (
    _RAY_MISSING,
    _loads,
    _Results,
    _run_child,
    _settle,
    _Task,
    move_evaluator,
)
from eas.envs._process_pool import (
    _dump_outcome,
)
from eas.envs.record import EvalResult

# ---------------------------------------------------------------------------
# Ray back-end
# ---------------------------------------------------------------------------

_RAY_EVALUATORS: dict[tuple[str, str | None], tuple[Any, int]] = {}
"""Per Ray worker process: the evaluator set up for (pool token, visible GPUs)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(_RAY_MISSING) from exc
    return ray


def _ray_task(token: str, payload_box: list[Any], spec_bytes: bytes) -> bytes:
    """Body of one Ray task: set the evaluator up once per Ray worker, train one child."""
    ray = _import_ray()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") if ray.get_gpu_ids() else None
    key = (token, gpu)
    if key not in _RAY_EVALUATORS:
        base, seed = _loads(ray.get(payload_box[0]))
        device = "cuda" if gpu is not None and torch.cuda.is_available() else "cpu"
        _RAY_EVALUATORS[key] = (move_evaluator(base, device), seed)
    evaluator, seed = _RAY_EVALUATORS[key]
    kind, result = _run_child(evaluator, _loads(spec_bytes), seed)
    return _dump_outcome((), kind, result)


class _RayPool:
    """Children as Ray tasks; the evaluator is put in the object store once."""

    def __init__(self, payload: bytes, address: str | None, gpus_per_child: float,
                 device: str | None) -> None:
        ray = _import_ray()
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False,
                                      "log_to_driver": True}
            if address is None:
                # A local instance: let its workers import this checkout of eas.
                root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
            ray.init(**kwargs)
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self._gpus = gpus_per_child if cluster_gpus > 0 and device != "cpu" else 0.0
        self._token = os.urandom(8).hex()
        self._payload_ref = ray.put(payload)
        self._remote = ray.remote(**self.decoration())(_ray_task)

    def decoration(self) -> dict[str, Any]:
        """How the task function is declared to Ray.

        GPU tasks declare ``num_gpus`` here, not only per call: Ray then sets
        each task's ``CUDA_VISIBLE_DEVICES`` and, with ``max_calls=1`` (Ray's
        default for GPU functions, stated explicitly), runs every child in a
        fresh worker process, so no CUDA context, bound to one GPU and possibly
        poisoned, is handed a child for another GPU. CPU tasks take one core and
        keep their workers (the evaluator is set up once per worker).
        """
        if self._gpus > 0:
            return {"max_retries": 0, "num_gpus": self._gpus, "max_calls": 1}
        return {"max_retries": 0, "num_cpus": 1}

    @property
    def size(self) -> int:
        resources = self._ray.cluster_resources()
        if self._gpus > 0:
            return max(1, int(resources.get("GPU", 0.0) / self._gpus))
        return max(1, int(resources.get("CPU", 1.0)))

    def _submit(self, task: _Task) -> Any:
        task.attempts += 1
        remote = self._remote
        if task.exclusive and self._gpus > 0:  # out of memory before: a whole GPU this time
            remote = remote.options(num_gpus=1.0)
        return remote.remote(
            self._token, [self._payload_ref], task.payload
        )

    def run(self, specs: Sequence[bytes], max_retries: int, child_timeout: float | None,
            on_result: Callable[[int, EvalResult], None] | None = None) -> list[EvalResult]:
        ray = self._ray
        tasks = [_Task(i, spec) for i, spec in enumerate(specs)]
        running: dict[Any, tuple[_Task, float]] = {}
        for task in tasks:
            running[self._submit(task)] = (task, time.monotonic())
        done = _Results(on_result)
        try:
            while running:
                finished, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in finished:
                    task, _since = running.pop(ref)
                    try:
                        kind, result = _loads(ray.get(ref))
                    except Exception as exc:  # noqa: BLE001 - worker crash, node OOM, cancelled
                        kind = "infra"
                        result = EvalResult(0.0, failed=True, reason=f"{type(exc).__name__}: {exc}")
                    final = _settle(task, kind, result, max_retries, "ray")
                    if final is None:
                        running[self._submit(task)] = (task, time.monotonic())
                    else:
                        done[task.index] = final
                if child_timeout is not None:
                    now = time.monotonic()
                    for ref, (task, since) in list(running.items()):
                        if now - since > child_timeout:
                            running.pop(ref)
                            ray.cancel(ref, force=True)
                            final = _settle(
                                task, "infra",
                                EvalResult(0.0, failed=True,
                                           reason=f"timed out after {child_timeout:g} s (task cancelled)"),
                                max_retries, "ray",
                            )
                            if final is None:
                                running[self._submit(task)] = (task, time.monotonic())
                            else:
                                done[task.index] = final
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return [done[i] for i in range(len(tasks))]

    def close(self) -> None:
        self._payload_ref = None  # drop our reference; Ray frees the object


