"""N stages, the parent control and the child-seconds budget (eas.search.stages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CheapEvaluator, cheap_config, quiet, tensorboard_steps

from eas.checkpoint import load_checkpoint, network_from_record
from eas.config.engine import load_config
from eas.config.sections import ConfigError
from eas.search.loop import run_search
from eas.search.stages import stage_budgets, stage_start_epochs

HC = {"hill_climbing.n_neigh": "3", "hill_climbing.n_nm": "2", "hill_climbing.n_steps": "20"}


def three_stages(tmp_path: Path, agent: str = "reinforce", **overrides: str):
    """Three stages of 6, 3 and 3 children (rounds of 3), no data needed."""
    values = {"search.stages": "6,3,3", "search.agent": agent, **overrides}
    if agent == "hill_climbing":
        values.update(HC)
    return cheap_config(tmp_path, **values)


def children(outcome) -> list[tuple[int, str, float]]:
    return [(h["stage"], h["arch"], h["accuracy"]) for h in outcome.state.history]


def test_stage_budgets_default_to_the_two_paper_fields() -> None:
    cfg = load_config(None, {"search.stage1_networks": "7", "search.stage2_networks": "0",
                             "search.stage1_best_epochs": "4"})
    assert stage_budgets(cfg.search) == (7, 0)
    assert stage_start_epochs(cfg.search, 2) == 4
    cfg = load_config(None, {"search.stages": "5,4,3", "search.stage_start_epochs": "1,2"})
    assert stage_budgets(cfg.search) == (5, 4, 3)
    assert [stage_start_epochs(cfg.search, k) for k in (2, 3)] == [1, 2]


def test_start_networks_train_at_start_lr_or_the_child_lr() -> None:
    for over, lr in (({}, 0.02), ({"start.lr": "0.05"}, 0.05)):
        cfg = load_config(None, {"child.lr": "0.02", "child.max_batches_per_epoch": "30", **over})
        recipe = cfg.start.recipe(cfg.child, 3)
        assert recipe.lr == pytest.approx(lr)
        assert recipe.epochs == 3 and recipe.max_batches_per_epoch is None  # full epochs
        assert recipe.momentum == cfg.child.momentum  # the rest is the child recipe


@pytest.mark.parametrize("over, field", [
    ({"search.stages": "4,0"}, "search.stages"),
    ({"search.stages": "4,4", "search.stage_start_epochs": "1,1"}, "search.stage_start_epochs"),
    ({"search.max_child_seconds": "0"}, "search.max_child_seconds"),
])
def test_bad_stage_values_name_the_field(over: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, over)
    assert str(err.value).startswith(f"{field}:")


@pytest.mark.parametrize("agent", ["reinforce", "random", "hill_climbing"])
def test_three_stages_each_start_from_the_best_so_far(tmp_path: Path, agent: str) -> None:
    out = run_search(three_stages(tmp_path, agent), evaluator=CheapEvaluator(), log=quiet)
    assert out.finished
    stages = [h["stage"] for h in out.state.history]
    assert stages == [1] * 6 + [2] * 3 + [3] * 3
    starts = out.state.starts
    assert len(starts) == 3 and all((out.run_dir / f"start_{k}.pt").is_file() for k in (1, 2, 3))
    for k in (2, 3):  # stage k starts from the best child of stages < k
        earlier = [h for h in out.state.history if h["stage"] < k]
        best = max(earlier, key=lambda h: h["accuracy"])
        assert starts[k - 1]["arch"] == best["arch"]
        assert starts[k - 1]["accuracy"] == best["accuracy"]
    assert [c["stage"] for c in out.state.parent_controls] == [1, 2, 3]


def test_the_controller_keeps_learning_across_stages(tmp_path: Path) -> None:
    out = run_search(three_stages(tmp_path), evaluator=CheapEvaluator(), log=quiet)
    assert out.state.rounds == 4
    # one agent for the whole search: REINFORCE updated once per round of every stage
    agent = load_checkpoint(out.run_dir / "checkpoint.pt")["agent"]
    assert agent["updates"] == 4


def test_parent_control_is_reported(tmp_path: Path) -> None:
    out = run_search(three_stages(tmp_path), evaluator=CheapEvaluator(), log=quiet)
    summary = json.loads((out.run_dir / "summary.json").read_text())
    rows = summary["stages"]
    assert [r["stage"] for r in rows] == [1, 2, 3]
    assert [r["children"] for r in rows] == [6, 3, 3]
    evaluator = CheapEvaluator()
    for row, start in zip(rows, out.state.starts):
        # the cheap evaluator scores the architecture: the control is the start's score
        assert row["parent_control_accuracy"] == evaluator(network_from_record(start)).accuracy
        assert row["gain_over_parent_control"] == pytest.approx(
            row["best_child_accuracy"] - row["parent_control_accuracy"])
    assert len(tensorboard_steps(out.run_dir, "charts/parent_control_accuracy")) == 3
    assert summary["child_seconds"] == pytest.approx(12 * 0.01)


def test_parent_control_can_be_switched_off(tmp_path: Path) -> None:
    ev = CheapEvaluator()
    out = run_search(three_stages(tmp_path, **{"search.parent_control": "false"}),
                     evaluator=ev, log=quiet)
    assert out.state.parent_controls == [] and ev.calls == 12


@pytest.mark.parametrize("agent", ["reinforce", "random", "hill_climbing"])
def test_three_stages_stopped_and_resumed_give_the_same_children(tmp_path: Path,
                                                                 agent: str) -> None:
    whole = run_search(three_stages(tmp_path / "whole", agent), evaluator=CheapEvaluator(),
                       log=quiet)
    cfg = three_stages(tmp_path / "parts", agent, **{"search.max_rounds": "1"})
    part = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    invocations = 1
    while not part.finished:  # one round per invocation: stops mid stage 1, at each stage end
        cfg = load_config(part.run_dir / "config.toml", {"search.max_rounds": "1"})
        part = run_search(cfg, run_dir=part.run_dir, resume=True, evaluator=CheapEvaluator(),
                          log=quiet)
        invocations += 1
    assert invocations >= 4
    assert children(part) == children(whole)
    assert [s["arch"] for s in part.state.starts] == [s["arch"] for s in whole.state.starts]
    assert part.state.parent_controls == whole.state.parent_controls


def test_max_child_seconds_ends_the_sampling(tmp_path: Path) -> None:
    # 0.01 s per cheap child: the budget is spent after the round that reaches 0.05 s
    out = run_search(three_stages(tmp_path, **{"search.max_child_seconds": "0.05"}),
                     evaluator=CheapEvaluator(), log=quiet)
    assert out.finished and out.state.global_step == 6
    assert {h["stage"] for h in out.state.history} == {1}


class CpuCheapEvaluator(CheapEvaluator):
    """The cheap evaluator reporting 0.001 training CPU seconds per child (0.01 wall)."""

    def __call__(self, net):
        result = super().__call__(net)
        result.train_cpu_time = 0.001
        return result


@pytest.mark.parametrize("clock,children", [("wall", 6), ("cpu", 12)])
def test_child_clock_chooses_what_the_budget_counts(tmp_path: Path, clock: str,
                                                    children: int) -> None:
    """``search.child_clock = "cpu"`` sums the children's train_cpu_time (here a tenth of
    their train_time): the 0.05 s that end the sampling after 6 children on the wall clock
    last through all three stages (12 children, 0.012 CPU seconds) on the CPU clock."""
    out = run_search(three_stages(tmp_path, **{"search.max_child_seconds": "0.05",
                                               "search.child_clock": clock}),
                     evaluator=CpuCheapEvaluator(), log=quiet)
    assert out.state.global_step == children
    summary = json.loads((out.run_dir / "summary.json").read_text())
    assert summary["child_clock"] == clock
    per_child = 0.01 if clock == "wall" else 0.001
    assert summary["child_seconds"] == pytest.approx(children * per_child)
