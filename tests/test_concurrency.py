"""Resolution of search.workers / search.backend (concurrency by default on GPUs)."""

from __future__ import annotations

import pytest
import torch

from eas.config.engine import load_config
from eas.config.sections import ConfigError, SearchSection
from eas.envs.parallel import ParallelEvaluator
from eas.envs.record import EvalResult
from eas.search import concurrency
from eas.search.concurrency import parallel_options, resolve_concurrency


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend the machine has ``n`` CUDA GPUs."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_gpus_train_children_concurrently_by_default(gpus) -> None:
    gpus(2)
    s = SearchSection()
    conc = resolve_concurrency(s.workers, s.backend, s.children_per_gpu, "cuda")
    assert conc.workers == 2 * s.children_per_gpu and conc.backend == "process"
    assert conc.parallel
    assert resolve_concurrency(None, "auto", 3, "cuda").workers == 6


def test_cpu_default_stays_one_child_at_a_time(gpus) -> None:
    gpus(0)
    s = SearchSection()
    conc = resolve_concurrency(s.workers, s.backend, s.children_per_gpu, "cpu")
    assert (conc.workers, conc.backend, conc.parallel) == (1, "serial", False)
    gpus(4)  # GPUs present but the search runs on the CPU
    assert resolve_concurrency(None, "auto", 4, "cpu") == concurrency.Concurrency(1, "serial")


def test_explicit_workers_are_never_silently_serial(gpus) -> None:
    gpus(0)
    conc = resolve_concurrency(4, "auto", 4, "cpu")
    assert (conc.workers, conc.backend) == (4, "process")
    cfg = load_config(None, {"search.workers": "4"})
    conc = resolve_concurrency(cfg.search.workers, cfg.search.backend,
                               cfg.search.children_per_gpu, "cpu")
    assert conc.backend == "process"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"search.workers": "4", "search.backend": "serial"})
    assert info.value.field == "search.backend" and "workers" in str(info.value)


def test_ray_keeps_the_requested_workers(gpus) -> None:
    gpus(1)
    assert resolve_concurrency(None, "ray", 4, "cuda") == concurrency.Concurrency(None, "ray")
    assert resolve_concurrency(3, "ray", 4, "cuda").workers == 3


@pytest.mark.parametrize(("field", "value"), [
    ("children_per_gpu", "0"),
    ("gpu_memory_fraction", "1.5"),
    ("gpu_memory_fraction", "0"),
    ("max_retries", "-1"),
    ("child_timeout", "0"),
    ("ray_gpus_per_child", "1.5"),
])
def test_bad_parallel_values_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {f"search.{field}": value})
    assert info.value.field == f"search.{field}"


def _fixed(net: torch.nn.Module) -> EvalResult:
    return EvalResult(0.5)


def test_parallel_options_reach_the_parallel_evaluator() -> None:
    cfg = load_config(None, {"search.children_per_gpu": "3", "search.gpu_memory_fraction": "0.5",
                             "search.max_retries": "5", "search.child_timeout": "60",
                             "search.ray_address": "ray://head:10001",
                             "search.ray_gpus_per_child": "0.5"})
    ev = ParallelEvaluator(_fixed, workers=2, backend="process", **parallel_options(cfg.search))
    assert (ev.children_per_gpu, ev.gpu_memory_fraction, ev.max_retries, ev.child_timeout,
            ev.ray_address, ev.ray_gpus_per_child) == (3, 0.5, 5, 60.0, "ray://head:10001", 0.5)
    ev.close()
