"""A local Ray for the tests: 2 CPUs, no dashboard, bounded start-up.

Used by the Ray tests in test_parallel.py and test_ray_search.py. The tests skip, with
the reason, only when Ray is not installed or cannot start here at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

START_TIMEOUT = 180
"""Seconds Ray may take to start (a busy 2-core machine needs ~10-60 s)."""


def import_ray() -> Any:
    """``ray``, or skip: the Ray tests need ``pip install -e '.[ray]'``."""
    return pytest.importorskip(
        "ray", reason="Ray is not installed (pip install -e '.[ray]'); the Ray back-end is untested"
    )


@contextlib.contextmanager
def local_ray(pythonpath: list[str] | None = None) -> Iterator[str]:
    """Start a local Ray (2 CPUs, no dashboard) and yield its address; shut it down after.

    ``pythonpath`` folders are put on the workers' PYTHONPATH (for evaluators defined in
    the tests). A Ray already initialised in this process is used as is.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray.get_runtime_context().gcs_address
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt or upload

    def too_slow(signum: int, frame: Any) -> None:
        raise TimeoutError(f"Ray did not start within {START_TIMEOUT} s")

    kwargs: dict[str, Any] = {"num_cpus": 2, "num_gpus": 0, "include_dashboard": False,
                              "log_to_driver": False}
    if pythonpath:
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(pythonpath)}}
    old = signal.signal(signal.SIGALRM, too_slow)
    outer = signal.alarm(START_TIMEOUT)  # a test's own hang guard, if any, is re-armed below
    started = time.monotonic()
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any start-up failure means "cannot run Ray here"
        with contextlib.suppress(Exception):
            ray.shutdown()
        pytest.skip(f"a local Ray cannot start here: {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.alarm(max(1, outer - int(time.monotonic() - started)))
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
