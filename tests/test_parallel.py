"""Parallel child training (eas.envs.parallel): back-ends agree, faults are contained.

The evaluator here is a tiny, picklable trainer on synthetic 8x8 images, so the
process-backend tests spend their time starting workers (spawned interpreters
importing torch), not training. A SIGALRM guard fails any test that would hang.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ray_local import import_ray, local_ray

from eas.envs.evaluators import evaluate_batch
from eas.envs.parallel import (
    ChildSpec,
    ParallelEvaluator,
    default_workers,
    is_out_of_memory,
    move_evaluator,
    pack_network,
    unpack_network,
)
from eas.envs.record import EvalResult
from eas.envs.settings import BACKENDS
from eas.network import build_network

INPUT = (1, 8, 8)
ARCHS = [
    "C(4,3,1), P(2,2,MAX), FC(16), SM(2)",
    "C(8,3,1), P(2,2,MAX), FC(16), SM(2)",
    "C(4,3,1), C(4,3,1), P(2,2,MAX), FC(8), SM(2)",
    "C(6,5,1), P(2,2,AVG), FC(8), SM(2)",
    "C(4,3,1), P(2,2,MAX), FC(8), SM(2)",
]
TIMEOUT = 60.0  # seconds any one child may take in these tests


class TinyEvaluator:
    """Trains a copy of the child for a few SGD steps on synthetic data.

    Batches are drawn with the *global* torch RNG and the nets use dropout, so the
    results only match across back-ends if every child is seeded the same way.
    Fault injection by architecture string: ``raise_arch`` raises ValueError,
    ``kill_once_arch`` kills its worker on the first attempt (a marker file in
    ``marker_dir`` remembers it), ``always_kill_arch`` kills it every time,
    ``oom_once_arch`` raises a CUDA OOM error on the first attempt.
    """

    def __init__(self, seed: int = 0, steps: int = 8, *, raise_arch: str | None = None,
                 kill_once_arch: str | None = None, always_kill_arch: str | None = None,
                 oom_once_arch: str | None = None, marker_dir: str | None = None) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.randn(256, *INPUT, generator=gen)
        self.y = (self.x[:, 0, :4].mean((1, 2)) > self.x[:, 0, 4:].mean((1, 2))).long()
        self.seed = seed
        self.steps = steps
        self.raise_arch = raise_arch
        self.kill_once_arch = kill_once_arch
        self.always_kill_arch = always_kill_arch
        self.oom_once_arch = oom_once_arch
        self.marker_dir = marker_dir

    def _first_time(self, tag: str) -> bool:
        assert self.marker_dir is not None
        marker = Path(self.marker_dir) / f"{tag}-{os.getpid()}"
        seen = list(Path(self.marker_dir).glob(f"{tag}-*"))
        marker.touch()
        return not seen

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        arch = str(net.arch)
        if arch == self.raise_arch:
            raise ValueError(f"bad child {arch}")
        if arch == self.always_kill_arch:
            os.kill(os.getpid(), signal.SIGKILL)
        if arch == self.kill_once_arch and self._first_time("kill"):
            os._exit(3)
        if arch == self.oom_once_arch and self._first_time("oom"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        net = copy.deepcopy(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        net.train()
        for _ in range(self.steps):
            idx = torch.randint(0, 192, (16,))
            loss = F.cross_entropy(net(self.x[idx]), self.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(self.x[192:]).argmax(1) == self.y[192:]).float().mean().item()
        return EvalResult(acc, train_time=0.0, state_dict=net.state_dict(),
                          extra={"pid": os.getpid()})


def _nets() -> list[torch.nn.Module]:
    return [build_network(a, INPUT, dropout=0.2, seed=i) for i, a in enumerate(ARCHS)]


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail (instead of hanging CI) when a test runs for more than 3 minutes."""
    def boom(signum, frame):
        raise TimeoutError("test_parallel: test took more than 180 s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(180)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _assert_same(a: list[EvalResult], b: list[EvalResult]) -> None:
    assert [r.accuracy for r in a] == pytest.approx([r.accuracy for r in b], abs=1e-9)
    for ra, rb in zip(a, b):
        assert ra.state_dict is not None and rb.state_dict is not None
        assert ra.state_dict.keys() == rb.state_dict.keys()
        for k in ra.state_dict:
            assert torch.allclose(ra.state_dict[k].float(), rb.state_dict[k].float(), atol=1e-4), k


# ---------------------------------------------------------------------------
# Building blocks (no worker processes)
# ---------------------------------------------------------------------------


def test_pack_unpack_roundtrip():
    net = build_network(ARCHS[2], INPUT, dropout=0.3, seed=5)
    spec = pack_network(net)
    assert spec.arch == ARCHS[2] and spec.input_shape == INPUT and spec.dropout == 0.3
    assert all(t.device.type == "cpu" for t in spec.state_dict.values())
    back = unpack_network(spec)
    x = torch.randn(3, *INPUT)
    net.eval()
    back.eval()
    assert torch.equal(net(x), back(x))
    plain = torch.nn.Linear(3, 2)
    assert isinstance(unpack_network(pack_network(plain)), torch.nn.Linear)
    with pytest.raises(ValueError):
        unpack_network(ChildSpec(arch=None, input_shape=None))


class _WithTo:
    def __init__(self) -> None:
        self.device = "cpu"

    def to(self, device):
        moved = _WithTo()
        moved.device = f"moved:{device}"
        return moved

    def __call__(self, net):
        return 0.5


class _WithData:
    def __init__(self) -> None:
        self.data = torch.zeros(2)
        self.device = None

    def __call__(self, net):
        return 0.5


def test_move_evaluator():
    assert move_evaluator(_WithTo(), "cpu").device == "moved:cpu"
    ev = _WithData()
    moved = move_evaluator(ev, "cpu")
    assert moved is not ev and moved.device == torch.device("cpu") and ev.device is None
    plain = TinyEvaluator()
    assert move_evaluator(lambda net: 0.1, "cpu")(None) == 0.1
    assert move_evaluator(plain, "cpu") is plain


def test_arguments_and_defaults():
    assert BACKENDS == ("auto", "serial", "process", "ray")
    for bad in ({"backend": "threads"}, {"workers": 0}, {"max_retries": -1},
                {"children_per_gpu": 0}, {"gpu_memory_fraction": 1.5},
                {"ray_gpus_per_child": 0}, {"child_timeout": 0}, {"device": "tpu"}):
        with pytest.raises(ValueError):
            ParallelEvaluator(TinyEvaluator(), **bad)
    with pytest.raises(TypeError):
        ParallelEvaluator(42)
    assert ParallelEvaluator(TinyEvaluator(), workers=1).backend == "serial"
    assert ParallelEvaluator(TinyEvaluator(), workers=3).backend == "process"
    assert default_workers(1, device="cpu") == 1
    assert default_workers(100, device="cpu") == ParallelEvaluator(
        TinyEvaluator(), device="cpu").workers
    assert ParallelEvaluator(TinyEvaluator(seed=7)).seed == 7
    assert is_out_of_memory("CUDA out of memory: tried") and not is_out_of_memory("nan loss")


def test_ray_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'eas\[ray\]'"):
        ParallelEvaluator(TinyEvaluator(), backend="ray")


def test_unpicklable_base_is_a_clear_error():
    ev = ParallelEvaluator(lambda net: 0.5, workers=2, backend="process")
    with pytest.raises(TypeError, match="backend='serial'"):
        ev.evaluate_many(_nets()[:1])


# ---------------------------------------------------------------------------
# Serial back-end
# ---------------------------------------------------------------------------


def test_serial_seeds_each_child_and_keeps_order():
    nets = _nets()
    ev = ParallelEvaluator(TinyEvaluator(), backend="serial")
    torch.manual_seed(99)
    before = torch.rand(1)
    torch.manual_seed(99)
    seen: list[int] = []
    a = ev.evaluate_many(nets, on_result=lambda i, r: seen.append(i))
    assert seen == list(range(len(nets)))
    assert torch.equal(torch.rand(1), before)  # the caller's RNG is left alone
    b = ev.evaluate_many([nets[1], nets[0]])[::-1]  # order does not change a child's result
    _assert_same(a[:2], b)
    assert all(not r.failed and r.attempts == 1 for r in a)
    # the input networks are not trained in place
    assert torch.equal(nets[0].state_dict()["layers.0.conv.weight"],
                       build_network(ARCHS[0], INPUT, dropout=0.2, seed=0)
                       .state_dict()["layers.0.conv.weight"])
    assert ev(nets[1]).accuracy == a[1].accuracy
    assert evaluate_batch(ev, nets[2:3])[0].accuracy == a[2].accuracy
    # a different evaluator seed trains differently
    c = ParallelEvaluator(TinyEvaluator(seed=1), backend="serial").evaluate_many(nets[:1])
    assert not torch.equal(c[0].state_dict["layers.0.conv.weight"],
                           a[0].state_dict["layers.0.conv.weight"])


def test_serial_exception_and_oom(tmp_path, caplog):
    nets = _nets()
    base = TinyEvaluator(raise_arch=ARCHS[1], oom_once_arch=ARCHS[2], marker_dir=str(tmp_path))
    with caplog.at_level("WARNING", logger="eas.envs.parallel"):
        res = ParallelEvaluator(base, backend="serial").evaluate_many(nets)
    lines = [r.getMessage() for r in caplog.records if r.name == "eas.envs.parallel"]
    assert len(lines) == 1 and lines[0].startswith(f"retrying child {ARCHS[2]} (attempt 1 ")
    assert "out of memory" in lines[0] and res[2].worker == "serial"
    assert res[1].failed and res[1].accuracy == 0.0
    assert res[1].reason == f"ValueError: bad child {ARCHS[1]}"
    assert res[1].attempts == 1  # a bug in the training code is not retried
    assert not res[2].failed and res[2].attempts == 2  # OOM: retried
    assert "out of memory" in res[2].retried[0]
    assert not res[0].failed and not res[3].failed


# ---------------------------------------------------------------------------
# Process back-end (spawned workers)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_process_matches_serial_and_reuses_workers():
    nets = _nets()[:4]
    serial = ParallelEvaluator(TinyEvaluator(), backend="serial").evaluate_many(nets)
    seen: list[int] = []
    with ParallelEvaluator(TinyEvaluator(), workers=2, backend="process",
                           child_timeout=TIMEOUT) as ev:
        assert ev.start() is ev  # both workers up before the first batch
        first = ev.evaluate_many(nets, on_result=lambda i, r: seen.append(i))
        second = ev.evaluate_many(nets[:2])
    assert sorted(seen) == [0, 1, 2, 3]
    _assert_same(first, serial)
    _assert_same(second, serial[:2])
    assert all(not r.failed and r.attempts == 1 for r in first)
    pids = {r.extra["pid"] for r in first + second}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers, kept across batches
    assert all(r.state_dict["layers.0.conv.weight"].device.type == "cpu" for r in first)


@pytest.mark.slow
def test_process_fault_handling(tmp_path, caplog):
    """One pool, a batch with every kind of fault: a worker killed once (retried),
    a child that always kills its worker (failed after max_retries), a child whose
    training raises (failed, not retried), a child running out of memory once
    (retried alone); the healthy child is unaffected."""
    nets = _nets()
    base = TinyEvaluator(kill_once_arch=ARCHS[0], always_kill_arch=ARCHS[1],
                         raise_arch=ARCHS[2], oom_once_arch=ARCHS[3], marker_dir=str(tmp_path))
    clean = ParallelEvaluator(TinyEvaluator(), backend="serial").evaluate_many(
        [nets[0], nets[4], nets[3]])
    with caplog.at_level("WARNING", logger="eas.envs.parallel"), ParallelEvaluator(
            base, workers=2, backend="process", max_retries=1, child_timeout=TIMEOUT) as ev:
        res = ev.evaluate_many(nets)
        again = ev.evaluate_many([nets[4]])  # the pool still works afterwards
    killed, crashing, raising, oom, healthy = res
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "eas.envs.parallel")
    # one line per retry as it happens, and one for the child given up on
    assert [line.split(" (")[0] for line in lines] == sorted(
        [f"retrying child {ARCHS[0]}", f"retrying child {ARCHS[1]}",
         f"retrying child {ARCHS[3]}", f"child {ARCHS[1]} failed: worker process died"])
    assert not oom.failed and oom.attempts == 2
    assert "out of memory" in oom.retried[0]
    _assert_same([oom], clean[2:])
    assert not killed.failed and killed.attempts == 2
    assert "exit code 3" in killed.retried[0]
    assert crashing.failed and crashing.accuracy == 0.0 and crashing.attempts == 2
    assert "SIGKILL" in crashing.reason and "gave up after 2 attempts" in crashing.reason
    assert raising.failed and raising.reason == f"ValueError: bad child {ARCHS[2]}"
    assert raising.attempts == 1
    assert not healthy.failed and healthy.attempts == 1
    _assert_same([killed, healthy], clean[:2])
    _assert_same(again, clean[1:2])


class SlowEvaluator(TinyEvaluator):
    """Hangs on one architecture (to exercise child_timeout)."""

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        if str(net.arch) == ARCHS[0]:
            import time

            time.sleep(600)
        return super().__call__(net)


@pytest.mark.slow
def test_process_child_timeout():
    nets = _nets()
    with ParallelEvaluator(SlowEvaluator(), workers=2, backend="process", max_retries=0,
                           child_timeout=TIMEOUT) as ev:
        ev.start()
        ev.evaluate_many(nets[1:3])  # warm both workers up (first-step imports take seconds)
        ev.child_timeout = 4.0
        res = ev.evaluate_many(nets[:2])
    assert res[0].failed and "timed out after 4 s" in res[0].reason
    assert res[0].attempts == 1
    assert not res[1].failed


# ---------------------------------------------------------------------------
# Ray back-end
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_matches_serial():
    import_ray()
    signal.alarm(900)  # not _no_hang's 180 s: on a busy 2-core machine Ray takes minutes here
    nets = _nets()[:3]
    serial = ParallelEvaluator(TinyEvaluator(), backend="serial").evaluate_many(nets)
    here = os.path.dirname(os.path.abspath(__file__))
    with local_ray(pythonpath=[os.path.dirname(here), here]):  # workers import TinyEvaluator
        # The timeout runs from submission, so it includes a Ray worker's start (importing
        # torch) and the queue behind the 2 CPUs: minutes when other jobs share the cores.
        ev = ParallelEvaluator(TinyEvaluator(), backend="ray", child_timeout=300.0)
        assert ev.workers == 2  # the local Ray's 2 CPUs
        res = ev.evaluate_many(nets)
        ev.close()
    _assert_same(res, serial)
    assert all(not r.failed and r.attempts == 1 for r in res)
