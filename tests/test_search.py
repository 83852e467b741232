"""The search loop: end to end, outputs, resume, atomic checkpoints, determinism."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import FASHION, TINY, CheapEvaluator, cheap_config, quiet, tensorboard_steps

from eas.checkpoint import atomic_save, load_checkpoint, load_network, save_network
from eas.cli import search as train_controller
from eas.cli.search import main
from eas.config.engine import load_config
from eas.network import build_network
from eas.reports import summary as report
from eas.reports.summary import plot_progress, summary_rows, top_architectures, write_summary
from eas.search.loop import run_search
from eas.search.state import CHECKPOINT

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- end to end
def check_run_folder(run: Path, children: int) -> dict:
    assert list(run.glob("events.out.tfevents.*"))
    for name in ("summary.json", "summary.csv", "progress.png", CHECKPOINT, "config.toml",
                 "best_1.pt", "start_1.pt", "start_2.pt"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["children"] == children and summary["finished"]
    assert summary["distinct_children"] == len({h["arch"] for h in summary["history"]})
    assert 1 <= summary["distinct_children"] <= children
    assert (run / "summary.csv").read_text().startswith("rank,arch,val_accuracy")
    assert tensorboard_steps(run, "charts/child_accuracy") == list(range(1, children + 1))
    assert tensorboard_steps(run, "charts/best_accuracy") == list(range(2, children + 1, 2))
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["state"]["done"] and len(ckpt["state"]["history"]) == children
    assert [st["stage"] for st in ckpt["state"]["starts"]] == [1, 2]
    net = load_network(run / "best_1.pt")
    assert str(net.arch) == summary["top"][0]["arch"]
    return summary


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_command_runs_a_tiny_search_end_to_end(tmp_path: Path) -> None:
    argv = TINY + ["--search.final_top_k", "0", "--search.runs_dir", str(tmp_path),
                   "--search.run_name", "e2e"]
    assert main(argv) == 0
    check_run_folder(tmp_path / "e2e", 6)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_command_with_final_training_reports_test_accuracy(tmp_path: Path) -> None:
    argv = TINY + ["--search.final_top_k", "1", "--search.final_epochs", "1",
                   "--search.final_full_data", "false", "--search.runs_dir", str(tmp_path),
                   "--search.run_name", "e2e"]
    assert main(argv) == 0
    summary = check_run_folder(tmp_path / "e2e", 6)
    assert (tmp_path / "e2e" / "final_1.pt").is_file()
    assert 0.0 <= summary["top"][0]["test_accuracy"] <= 1.0
    assert summary["final"][0]["epochs"] == 1


# ---------------------------------------------------------------------- resume
def test_resume_continues_the_step_count(tmp_path: Path) -> None:
    cfg = cheap_config(tmp_path, **{"search.max_rounds": "1"})
    first = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    assert not first.finished and first.state.global_step == 3
    run = first.run_dir
    # resume through the command line's config handling: the saved config + an override
    cfg2 = load_config(run / "config.toml", {"search.max_rounds": "none"})
    second = run_search(cfg2, run_dir=run, resume=True, evaluator=CheapEvaluator(), log=quiet)
    assert second.finished
    steps = [rec["step"] for rec in second.state.history]
    assert steps == list(range(1, 10))  # 6 + 3 children, numbered on from where it stopped
    assert [rec["stage"] for rec in second.state.history] == [1] * 6 + [2] * 3
    assert tensorboard_steps(run, "charts/child_accuracy") == list(range(1, 10))


def test_resume_by_name_on_the_command_line(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = train_controller.run_search
    calls = []

    def fake_run_search(cfg, **kwargs):
        calls.append((cfg, kwargs))
        return real(cfg, evaluator=CheapEvaluator(), log=quiet, **kwargs)

    monkeypatch.setattr(train_controller, "run_search", fake_run_search)
    cfg = cheap_config(tmp_path, **{"search.max_rounds": "1"})
    real(cfg, evaluator=CheapEvaluator(), log=quiet)
    monkeypatch.chdir(tmp_path.parent)
    code = main(["--resume", "cheap", "--search.runs_dir", str(tmp_path),
                 "--search.max_rounds", "none"])
    assert code == 0
    cfg_used, kwargs = calls[-1]
    assert kwargs["resume"] is True and Path(kwargs["run_dir"]) == tmp_path / "cheap"
    assert cfg_used.search.stage1_networks == 6  # from the run's saved config
    assert load_checkpoint(tmp_path / "cheap" / CHECKPOINT)["state"]["global_step"] == 9


def test_kill_mid_round_loses_only_the_child_in_training(tmp_path: Path) -> None:
    reference = run_search(cheap_config(tmp_path / "ref"), evaluator=CheapEvaluator(),
                           log=quiet)
    # Killed while training the 5th child (round 2, its 2nd child): the 4th is journaled.
    killer = CheapEvaluator(interrupt_at=5)
    # no parent control: the evaluator's calls are then exactly the children
    cfg = cheap_config(tmp_path / "killed", **{"search.parent_control": "false"})
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, evaluator=killer, log=quiet)
    run = tmp_path / "killed" / "cheap"
    assert load_checkpoint(run / CHECKPOINT)["state"]["global_step"] == 3
    assert len(list((run / "journal").glob("*.pt"))) == 1
    again = CheapEvaluator()
    resumed = run_search(cfg, run_dir=run, resume=True, evaluator=again, log=quiet)
    # round 2 replays identically: its first child comes from the journal
    assert again.calls == reference.state.global_step - 4
    strip = [{k: v for k, v in r.items() if k != "train_time"} for r in resumed.state.history]
    ref = [{k: v for k, v in r.items() if k != "train_time"} for r in reference.state.history]
    assert strip == ref
    assert not list((run / "journal").glob("*.pt"))


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_children(tmp_path: Path) -> None:
    a = run_search(cheap_config(tmp_path / "a"), evaluator=CheapEvaluator(), log=quiet)
    b = run_search(cheap_config(tmp_path / "b"), evaluator=CheapEvaluator(), log=quiet)
    c = run_search(cheap_config(tmp_path / "c", **{"search.seed": "7"}),
                   evaluator=CheapEvaluator(), log=quiet)
    archs = [r["arch"] for r in a.state.history]
    assert archs == [r["arch"] for r in b.state.history]
    assert archs != [r["arch"] for r in c.state.history]


@pytest.mark.parametrize("agent", ["random", "hill_climbing"])
def test_other_agents_run(tmp_path: Path, agent: str) -> None:
    cfg = cheap_config(tmp_path, **{"search.agent": agent, "hill_climbing.n_neigh": "3",
                                    "hill_climbing.n_nm": "2", "hill_climbing.n_steps": "2"})
    out = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    assert out.finished and out.state.global_step > 0
    assert (out.run_dir / "best_1.pt").is_file()


# ---------------------------------------------------------------------- files
def test_atomic_save_keeps_the_old_file_on_failure(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / CHECKPOINT
    atomic_save({"round": 1, "w": torch.arange(10)}, path)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial garbage")  # half a file reaches the disk, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"round": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["round"] == 1
    assert os.listdir(tmp_path) == [CHECKPOINT]  # no temporary file left behind


def test_load_network_round_trip(tmp_path: Path) -> None:
    net = build_network("C(16,3,1), C(32,5,1), S(0,1,CAT), P(2,2,MAX), FC(64), SM(10)",
                        (1, 28, 28), dropout=0.2, seed=3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    save_network(net, tmp_path / "best_1.pt", accuracy=0.9)
    again = load_network(tmp_path / "best_1.pt")
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    assert str(again.arch) == str(net.arch) and again.dropout == 0.2
    assert again.meta["accuracy"] == 0.9


def test_reports(tmp_path: Path) -> None:
    history = [
        {"step": i + 1, "stage": 1 if i < 6 else 2, "arch": f"A{i % 4}", "accuracy": 0.5 + i / 40,
         "params": 1000 * i, "flops": 10**6 * i, "failed": i == 3}
        for i in range(9)
    ]
    top = top_architectures(history, 3)
    assert [r["arch"] for r in top] == ["A0", "A3", "A2"]  # A3's failed try is ignored
    rows = summary_rows(top, {"A0": {"test_accuracy": 0.8}})
    write_summary(tmp_path, {"run_name": "x"}, rows)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["top"][0]["test_accuracy"] == 0.8
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 4
    plot_progress(history, tmp_path / "progress.png", start_accuracies=[0.4, 0.6])
    assert (tmp_path / "progress.png").stat().st_size > 1000


def test_progress_plot_draws_the_parent_controls(tmp_path, monkeypatch):
    history = [{"step": i + 1, "stage": 1 if i < 3 else 2, "arch": f"A{i}",
                "accuracy": 0.80 + i / 100, "failed": False} for i in range(6)]
    seen = {}

    def capture(fig, path):
        ax = fig.axes[0]
        seen["labels"] = ax.get_legend_handles_labels()[1]
        seen["ylim"] = ax.get_ylim()
        return Path(path)

    monkeypatch.setattr(report, "save_figure", capture)
    plot_progress(history, tmp_path / "p.png", start_accuracies=[0.79, 0.82],
                  control_accuracies=[0.70, None])
    assert "stage 1 parent control" in seen["labels"]
    assert "stage 2 parent control" not in seen["labels"]  # none measured for stage 2
    assert seen["ylim"][0] < 70.0  # the control is inside the plot
