"""Run folders are data, not code: nothing eas reads from a file can execute.

Crafted files (a pickle whose ``__reduce__`` would create a marker file) in the
places eas reads: ``checkpoint.pt`` (``--resume``, ``eas export``), a journal
entry (``--resume``), ``best_1.pt`` (``eas.load_network``, ``--start.weights``).
Each is refused with one line naming the file, exit 2 from the command line, no
traceback, the marker never appears and no file in the workspace changes. A
normal run's files all read weights-only and its resume stays exact.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CheapEvaluator, cheap_config, quiet

from eas import load_network
from eas.checkpoint import (
    REWRITE_HINT,
    CheckpointError,
    UnsafeFileError,
    atomic_save,
    load_checkpoint,
    plain_data,
    read_torch_file,
    save_network,
)
from eas.checkpoint import main as checkpoint_main
from eas.cli.search import main as search_main
from eas.envs.journal import check_journal
from eas.export import main as export_main
from eas.network import build_network
from eas.search.loop import run_search

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = "C(8,3,1), P(2,2,MAX), FC(16), SM(10)"


class Payload:
    """Unpickling this runs ``os.system("touch <marker>")``: the attack a shared file could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root`` -> a hash of its content (None for folders)."""
    return {str(p.relative_to(root)): (hashlib.blake2b(p.read_bytes()).hexdigest()
                                      if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def one_line(err: str, culprit: str) -> str:
    """The only line of ``err``; it names ``culprit`` and says the file was not loaded."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and culprit in lines[0], err
    assert "holds objects eas does not load" in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped run (1 of 2 rounds) and copies of it with one crafted file each."""
    root = tmp_path_factory.mktemp("ws")
    marker = root / "MARKER"
    runs = root / "runs"
    out = run_search(cheap_config(runs, **{"search.max_rounds": "1"}),
                     evaluator=CheapEvaluator(), log=quiet)
    assert not out.finished and (out.run_dir / "best_1.pt").is_file()
    for name in ("evil_ckpt", "evil_journal", "evil_best"):
        shutil.copytree(out.run_dir, runs / name)
    torch.save({"state": {"best": []}, "agent": {}, "rng": Payload(marker)},
               runs / "evil_ckpt" / "checkpoint.pt")
    (runs / "evil_journal" / "journal").mkdir(exist_ok=True)
    torch.save({"accuracy": 0.9, "extra": Payload(marker)},
               runs / "evil_journal" / "journal" / "r1_0123456789abcdef_0.pt")
    record = torch.load(out.run_dir / "best_1.pt", weights_only=True)
    torch.save({**record, "accuracy": Payload(marker)}, runs / "evil_best" / "best_1.pt")
    torch.save({"conv.weight": Payload(marker)}, root / "evil_state_dict.pt")
    shutil.copytree(out.run_dir, runs / "plugin")  # its config.toml names a module:Class agent
    toml = runs / "plugin" / "config.toml"
    toml.write_text(toml.read_text().replace('agent = "reinforce"',
                                             'agent = "eas_shared_agent:Agent"'))
    return root


def test_the_crafted_files_really_run_code_when_unpickled(ws: Path, tmp_path: Path) -> None:
    """Control: the payload works, so the refusals below are what keeps the marker away."""
    marker = tmp_path / "CONTROL"
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()
    assert not (ws / "MARKER").exists()


def test_resume_refuses_a_crafted_checkpoint(ws: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    assert search_main(["--resume", "runs/evil_ckpt"]) == 2
    line = one_line(capsys.readouterr().err, "evil_ckpt/checkpoint.pt")
    assert "posix.system" in line or "os.system" in line
    assert REWRITE_HINT not in line  # no way around the refusal is offered for such a file
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before


def test_resume_refuses_a_crafted_journal_entry(ws: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    assert search_main(["--resume", "runs/evil_journal"]) == 2
    one_line(capsys.readouterr().err, "evil_journal/journal/r1_0123456789abcdef_0.pt")
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before
    with pytest.raises(UnsafeFileError, match="r1_0123456789abcdef_0.pt"):
        check_journal(ws / "runs" / "evil_journal" / "journal")


def test_export_refuses_a_crafted_checkpoint(ws: Path, capsys) -> None:
    before = snapshot(ws)
    assert export_main([str(ws / "runs" / "evil_ckpt")]) == 2
    one_line(capsys.readouterr().err, "evil_ckpt/checkpoint.pt")
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before  # no export/ folder either


def test_load_network_refuses_a_crafted_network_file(ws: Path) -> None:
    before = snapshot(ws)
    with pytest.raises(UnsafeFileError) as info:
        load_network(ws / "runs" / "evil_best" / "best_1.pt")
    one_line(str(info.value), "evil_best/best_1.pt")
    assert isinstance(info.value, CheckpointError)  # callers catching CheckpointError see it
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before


@pytest.mark.parametrize("weights", ["runs/evil_best/best_1.pt", "evil_state_dict.pt"])
def test_start_weights_refuse_a_crafted_file(ws: Path, capsys, monkeypatch,
                                             weights: str) -> None:
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    code = search_main(["--data.name", "fashion-mnist", "--data.device", "cpu",
                        "--search.progress", "false", "--start.arch", SMALL,
                        "--search.run_name", "fresh", "--start.weights", weights])
    assert code == 2
    line = one_line(capsys.readouterr().err, weights)
    assert "start.weights" in line
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before  # no runs/fresh


def test_controller_init_refuses_a_crafted_checkpoint(ws: Path, capsys, monkeypatch) -> None:
    """Warm-starting the controller from another run reads its checkpoint weights-only,
    before the new run writes anything."""
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    code = search_main(["--data.name", "fashion-mnist", "--data.device", "cpu",
                        "--search.progress", "false", "--start.arch", SMALL,
                        "--search.run_name", "fresh", "--controller.mode", "pool",
                        "--controller.init", "runs/evil_ckpt"])
    assert code == 2
    assert "controller.init" in one_line(capsys.readouterr().err, "evil_ckpt/checkpoint.pt")
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before  # no runs/fresh


def test_resume_does_not_import_a_plugin_agent_the_folder_names(ws: Path, capsys,
                                                                monkeypatch) -> None:
    """config.toml naming ``module:Class`` is code the folder chose: imported only when the
    command line names the same agent (then it is imported: the control)."""
    assert 'agent = "eas_shared_agent:Agent"' in (ws / "runs/plugin/config.toml").read_text()
    marker = ws / "IMPORTED"
    mod = ws / "mods"
    mod.mkdir(exist_ok=True)
    (mod / "eas_shared_agent.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(mod))
    monkeypatch.delitem(sys.modules, "eas_shared_agent", raising=False)
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    assert search_main(["--resume", "runs/plugin"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--search.agent eas_shared_agent:Agent" in err and "plugin/config.toml" in err
    assert not marker.exists() and snapshot(ws) == before
    assert search_main(["--resume", "runs/plugin", "--search.agent",
                        "eas_shared_agent:Agent"]) == 2  # not an Agent subclass: refused
    assert marker.exists()  # the user vouched for it, so it was imported
    marker.unlink()


def test_torchscript_programs_are_not_loaded(tmp_path: Path) -> None:
    """A TorchScript archive is code too: refused, not dispatched to torch.jit.load."""
    path = tmp_path / "scripted.pt"
    torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(str(path))
    with pytest.raises(UnsafeFileError, match="TorchScript"):
        read_torch_file(path)


@pytest.mark.slow
def test_real_processes_refuse_crafted_files(ws: Path) -> None:
    """The installed entry points, each in its own process: exit 2, one line, nothing run."""
    before = snapshot(ws)
    env = {k: v for k, v in os.environ.items() if k != "EAS_DEBUG"}
    for argv, culprit in (
            (["eas.train_controller", "--resume", "runs/evil_ckpt"], "checkpoint.pt"),
            (["eas.train_controller", "--resume", "runs/evil_journal"], "journal/r1_"),
            (["eas.export", "runs/evil_ckpt"], "checkpoint.pt"),
            (["eas.train_controller", "--data.name", "fashion-mnist", "--start.arch", SMALL,
              "--search.run_name", "fresh", "--start.weights", "runs/evil_best/best_1.pt"],
             "best_1.pt")):
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=ws, capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        one_line(proc.stderr, culprit)
    assert not (ws / "MARKER").exists()
    assert snapshot(ws) == before


# ---------------------------------------------------------------------- what eas writes
def test_every_file_of_a_run_reads_weights_only(tmp_path: Path) -> None:
    """Checkpoint, journal entries, start/best files of a run killed mid-round: all plain data,
    and the resumed run reuses the journal and gives the uninterrupted run's children."""
    whole = run_search(cheap_config(tmp_path / "a"), evaluator=CheapEvaluator(), log=quiet)
    cfg = cheap_config(tmp_path / "b", **{"search.parent_control": "false"})  # calls = children
    with pytest.raises(KeyboardInterrupt):  # killed while training child 2 of round 2
        run_search(cfg, evaluator=CheapEvaluator(interrupt_at=5), log=quiet)
    run = tmp_path / "b" / "cheap"
    files = sorted(run.rglob("*.pt"))
    assert {"checkpoint.pt", "start_1.pt", "best_1.pt"} <= {p.name for p in files}
    assert check_journal(run / "journal") == 1  # child 1 of round 2 was journaled
    for path in files:
        assert read_torch_file(path) is not None
    again = CheapEvaluator()
    resumed = run_search(cfg, run_dir=run, resume=True, evaluator=again, log=quiet)
    assert [(h["arch"], h["accuracy"]) for h in resumed.state.history] == \
        [(h["arch"], h["accuracy"]) for h in whole.state.history]
    assert again.calls == whole.state.global_step - 4  # 3 checkpointed + 1 journaled


def test_plain_data_converts_numpy_scalars_and_refuses_objects(tmp_path: Path) -> None:
    shared = [1, 2]
    data = plain_data({"a": np.float32(0.5), "b": (np.int64(3), shared, shared),
                       "t": torch.ones(2), np.int16(4): {np.bool_(True)}})
    assert data["a"] == 0.5 and type(data["a"]) is float
    assert type(data["b"][0]) is int and data["b"][1] is data["b"][2]
    assert type(next(iter(data[4]))) is bool
    with pytest.raises(TypeError, match=r"x\['agent'\]\['w'\] is a numpy.ndarray"):
        plain_data({"agent": {"w": np.zeros(2)}}, "x")
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(TypeError, match=r"checkpoint.pt\['obj'\] is a .*Payload"):
        atomic_save({"obj": Payload(tmp_path / "M")}, path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_an_old_file_with_numpy_values_is_refused_with_the_way_on(tmp_path: Path,
                                                                  capsys) -> None:
    """A checkpoint written by torch.save with numpy scalars (as before eas wrote plain data)."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"state": {"history": [{"accuracy": np.float64(0.75)}]}, "rng": {}}, path)
    with pytest.raises(UnsafeFileError, match=REWRITE_HINT):
        load_checkpoint(path)
    assert checkpoint_main(["--rewrite-trusted", str(path)]) == 0
    acc = load_checkpoint(path)["state"]["history"][0]["accuracy"]
    assert acc == 0.75 and type(acc) is float
    assert "rewrote" in capsys.readouterr().out


def test_network_files_round_trip_through_the_safe_loader(tmp_path: Path) -> None:
    net = build_network(SMALL, (1, 28, 28), seed=0).eval()
    save_network(net, tmp_path / "net.pt", accuracy=np.float32(0.5), params=np.int64(7))
    back = load_network(tmp_path / "net.pt")
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(back(x), net(x))
    assert back.meta["accuracy"] == 0.5 and back.meta["params"] == 7
