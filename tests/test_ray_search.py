"""The Ray back-end end to end: the real command line, a local 2-CPU Ray, same children.

A tiny two-stage search runs twice on a Fashion-MNIST slice: serially in this process,
then as ``python -m eas.train_controller --search.backend ray --search.workers 2
--search.ray_address ADDR`` in a fresh process that joins the Ray started here (as a
driver joins a cluster from ``ray start --head``). Both must produce the same children.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FASHION, TINY
from ray_local import import_ray, local_ray

from eas.checkpoint import load_checkpoint
from eas.cli.search import main
from eas.search.state import CHECKPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package"),
]
SEARCH_TIMEOUT = 900
"""Seconds the Ray search may take (about 1 min on an idle 2-core machine, 6 on a busy one)."""


def children(run: Path) -> list[tuple[int, int, str, float]]:
    """(step, stage, architecture, validation accuracy) of every child, in step order."""
    history = load_checkpoint(run / CHECKPOINT)["state"]["history"]
    return [(r["step"], r["stage"], r["arch"], r["accuracy"]) for r in history]


def test_ray_backend_gives_the_serial_children(tmp_path: Path) -> None:
    import_ray()
    argv = TINY + ["--search.final_top_k", "0", "--search.runs_dir", str(tmp_path)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each Ray task (OMP_NUM_THREADS=1 for 1 CPU)
    try:
        assert main(argv + ["--search.run_name", "serial"]) == 0
    finally:
        torch.set_num_threads(threads)
    serial = children(tmp_path / "serial")
    assert len(serial) == 6

    with local_ray() as address:
        cmd = [sys.executable, "-m", "eas.train_controller", *argv,
               "--search.run_name", "ray", "--search.backend", "ray",
               "--search.workers", "2", "--search.ray_address", address]
        # One thread in the driver too: it trains the start networks, as this process did.
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=SEARCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    via_ray = children(tmp_path / "ray")
    assert via_ray == serial
    assert (tmp_path / "ray" / "summary.json").is_file()
