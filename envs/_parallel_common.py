"""Shared pieces of :class:`eas.envs.parallel.ParallelEvaluator`: back-end names, devices,
child transport (pack/unpack), seeding and the outcome of one attempt (retry rules)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from eas.accel import is_sticky_cuda_error
from eas.envs.record import EvalResult, as_result
from eas.network import ChildNet, build_network

Outcome = Literal["ok", "error", "infra", "sticky"]
"""How one attempt ended: a result, an exception of the evaluator (no retry), an
infrastructure failure (worker death, out of memory, timeout: retried), or a sticky
CUDA error (illegal address, launch failure, ECC: the worker's CUDA context is
unusable, so the worker is restarted and the child retried once on a fresh one)."""

STICKY_RETRIES = 1
"""Extra attempts, each on a restarted worker, for a child that hit a sticky CUDA error."""

_RAY_MISSING = (
    "the 'ray' back-end needs Ray, which is not installed: pip install 'eas[ray]' "
    "(or pip install 'ray>=2.9'), or use backend='process'"
)
_START_TIMEOUT = 300.0  # seconds a worker may take to import torch and set up the evaluator

RETRY_LOG = logging.getLogger("eas.envs.parallel")
"""Where each retry of a child is told, one WARNING line as it happens (and each child
given up on); a search forwards these lines to its own log."""


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (ids or UUIDs).

    Empty when CUDA is unavailable. Does not create a CUDA context.
    """
    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(count)]
    entries = [e.strip() for e in env.split(",") if e.strip()]
    return entries[:count]


def default_workers(batch: int | None = None, *, children_per_gpu: int = 1,
                    device: str | None = None) -> int:
    """The default number of workers: what the machine has.

    GPUs visible: ``number of GPUs * children_per_gpu``; otherwise the CPU cores,
    capped by ``batch`` when given (``min(cores, batch)``).
    """
    gpus = [] if device == "cpu" else visible_gpus()
    if gpus:
        return len(gpus) * max(1, children_per_gpu)
    cores = available_cores()
    return max(1, min(cores, batch) if batch else cores)


# ---------------------------------------------------------------------------
# What travels to the workers
# ---------------------------------------------------------------------------


@dataclass
class ChildSpec:
    """A network in transit to a worker: enough to rebuild it, with CPU weights.

    A :class:`~eas.network.ChildNet` travels as ``(arch, input_shape, dropout,
    state_dict)``; any other module travels whole in ``module`` (on CPU).
    """

    arch: str | None
    """Architecture string (``str(net.arch)``), None for a plain module."""
    input_shape: tuple[int, int, int] | None
    """``(C, H, W)`` the network was built for."""
    dropout: float = 0.0
    """Dropout rate of the network."""
    state_dict: dict[str, torch.Tensor] | None = None
    """CPU copy of the weights and buffers."""
    module: nn.Module | None = None
    """Fallback for networks that are not ChildNets: the module itself, on CPU."""


def _cpu_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v) for k, v in state.items()}


def pack_network(net: nn.Module) -> ChildSpec:
    """Describe ``net`` for a worker (a CPU copy; ``net`` itself is not modified)."""
    if isinstance(net, ChildNet):
        return ChildSpec(
            arch=str(net.arch),
            input_shape=tuple(int(v) for v in net.input_shape),  # type: ignore[arg-type]
            dropout=float(net.dropout),
            state_dict=_cpu_state(net.state_dict()),
        )
    module = copy.deepcopy(net).to("cpu")
    return ChildSpec(arch=None, input_shape=None, module=module)


def unpack_network(spec: ChildSpec) -> nn.Module:
    """Rebuild the network described by ``spec`` (on CPU, weights restored)."""
    if spec.module is not None:
        return spec.module
    if spec.arch is None or spec.input_shape is None:
        raise ValueError("a ChildSpec needs either a module or an arch and input_shape")
    net = build_network(spec.arch, spec.input_shape, dropout=spec.dropout, seed=0)
    if spec.state_dict is not None:
        net.load_state_dict(spec.state_dict)
    return net


# The parent/worker channel: the one place eas unpickles in full (weights_only=False) on its
# own (python -m eas.checkpoint --rewrite-trusted does so only when a user asks for a file).
# Why that is safe: _loads only ever reads bytes that _dumps produced a moment earlier in
# the parent or in one of the parent's own worker processes (the process back-end's pipes,
# the Ray back-end's object store), from objects living in memory: the evaluator the
# caller passed (code the caller already runs), ChildSpecs built from in-memory networks,
# and the workers' EvalResults. No file's bytes travel this way: run-folder files
# (checkpoint.pt, journal entries, network files, start weights) are read weights-only by
# eas.checkpoint.read_torch_file into tensors and plain data, and only values rebuilt so
# (e.g. start weights inside a child's state_dict) can reach a ChildSpec; children
# answered from the journal or the cache never reach the pool. Keep it so: never pass
# bytes read from a file to _loads.


def _dumps(obj: Any) -> bytes:
    """Serialise ``obj`` for the parent/worker channel (see the note above)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _loads(data: bytes) -> Any:
    """Rebuild what :func:`_dumps` wrote; only for bytes from this process tree (see above)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def move_evaluator(evaluator: Any, device: str | torch.device) -> Any:
    """Return ``evaluator`` set up to train on ``device`` (called once per worker).

    Uses ``evaluator.to(device)`` when it exists (it may return a new evaluator or
    modify itself and return None); otherwise, when the evaluator has a ``data``
    attribute with a ``to`` method (an :class:`eas.data.Data`), returns a shallow
    copy whose ``data`` is moved and whose ``device`` attribute, if any, is set.
    Evaluators with neither are returned unchanged.
    """
    to = getattr(evaluator, "to", None)
    if callable(to):
        moved = to(device)
        return evaluator if moved is None else moved
    data = getattr(evaluator, "data", None)
    has_device = hasattr(evaluator, "device")
    if (data is None or not callable(getattr(data, "to", None))) and not has_device:
        return evaluator
    moved = copy.copy(evaluator)
    if data is not None and callable(getattr(data, "to", None)):
        moved.data = data.to(device)
    if has_device:
        moved.device = torch.device(device)
    return moved


# ---------------------------------------------------------------------------
# One attempt at one child (shared by every back-end)
# ---------------------------------------------------------------------------


def is_out_of_memory(exc_or_reason: BaseException | str | None) -> bool:
    """Whether an exception or a failure reason means "out of memory" (an infrastructure failure)."""
    if exc_or_reason is None:
        return False
    if isinstance(exc_or_reason, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return "out of memory" in str(exc_or_reason).lower()


@contextlib.contextmanager
def _rng_preserved() -> Iterator[None]:
    """Restore the global ``random``/``numpy``/``torch`` RNG states on exit."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _evaluator_seed(evaluator: Any) -> int:
    seed = getattr(evaluator, "seed", 0)
    try:
        return int(seed)
    except (TypeError, ValueError):
        return 0


def _run_child(evaluator: Any, spec: ChildSpec, seed: int) -> tuple[Outcome, EvalResult]:
    """Rebuild the child, seed the global RNGs, evaluate it and classify the outcome."""
    start = time.perf_counter()

    def failure(kind: Outcome, exc: BaseException) -> tuple[Outcome, EvalResult]:
        return kind, EvalResult(
            0.0, failed=True, reason=f"{type(exc).__name__}: {exc}",
            train_time=time.perf_counter() - start,
            extra={"traceback": traceback.format_exc(limit=20)},
        )

    try:
        with _rng_preserved():
            try:
                net = unpack_network(spec)
                _seed_all(seed)
                result = as_result(evaluator(net))
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the batch
                if is_sticky_cuda_error(exc):
                    return failure("sticky", exc)
                kind: Outcome = "infra" if is_out_of_memory(exc) else "error"
                if kind == "infra" and torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
                return failure(kind, exc)
    except Exception as exc:  # restoring the CUDA RNG state on a poisoned context
        if is_sticky_cuda_error(exc):
            return failure("sticky", exc)
        raise
    result.state_dict = _cpu_state(result.state_dict)
    if not result.train_time:
        result.train_time = time.perf_counter() - start
    if result.failed and is_sticky_cuda_error(result.reason):
        return "sticky", result
    if result.failed and is_out_of_memory(result.reason):
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        return "infra", result
    return "ok", result


@dataclass
class _Task:
    """Book-keeping of one child across its attempts."""

    index: int
    payload: bytes
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)
    exclusive: bool = False  # retry alone on its GPU (after running out of memory)
    restarts: int = 0  # attempts retried on a restarted worker after a sticky CUDA error
    label: str = ""  # the child's architecture, for log lines (read from payload when empty)


def _task_label(task: _Task) -> str:
    """The child's architecture string (for log lines), or its index in the batch."""
    if not task.label and task.payload:
        with contextlib.suppress(Exception):
            task.label = str(_loads(task.payload).arch or "")
    return task.label or f"#{task.index}"


def _tell_retry(task: _Task, worker: str, reason: str) -> None:
    RETRY_LOG.warning("retrying child %s (attempt %d failed on %s: %s)",
                      _task_label(task), task.attempts, worker, _short(reason))


def _short(reason: str, limit: int = 300) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Results(dict):
    """Final results by child index; tells ``callback`` about each one as it is settled."""

    def __init__(self, callback: Callable[[int, EvalResult], None] | None) -> None:
        super().__init__()
        self._callback = callback

    def __setitem__(self, index: int, result: EvalResult) -> None:
        super().__setitem__(index, result)
        if self._callback is not None:
            self._callback(index, result)


def _settle(task: _Task, kind: Outcome, result: EvalResult, max_retries: int,
            worker: str) -> EvalResult | None:
    """Final result of ``task`` after an attempt, or None when it is to be retried."""
    if kind == "sticky":
        if task.restarts < STICKY_RETRIES:
            task.restarts += 1
            task.reasons.append(f"sticky CUDA error, worker restarted: {result.reason}")
            _tell_retry(task, worker, task.reasons[-1])
            return None
        result.reason = (f"{result.reason} (a sticky CUDA error again after "
                         f"{task.restarts} worker restart(s))")
        RETRY_LOG.warning("child %s failed: %s", _task_label(task), _short(result.reason))
    if kind == "infra":
        task.reasons.append(result.reason or "infrastructure failure")
        if task.attempts <= max_retries:
            task.exclusive = task.exclusive or is_out_of_memory(result.reason)
            _tell_retry(task, worker, task.reasons[-1])
            return None
        result.reason = f"{result.reason} (gave up after {task.attempts} attempts)"
        task.reasons.pop()
        RETRY_LOG.warning("child %s failed: %s", _task_label(task), _short(result.reason))
    if result.failed:
        result.accuracy = 0.0
    result.attempts = task.attempts
    result.retried = list(task.reasons)
    result.worker = result.worker or worker
    return result


