"""Helpers for the kill/SIGTERM tests: a slow, logging stand-in evaluator and a search runner.

Run in a subprocess as ``python -c "import kill_helpers; kill_helpers.main(...)"`` with
this folder on ``sys.path`` (spawned worker processes inherit the path and import
the evaluator from here).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch

from eas.config.engine import load_config
from eas.envs import EvalResult
from eas.envs.cache import fingerprint
from eas.envs.parallel import ParallelEvaluator
from eas.search.loop import run_search


def child_digest(net: torch.nn.Module) -> str:
    """The digest the journal keys a child by (blake2b of the untrained child's fingerprint)."""
    return hashlib.blake2b(fingerprint(net).encode(), digest_size=8).hexdigest()


class LoggedEvaluator:
    """Takes ``delay`` seconds per child, then appends the child's digest to ``log``.

    A line in the log means "this child's training finished"; the accuracy is a
    hash of the architecture, so runs are deterministic.
    """

    def __init__(self, log: str, delay: float) -> None:
        self.log = log
        self.delay = delay

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        digest = child_digest(net)
        time.sleep(self.delay)
        with open(self.log, "a") as f:
            f.write(f"{digest} {os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
        h = hashlib.blake2b(str(net.arch).encode(), digest_size=4).digest()
        acc = 0.5 + int.from_bytes(h, "little") / 2**32 * 0.4
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return EvalResult(accuracy=acc, train_time=self.delay, state_dict=state)


def config(runs_dir: str, rounds: int, per_round: int):
    """A data-free search: ``rounds`` rounds of ``per_round`` children, one stage."""
    return load_config(None, {
        "data.name": "fashion-mnist", "data.device": "cpu", "start.epochs": "0",
        "space.filters": "16,32,48,64", "space.fc_units": "64,128,256",
        "search.children_per_step": str(per_round),
        "search.stage1_networks": str(rounds * per_round),
        "search.stage1_best_epochs": "0", "search.stage2_networks": "0",
        "search.schedule": "wider,deeper", "search.final_top_k": "0",
        "search.progress": "false", "search.runs_dir": runs_dir, "search.run_name": "run",
        "search.seed": "3",
        "search.parent_control": "false",  # evaluator calls are then exactly the children
    })


def main(backend: str, runs_dir: str, log: str, delay: float, resume: bool,
         rounds: int = 2, per_round: int = 4) -> None:
    """Run (or resume) the search with the serial or process back-end."""
    torch.set_num_threads(1)
    base = LoggedEvaluator(log, delay)
    if backend == "process":
        evaluator = ParallelEvaluator(base, workers=2, backend="process", device="cpu")
    else:
        evaluator = base
    cfg = config(runs_dir, rounds, per_round)
    out = run_search(cfg, run_dir=Path(runs_dir) / "run" if resume else None, resume=resume,
                     evaluator=evaluator, log=lambda _: None)
    if backend == "process":
        evaluator.close()
    print("DONE", out.state.global_step, flush=True)
