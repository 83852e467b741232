"""The ``"process"`` back-end of :class:`eas.envs.parallel.ParallelEvaluator`: a pool of
spawned worker processes (one per GPU slot or CPU share) that are replaced when they die."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing import get_context
from typing import Any

import torch

from eas.envs._parallel_common import (
    _START_TIMEOUT,
    Outcome,
    _dumps,
    _loads,
    _Results,
    _run_child,
    _settle,
    _Task,
    move_evaluator,
)
from eas.envs.record import EvalResult

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
        if kind == "sticky":
            return  # this process's CUDA context is unusable: the parent starts a new worker


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
        alive, sticky = True, False
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
                    sticky = sticky or kind == "sticky"
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
        if sticky and w.task is None:
            self._discard(w)  # poisoned CUDA context: the next child gets a fresh worker
            return
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


