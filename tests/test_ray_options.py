"""What the Ray back-end declares to Ray (checked with a stand-in ``ray``: no cluster started)."""

from __future__ import annotations

from typing import Any

import pytest

from eas.envs import _ray_pool
from eas.envs._parallel_common import _Task


class FakeRemote:
    def __init__(self, declared: dict[str, Any]) -> None:
        self.declared = declared
        self.options_given: list[dict[str, Any]] = []
        self.submitted = 0

    def options(self, **options: Any) -> FakeRemote:
        self.options_given.append(options)
        return self

    def remote(self, *args: Any) -> object:
        self.submitted += 1
        return object()


class FakeRay:
    def __init__(self, gpus: float) -> None:
        self.gpus = gpus
        self.remotes: list[FakeRemote] = []

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 16.0, "GPU": self.gpus}

    def put(self, obj: Any) -> str:
        return "payload-ref"

    def remote(self, **declared: Any):
        def wrap(fn: Any) -> FakeRemote:
            assert fn is _ray_pool._ray_task
            self.remotes.append(FakeRemote(declared))
            return self.remotes[-1]
        return wrap


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch):
    def make(gpus: float) -> FakeRay:
        ray = FakeRay(gpus)
        monkeypatch.setattr(_ray_pool, "_import_ray", lambda: ray)
        return ray
    return make


def test_gpu_tasks_declare_their_gpus_at_decoration(fake_ray) -> None:
    ray = fake_ray(2.0)
    pool = _ray_pool._RayPool(b"x", None, 0.25, None)
    (remote,) = ray.remotes
    assert remote.declared == {"max_retries": 0, "num_gpus": 0.25, "max_calls": 1}
    assert pool.size == 8
    pool._submit(_Task(0, b"child"))
    assert remote.options_given == [] and remote.submitted == 1  # as declared
    pool._submit(_Task(1, b"child", exclusive=True))  # retried alone after out of memory
    assert remote.options_given == [{"num_gpus": 1.0}]


@pytest.mark.parametrize(("gpus", "device"), [(0.0, None), (2.0, "cpu")])
def test_cpu_tasks_take_one_core_and_no_gpu(fake_ray, gpus: float, device: str | None) -> None:
    ray = fake_ray(gpus)
    pool = _ray_pool._RayPool(b"x", None, 0.25, device)
    assert ray.remotes[0].declared == {"max_retries": 0, "num_cpus": 1}
    assert pool.size == 16
    pool._submit(_Task(0, b"child", exclusive=True))
    assert ray.remotes[0].options_given == []
