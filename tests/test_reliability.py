"""Reliability: bad input refused up front, run folders owned by one run, kills lose nothing.

* a table of bad inputs through the real command line (``main``) and the API: each
  must give its exit code (or exception), one line naming the culprit, no
  traceback, and leave every file as it was;
* run folders: an existing folder is refused, ``--overwrite`` replaces it, auto
  names never collide, a live lock keeps a second process out, the lock of a
  process that died holding it is free;
* resume after a bad override leaves the run resumable;
* ``kill -9`` mid-round with the serial and the process back-end retrains no
  finished child; SIGTERM stops like Ctrl-C with the resume hint.
"""

from __future__ import annotations

import hashlib
import importlib
import json
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
from helpers import FASHION, CheapEvaluator, quiet
from PIL import Image

from eas.arch import Architecture
from eas.checkpoint import CheckpointError, load_checkpoint, load_network, save_network
from eas.cli import search as train_controller
from eas.cli.main import main as eas_main
from eas.cli.search import main
from eas.config.engine import load_config
from eas.config.sections import (
    ConfigError,
    DataConfig,
    SearchConfig,
    SearchSection,
    SpaceConfig,
    StartConfig,
)
from eas.data import DatasetError, DatasetNotFoundError, load_dataset
from eas.envs.rewards import ObjectivesConfig
from eas.export import export_networks
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.search import preflight as preflight_mod
from eas.search.failures import SearchFailed
from eas.search.loop import run_search
from eas.search.rundir import OWNER_FILE, claim_run_dir, lock_owner

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PREFIX = "python -m eas.train_controller: error: "
SMALL = "C(8,3,1), P(2,2,MAX), FC(16), SM(10)"


pytestmark = pytest.mark.usefixtures("one_thread")

CHEAP = {
    "data.name": "fashion-mnist", "data.device": "cpu", "start.epochs": "0",
    "space.filters": "16,32,48,64", "space.fc_units": "64,128,256",
    "search.children_per_step": "3", "search.stage1_networks": "6",
    "search.stage1_best_epochs": "0", "search.stage2_networks": "0",
    "search.schedule": "wider,deeper", "search.final_top_k": "0",
    "search.progress": "false", "search.run_name": "cheap",
}


def cheap_config(runs_dir: Path, **overrides: str):
    """A data-free search (stand-in evaluator): 2 rounds of 3 children."""
    return load_config(None, {**CHEAP, "search.runs_dir": str(runs_dir), **overrides})


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size, mtime and content hash (files)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.blake2b(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


# ---------------------------------------------------------------------- the workspace
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad files and folders the table points at, plus one stopped run to resume."""
    root = tmp_path_factory.mktemp("ws")
    rng = np.random.default_rng(0)
    (root / "garbage.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "empty.pt").write_bytes(b"")
    (root / "folder.pt").mkdir()
    net = build_network(SMALL, (1, 28, 28), seed=0)
    save_network(net, root / "small.pt")
    data = (root / "small.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"conv.weight": torch.zeros(3)}, root / "wrong_state.pt")
    torch.save([1, 2, 3], root / "list.pt")
    (root / "a_file").write_text("not a folder")
    (root / "config_bad.toml").write_text("[search\nseed = 1")
    (root / "config_unknown.toml").write_text("[nosuch]\nx = 1\n")
    (root / "config_binary.toml").write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
    (root / "config_utf16.toml").write_text("[search]\nseed = 1\n", encoding="utf-16")
    # plug-in agents that cannot be imported or built (imported with bytecode writing off)
    (root / "plugin_import_boom.py").write_text("raise RuntimeError('import boom')\n")
    (root / "plugin_init_boom.py").write_text(
        "from eas.agents.random_search import RandomSearchAgent\n\n\n"
        "class Agent(RandomSearchAgent):\n"
        "    def __init__(self, ctx, config=None):\n"
        "        raise ValueError('init boom')\n")
    # ImageFolder trees: empty, class folders without images, a corrupt first image
    (root / "if_empty").mkdir()
    (root / "if_noimg" / "cat").mkdir(parents=True)
    (root / "if_noimg" / "dog").mkdir(parents=True)
    (root / "if_noimg" / "cat" / "notes.txt").write_text("no images here")
    (root / "if_one" / "cat").mkdir(parents=True)  # one class: nothing to classify
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        root / "if_one" / "cat" / "0.png")
    for c in ("cat", "dog"):
        (root / "if_corrupt" / c).mkdir(parents=True)
    (root / "if_corrupt" / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    img.save(root / "if_corrupt" / "dog" / "0.png")
    # a stopped run (1 of 2 rounds) and copies of it with broken checkpoints
    runs = root / "runs"
    out = run_search(cheap_config(runs, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    assert not out.finished
    for name, damage in (("ck_garbage", "garbage"), ("ck_empty", "empty"),
                         ("ck_truncated", "truncated"), ("ck_folder", "folder"),
                         ("ck_list", "list")):
        shutil.copytree(out.run_dir, runs / name)
        ck = runs / name / "checkpoint.pt"
        if damage == "garbage":
            shutil.copy(root / "garbage.pt", ck)
        elif damage == "empty":
            ck.write_bytes(b"")
        elif damage == "truncated":
            ck.write_bytes(ck.read_bytes()[:1000])
        elif damage == "folder":
            ck.unlink()
            ck.mkdir()
        else:
            torch.save([1, 2, 3], ck)
    shutil.copytree(out.run_dir, runs / "no_config")
    (runs / "no_config" / "config.toml").unlink()
    shutil.copytree(out.run_dir, runs / "no_ckpt")  # killed before its first checkpoint
    (runs / "no_ckpt" / "checkpoint.pt").unlink()
    shutil.copytree(out.run_dir, runs / "journal_file")
    shutil.rmtree(runs / "journal_file" / "journal", ignore_errors=True)
    (runs / "journal_file" / "journal").write_text("not the journal folder")
    done = run_search(cheap_config(runs, **{"search.run_name": "finished"}),
                      evaluator=CheapEvaluator(), log=quiet)
    assert done.finished
    return root


# ---------------------------------------------------------------------- the table
NEW = ["--data.name", "fashion-mnist", "--data.device", "cpu", "--search.progress", "false",
       "--start.arch", SMALL, "--search.run_name", "fresh"]
"""A valid new run (it would train); each case adds one bad value."""

RESUME = ["--resume", "runs/cheap"]


def _case(argv: list[str], culprit: str, code: int = 2):
    return pytest.param(argv, culprit, code, id=" ".join(argv)[-60:])


CLI_CASES = [
    # numbers: type, range, finiteness
    _case(NEW + ["--search.seed", "-1"], "search.seed"),
    _case(NEW + ["--search.seed", str(2**40)], "search.seed"),
    _case(NEW + ["--search.seed", "1.5"], "search.seed"),
    _case(NEW + ["--data.seed", "-5"], "data.seed"),
    _case(NEW + ["--child.lr", "-1"], "child.lr"),
    _case(NEW + ["--child.lr", "nan"], "child.lr"),
    _case(NEW + ["--child.lr", "inf"], "child.lr"),
    _case(NEW + ["--child.lr", "abc"], "child.lr"),
    _case(NEW + ["--halving.eta", "1"], "halving.eta"),
    _case(NEW + ["--objectives.latency_repeats", "0"], "objectives.latency_repeats"),
    _case(NEW + ["--objectives.target", "-1"], "objectives.target"),
    _case(NEW + ["--objectives.target", "0"], "objectives.target"),
    _case(NEW + ["--hill_climbing.n_neigh", "0"], "hill_climbing.n_neigh"),
    _case(NEW + ["--lemonade.n_pc", "0"], "lemonade.n_pc"),
    _case(NEW + ["--sb3.batch_size", "0"], "sb3.batch_size"),
    _case(NEW + ["--child.weight_decay", "inf"], "child.weight_decay"),
    _case(NEW + ["--child.weight_decay", "-0.1"], "child.weight_decay"),
    _case(NEW + ["--child.momentum", "1.5"], "child.momentum"),
    _case(NEW + ["--child.lr_min", "nan"], "child.lr_min"),
    _case(NEW + ["--child.label_smoothing", "1"], "child.label_smoothing"),
    _case(NEW + ["--child.epochs", "-1"], "child.epochs"),
    _case(NEW + ["--child.batch_size", "0"], "child.batch_size"),
    _case(NEW + ["--child.eval_batch_size", "0"], "child.eval_batch_size"),
    _case(NEW + ["--child.max_batches_per_epoch", "0"], "child.max_batches_per_epoch"),
    _case(NEW + ["--child.schedule", "linear"], "child.schedule"),
    _case(NEW + ["--controller.entropy_coef", "nan"], "controller.entropy_coef"),
    _case(NEW + ["--controller.lr", "inf"], "controller.lr"),
    _case(NEW + ["--random.wider_prob", "nan"], "random.wider_prob"),
    _case(NEW + ["--data.val_size", "0"], "data.val_size"),
    _case(NEW + ["--data.val_size", "-3"], "data.val_size"),
    _case(NEW + ["--data.train_subset", "0"], "data.train_subset"),
    _case(NEW + ["--start.epochs", "-2"], "start.epochs"),
    _case(NEW + ["--start.dropout", "1.0"], "start.dropout"),
    _case(NEW + ["--start.dropout", "nan"], "start.dropout"),
    _case(NEW + ["--search.children_per_step", "0"], "search.children_per_step"),
    _case(NEW + ["--search.stage1_networks", "-1"], "search.stage1_networks"),
    _case(NEW + ["--search.stage1_networks", "1e12"], "search.stage1_networks"),
    _case(NEW + ["--search.final_lr", "nan"], "search.final_lr"),
    _case(NEW + ["--search.final_lr", "-1"], "search.final_lr"),
    _case(NEW + ["--search.workers", "0"], "search.workers"),
    _case(NEW + ["--search.max_rounds", "0"], "search.max_rounds"),
    _case(NEW + ["--search.free_steps", "0", "--search.schedule", "free"],
          "search.free_steps"),
    _case(NEW + ["--search.final_init", "random"], "search.final_init"),
    _case(NEW + ["--search.keep_best", "-1"], "search.keep_best"),
    # names and choices
    _case(NEW + ["--data.name", "imagenet"], "data.name"),
    _case(NEW + ["--data.device", "gpu"], "data.device"),
    _case(NEW + ["--search.backend", "threads"], "search.backend"),
    _case(NEW + ["--search.agent", "nosuchagent"], "search.agent"),
    _case(NEW + ["--search.agent", "nosuch.module:Cls"], "search.agent"),
    _case(NEW + ["--search.schedule", "wider,sideways"], "search.schedule"),
    _case(NEW + ["--search.progress", "maybe"], "search.progress"),
    _case(NEW + ["--nosuch.field", "1"], "nosuch"),
    _case(NEW + ["--child.nosuch", "1"], "child.nosuch"),
    _case(NEW + ["--config", "missing.toml"], "missing.toml"),
    _case(NEW + ["--config", "config_bad.toml"], "config_bad.toml"),
    _case(NEW + ["--config", "config_unknown.toml"], "nosuch"),
    _case(NEW + ["--config", "config_binary.toml"], "config_binary.toml is not a UTF-8"),
    _case(NEW + ["--config", "config_utf16.toml"], "config_utf16.toml is not a UTF-8"),
    # values each fine alone that make no sense together, and every enum field
    _case(NEW + ["--objectives.base", "log"], "objectives.base"),
    _case(NEW + ["--child.lr_min", "1.0"], "child.lr_min"),
    _case(NEW + ["--start.lr", "0.001", "--child.lr_min", "0.01"], "start.lr"),
    _case(NEW + ["--search.final_lr", "0.001", "--child.lr_min", "0.01"], "search.final_lr"),
    _case(NEW + ["--agent", "lemonade", "--lemonade.n_pc", "2", "--lemonade.n_ac", "5"],
          "lemonade.n_ac"),
    _case(NEW + ["--agent", "hill_climbing", "--hill_climbing.deeper_kernels", "2"],
          "hill_climbing.deeper_kernels"),
    _case(NEW + ["--hill_climbing.lr_start", "0.01", "--hill_climbing.lr_end", "0.1"],
          "hill_climbing.lr_end"),
    _case(NEW + ["--data.train_subset", "500", "--child.batch_size", "100000"],
          "child.batch_size"),
    _case(NEW + ["--data.train_subset", "5"], "data.train_subset"),
    _case(NEW[:-4] + ["--start.arch", "C(\uff11\uff16,3,1), SM(10)", "--search.run_name",
                      "fresh"], "non-ASCII"),
    _case(NEW + ["--data.name", "imagefolder", "--data.root", "if_one"], "one class"),
    # plug-in agents: named when they cannot be imported or built, before anything is written
    _case(NEW + ["--agent", "plugin_import_boom:Agent"], "plugin_import_boom:Agent"),
    _case(NEW + ["--agent", "plugin_init_boom:Agent"], "plugin_init_boom:Agent"),
    # the search space and the start architecture
    _case(NEW + ["--space.kernel_sizes", "2,4"], "space.kernel_sizes"),
    _case(NEW + ["--space.kernel_sizes", "5,3"], "space.kernel_sizes"),
    _case(NEW + ["--space.filters", "0,16"], "space.filters"),
    _case(NEW + ["--space.fc_units", ""], "space.fc_units"),
    _case(NEW + ["--space.max_layers", "2"], "space.max_layers"),
    _case(NEW + ["--start.arch", "C(99999999999999999999,3,1), SM(10)"], "start.arch"),
    _case(NEW + ["--start.arch", "C(100000,3,1), C(100000,3,1), SM(10)"], "start.arch"),
    _case(NEW + ["--start.arch", "C(16,3,1), SM(3)"], "SM(3)"),
    _case(NEW + ["--start.arch", "C(16,3,1), P(64,64,MAX), SM(10)"], "start.arch"),
    _case(NEW + ["--start.arch", "banana"], "start.arch"),
    # devices and back-ends (checked before any work)
    _case(NEW + ["--data.device", "cuda"], "data.device"),
    _case(NEW + ["--data.device", "cuda:7"], "data.device"),
    _case(NEW + ["--search.backend", "ray"], "search.backend"),
    # files: start weights
    _case(NEW + ["--start.weights", "nosuch.pt"], "nosuch.pt"),
    _case(NEW + ["--start.weights", "garbage.pt"], "garbage.pt"),
    _case(NEW + ["--start.weights", "empty.pt"], "empty.pt"),
    _case(NEW + ["--start.weights", "truncated.pt"], "truncated.pt"),
    _case(NEW + ["--start.weights", "folder.pt"], "folder.pt"),
    _case(NEW + ["--start.weights", "wrong_state.pt"], "wrong_state.pt"),
    _case(NEW + ["--start.weights", "list.pt"], "list.pt"),
    _case(NEW[:-4] + ["--start.arch", "C(16,3,1), SM(10)", "--start.weights", "small.pt",
                      "--search.run_name", "fresh"], "small.pt"),
    # folders: runs_dir, run name, data root, image folders
    _case(NEW + ["--search.runs_dir", "a_file"], "a_file"),
    _case(NEW + ["--search.runs_dir", "a_file/sub"], "a_file"),
    _case(NEW + ["--search.run_name", "x" * 300], "search.run_name"),
    _case(NEW + ["--search.run_name", "a/b"], "search.run_name"),
    _case(NEW + ["--search.run_name", ".."], "search.run_name"),
    _case(NEW + ["--search.run_name", "cheap", "--search.runs_dir", "runs"], "--overwrite"),
    _case(NEW + ["--search.run_name", "ck_garbage", "--search.runs_dir", "runs"], "--resume"),
    _case(NEW + ["--search.run_name", "a_file", "--search.runs_dir", "."], "a_file"),
    _case(NEW + ["--search.run_name", "if_noimg", "--search.runs_dir", ".", "--overwrite"],
          "if_noimg"),
    _case(NEW + ["--data.root", "no_such_root"], "no_such_root"),
    _case(NEW + ["--data.name", "imagefolder"], "data.root"),
    _case(NEW + ["--data.name", "imagefolder", "--data.root", "if_empty"], "if_empty"),
    _case(NEW + ["--data.name", "imagefolder", "--data.root", "if_noimg"], "if_noimg/cat"),
    _case(NEW + ["--data.name", "imagefolder", "--data.root", "if_corrupt"], "0.png"),
    # resume: folders, broken checkpoints, overrides that are bad or change the search
    _case(["--resume", "no_such_run"], "no_such_run"),
    _case(["--resume", "runs/no_config"], "config.toml"),
    _case(["--resume", "runs/ck_garbage"], "ck_garbage/checkpoint.pt"),
    _case(["--resume", "runs/ck_empty"], "ck_empty/checkpoint.pt"),
    _case(["--resume", "runs/ck_truncated"], "ck_truncated/checkpoint.pt"),
    _case(["--resume", "runs/ck_folder"], "ck_folder/checkpoint.pt"),
    _case(["--resume", "runs/ck_list"], "ck_list/checkpoint.pt"),
    _case(RESUME + ["--search.seed", "-1"], "search.seed"),
    _case(RESUME + ["--search.backend", "ray"], "search.backend"),
    _case(RESUME + ["--controller.entropy_coef", "nan"], "controller.entropy_coef"),
    _case(RESUME + ["--search.agent", "random"], "search.agent"),
    _case(RESUME + ["--search.children_per_step", "5"], "search.children_per_step"),
    _case(RESUME + ["--search.schedule", "wider,wider"], "search.schedule"),
    _case(RESUME + ["--space.filters", "16,32"], "space.filters"),
    _case(RESUME + ["--search.seed", "9"], "search.seed"),
    _case(RESUME + ["--config", "config_bad.toml"], "--config"),
    # resume: every override that changes which children come out or how they score
    _case(RESUME + ["--halving.rungs", "1,2"], "halving.rungs"),
    _case(RESUME + ["--objectives.reward", "constrained", "--objectives.target", "100000"],
          "objectives."),
    _case(RESUME + ["--data.train_subset", "600"], "data.train_subset"),
    _case(RESUME + ["--data.val_size", "600"], "data.val_size"),
    _case(RESUME + ["--search.stages", "12,6"], "search.stages"),
    _case(RESUME + ["--search.stage1_networks", "9"], "the run used 6"),
    _case(RESUME + ["--search.max_child_seconds", "5"], "search.max_child_seconds"),
    _case(RESUME + ["--child.lr", "0.1"], "child.lr"),
    _case(RESUME + ["--start.epochs", "2"], "start.epochs"),
    _case(RESUME + ["--search.final_top_k", "2"], "search.final_top_k"),
    _case(RESUME + ["--controller.lr", "0.5"], "controller.lr"),
    _case(RESUME + ["--space.kernel_sizes", "3"], "space.kernel_sizes"),
    _case(RESUME + ["--search.cache", "false"], "search.cache"),
    # resume: nothing to resume
    _case(["--resume", "runs/no_ckpt"], "--overwrite"),
    _case(["--resume", "runs/finished"], "finished run"),
    _case(["--resume", "runs/journal_file"], "journal_file/journal"),
    _case(RESUME + ["--overwrite"], "--overwrite"),
]


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not importable
        return None


def _check_one_line(err: str, culprit: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    assert culprit in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "culprit", "code"), CLI_CASES)
def test_bad_input_through_the_command_line(ws: Path, argv: list[str], culprit: str, code: int,
                                            capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so device cuda is valid here")
    if "ray" in argv and hasattr(_try_import("ray"), "remote"):
        pytest.skip("Ray is installed here, so backend ray is valid")
    monkeypatch.chdir(ws)
    monkeypatch.delenv("EAS_DEBUG", raising=False)
    monkeypatch.syspath_prepend(str(ws))  # the plug-in agents
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = snapshot(ws)
    assert main(argv) == code
    _check_one_line(capsys.readouterr().err, culprit)
    assert snapshot(ws) == before  # nothing new, nothing changed


# ---------------------------------------------------------------------- export and compare
EXPORT_CASES = [
    (["export", "runs/cheap", "--opset", "3"], "--opset"),
    (["export", "runs/cheap", "--opset", "99"], "--opset"),
    (["export", "runs/cheap", "--out", "a_file"], "a_file"),
    (["export", "runs/cheap", "--out", "a_file/sub"], "a_file"),
    (["export", "runs/cheap", "--out", "runs/cheap/checkpoint.pt"], "checkpoint.pt"),
    (["export", "no_such_run"], "no_such_run"),
    (["export", "runs/no_config/journal"], "checkpoint.pt"),
    (["export", "runs/cheap", "--max-params", "1", "--out", "new_export"], "max_params"),
    (["export", "runs/cheap", "--which", "worst"], "--which"),
    (["compare", "--agents", "random", "--children", "1", "--out", "a_file"], "a_file"),
    (["compare", "--agents", "random", "--children", "1", "--out", "a_file/sub"], "a_file"),
    (["compare", "--agents", "nosuchagent", "--children", "1", "--out", "c"], "nosuchagent"),
    (["compare", "--agents", "random", "--children", "1", "--out", "c",
      "--set", "child.lr_min=5"], "child.lr_min"),
    (["compare", "--agents", "random", "--children", "1", "--out", "c",
      "--set", "objectives.base=log"], "objectives.base"),
]


@pytest.mark.parametrize(("argv", "culprit"), EXPORT_CASES, ids=lambda a: " ".join(a)[-50:]
                         if isinstance(a, list) else a)
def test_bad_input_to_export_and_compare(ws: Path, argv: list[str], culprit: str,
                                         capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``eas export`` / ``eas compare``: exit 2, one line naming the culprit, nothing written."""
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    try:
        code = eas_main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"eas {argv[0]}: error: "), err
    assert culprit in lines[0] and "Traceback" not in err, err
    assert snapshot(ws) == before


def test_a_failed_export_leaves_no_partial_output(ws: Path, tmp_path: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter fails half way (here: torch.export after ONNX): its files are taken back."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracer broke")

    monkeypatch.setattr(torch.export, "export", broken)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("the user's own file")
    for out in (tmp_path / "new" / "deeper", tmp_path / "kept"):
        assert eas_main(["export", str(ws / "runs" / "cheap"), "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tracer broke" in err[0], err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
        assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["mine.txt"]


def test_the_table_covers_every_section_once_per_case() -> None:
    """Every configuration section has a bad value in the table, and no case is there twice."""
    argvs = [tuple(case.values[0]) for case in CLI_CASES]
    assert len(set(argvs)) == len(argvs)
    named = {case.values[1].partition(".")[0] for case in CLI_CASES}
    missing = set(SearchConfig().sections()) - {"agent"} - named  # [agent]: plug-ins only
    assert not missing, f"no bad-input case for [{'], ['.join(sorted(missing))}]"


def _api_cases(ws: Path):
    """(callable, exception type, culprit) for bad input through the Python API."""
    cfg_existing = cheap_config(ws / "runs")
    return {
        "TrainConfig(lr=-1)": (lambda: TrainConfig(lr=-1), ValueError, "lr"),
        "TrainConfig(weight_decay=inf)":
            (lambda: TrainConfig(weight_decay=float("inf")), ValueError, "weight_decay"),
        "TrainConfig(momentum=nan)":
            (lambda: TrainConfig(momentum=float("nan")), ValueError, "momentum"),
        "TrainConfig(lr_min > lr)":
            (lambda: TrainConfig(lr=0.01, lr_min=1.0), ValueError, "lr_min"),
        "ObjectivesConfig(base=log)":
            (lambda: ObjectivesConfig(base="log"), ValueError, "base 'log'"),
        "Architecture.parse(full-width digits)":
            (lambda: Architecture.parse("C(\uff11\uff16,3,1), SM(10)"), ValueError,
             "non-ASCII"),
        "export_networks(opset=3)":
            (lambda: export_networks([(build_network(SMALL, (1, 28, 28), seed=0), {})],
                                     ws / "new_export", opset=3), ValueError, "--opset"),
        "DataConfig(val_size=0)": (lambda: DataConfig(val_size=0), ConfigError, "data.val_size"),
        "DataConfig(seed=-1)": (lambda: DataConfig(seed=-1), ConfigError, "data.seed"),
        "SearchSection(seed=2**40)":
            (lambda: SearchSection(seed=2**40), ConfigError, "search.seed"),
        "SearchSection(final_lr=nan)":
            (lambda: SearchSection(final_lr=float("nan")), ConfigError, "search.final_lr"),
        "SpaceConfig(kernel_sizes=(2,))":
            (lambda: SpaceConfig(kernel_sizes=(2,)), ConfigError, "space.kernel_sizes"),
        "StartConfig(dropout=inf)":
            (lambda: StartConfig(dropout=float("inf")), ConfigError, "start.dropout"),
        "build_network(huge)": (lambda: build_network("C(99999999999999999999,3,1), SM(10)"),
                                ValueError, "99999999999999999999"),
        "load_network(garbage)":
            (lambda: load_network(ws / "garbage.pt"), CheckpointError, "garbage.pt"),
        "load_network(empty)": (lambda: load_network(ws / "empty.pt"), CheckpointError,
                                "empty.pt"),
        "load_network(truncated)":
            (lambda: load_network(ws / "truncated.pt"), CheckpointError, "truncated.pt"),
        "load_network(folder)":
            (lambda: load_network(ws / "folder.pt"), CheckpointError, "folder.pt"),
        "load_network(state_dict only)":
            (lambda: load_network(ws / "wrong_state.pt"), CheckpointError, "wrong_state.pt"),
        "load_checkpoint(garbage)":
            (lambda: load_checkpoint(ws / "garbage.pt"), CheckpointError, "garbage.pt"),
        "load_checkpoint(empty)":
            (lambda: load_checkpoint(ws / "empty.pt"), CheckpointError, "empty.pt"),
        "load_checkpoint(missing)":
            (lambda: load_checkpoint(ws / "nosuch.pt"), CheckpointError, "nosuch.pt"),
        "load_dataset(imagefolder empty)":
            (lambda: load_dataset("imagefolder", ws / "if_empty"), DatasetError, "if_empty"),
        "load_dataset(imagefolder no images)":
            (lambda: load_dataset("imagefolder", ws / "if_noimg"), DatasetError, "if_noimg"),
        "load_dataset(imagefolder corrupt)":
            (lambda: load_dataset("imagefolder", ws / "if_corrupt"), DatasetError, "0.png"),
        "load_dataset(missing root)":
            (lambda: load_dataset("mnist", ws / "no_root"), DatasetNotFoundError, "no_root"),
        "run_search(existing folder)":
            (lambda: run_search(cfg_existing, evaluator=CheapEvaluator(), log=quiet),
             ConfigError, "--overwrite"),
        "run_search(resume, agent changed)":
            (lambda: run_search(cheap_config(ws / "runs", **{"search.agent": "random"}),
                                run_dir=ws / "runs" / "cheap", resume=True,
                                evaluator=CheapEvaluator(), log=quiet),
             ConfigError, "search.agent"),
    }


API_CASES = [
    "TrainConfig(lr=-1)", "TrainConfig(weight_decay=inf)", "TrainConfig(momentum=nan)",
    "TrainConfig(lr_min > lr)", "ObjectivesConfig(base=log)",
    "Architecture.parse(full-width digits)", "export_networks(opset=3)",
    "DataConfig(val_size=0)", "DataConfig(seed=-1)", "SearchSection(seed=2**40)",
    "SearchSection(final_lr=nan)", "SpaceConfig(kernel_sizes=(2,))", "StartConfig(dropout=inf)",
    "build_network(huge)", "load_network(garbage)", "load_network(empty)",
    "load_network(truncated)", "load_network(folder)", "load_network(state_dict only)",
    "load_checkpoint(garbage)", "load_checkpoint(empty)", "load_checkpoint(missing)",
    "load_dataset(imagefolder empty)", "load_dataset(imagefolder no images)",
    "load_dataset(imagefolder corrupt)", "load_dataset(missing root)",
    "run_search(existing folder)", "run_search(resume, agent changed)",
]


@pytest.mark.parametrize("name", API_CASES)
def test_bad_input_through_the_api(ws: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    call, exc_type, culprit = _api_cases(ws)[name]
    before = snapshot(ws)
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert len(message.splitlines()) == 1 and culprit in message, message
    assert snapshot(ws) == before


@pytest.mark.slow
def test_real_process_prints_one_line_and_no_traceback(ws: Path) -> None:
    """The installed entry point, in its own process: exit 2, one line, nothing written."""
    before = snapshot(ws)
    env = {k: v for k, v in os.environ.items() if k != "EAS_DEBUG"}
    for argv, culprit in ((NEW + ["--search.seed", "-1"], "search.seed"),
                          (NEW + ["--start.weights", "garbage.pt"], "garbage.pt"),
                          (["--resume", "runs/ck_truncated"], "checkpoint.pt")):
        proc = subprocess.run([sys.executable, "-m", "eas.train_controller", *argv], cwd=ws,
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        _check_one_line(proc.stderr, culprit)
    assert snapshot(ws) == before


def test_debug_shows_the_traceback(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    with pytest.raises(ConfigError, match="search.seed"):
        main(NEW + ["--search.seed", "-1", "--debug"])
    monkeypatch.setenv("EAS_DEBUG", "1")
    with pytest.raises(ConfigError, match="ck_garbage"):
        main(["--resume", "runs/ck_garbage"])


# ---------------------------------------------------------------------- run folders
def test_overwrite_replaces_an_old_run(tmp_path: Path) -> None:
    first = run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(), log=quiet)
    stray = first.run_dir / "final_1.pt"
    stray.write_bytes(b"left over from an older run")
    with pytest.raises(ConfigError, match="--resume .* or replace it with --overwrite"):
        run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(), log=quiet)
    assert stray.exists()
    second = run_search(cheap_config(tmp_path, **{"search.seed": "5"}),
                        evaluator=CheapEvaluator(), log=quiet, overwrite=True)
    assert second.run_dir == first.run_dir and second.finished
    assert not stray.exists() and not (second.run_dir / OWNER_FILE).exists()
    assert lock_owner(second.run_dir) is None  # released
    assert json.loads((second.run_dir / "summary.json").read_text())["seed"] == 5


def test_auto_names_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight_mod, "default_run_name", lambda cfg: "same-second")
    cfg = cheap_config(tmp_path, **{"search.run_name": "none", "search.max_rounds": "1"})
    a = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    b = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    assert a.run_dir.name == "same-second" and b.run_dir.name == "same-second-2"
    folder_a, lock_a = claim_run_dir(tmp_path / "x", resume=False, overwrite=False,
                                     auto_name=True)
    folder_b, lock_b = claim_run_dir(tmp_path / "x", resume=False, overwrite=False,
                                     auto_name=True)
    assert folder_a != folder_b
    lock_a.release()
    lock_b.release()


def test_a_live_lock_keeps_a_second_process_out(tmp_path: Path) -> None:
    out = run_search(cheap_config(tmp_path, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    folder, lock = claim_run_dir(out.run_dir, resume=True, overwrite=False, auto_name=False)
    try:
        before = snapshot(tmp_path)
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
            run_search(cheap_config(tmp_path), run_dir=out.run_dir, resume=True,
                       evaluator=CheapEvaluator(), log=quiet)
        assert snapshot(tmp_path) == before
    finally:
        lock.release()
    assert run_search(cheap_config(tmp_path), run_dir=out.run_dir, resume=True,
                      evaluator=CheapEvaluator(), log=quiet).finished


def test_the_lock_of_a_process_that_died_holding_it_is_free(tmp_path: Path) -> None:
    out = run_search(cheap_config(tmp_path, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    code = ("import os, sys; from pathlib import Path; from eas.search.rundir import claim_run_dir; "
            "claim_run_dir(Path(sys.argv[1]), resume=True, overwrite=False, auto_name=False); "
            "os._exit(0)")  # dies holding the lock: never released
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(out.run_dir)], env=env, check=True,
                   timeout=120)
    assert json.loads((out.run_dir / OWNER_FILE).read_text())["pid"] != os.getpid()
    assert lock_owner(out.run_dir) is None  # the kernel dropped it with the process
    resumed = run_search(cheap_config(tmp_path), run_dir=out.run_dir, resume=True,
                         evaluator=CheapEvaluator(), log=quiet)
    assert resumed.finished and not (out.run_dir / OWNER_FILE).exists()


# ---------------------------------------------------------------------- resume
def test_resume_after_a_bad_override_still_resumes(tmp_path: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_search(cheap_config(tmp_path, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    saved = (out.run_dir / "config.toml").read_text()
    for bad in (["--search.seed", "-1"], ["--search.children_per_step", "7"],
                ["--controller.entropy_coef", "nan"]):
        assert main(["--resume", str(out.run_dir), *bad]) == 2
        assert (out.run_dir / "config.toml").read_text() == saved
    capsys.readouterr()
    real = train_controller.run_search
    monkeypatch.setattr(train_controller, "run_search",
                        lambda cfg, **kw: real(cfg, evaluator=CheapEvaluator(), log=quiet, **kw))
    # settings that leave the search alone may change: this invocation, where children train
    assert main(["--resume", str(out.run_dir), "--search.max_rounds", "none",
                 "--search.progress", "false", "--search.backend", "serial",
                 "--child.eval_batch_size", "64", "--search.keep_best", "2"]) == 0
    assert load_checkpoint(out.run_dir / "checkpoint.pt")["state"]["global_step"] == 6


def test_resume_does_not_repeat_tensorboard_text(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run_search(cheap_config(tmp_path, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    run_search(cheap_config(tmp_path), run_dir=out.run_dir, resume=True,
               evaluator=CheapEvaluator(), log=quiet)
    acc = EventAccumulator(str(out.run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    assert len(acc.Tensors("hyperparameters/text_summary")) == 1


# ---------------------------------------------------------------------- failures at run time
def test_every_child_failed_stops_with_the_reasons_counted(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    with pytest.raises(SearchFailed, match=r"every child failed \(3 of 3\): 3 x diverged"):
        run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(fail=True), log=quiet)
    real = train_controller.run_search
    monkeypatch.setattr(train_controller, "run_search",
                        lambda cfg, **kw: real(cfg, evaluator=CheapEvaluator(fail=True),
                                               log=quiet, **kw))
    capsys.readouterr()
    code = main(["--resume", str(tmp_path / "cheap")])
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "every child failed (6 of 6)" in err


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_a_diverging_start_network_stops_the_run(tmp_path: Path, capsys) -> None:
    argv = ["--data.name", "fashion-mnist", "--data.device", "cpu", "--data.train_subset",
            "256", "--data.val_size", "200", "--start.epochs", "1", "--start.arch",
            "C(8,3,1), P(2,2,MAX), FC(16), SM(10)", "--start.lr", "1e6",
            "--child.batch_size", "32", "--search.progress", "false",
            "--search.runs_dir", str(tmp_path), "--search.run_name", "div"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "start network diverged" in err[0], err


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_a_failed_final_training_writes_the_summary_and_exits_1(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    """A final training that diverges (learning rate 1e6): reports written, exit code 1."""
    real = train_controller.run_search
    monkeypatch.setattr(train_controller, "run_search",
                        lambda cfg, **kw: real(cfg, evaluator=CheapEvaluator(), log=quiet, **kw))
    values = {**CHEAP, "search.runs_dir": str(tmp_path), "data.train_subset": "256",
              "data.val_size": "200", "child.batch_size": "32", "search.final_top_k": "1",
              "search.final_epochs": "1", "search.final_lr": "1e6"}
    capsys.readouterr()
    assert main([arg for k, v in values.items() for arg in (f"--{k}", v)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(PREFIX), err
    assert "final training failed for 1 of 1 network(s)" in err[0] and "NaN" in err[0], err
    run = tmp_path / "cheap"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and len(summary["final"]) == 1
    final = summary["final"][0]
    assert final["failed"] and "NaN" in final["reason"] and final["test_accuracy"] is None
    assert final["arch"] in err[0] and (run / "final_1.pt").is_file()
    assert (run / "summary.csv").is_file()


# ---------------------------------------------------------------------- kills
def _launch(backend: str, runs: Path, log: Path, delay: float, resume: bool
            ) -> subprocess.Popen:
    code = (f"import kill_helpers; kill_helpers.main({backend!r}, {str(runs)!r}, "
            f"{str(log)!r}, {delay}, {resume})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(log: Path) -> list[str]:
    return [ln.split()[0] for ln in log.read_text().splitlines()] if log.exists() else []


def _journaled(journal: Path) -> set[str]:
    """Digests of the children in the journal (files ``r<round>_<digest>_<n>.pt``)."""
    return {p.name.split("_")[1] for p in journal.glob("r*_*_*.pt")}


def _wait_for(log: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while len(_lines(log)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "the search did not get far enough in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "delay"), [("serial", 1.5), ("process", 3.0)])
def test_kill_9_mid_round_retrains_no_finished_child(tmp_path: Path, backend: str,
                                                     delay: float) -> None:
    """2 rounds of 4 children; kill -9 once 2 children of round 2 are journaled.

    The kill comes when the journal holds every child of round 2 whose training had
    finished (no fixed sleep); the resumed run must train exactly the others.
    """
    runs, log = tmp_path / "runs", tmp_path / "trained.log"
    journal = runs / "run" / "journal"
    proc = _launch(backend, runs, log, delay, resume=False)
    _wait_for(log, 6, proc)
    end = time.time() + 60
    while not set(_lines(log)[4:]) <= _journaled(journal):  # the finished ones are journaled
        assert proc.poll() is None and time.time() < end, "round 2's children were not journaled"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished, journaled = _lines(log), _journaled(journal)
    assert len(journaled) >= 2 and journaled <= set(finished[4:])  # only finished children
    assert lock_owner(runs / "run") is None  # the kernel dropped the killed run's lock

    again = _launch(backend, runs, log, delay, resume=True)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "DONE 8" in out
    retrained = _lines(log)[len(finished):]
    assert not set(retrained) & journaled  # no journaled child trained again
    assert len(retrained) == 4 - len(journaled)  # exactly round 2's others
    ckpt = load_checkpoint(runs / "run" / "checkpoint.pt")
    assert ckpt["state"]["global_step"] == 8 and ckpt["state"]["done"]


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    runs, log = tmp_path / "runs", tmp_path / "trained.log"
    code = ("import sys, kill_helpers, eas.cli.search as tc, eas.search.loop as lp; "
            "ev = kill_helpers.LoggedEvaluator(sys.argv[1], 1.0); real = tc.run_search; "
            "tc.run_search = lambda cfg, **kw: real(cfg, evaluator=ev, **kw); "
            "sys.exit(tc.main(sys.argv[2:]))")
    argv = ["--data.name", "fashion-mnist", "--data.device", "cpu", "--start.epochs", "0",
            "--search.children_per_step", "2", "--search.stage1_networks", "6",
            "--search.stage2_networks", "0", "--search.final_top_k", "0",
            "--search.schedule", "wider,deeper", "--search.progress", "false",
            "--search.parent_control", "false",  # logged evaluator calls = children
            "--search.runs_dir", str(runs), "--search.run_name", "term"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(log), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(log, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err
    ckpt = load_checkpoint(runs / "term" / "checkpoint.pt")
    assert ckpt["state"]["global_step"] in (2, 4)  # the last completed round
    assert not (runs / "term" / OWNER_FILE).exists()  # the lock was released on the way out


@pytest.mark.slow
def test_two_processes_with_one_run_name_cannot_share_the_folder(tmp_path: Path) -> None:
    """Started together: one runs, the other is refused (the folder exists or is locked)."""
    runs = tmp_path / "runs"
    procs = [_launch("serial", runs, tmp_path / f"log{i}", 0.5, resume=False) for i in (0, 1)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    done = [r for r in results if r[2] == 0 and "DONE 8" in r[0]]
    refused = [r for r in results if r[2] != 0]
    assert len(done) == 1 and len(refused) == 1, results
    err = refused[0][1]
    assert "already exists" in err or "is in use by process" in err, err
    assert load_checkpoint(runs / "run" / "checkpoint.pt")["state"]["global_step"] == 8
