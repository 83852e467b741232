"""Helpers shared by several test files (imported as ``from helpers import ...``).

pytest puts ``tests/`` on ``sys.path`` (rootdir-relative "prepend" import mode, no
``__init__.py``), so test files import this module by its bare name. Fixtures live in
``conftest.py``; this module holds plain values, functions and classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from eas.arch import SearchSpace
from eas.config.engine import load_config
from eas.envs.net_transform import NetTransformEnv
from eas.envs.record import EvalResult
from eas.envs.synthetic import SyntheticEvaluator

FASHION = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian Fashion-MNIST package installs the dataset."""

TINY = [
    "--data.train_subset", "256", "--data.val_size", "200", "--data.device", "cpu",
    "--child.max_batches_per_epoch", "2", "--child.batch_size", "32",
    "--child.eval_batch_size", "256", "--start.epochs", "1",
    "--space.filters", "16,32,48", "--space.fc_units", "64,128,256",
    "--search.children_per_step", "2", "--search.stage1_networks", "4",
    "--search.stage1_best_epochs", "1", "--search.stage2_networks", "2",
    "--search.schedule", "wider,deeper", "--search.progress", "false",
    "--search.final_patience", "none", "--search.no_search_control", "false",
]
"""A tiny two-stage search on a Fashion-MNIST slice: 3 rounds of 2 children, 2 batches each
(a fixed final training and no no-search control, whatever the default preset says)."""


ENV_SPACE = SearchSpace(filters=(16, 32, 48, 64), fc_units=(64, 128, 256))
"""A small search space for environment tests (flat view, SB3)."""
ENV_START = "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(32,3,1), P(3,3,AVG), FC(64), SM(10)"
"""A small start network for environment tests."""


def small_env(**kw: object) -> NetTransformEnv:
    """A :class:`NetTransformEnv` on :data:`ENV_START` and :data:`ENV_SPACE` with the cheap
    synthetic evaluator; ``kw`` overrides any of its arguments."""
    opts: dict[str, object] = dict(start=ENV_START, evaluator=SyntheticEvaluator(),
                                   space=ENV_SPACE, max_layers=12)
    opts.update(kw)
    return NetTransformEnv(**opts)  # type: ignore[arg-type]


def quiet(_: str) -> None:
    """A log function that prints nothing."""


class CheapEvaluator:
    """A deterministic stand-in for child training: accuracy from a hash of the architecture.

    Args:
        interrupt_at: raise ``KeyboardInterrupt`` on this call (1-based), as if the
            process were killed while training that child.
        fail: report every child as failed (diverged), with no state dict.
    """

    def __init__(self, interrupt_at: int | None = None, fail: bool = False) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.fail = fail

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # the process is killed while training this child
        if self.fail:
            return EvalResult(0.0, failed=True, reason="diverged (NaN loss at step 3)")
        digest = hashlib.blake2b(str(net.arch).encode(), digest_size=4).digest()
        acc = 0.5 + int.from_bytes(digest, "little") / 2**32 * 0.4
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return EvalResult(accuracy=acc, train_time=0.01, state_dict=state)


def cheap_values(runs_dir: Path, run_name: str = "cheap", **overrides: str) -> dict[str, str]:
    """The ``section.field`` settings of a search that needs no data (see :func:`cheap_config`)."""
    values = {
        "data.name": "fashion-mnist", "data.device": "cpu", "start.epochs": "0",
        "space.filters": "16,32,48,64", "space.fc_units": "64,128,256",
        "search.children_per_step": "3", "search.stage1_networks": "6",
        "search.stage1_best_epochs": "0", "search.stage2_networks": "3",
        "search.schedule": "wider,deeper,deeper", "search.final_top_k": "0",
        "search.progress": "false", "search.runs_dir": str(runs_dir), "search.run_name": run_name,
    }
    values.update(overrides)
    return values


def cheap_config(tmp_path: Path, **overrides: str):
    """A search that needs no data: untrained start, cheap evaluator, no final training."""
    return load_config(None, cheap_values(tmp_path, **overrides))


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    """The steps at which ``tag`` was logged to the TensorBoard files in ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]
