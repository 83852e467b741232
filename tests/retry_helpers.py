"""Stand-in evaluators for the retry tests: one child's first try dies (its worker process
is killed, or it waits until its Ray node is removed); every other try trains normally.

Importable by spawned worker processes and Ray workers (no pytest import here). Which
child is hit depends on timing, so the tests assert only what holds whichever it is:
exactly one child needed a second try, and the search's children are the fault-free ones.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import torch

from eas.envs import EvalResult


def accuracy_of(net: torch.nn.Module) -> float:
    """A deterministic accuracy from the architecture (no training)."""
    h = hashlib.blake2b(str(net.arch).encode(), digest_size=4).digest()
    return 0.5 + int.from_bytes(h, "little") / 2**32 * 0.4


def _count(path: Path) -> int:
    return len(path.read_text().split("\n")) - 1 if path.is_file() else 0


def _claim(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists (atomic across processes)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, text.encode())
    os.close(fd)
    return True


class FaultOnceEvaluator:
    """Trains in ``delay`` seconds; the first try to start once ``after`` children are done
    is hit by the fault: ``"kill"`` SIGKILLs its own process, ``"node"`` records its Ray
    node in ``folder/victim`` and waits (up to ``hold`` s) for the test to remove that node.

    Every finished training appends the child's architecture to ``folder/done``.
    """

    def __init__(self, folder: str, fault: str, after: int, delay: float = 0.2,
                 hold: float = 600.0) -> None:
        self.folder = folder
        self.fault = fault
        self.after = after
        self.delay = delay
        self.hold = hold

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        folder = Path(self.folder)
        if _count(folder / "done") >= self.after:
            if self.fault == "kill" and _claim(folder / "victim", f"{net.arch}\n"):
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "node":
                import ray  # only inside a Ray worker

                node = ray.get_runtime_context().get_node_id()
                if _claim(folder / "victim", f"{node}\n{net.arch}\n"):
                    time.sleep(self.hold)  # until the test removes this node
        time.sleep(self.delay)
        with open(folder / "done", "a") as f:
            f.write(f"{net.arch}\n")
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return EvalResult(accuracy_of(net), train_time=self.delay, state_dict=state)
