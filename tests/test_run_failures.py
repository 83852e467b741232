"""Failures at run time and start-up: one line, the right exit code, nothing recreated or left.

(Bad input refused up front is tabled in ``test_reliability.py``; these cases need a
run in progress, a signal, a fault injected while writing, or real training.)

* the run folder deleted while the run is live: exit 1, the folder is not recreated;
* the journal folder turned into a file mid-run, a full disk: one line naming the path;
* a plug-in agent whose ``propose`` raises: one line naming the plug-in and the method;
* an unreachable ``search.ray_address``: refused before anything is written;
* SIGTERM before the run folder exists (in ``main`` and while importing): exit 143, one line;
* a child whose loss stays far above chance level is failed; a run whose start and
  children all score at chance level exits 1.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FASHION, CheapEvaluator, cheap_values, quiet
from PIL import Image

from eas import checkpoint
from eas.cli import search as train_controller
from eas.cli.search import main
from eas.data import load_dataset
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.search import steps
from eas.search.failures import SearchFailed, at_chance, check_chance
from eas.training import train_child

pytestmark = pytest.mark.usefixtures("one_thread")

PREFIX = "python -m eas.train_controller: error: "


def _argv(tmp_path: Path, **extra: str) -> list[str]:
    """The command line of helpers.cheap_config (a data-free search with a stand-in evaluator)."""
    values = cheap_values(tmp_path / "runs", "live", **extra)
    return [arg for key, value in values.items() for arg in (f"--{key}", value)]


def _with_evaluator(monkeypatch: pytest.MonkeyPatch, evaluator: object) -> None:
    real = train_controller.run_search
    monkeypatch.setattr(train_controller, "run_search",
                        lambda cfg, **kw: real(cfg, evaluator=evaluator, log=quiet, **kw))


def _one_line(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


class _Sabotage(CheapEvaluator):
    """A stand-in evaluator that runs ``act`` once, after its ``at``-th child."""

    def __init__(self, at: int, act) -> None:
        super().__init__()
        self.at, self.act = at, act

    def __call__(self, net):
        result = super().__call__(net)
        if self.calls == self.at:
            self.act()
        return result


# ---------------------------------------------------------------------- the run folder
def test_a_run_folder_deleted_while_live_is_not_recreated(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    run = tmp_path / "runs" / "live"
    _with_evaluator(monkeypatch, _Sabotage(4, lambda: shutil.rmtree(run)))  # in round 2
    assert main(_argv(tmp_path)) == 1
    _one_line(capsys, PREFIX, str(run), "was deleted")
    assert not run.exists()  # no journal/, no checkpoint, no events file written anew


def test_a_run_folder_replaced_while_live_is_left_alone(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    """Another folder of the same name (someone else's) gets nothing from this run."""
    run = tmp_path / "runs" / "live"

    def replace() -> None:
        shutil.rmtree(run)
        run.mkdir()
        (run / "theirs.txt").write_text("another run's file")

    _with_evaluator(monkeypatch, _Sabotage(4, replace))
    assert main(_argv(tmp_path)) == 1
    _one_line(capsys, str(run), "run.lock")
    assert sorted(p.name for p in run.iterdir()) == ["theirs.txt"]


def test_a_journal_that_cannot_be_written_stops_the_run_naming_it(tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    journal = tmp_path / "runs" / "live" / "journal"

    def block() -> None:
        shutil.rmtree(journal, ignore_errors=True)
        journal.write_text("a file where the journal folder belongs")

    _with_evaluator(monkeypatch, _Sabotage(1, block))
    assert main(_argv(tmp_path)) == 1
    line = _one_line(capsys, "cannot write the journal", str(journal))
    assert "every child failed" not in line  # the children are not blamed


def test_a_full_disk_names_the_file(tmp_path: Path, capsys, monkeypatch) -> None:
    def no_space(*args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() reports it

    with pytest.raises(OSError) as info:
        checkpoint._atomic_write(tmp_path / "x.pt", no_space)
    assert info.value.filename == str(tmp_path / "x.pt") and not list(tmp_path.iterdir())
    monkeypatch.setattr(torch, "save", no_space)  # every torch file the run writes
    _with_evaluator(monkeypatch, CheapEvaluator())
    assert main(_argv(tmp_path)) == 1
    _one_line(capsys, str(tmp_path / "runs" / "live"), ".pt: No space left on device")


# ---------------------------------------------------------------------- plug-in agents
def test_a_plugin_whose_propose_raises_is_named(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "plugin_propose_boom.py").write_text(
        "from eas.agents.random_search import RandomSearchAgent\n\n\n"
        "class Agent(RandomSearchAgent):\n"
        "    def propose(self, obs):\n"
        "        raise KeyError('propose boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    _with_evaluator(monkeypatch, CheapEvaluator())
    assert main(_argv(tmp_path, **{"search.agent": "plugin_propose_boom:Agent"})) == 1
    _one_line(capsys, "plug-in agent 'plugin_propose_boom:Agent' failed in propose()",
              "KeyError", "propose boom")


# ---------------------------------------------------------------------- Ray
def test_an_unreachable_ray_address_is_refused_before_writing(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    for address, needle in (("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
                            ("no-port-here", "'no-port-here' is not a Ray address")):
        argv = _argv(tmp_path, **{"search.backend": "ray", "search.ray_address": address})
        assert main(argv) == 2
        _one_line(capsys, PREFIX, "search.ray_address", needle)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------- SIGTERM
def test_sigterm_before_the_run_folder_exists(tmp_path: Path, capsys, monkeypatch) -> None:
    def terminated(*args, **kwargs):
        raise train_controller.Terminated()

    monkeypatch.setattr(steps, "preflight", terminated)
    assert main(_argv(tmp_path)) == 143
    _one_line(capsys, "terminated (SIGTERM) before the run folder was created",
              "nothing was written")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sigterm_while_starting_is_one_line(tmp_path: Path) -> None:
    """SIGTERM while Python still imports torch: exit 143 and one line, not a silent -15."""
    env = {k: v for k, v in os.environ.items() if k != "EAS_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "eas.train_controller", *_argv(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)  # well inside the imports (torch alone takes longer), after eas/__init__
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "nothing was written" in lines[0], err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------- chance level
def test_at_chance_and_check_chance() -> None:
    assert at_chance(0.12, 10) and not at_chance(0.2, 10) and not at_chance(0.6, 2)
    starts, kids = [{"accuracy": 0.11}], [{"accuracy": 0.1}, {"accuracy": 0.0, "failed": True}]
    with pytest.raises(SearchFailed, match="chance level"):
        check_chance(starts, kids, 10)
    check_chance(starts, [*kids, {"accuracy": 0.3}], 10)  # one child learned: go on
    check_chance([{"accuracy": None}], kids, 10)  # start unknown (untrained): no verdict


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_a_loss_far_above_chance_level_fails_the_child() -> None:
    data = load_dataset("fashion-mnist", FASHION, val_size=200, train_subset=512, device="cpu")
    net = build_network("C(8,3,1), P(2,2,MAX), FC(16), SM(10)", data.input_shape, seed=0)
    res = train_child(net, data, TrainConfig(lr=1e6, epochs=1, batch_size=32,
                                             max_batches_per_epoch=2), seed=0)
    assert res.failed and "chance-level loss ln(10)" in res.reason, res
    net = build_network("C(8,3,1), P(2,2,MAX), FC(16), SM(10)", data.input_shape, seed=0)
    ok = train_child(net, data, TrainConfig(lr=0.05, epochs=1, batch_size=32,
                                            max_batches_per_epoch=2), seed=0)
    assert not ok.failed and ok.train_loss < 3 * np.log(10)


def test_a_run_that_learns_nothing_exits_1(tmp_path: Path, capsys) -> None:
    """Ten classes of the same image: the start and every child score at chance level."""
    root = tmp_path / "same"
    image = Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8))
    for c in range(10):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(30):
            image.save(root / f"class{c}" / f"{i}.png")
    argv = ["--data.name", "imagefolder", "--data.root", str(root), "--data.val_size", "100",
            "--data.train_subset", "none",
            "--data.device", "cpu", "--start.arch", "C(4,3,1), FC(8), SM(10)",
            "--start.epochs", "1", "--child.batch_size", "16", "--child.max_batches_per_epoch",
            "2", "--space.filters", "4,8,16", "--space.fc_units", "8,16",
            "--search.children_per_step", "2", "--search.stage1_networks", "2",
            "--search.stage2_networks", "0", "--search.stage1_best_epochs", "0",
            "--search.schedule", "wider", "--search.final_top_k", "1", "--search.final_epochs",
            "1", "--search.progress", "false", "--search.runs_dir", str(tmp_path / "runs"),
            "--search.run_name", "chance"]
    assert main(argv) == 1
    _one_line(capsys, PREFIX, "every child scored at chance level", "10 classes")
    assert not list((tmp_path / "runs" / "chance").glob("final_*.pt"))  # not trained on
