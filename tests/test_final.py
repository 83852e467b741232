"""Final training until a plateau and the no-search control (eas.plateau, eas.search.final)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from helpers import FASHION, TINY, CheapEvaluator, cheap_config, quiet, tensorboard_steps
from torch import nn

from eas.cli.search import main
from eas.config.engine import load_config
from eas.config.sections import ConfigError
from eas.data import load_dataset
from eas.network import build_network
from eas.plateau import PlateauRule, epochs_for_seconds, train_to_plateau
from eas.ranking import kendall_tau, rank_average, spearman_rho
from eas.recipe import TrainConfig
from eas.search import final as final_mod
from eas.search.final import format_control
from eas.search.loop import run_search
from eas.training import TrainResult

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- the stopping rule
def test_plateau_rule_counts_checks_without_a_big_enough_gain() -> None:
    rule = PlateauRule(patience=2, min_delta=0.01)
    assert rule.update(0.50) and not rule.stop          # the first value is a best
    assert rule.update(0.52) and rule.best == 0.52      # +2 points: progress
    assert not rule.update(0.525) and not rule.stop     # +0.5 points < min_delta: a miss
    assert not rule.update(0.40) and rule.stop          # two misses in a row: stop
    assert rule.best == 0.52


def test_plateau_rule_resets_its_count_on_progress_and_refuses_bad_settings() -> None:
    rule = PlateauRule(patience=2)
    rule.update(0.5)
    assert not rule.update(0.5) and rule.bad == 1       # equal is not a gain over 0
    assert rule.update(0.6) and rule.bad == 0
    assert not rule.update(float("nan")) and rule.bad == 1
    with pytest.raises(ValueError, match="patience"):
        PlateauRule(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        PlateauRule(min_delta=-0.1)


def test_epochs_for_seconds_is_the_epoch_equivalent_rule() -> None:
    assert epochs_for_seconds(100.0, 3.0) == 33
    assert epochs_for_seconds(99.0, 3.0) == 33          # exact fits count (no float slip)
    assert epochs_for_seconds(1.0, 3.0) == 1            # at least one epoch
    assert epochs_for_seconds(-5.0, 3.0, at_least=0) == 0
    assert epochs_for_seconds(100.0, 3.0, at_most=10) == 10
    with pytest.raises(ValueError, match="epoch_seconds"):
        epochs_for_seconds(10.0, 0.0)


class ScriptedTrainer:
    """Stands in for train_child: cycle k sets the weight to k and scores ``accs[k]``.

    Each epoch "takes" ``epoch_seconds``; a None accuracy is a diverged cycle.
    """

    def __init__(self, accs: list[float | None], epoch_seconds: float = 1.0) -> None:
        self.accs, self.epoch_seconds, self.calls = accs, epoch_seconds, []

    def __call__(self, net: nn.Module, data, config: TrainConfig, *, device=None, seed=0,
                 progress=False) -> TrainResult:
        k = len(self.calls)
        self.calls.append((config.epochs, seed))
        with torch.no_grad():
            net.weight.fill_(float(k))
        acc = self.accs[k]
        return TrainResult(val_accuracy=0.0 if acc is None else acc, train_loss=0.0,
                           train_accuracy=0.0, epochs=config.epochs, steps=0,
                           train_time=config.epochs * self.epoch_seconds, images_per_second=0.0,
                           failed=acc is None, reason=None if acc is not None else "NaN loss")


def run_plateau(trainer: ScriptedTrainer, **kwargs):
    net = nn.Linear(1, 1, bias=False)
    args = {"first_epochs": 2, "growth": 2.0, "patience": 1, "min_delta": 0.01, "test": False,
            "train": trainer, "seed": 10, **kwargs}
    return net, train_to_plateau(net, None, TrainConfig(), **args)


def test_train_to_plateau_stops_at_the_plateau_and_keeps_the_best_weights() -> None:
    trainer = ScriptedTrainer([0.80, 0.85, 0.855, 0.70])
    net, res = run_plateau(trainer)
    # cycles of 2, 4, 8 epochs; the third gains only 0.5 points (< min_delta): stop
    assert [c[0] for c in trainer.calls] == [2, 4, 8]
    assert [c[1] for c in trainer.calls] == [10, 11, 12]          # a new data order each
    assert res.stopped_by == "plateau" and res.epochs == 14 and res.train_time == 14.0
    # the small gain is still the best network: its weights (cycle 2) are kept
    assert res.best_epochs == 14 and res.val_accuracy == 0.855
    assert net.weight.item() == 2.0
    assert [c["improved"] for c in res.cycles] == [True, True, False]


def test_train_to_plateau_restores_an_earlier_cycle_when_the_last_is_worse() -> None:
    trainer = ScriptedTrainer([0.80, 0.70])
    net, res = run_plateau(trainer)
    assert res.stopped_by == "plateau" and res.val_accuracy == 0.80 and res.best_epochs == 2
    assert net.weight.item() == 0.0 and res.epochs == 6


def test_train_to_plateau_respects_the_epoch_and_second_budgets() -> None:
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8])
    _, res = run_plateau(trainer, max_epochs=5)
    # a 2-epoch cycle would leave 3, too few for the next (4): the first takes all 5
    assert [c[0] for c in trainer.calls] == [5] and res.stopped_by == "epochs"
    assert res.epochs == 5
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8])
    _, res = run_plateau(trainer, max_epochs=13)
    assert [c[0] for c in trainer.calls] == [2, 11] and res.epochs == 13
    # 1.5 s per epoch, 10 s: 2 epochs (3 s), then 4 (6 s), then what still fits: 0 -> stop
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8], epoch_seconds=1.5)
    _, res = run_plateau(trainer, max_seconds=10.0)
    assert [c[0] for c in trainer.calls] == [2, 4] and res.stopped_by == "seconds"
    # 12 s: after 4 epochs 2 would fit, too few for the next cycle (8): the second
    # cycle takes all 6 epochs that fit
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8], epoch_seconds=1.5)
    _, res = run_plateau(trainer, max_seconds=12.0)
    assert [c[0] for c in trainer.calls] == [2, 6] and res.train_time == 12.0


def test_train_to_plateau_counts_the_budget_on_the_clock_it_is_given() -> None:
    # the trainer says 1 s per epoch, but the clock (e.g. CPU seconds) ticks 3 per epoch:
    # with max_seconds 20 the clock's count decides: 2 epochs (6), 4 (12), then 0 fit
    ticks = [0.0]
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8], epoch_seconds=1.0)

    def clocked(net, data, config, **kwargs):
        ticks[0] += 3.0 * config.epochs
        return trainer(net, data, config, **kwargs)

    _, res = run_plateau(clocked, max_seconds=20.0, clock=lambda: ticks[0])
    assert [c[0] for c in trainer.calls] == [2, 4] and res.stopped_by == "seconds"
    # without the clock, the trainer's 1 s per epoch lets 2 + 4 run, then the 14 left
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.8], epoch_seconds=1.0)
    _, res = run_plateau(trainer, max_seconds=20.0)
    assert [c[0] for c in trainer.calls] == [2, 4, 14]


def test_train_to_plateau_keeps_the_best_cycle_when_a_later_one_diverges() -> None:
    trainer = ScriptedTrainer([0.8, None])
    net, res = run_plateau(trainer)
    assert res.stopped_by == "failed" and not res.failed and res.reason == "NaN loss"
    assert res.val_accuracy == 0.8 and net.weight.item() == 0.0
    _, res = run_plateau(ScriptedTrainer([None]))
    assert res.failed and res.test_accuracy is None


# ---------------------------------------------------------------------- configuration
def test_plateau_settings_are_checked() -> None:
    # the plateau rule on the whole training set: the validation split stays held out
    cfg = load_config(None, {"search.final_patience": "2", "search.final_full_data": "true"})
    assert cfg.search.final_patience == 2 and cfg.search.final_full_data
    with pytest.raises(ConfigError, match="search.final_growth"):
        load_config(None, {"search.final_growth": "0.5"})
    with pytest.raises(ConfigError, match="search.control_seconds"):
        load_config(None, {"search.control_seconds": "0"})
    cfg = load_config(None, {"search.final_patience": "2", "search.final_full_data": "false",
                             "search.final_budget_share": "0.5"})
    assert cfg.search.final_patience == 2 and cfg.search.final_budget_share == 0.5


def test_format_control_puts_the_final_network_beside_the_control() -> None:
    text = format_control([{"rank": 1, "trained_val_accuracy": 0.9, "test_accuracy": 0.91,
                            "epochs": 12, "seconds": 50.0, "cpu_seconds": 90.0}],
                          {"val_accuracy": 0.88, "test_accuracy": 0.89, "epochs": 40,
                           "seconds": 149.0, "cpu_seconds": 290.0, "clock": "cpu"}, 100.0, 200.0)
    final_line, control_line = text.splitlines()[2:]
    assert final_line.split()[3:8] == ["90.00", "91.00", "12", "150", "290"]
    assert control_line.split()[:7] == ["no-search", "control", "88.00", "89.00", "40", "149",
                                        "290"]
    assert control_line.endswith("equal cpu time)")


# ---------------------------------------------------------------------- end to end
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                   reason="needs the Debian Fashion-MNIST package")


@needs_fashion
def test_no_search_control_spends_the_run_budget_in_epochs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The control's epochs are its budget over the measured seconds per epoch."""
    monkeypatch.setattr(final_mod, "measure_epoch_seconds", lambda *a, **k: 3.0)
    data = load_dataset("fashion-mnist", val_size=100, train_subset=128, seed=0, device="cpu")
    cfg = cheap_config(tmp_path, **{"search.no_search_control": "true",
                                    "search.control_seconds": "10", "child.batch_size": "32"})
    out = run_search(cfg, evaluator=CheapEvaluator(), data=data, log=quiet)
    ctrl = out.summary["no_search_control"]
    assert ctrl["budget_seconds"] == 10.0 and ctrl["epoch_seconds"] == 3.0
    assert ctrl["epochs"] == 3                      # floor(10 s / 3 s)
    assert 0.0 <= ctrl["val_accuracy"] <= 1.0 and 0.0 <= ctrl["test_accuracy"] <= 1.0
    assert ctrl["arch"] == out.state.starts[0]["arch"]
    summary = json.loads((out.run_dir / "summary.json").read_text())
    assert summary["no_search_control"]["epochs"] == 3
    assert tensorboard_steps(out.run_dir, "charts/no_search_control_test_accuracy") == [9]
    assert (out.run_dir / "no_search_control.pt").is_file()


@needs_fashion
def test_no_search_control_defaults_to_the_run_seconds(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(final_mod, "measure_epoch_seconds", lambda *a, **k: 1e6)
    data = load_dataset("fashion-mnist", val_size=100, train_subset=128, seed=0, device="cpu")
    cfg = cheap_config(tmp_path, **{"search.no_search_control": "true"})
    lines: list[str] = []
    out = run_search(cfg, evaluator=CheapEvaluator(), data=data, log=lines.append)
    ctrl = out.summary["no_search_control"]
    assert 0 < ctrl["budget_seconds"] <= out.summary["elapsed_seconds"]
    assert ctrl["epochs"] == 1                      # a budget shorter than an epoch: one epoch
    assert any(line.startswith("no-search control: the start architecture") for line in lines)
    assert ctrl["clock"] == "wall" and ctrl["cpu_seconds"] >= 0
    table = next(line for line in lines if "no-search control  " in line)  # the end table
    assert "(start architecture from scratch, equal wall time)" in table


@needs_fashion
def test_no_search_control_can_count_cpu_seconds(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def measure(*args, clock, **kwargs):
        seen["clock"] = clock
        return 1e6

    monkeypatch.setattr(final_mod, "measure_epoch_seconds", measure)
    data = load_dataset("fashion-mnist", val_size=100, train_subset=128, seed=0, device="cpu")
    cfg = cheap_config(tmp_path, **{"search.no_search_control": "true",
                                    "search.control_clock": "cpu"})
    out = run_search(cfg, evaluator=CheapEvaluator(), data=data, log=quiet)
    ctrl = out.summary["no_search_control"]
    assert seen["clock"] is time.process_time and ctrl["clock"] == "cpu"
    assert 0 < ctrl["budget_seconds"] <= out.summary["cpu_seconds"]


@pytest.mark.slow
@needs_fashion
def test_final_training_to_a_plateau_end_to_end(tmp_path: Path) -> None:
    argv = TINY + ["--search.final_top_k", "1", "--search.final_epochs", "1",
                   "--search.final_full_data", "false", "--search.final_patience", "1",
                   "--search.final_max_epochs", "3", "--search.runs_dir", str(tmp_path),
                   "--search.run_name", "plateau"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "plateau" / "summary.json").read_text())
    fin = summary["final"][0]
    assert fin["stopped_by"] in ("plateau", "epochs") and 1 <= fin["epochs"] <= 3
    assert [c["epochs"] for c in fin["cycles"]] == [1, 2][: len(fin["cycles"])]
    assert fin["trained_val_accuracy"] == max(c["val_accuracy"] for c in fin["cycles"])
    assert 0.0 <= summary["top"][0]["test_accuracy"] <= 1.0
    assert tensorboard_steps(tmp_path / "plateau", "charts/final_val_accuracy_1") == [6]


# ---------------------------------------------------------------------- rank correlation
def test_rank_correlations_match_hand_computed_values_with_ties() -> None:
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    assert rank_average(y) == [1.0, 2.0, 3.5, 5.0, 3.5]
    # ranks of y: 1, 2, 3.5, 5, 3.5 -> cov 8, var 10 and 9.5; 8 concordant, 1 discordant, 1 tie
    assert spearman_rho(x, y) == pytest.approx(8 / (10 * 9.5) ** 0.5)
    assert kendall_tau(x, y) == pytest.approx(7 / (10 * 9) ** 0.5)
    assert kendall_tau(x, x[::-1]) == -1.0 and spearman_rho(x, x) == pytest.approx(1.0)
    assert spearman_rho(x, [1] * 5) != spearman_rho(x, [1] * 5)  # constant: NaN
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1])


@needs_fashion
def test_measure_epoch_seconds_leaves_out_the_per_call_costs() -> None:
    """The difference of a short and a twice as long run is the cost of the extra batches."""
    data = load_dataset("fashion-mnist", val_size=100, train_subset=128, seed=0, device="cpu")
    ticks = iter([0.0, 5.0, 5.0, 13.0])  # run of 2 batches: 5 s; of 4 batches: 8 s
    net = build_network("C(8,3,1), P(2,2,MAX), FC(16), SM(10)", data.input_shape, seed=0)
    recipe = TrainConfig(batch_size=32, epochs=1)
    # 128 images / 32 = 4 batches per epoch, timed runs of 2 and 4: (8 - 5) / 2 per batch
    assert final_mod.measure_epoch_seconds(net, data, recipe, clock=lambda: next(ticks)) == 6.0


# ---------------------------------------------------------------------- cost-aware ranking
def test_rank_by_reward_orders_the_best_networks_by_a_cost_constrained_reward(
        tmp_path: Path) -> None:
    # the same search (same children) ranked two ways; the hard FLOPs-constrained reward
    # divides a child's accuracy by how far it is over the target
    flops = {"objectives.reward": "constrained", "objectives.cost": "flops",
             "objectives.target": "300000", "objectives.alpha": "0", "objectives.beta": "-1",
             "search.keep_best": "9"}
    by_acc = run_search(cheap_config(tmp_path, **flops, **{"search.run_name": "acc"}),
                        evaluator=CheapEvaluator(), log=quiet)
    by_reward = run_search(cheap_config(tmp_path, **flops, **{"search.run_name": "reward",
                                                               "search.rank_by": "reward"}),
                           evaluator=CheapEvaluator(), log=quiet)
    # stage 1 samples the same children; stage 2 starts from the best, which differs
    hist = [(r["arch"], r["accuracy"], r["reward"]) for r in by_acc.state.history]
    assert hist[:6] == [(r["arch"], r["accuracy"], r["reward"])
                        for r in by_reward.state.history][:6]
    accs = [b["accuracy"] for b in by_acc.state.best]
    rewards = [b["reward"] for b in by_reward.state.best]
    assert accs == sorted(accs, reverse=True) and rewards == sorted(rewards, reverse=True)
    for b in by_reward.state.best:  # the reward is the accuracy scaled down by the FLOPs
        assert b["reward"] == pytest.approx(b["accuracy"] * min(1.0, 300000 / b["flops"]))
    # the two orders differ on this search: the cost changes which network comes first
    assert by_acc.state.best[0]["arch"] != by_reward.state.best[0]["arch"]


def test_rank_by_is_checked() -> None:
    with pytest.raises(ConfigError, match="search.rank_by"):
        load_config(None, {"search.rank_by": "flops"})
