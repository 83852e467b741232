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
* Only the worker that died is replaced; children finished or running on other
  workers are never lost or re-run.
* ``EvalResult.extra["attempts"]`` counts the tries; ``extra["retried"]`` lists
  the reasons of the failed tries.

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

import contextlib
import copy
import io
import os
import random
import signal
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from multiprocessing import get_context
from typing import Any, Literal

import numpy as np
import torch
from eas.envs.evaluators import EvalResult, as_result
from torch import nn

from eas.network import ChildNet, build_network

__all__ = [
    "BACKENDS",
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

BACKENDS: tuple[str, ...] = ("auto", "serial", "process", "ray")
"""Accepted values of ``ParallelEvaluator(backend=...)`` (and of the ``search.backend`` config field)."""

Outcome = Literal["ok", "error", "infra"]
"""How one attempt ended: a result, an exception of the evaluator (no retry), or an
infrastructure failure (worker death, out of memory, timeout: retried)."""

_RAY_MISSING = (
    "the 'ray' back-end needs Ray, which is not installed: pip install 'eas[ray]' "
    "(or pip install 'ray>=2.9'), or use backend='process'"
)
_START_TIMEOUT = 300.0  # seconds a worker may take to import torch and set up the evaluator


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


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _loads(data: bytes) -> Any:
    # Only ever loads bytes this module produced (parent <-> its own workers).
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
    with _rng_preserved():
        try:
            net = unpack_network(spec)
            _seed_all(seed)
            result = as_result(evaluator(net))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the batch
            kind: Outcome = "infra" if is_out_of_memory(exc) else "error"
            if kind == "infra" and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
            reason = f"{type(exc).__name__}: {exc}"
            return kind, EvalResult(
                0.0, failed=True, reason=reason, train_time=time.perf_counter() - start,
                extra={"traceback": traceback.format_exc(limit=20)},
            )
    result.state_dict = _cpu_state(result.state_dict)
    if not result.train_time:
        result.train_time = time.perf_counter() - start
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
    if kind == "infra":
        task.reasons.append(result.reason or "infrastructure failure")
        if task.attempts <= max_retries:
            task.exclusive = task.exclusive or is_out_of_memory(result.reason)
            return None
        result.reason = f"{result.reason} (gave up after {task.attempts} attempts)"
        task.reasons.pop()
    if result.failed:
        result.accuracy = 0.0
    result.extra["attempts"] = task.attempts
    result.extra.setdefault("worker", worker)
    if task.reasons:
        result.extra["retried"] = list(task.reasons)
    return result


# ---------------------------------------------------------------------------
# Process back-end
# ---------------------------------------------------------------------------


def _worker_main(conn: mp_connection.Connection, gpu: str | None, threads: int,
                 memory_fraction: float | None) -> None:
    """Entry point of a worker process: set up the evaluator once, then train children."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything initialises CUDA
    try:
        torch.set_num_threads(max(1, threads))
        base, seed = _loads(conn.recv_bytes())
        device = "cpu"
        if gpu is not None and torch.cuda.is_available():
            device = "cuda:0"
            torch.cuda.set_device(0)
            if memory_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(memory_fraction, 0)
        evaluator = move_evaluator(base, device)
        del base
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send_bytes(_dumps(("init_error", traceback.format_exc())))
        return
    conn.send_bytes(_dumps(("ready", device if gpu is None else f"cuda (GPU {gpu})")))
    while True:
        try:
            message = _loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, spec_bytes = message
        kind, result = _run_child(evaluator, _loads(spec_bytes), seed)
        conn.send_bytes(_dump_outcome(("done", index), kind, result))


def _dump_outcome(head: tuple[Any, ...], kind: Outcome, result: EvalResult) -> bytes:
    """Serialise ``(*head, kind, result)``; an unpicklable result becomes a failed one."""
    try:
        return _dumps((*head, kind, result))
    except Exception as exc:  # noqa: BLE001 - e.g. something unpicklable in result.extra
        reason = f"the result could not be sent back ({type(exc).__name__}: {exc})"
        return _dumps((*head, "error", EvalResult(0.0, failed=True, reason=reason)))


@dataclass(eq=False)
class _Worker:
    slot: int
    group: str  # GPU id, or "cpu": the unit an out-of-memory retry gets to itself
    gpu: str | None
    proc: Any
    conn: mp_connection.Connection
    ready: bool = False
    device: str = "?"
    task: _Task | None = None
    since: float = 0.0

    @property
    def name(self) -> str:
        return f"process-{self.slot} ({self.device})"


class _WorkerInitError(RuntimeError):
    pass


class _ProcessPool:
    """Long-lived spawned workers, each with its own pipe; one child per worker at a time."""

    def __init__(self, payload: bytes, slots: list[str | None], threads: int,
                 memory_fraction: float | None) -> None:
        self._payload = payload
        self._slots = slots  # GPU id per slot (None on CPU)
        self._threads = threads
        self._memory_fraction = memory_fraction
        self._ctx = get_context("spawn")
        self._workers: list[_Worker | None] = [None] * len(slots)
        self._start_failures = 0
        self._finalizer = weakref.finalize(self, _ProcessPool._shutdown, self._workers)

    @property
    def size(self) -> int:
        return len(self._slots)

    # -- workers ------------------------------------------------------------

    def _start(self, slot: int) -> _Worker:
        gpu = self._slots[slot]
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, gpu, self._threads, self._memory_fraction),
            name=f"eas-worker-{slot}", daemon=True,
        )
        proc.start()
        child.close()
        # The worker reads the payload once it has imported torch; send it from a
        # thread so that starting several workers (or replacing one) never blocks.
        threading.Thread(target=_send_quietly, args=(parent, self._payload), daemon=True).start()
        worker = _Worker(slot, "cpu" if gpu is None else gpu, gpu, proc, parent,
                         since=time.monotonic())
        self._workers[slot] = worker
        return worker

    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None]

    def _ensure(self, wanted: int) -> None:
        """Start workers (in slot order: round-robin over GPUs) until ``wanted`` are live."""
        missing = min(wanted, self.size) - len(self._live())
        for slot in range(self.size):
            if missing <= 0:
                break
            if self._workers[slot] is None:
                self._start(slot)
                missing -= 1

    def _discard(self, worker: _Worker) -> str:
        """Remove a dead (or to-be-killed) worker; return why it ended."""
        if worker.proc.is_alive():
            worker.proc.kill()
        worker.proc.join(5)
        with contextlib.suppress(OSError):
            worker.conn.close()
        self._workers[worker.slot] = None
        code = worker.proc.exitcode
        if code is None:
            return "worker process did not exit"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"worker process died ({signal.Signals(-code).name})"
            return f"worker process died (signal {-code})"
        return f"worker process died (exit code {code})"

    def start(self, n: int) -> None:
        """Start ``n`` workers (at most the pool size) and wait until they are ready."""
        want = min(n, self.size)
        while True:
            self._ensure(want)
            live = self._live()
            if len(live) >= want and all(w.ready for w in live):
                return
            waitables: list[Any] = [w.conn for w in live] + [w.proc.sentinel for w in live]
            ready = set(mp_connection.wait(waitables, timeout=1.0))
            for w in live:
                if w.conn in ready or w.proc.sentinel in ready:
                    self._service(w, deque(), {}, 0)
            self._check_start_timeouts()

    def _check_start_timeouts(self) -> None:
        now = time.monotonic()
        for w in self._live():
            if not w.ready and now - w.since > _START_TIMEOUT:
                reason = self._discard(w)
                self._start_failures += 1
                if self._start_failures > 3:
                    raise _WorkerInitError(
                        f"workers keep failing to start within {_START_TIMEOUT:g} s: {reason}"
                    )

    # -- the batch ----------------------------------------------------------

    def run(self, specs: Sequence[bytes], max_retries: int, child_timeout: float | None,
            on_result: Callable[[int, EvalResult], None] | None = None) -> list[EvalResult]:
        tasks = [_Task(i, spec) for i, spec in enumerate(specs)]
        pending: deque[_Task] = deque(tasks)
        done = _Results(on_result)
        try:
            while len(done) < len(tasks):
                busy = sum(1 for w in self._live() if w.task is not None)
                self._ensure(len(pending) + busy)
                self._dispatch(pending)
                self._wait(pending, done, max_retries, child_timeout)
        except BaseException:
            # Ctrl-C or a set-up error: children in flight are abandoned with their workers.
            for w in self._live():
                if w.task is not None:
                    self._discard(w)
            raise
        return [done[i] for i in range(len(tasks))]

    def _dispatch(self, pending: deque[_Task]) -> None:
        while pending:
            task = pending[0]
            worker = self._pick(task)
            if worker is None:
                return  # nobody free; an exclusive child waits for its GPU to drain
            pending.popleft()
            task.attempts += 1
            worker.task, worker.since = task, time.monotonic()
            try:
                worker.conn.send_bytes(_dumps((task.index, task.payload)))
            except OSError:  # the worker died before the child reached it: not the child's fault
                task.attempts -= 1
                worker.task = None
                pending.appendleft(task)
                self._discard(worker)
                return

    def _pick(self, task: _Task) -> _Worker | None:
        live = self._live()
        exclusive_groups = {w.group for w in live if w.task is not None and w.task.exclusive}
        busy_groups = {w.group for w in live if w.task is not None}
        for w in live:
            if not w.ready or w.task is not None or w.group in exclusive_groups:
                continue
            if task.exclusive and w.group in busy_groups:
                continue
            return w
        return None

    def _wait(self, pending: deque[_Task], done: dict[int, EvalResult], max_retries: int,
              child_timeout: float | None) -> None:
        live = self._live()
        waitables: list[Any] = [w.conn for w in live] + [w.proc.sentinel for w in live]
        timeout = 1.0
        if child_timeout is not None:
            now = time.monotonic()
            for w in live:
                if w.task is not None:
                    timeout = min(timeout, max(0.0, w.since + child_timeout - now))
        ready = set(mp_connection.wait(waitables, timeout=timeout))
        for w in live:
            if w.conn in ready or w.proc.sentinel in ready:
                self._service(w, pending, done, max_retries)
        self._check_start_timeouts()
        if child_timeout is not None:
            now = time.monotonic()
            for w in self._live():
                if w.task is not None and now - w.since > child_timeout:
                    task = w.task
                    self._discard(w)
                    reason = f"timed out after {child_timeout:g} s (worker killed)"
                    self._failed_attempt(task, reason, pending, done, max_retries, w.name)

    def _service(self, w: _Worker, pending: deque[_Task], done: dict[int, EvalResult],
                 max_retries: int) -> None:
        alive = True
        try:
            while w.conn.poll():
                message = _loads(w.conn.recv_bytes())
                if message[0] == "ready":
                    w.ready, w.device = True, message[1]
                    self._start_failures = 0
                elif message[0] == "init_error":
                    self._discard(w)
                    raise _WorkerInitError(
                        f"a worker could not set up the evaluator:\n{message[1]}"
                    )
                elif message[0] == "done":
                    _, index, kind, result = message
                    task, w.task = w.task, None
                    if task is None or task.index != index:  # pragma: no cover - protocol bug
                        raise RuntimeError(f"worker {w.name} answered for an unexpected child")
                    final = _settle(task, kind, result, max_retries, w.name)
                    if final is None:
                        pending.appendleft(task)
                    else:
                        done[index] = final
        except (EOFError, OSError):
            alive = False
        if alive and w.proc.is_alive():
            return
        task, was_ready = w.task, w.ready
        reason = self._discard(w)
        if not was_ready:
            self._start_failures += 1
            if self._start_failures > 3:
                raise _WorkerInitError(f"workers keep dying while starting: {reason}")
        if task is not None:
            self._failed_attempt(task, reason, pending, done, max_retries, w.name)

    @staticmethod
    def _failed_attempt(task: _Task, reason: str, pending: deque[_Task],
                        done: dict[int, EvalResult], max_retries: int, worker: str) -> None:
        final = _settle(task, "infra", EvalResult(0.0, failed=True, reason=reason),
                        max_retries, worker)
        if final is None:
            pending.appendleft(task)
        else:
            done[task.index] = final

    # -- shutdown -----------------------------------------------------------

    def close(self) -> None:
        self._finalizer()

    @staticmethod
    def _shutdown(workers: list[_Worker | None]) -> None:
        live = [w for w in workers if w is not None]
        for w in live:
            with contextlib.suppress(OSError):
                w.conn.send_bytes(_dumps(None))
        deadline = time.monotonic() + 5.0
        for w in live:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            with contextlib.suppress(OSError):
                w.conn.close()
        for i in range(len(workers)):
            workers[i] = None


def _send_quietly(conn: mp_connection.Connection, data: bytes) -> None:
    with contextlib.suppress(OSError):
        conn.send_bytes(data)


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
        self._remote = ray.remote(max_retries=0)(_ray_task)

    @property
    def size(self) -> int:
        resources = self._ray.cluster_resources()
        if self._gpus > 0:
            return max(1, int(resources.get("GPU", 0.0) / self._gpus))
        return max(1, int(resources.get("CPU", 1.0)))

    def _submit(self, task: _Task) -> Any:
        task.attempts += 1
        gpus = 1.0 if task.exclusive and self._gpus > 0 else self._gpus
        options: dict[str, Any] = {"num_gpus": gpus}
        if gpus == 0:
            options["num_cpus"] = 1
        return self._remote.options(**options).remote(
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
            task = _Task(i, b"")
            while i not in done:
                task.attempts += 1
                kind, result = _run_child(self.base, spec, self.seed)
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
