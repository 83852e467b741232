"""Parallel child training: train a batch of children at once, on local processes, GPUs or Ray.

EAS trained 10 children per controller step on 5 GPUs. :class:`ParallelEvaluator`
wraps any picklable evaluator (``evaluator(net) -> float | EvalResult``, e.g.
``envs.TrainerEvaluator``) and offers ``evaluate_many(nets) -> list[EvalResult]``,
which :func:`envs.evaluators.evaluate_batch` (and so ``VectorNetTransformEnv``) uses.

Back-ends
---------
* ``"serial"``: one child after the other in this process.
* ``"process"``: long-lived local worker processes started with the **spawn**
  context (CUDA cannot be used in forked workers). With GPUs, workers are spread
  round-robin over the visible GPUs, ``children_per_gpu`` per GPU; each worker sees
  only its GPU (``CUDA_VISIBLE_DEVICES``) and may cap its share of the GPU memory
  (``gpu_memory_fraction``). On CPU, N workers split the cores
  (``torch.set_num_threads(max(1, cores // N))``).
* ``"ray"``: children run as Ray tasks with fractional GPUs
  (``num_gpus=ray_gpus_per_child``) on ``ray.init(address=ray_address)`` or a local
  instance (``pip install 'eas[ray]'``).
* ``"auto"``: ``"process"`` when more than one worker is available, else ``"serial"``.

How the evaluator reaches the workers
-------------------------------------
The base evaluator is serialised **once** per pool (``torch.save``, tensors mapped
to CPU on load) and sent once to each worker, never per child. A worker then puts
it on its own device with :func:`move_evaluator`: the evaluator's ``to(device)``
method when it has one (it should return an equivalent evaluator whose data lives
on ``device``), otherwise a shallow copy whose ``data`` attribute is moved with
``data.to(device)`` and whose ``device`` attribute (if any) is set to ``device``
(which fits ``envs.TrainerEvaluator``). So on a GPU machine every worker loads the
dataset onto its own GPU once and keeps it there for all its children.

Children travel as :class:`ChildSpec` (architecture string, input shape, dropout,
CPU ``state_dict``) rather than pickled modules, and come back as ``EvalResult``
with the trained CPU ``state_dict``.

Faults
------
* The evaluator raising for a child (a bug, a NaN check that raises, ...): the
  child is recorded ``failed=True`` with ``reason="ExcType: message"``; it is not
  retried (the same code would raise again).
* Infrastructure failures -- the worker process dying (killed, segfault,
  ``os._exit``), running out of memory (``torch.cuda.OutOfMemoryError``,
  ``MemoryError``, or a failed result whose reason says "out of memory", which is
  how ``train_child`` reports CUDA OOM), or exceeding ``child_timeout`` -- are
  retried up to ``max_retries`` times on a fresh worker; an out-of-memory child is
  retried alone on its GPU. A child that keeps failing is recorded failed (lowest
  reward) and the batch goes on.
* A sticky CUDA error (illegal address, launch failure, ECC error, ...:
  :func:`eas.accel.is_sticky_cuda_error`) leaves the worker's CUDA context
  unusable: the worker process exits and is replaced, and the child is retried
  once on the fresh one (``retried`` says "sticky CUDA error, worker
  restarted"); this retry does not count against ``max_retries``. The serial
  back-end cannot restart itself and records such a child failed.
* Only the worker that died is replaced; children finished or running on other
  workers are never lost or re-run.
* Retries are on the record: the child's :class:`~eas.envs.record.EvalResult`
  has ``attempts`` (the tries), ``retried`` (why each earlier try failed) and
  ``worker``; each retry (and each child given up on) is one WARNING line on the
  logger ``eas.envs.parallel`` (:data:`RETRY_LOG`) as it happens. A search forwards
  these lines to its log and keeps the fields in its journal, history,
  ``summary.json`` and TensorBoard (``charts/retries``).

Same results whatever the back-end
----------------------------------
Results come back in input order. Every child is evaluated with the global RNGs
(``random``, ``numpy``, ``torch``) seeded from the base evaluator's ``seed``
attribute (0 if it has none), right before the evaluator is called, in every
back-end; so a child's result depends on the child and the seed, not on which
worker trained it or in which order (up to GPU non-determinism and the tiny
floating-point differences of different intra-op thread counts). The base
evaluator must therefore not depend on per-call state (e.g. a call counter).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from eas.envs._parallel_common import (
    RETRY_LOG,
    ChildSpec,
    _dumps,
    _evaluator_seed,
    _Results,
    _run_child,
    _settle,
    _Task,
    available_cores,
    default_workers,
    is_out_of_memory,
    move_evaluator,
    pack_network,
    unpack_network,
    visible_gpus,
)
from eas.envs._process_pool import (
    _ProcessPool,
    _WorkerInitError,
)
from eas.envs._ray_pool import (
    _import_ray,
    _RayPool,
)
from eas.envs.record import EvalResult
from eas.envs.settings import BACKENDS

__all__ = [
    "BACKENDS",
    "RETRY_LOG",
    "ChildSpec",
    "ParallelEvaluator",
    "available_cores",
    "default_workers",
    "is_out_of_memory",
    "move_evaluator",
    "pack_network",
    "unpack_network",
    "visible_gpus",
]

# ---------------------------------------------------------------------------
# The public evaluator
# ---------------------------------------------------------------------------


class ParallelEvaluator:
    """Train several children at once with a picklable base evaluator.

    Args:
        base: the evaluator doing the work, ``base(net) -> float | EvalResult``
            (e.g. ``envs.TrainerEvaluator``). For the "process" and "ray" back-ends
            it must be picklable (a module-level class, no lambdas); it is shipped
            once per worker and put on the worker's device with :func:`move_evaluator`.
            Its ``seed`` attribute seeds every child (see the module docstring).
        workers: number of concurrent children. None: what the machine has --
            ``GPUs * children_per_gpu``, or on CPU ``min(cores, batch)``.
        backend: "auto" (process if more than one worker, else serial), "serial",
            "process" or "ray".
        max_retries: extra attempts for a child whose attempt failed for an
            infrastructure reason (worker death, out of memory, timeout).
        gpu_memory_fraction: per-worker cap on its GPU's memory
            (``torch.cuda.set_per_process_memory_fraction``); None = no cap.
        children_per_gpu: process workers per GPU (several small children share a GPU).
        ray_address: address of a running Ray cluster; None starts (or reuses) a local one.
        ray_gpus_per_child: fractional GPU each Ray task asks for (0.25 = 4 per GPU).
        child_timeout: seconds one child may take before its worker is killed and the
            attempt counts as an infrastructure failure (None = no limit; not
            enforced by the serial back-end).
        device: "cpu" to keep workers off the GPUs even when CUDA is available;
            None uses the GPUs when there are any.

    The pool is created on first use and kept for later batches; call
    :meth:`close` (or use the evaluator as a context manager) to stop the workers.
    """

    def __init__(
        self,
        base: Any,
        *,
        workers: int | None = None,
        backend: str = "auto",
        max_retries: int = 2,
        gpu_memory_fraction: float | None = None,
        children_per_gpu: int = 1,
        ray_address: str | None = None,
        ray_gpus_per_child: float = 0.25,
        child_timeout: float | None = None,
        device: str | None = None,
    ) -> None:
        if not callable(base):
            raise TypeError(f"base must be an evaluator (a callable), got {type(base).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1 or None (machine default), got {workers}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if children_per_gpu < 1:
            raise ValueError(f"children_per_gpu must be >= 1, got {children_per_gpu}")
        if gpu_memory_fraction is not None and not 0.0 < gpu_memory_fraction <= 1.0:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1] or None, got {gpu_memory_fraction}")
        if not (ray_gpus_per_child > 0
                and (ray_gpus_per_child <= 1.0 or float(ray_gpus_per_child).is_integer())):
            raise ValueError(f"ray_gpus_per_child must be in (0, 1] or a whole number, got {ray_gpus_per_child}")
        if child_timeout is not None and not child_timeout > 0:
            raise ValueError(f"child_timeout must be > 0 or None, got {child_timeout}")
        if device not in (None, "cpu", "cuda"):
            raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
        if backend == "ray":
            _import_ray()  # fail early with the install hint
        self.base = base
        self.max_retries = int(max_retries)
        self.gpu_memory_fraction = gpu_memory_fraction
        self.children_per_gpu = int(children_per_gpu)
        self.ray_address = ray_address
        self.ray_gpus_per_child = float(ray_gpus_per_child)
        self.child_timeout = child_timeout
        self.device = device
        self._requested_workers = workers
        self._requested_backend = backend
        self.seed = _evaluator_seed(base)
        self._pool: _ProcessPool | _RayPool | None = None
        self._payload: bytes | None = None

    # -- configuration ------------------------------------------------------

    @property
    def workers(self) -> int:
        """Concurrent children at most (the machine default resolved when ``workers=None``)."""
        if self._requested_workers is not None:
            return self._requested_workers
        if self.backend == "ray":
            return self._ray_pool().size
        return default_workers(children_per_gpu=self.children_per_gpu, device=self.device)

    @property
    def backend(self) -> str:
        """The back-end in use ("auto" resolved)."""
        if self._requested_backend != "auto":
            return self._requested_backend
        workers = self._requested_workers
        if workers is None:
            workers = default_workers(children_per_gpu=self.children_per_gpu, device=self.device)
        return "process" if workers > 1 else "serial"

    def __repr__(self) -> str:
        return (
            f"ParallelEvaluator({type(self.base).__name__}, backend={self.backend!r}, "
            f"workers={self._requested_workers if self._requested_workers else 'auto'}, "
            f"max_retries={self.max_retries})"
        )

    # -- evaluation ---------------------------------------------------------

    def __call__(self, net: nn.Module) -> EvalResult:
        """Evaluate one child (same path as :meth:`evaluate_many`)."""
        return self.evaluate_many([net])[0]

    def evaluate_many(
        self,
        nets: Sequence[nn.Module],
        *,
        on_result: Callable[[int, EvalResult], None] | None = None,
    ) -> list[EvalResult]:
        """Train and evaluate ``nets`` concurrently; results in input order.

        Never raises for a child: a child whose evaluation raised, or that still
        failed for an infrastructure reason after ``max_retries`` retries, gets
        ``failed=True``, ``accuracy=0.0`` and a ``reason``. Raises only when the
        workers cannot be set up at all (e.g. the base evaluator is not picklable).
        ``on_result(index, result)``, if given, is called in this process as soon
        as each child's final result is known (in completion order), e.g. to
        journal it before the rest of the batch is done.
        """
        nets = list(nets)
        if not nets:
            return []
        specs = [pack_network(net) for net in nets]
        backend = self.backend
        if backend == "serial":
            return self._run_serial(specs, on_result)
        payloads = [_dumps(spec) for spec in specs]
        if backend == "ray":
            return self._ray_pool().run(payloads, self.max_retries, self.child_timeout, on_result)
        pool = self._process_pool()
        try:
            return pool.run(payloads, self.max_retries, self.child_timeout, on_result)
        except _WorkerInitError:
            self.close()
            raise

    def _run_serial(self, specs: list[ChildSpec],
                    on_result: Callable[[int, EvalResult], None] | None) -> list[EvalResult]:
        done = _Results(on_result)
        for i, spec in enumerate(specs):
            task = _Task(i, b"", label=spec.arch or "")
            while i not in done:
                task.attempts += 1
                kind, result = _run_child(self.base, spec, self.seed)
                if kind == "sticky":  # no fresh CUDA context in this process: no retry
                    kind = "error"
                    result.reason = (f"{result.reason} (a sticky CUDA error: this process's CUDA "
                                     "context is unusable; backend='process' restarts workers)")
                final = _settle(task, kind, result, self.max_retries, "serial")
                if final is not None:
                    done[i] = final
        return [done[i] for i in range(len(specs))]

    # -- pools --------------------------------------------------------------

    def _shipped_base(self) -> bytes:
        if self._payload is None:
            try:
                self._payload = _dumps((self.base, self.seed))
            except Exception as exc:
                raise TypeError(
                    f"the base evaluator {type(self.base).__name__} cannot be sent to worker "
                    f"processes ({type(exc).__name__}: {exc}); make it picklable (a module-level "
                    "class without lambdas or open handles) or use backend='serial'"
                ) from exc
        return self._payload

    def _process_pool(self) -> _ProcessPool:
        if isinstance(self._pool, _ProcessPool):
            return self._pool
        gpus = [] if self.device == "cpu" else visible_gpus()
        if self.device == "cuda" and not gpus:
            raise RuntimeError("device='cuda' but no CUDA GPU is visible")
        n = self.workers
        if gpus:
            slots: list[str | None] = [gpus[k % len(gpus)] for k in range(n)]
        else:
            slots = [None] * n
        threads = max(1, available_cores() // n)
        self._pool = _ProcessPool(self._shipped_base(), slots, threads, self.gpu_memory_fraction)
        return self._pool

    def _ray_pool(self) -> _RayPool:
        if not isinstance(self._pool, _RayPool):
            self._pool = _RayPool(self._shipped_base(), self.ray_address,
                                  self.ray_gpus_per_child, self.device)
        return self._pool

    def start(self) -> ParallelEvaluator:
        """Start the workers now and wait until they are ready (else the first batch does).

        Starting a worker costs a few seconds (a fresh interpreter importing torch
        and receiving the evaluator); a search may call this while it sets up the
        controller. A no-op for the serial back-end. Returns self.
        """
        backend = self.backend
        if backend == "process":
            try:
                self._process_pool().start(self.workers)
            except _WorkerInitError:
                self.close()
                raise
        elif backend == "ray":
            self._ray_pool()
        return self

    def close(self) -> None:
        """Stop the workers (a later batch starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> ParallelEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None
        state["_payload"] = None
        return state

