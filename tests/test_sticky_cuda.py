"""A sticky CUDA error (the worker's CUDA context is poisoned) restarts the worker and
retries the child once on a fresh one; an ordinary failure stays an ordinary failure.

The error is faked on CPU: the evaluator raises torch's message for an illegal
memory access the first time it sees a child, and keeps raising it in that
same process afterwards (as a poisoned context would), so the pool passes only
if it stops using the poisoned worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_parallel import ARCHS, TIMEOUT, TinyEvaluator, _assert_same, _nets

from eas.envs.parallel import ParallelEvaluator
from eas.envs.record import EvalResult

STICKY = "CUDA error: an illegal memory access was encountered"


class PoisoningEvaluator(TinyEvaluator):
    """Poisons its process on ``poison_arch`` (first time); a poisoned process fails every child."""

    def __init__(self, marker_dir: str, poison_arch: str, *, always: bool = False) -> None:
        super().__init__()
        self.marker = Path(marker_dir) / "poisoned"
        self.poison_arch = poison_arch
        self.always = always

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        poisoned = self.marker.exists() and self.marker.read_text().split()
        if poisoned and str(os.getpid()) in poisoned:
            raise RuntimeError(f"{STICKY} (this process was poisoned before)")
        if str(net.arch) == self.poison_arch and (self.always or not poisoned):
            with self.marker.open("a") as f:
                f.write(f"{os.getpid()}\n")
            raise RuntimeError(STICKY)
        return super().__call__(net)


@pytest.mark.slow
def test_sticky_error_restarts_the_worker_and_retries_once(tmp_path: Path) -> None:
    nets = _nets()[:3]
    clean = ParallelEvaluator(TinyEvaluator(), backend="serial").evaluate_many(nets)
    base = PoisoningEvaluator(str(tmp_path), ARCHS[0])
    with ParallelEvaluator(base, workers=1, backend="process", max_retries=0,
                           child_timeout=TIMEOUT) as ev:
        res = ev.evaluate_many(nets)
    first, *others = res
    poisoned = (tmp_path / "poisoned").read_text().split()
    assert len(poisoned) == 1
    assert not first.failed and first.attempts == 2
    assert first.retried == [f"sticky CUDA error, worker restarted: RuntimeError: {STICKY}"]
    assert all(not r.failed and not r.retried for r in others)
    assert all(str(r.extra["pid"]) not in poisoned for r in res)  # never the poisoned worker
    _assert_same(res, clean)  # the same accuracy and weights as a clean run


@pytest.mark.slow
def test_sticky_error_twice_fails_the_child_only(tmp_path: Path) -> None:
    nets = _nets()[:2]
    base = PoisoningEvaluator(str(tmp_path), ARCHS[0], always=True)
    with ParallelEvaluator(base, workers=1, backend="process", max_retries=3,
                           child_timeout=TIMEOUT) as ev:
        bad, good = ev.evaluate_many(nets)
    assert bad.failed and bad.accuracy == 0.0 and bad.attempts == 2
    assert "again after 1 worker restart" in (bad.reason or "")
    assert len((tmp_path / "poisoned").read_text().split()) == 2  # two different workers
    assert not good.failed


def test_serial_backend_records_a_sticky_error_without_retrying(tmp_path: Path) -> None:
    base = PoisoningEvaluator(str(tmp_path), ARCHS[0])
    (res,) = ParallelEvaluator(base, backend="serial", max_retries=2).evaluate_many(_nets()[:1])
    assert res.failed and res.attempts == 1
    assert "illegal memory access" in res.reason and "backend='process'" in res.reason
