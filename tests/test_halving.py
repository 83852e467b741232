"""Successive halving (eas.envs.halving): promotions, budgets, fidelity, rewards, wrappers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cheap_config

from eas.config.engine import load_config
from eas.config.sections import ConfigError
from eas.envs import EvalResult, TrainerEvaluator, VectorNetTransformEnv
from eas.envs.halving import HalvingEvaluator, at_budget, rank_rewards, survivors
from eas.envs.journal import Journal
from eas.envs.parallel import ParallelEvaluator
from eas.envs.settings import HalvingConfig
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.search.loop import run_search

SHAPE = (1, 8, 8)


def tiny(width: int) -> torch.nn.Module:
    """A small network whose FC width tells the fake trainer its quality."""
    return build_network(f"C(4,3,1), P(2,2,MAX), FC({width}), SM(10)", SHAPE, seed=0)


def trained_so_far(net: torch.nn.Module) -> int:
    """Budget a network has been trained for: the fake trainer counts it in the BN counter."""
    return int(next(v for k, v in net.state_dict().items() if k.endswith("num_batches_tracked")))


class FakeTrainer:
    """A deterministic stand-in for child training at a budget.

    "Training" for ``budget`` adds ``budget`` to the first BatchNorm's step counter
    (so continuation from earlier weights is visible) and reports
    ``quality * (1 - 0.5 ** (trained / 3))`` with quality = FC width / 1000
    (widths in ``fail`` fail instead). Every call is logged as (width, budget, trained before).
    """

    def __init__(self, budget: int = 1, log: list | None = None, keep_weights: bool = True,
                 fail: tuple[int, ...] = ()) -> None:
        self.budget = budget
        self.log = [] if log is None else log
        self.keep_weights = keep_weights
        self.fail = fail
        self.seed = 0

    def at_budget(self, budget: int) -> FakeTrainer:
        return FakeTrainer(budget, self.log, self.keep_weights, self.fail)

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        width = net.arch.layers[-2].units
        before = trained_so_far(net)
        self.log.append((width, self.budget, before))
        if width in self.fail:
            return EvalResult(0.0, failed=True, reason="diverged", train_time=1.0)
        child = copy.deepcopy(net)
        for k, v in child.state_dict().items():
            if k.endswith("num_batches_tracked"):
                v += self.budget
                break
        trained = trained_so_far(child)
        acc = width / 1000 * (1 - 0.5 ** (trained / 3))
        state = child.state_dict() if self.keep_weights else None
        return EvalResult(acc, train_time=float(self.budget), state_dict=state)


WIDTHS = [30, 90, 10, 70, 50, 20, 100, 40, 80, 60]
"""Ten children; the best three are 100, 90, 80 (indices 6, 1, 8), the best one 100."""


def run_round(evaluator, widths=WIDTHS):
    return evaluator.evaluate_many([tiny(w) for w in widths])


def test_promotes_the_best_fraction_and_trains_them_on_from_their_weights() -> None:
    log: list = []
    halving = HalvingEvaluator(FakeTrainer(log=log), rungs=(1, 3, 9), eta=3)
    assert halving.budgets(10) == [10, 3, 1]
    results = run_round(halving)
    # rung 0: all ten for 1; rung 1: the best three for 2 more; rung 2: the best for 6 more
    assert [(w, b) for w, b, _ in log[:10]] == [(w, 1) for w in WIDTHS]
    assert sorted(log[10:13]) == [(80, 2, 1), (90, 2, 1), (100, 2, 1)]
    assert log[13:] == [(100, 6, 3)]
    fidelity = {w: r.fidelity for w, r in zip(WIDTHS, results)}
    assert fidelity == {100: 9, 90: 3, 80: 3, **{w: 1 for w in WIDTHS if w < 80}}
    assert [r.rung for r in results] == [{1: 0, 3: 1, 9: 2}[fidelity[w]] for w in WIDTHS]
    top = results[WIDTHS.index(100)]
    assert top.accuracy == pytest.approx(0.1 * (1 - 0.5 ** 3))
    assert top.train_time == 9.0  # 1 + 2 + 6 over its rungs
    assert len(top.rung_accuracies) == 3
    # the trained weights came back: the winner has been trained 9 in all
    net = tiny(100)
    net.load_state_dict(top.state_dict)
    assert trained_so_far(net) == 9


def test_rank_reward_orders_by_rung_then_accuracy() -> None:
    results = run_round(HalvingEvaluator(FakeTrainer(), rungs=(1, 3, 9), eta=3))
    rewards = {w: r.reward for w, r in zip(WIDTHS, results)}
    order = sorted(WIDTHS, key=lambda w: -rewards[w])
    assert order == sorted(WIDTHS, reverse=True)  # here quality order = tournament order
    assert rewards[100] == 1.0 and rewards[10] == 0.0
    assert rewards[90] == pytest.approx(1 - 1 / 9)


def test_rank_rewards_ties_and_failures() -> None:
    assert rank_rewards([1, 1, 0, 0], [0.5, 0.5, 0.9, 0.2], [False, False, False, True]) == \
        [pytest.approx(1 - 0.5 / 3), pytest.approx(1 - 0.5 / 3), pytest.approx(1 - 2 / 3), 0.0]
    assert rank_rewards([0], [0.3], [False]) == [0.5]
    assert survivors(10, 3) == 3 and survivors(2, 3) == 1 and survivors(0, 3) == 0


def test_failed_children_are_never_promoted_and_ties_favour_the_earlier() -> None:
    log: list = []
    widths = [100, 90, 80, 80, 40]
    halving = HalvingEvaluator(FakeTrainer(log=log, fail=(100,)), rungs=(1, 2), eta=2)
    results = run_round(halving, widths)
    assert results[0].failed and results[0].fidelity == 1
    assert results[0].reward == 0.0
    promoted = [i for i, r in enumerate(results) if r.fidelity == 2]
    assert promoted == [1, 2]  # floor(5 / 2) = 2: 90 and the first of the two 80s


def test_without_weights_a_promoted_child_is_trained_its_whole_budget_again() -> None:
    log: list = []
    halving = HalvingEvaluator(FakeTrainer(log=log, keep_weights=False), rungs=(1, 4), eta=5)
    results = run_round(halving)
    assert log[10:] == [(90, 4, 0), (100, 4, 0)]  # survivors go in input order
    assert results[WIDTHS.index(100)].fidelity == 4


def test_the_reward_reaches_the_agent_through_the_environment() -> None:
    halving = HalvingEvaluator(FakeTrainer(), rungs=(1, 3), eta=2)
    venv = VectorNetTransformEnv(4, start=tiny(30), input_shape=SHAPE, evaluator=halving,
                                 schedule=("wider",), cache=False, max_layers=50)
    venv.action_space.seed(0)
    venv.reset(seed=0)
    wider = np.zeros((4, 50), dtype=np.int8)
    wider[1, 0] = wider[2, 2] = 1  # widen the conv / the FC layer
    wider[3, [0, 2]] = 1  # both: four distinct children
    _, reward, terminated, _, infos = venv.step(
        {"kind": np.zeros(4, dtype=np.int64), "wider": wider,
         "deeper": np.zeros((4, 3), dtype=np.int64), "skip": np.zeros((4, 3), dtype=np.int64)})
    assert terminated.all()
    finals = infos["final"]
    assert sorted(f["fidelity"] for f in finals) == [1, 1, 3, 3]
    assert list(reward) == [f["child"].reward for f in finals]


def test_with_the_serial_parallel_evaluator_results_are_the_same() -> None:
    plain = run_round(HalvingEvaluator(FakeTrainer(), rungs=(1, 3, 9), eta=3))
    log: list = []
    wrapped = HalvingEvaluator(ParallelEvaluator(FakeTrainer(log=log), backend="serial"),
                               rungs=(1, 3, 9), eta=3)
    via_pool = run_round(wrapped)
    wrapped.close()
    assert len(log) == 14
    for a, b in zip(plain, via_pool):
        assert (a.accuracy, a.fidelity, a.reward) == \
            (b.accuracy, b.fidelity, b.reward)


class OomOnceTrainer(FakeTrainer):
    """Runs out of memory on the first try of width ``oom_width`` at every budget."""

    def __init__(self, budget: int = 1, seen: set | None = None, oom_width: int = 100) -> None:
        super().__init__(budget)
        self.seen = set() if seen is None else seen
        self.oom_width = oom_width

    def at_budget(self, budget: int) -> OomOnceTrainer:
        return OomOnceTrainer(budget, self.seen, self.oom_width)

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        key = (net.arch.layers[-2].units, self.budget)
        if key[0] == self.oom_width and key not in self.seen:
            self.seen.add(key)
            return EvalResult(0.0, failed=True, reason="CUDA out of memory (fake)")
        return super().__call__(net)


def test_retries_of_every_rung_stay_on_the_record() -> None:
    wrapped = HalvingEvaluator(ParallelEvaluator(OomOnceTrainer(), backend="serial"),
                               rungs=(1, 3, 9), eta=3)
    res = run_round(wrapped)
    wrapped.close()
    best = res[WIDTHS.index(100)]  # promoted through all three rungs, one retry at each
    assert best.fidelity == 9 and not best.failed
    assert best.attempts == 4 and len(best.retried) == 3
    assert all("out of memory" in reason for reason in best.retried)
    assert all(r.attempts == 1 and r.retried == [] for r in res if r is not best)


def test_journal_answers_a_replayed_round_without_training(tmp_path: Path) -> None:
    log: list = []
    journal = Journal(tmp_path, HalvingEvaluator(FakeTrainer(log=log), rungs=(1, 3, 9), eta=3))
    journal.begin_round(4)
    first = journal.evaluate_many([tiny(w) for w in WIDTHS])
    assert len(log) == 14
    # a resumed search: a new journal on the same folder replays round 4
    again = Journal(tmp_path, HalvingEvaluator(FakeTrainer(log=log), rungs=(1, 3, 9), eta=3))
    again.begin_round(4)
    second = again.evaluate_many([tiny(w) for w in WIDTHS])
    assert len(log) == 14 and again.reused == 10
    assert [(r.accuracy, r.fidelity, r.reward) for r in first] == \
        [(r.accuracy, r.fidelity, r.reward) for r in second]


def test_at_budget_sets_the_epochs_of_a_trainer_and_refuses_what_it_cannot() -> None:
    base = TrainerEvaluator(data=None, config=TrainConfig(epochs=20, max_batches_per_epoch=30))
    moved = at_budget(base, 3)
    assert moved.config.epochs == 3 and moved.config.max_batches_per_epoch == 30
    assert base.config.epochs == 20
    pooled = at_budget(ParallelEvaluator(base, backend="serial"), 5)
    assert isinstance(pooled, ParallelEvaluator) and pooled.base.config.epochs == 5
    with pytest.raises(TypeError, match="budget"):
        at_budget(lambda net: 0.5, 3)


def test_config_section_and_its_checks() -> None:
    assert not load_config(None, {}).halving.enabled
    cfg = load_config(None, {"halving.rungs": "1,3,9", "halving.eta": "3"})
    assert cfg.halving.rungs == (1, 3, 9) and cfg.halving.enabled
    for bad, field in [({"halving.rungs": "3,1"}, "halving.rungs"),
                       ({"halving.rungs": "2"}, "halving.rungs"),
                       ({"halving.rungs": "1,2", "halving.eta": "1"}, "halving.eta")]:
        with pytest.raises(ConfigError, match=field):
            load_config(None, bad)
    with pytest.raises(ValueError):
        HalvingConfig(rungs=(0, 1))


class CheapBudgetEvaluator:
    """A search stand-in with a budget: accuracy grows with the budget, weights kept."""

    def __init__(self, budget: int = 1, calls: list | None = None) -> None:
        self.budget = budget
        self.calls = [] if calls is None else calls
        self.seed = 0

    def at_budget(self, budget: int) -> CheapBudgetEvaluator:
        return CheapBudgetEvaluator(budget, self.calls)

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        self.calls.append(self.budget)
        h = sum(map(ord, str(net.arch))) % 97 / 97
        acc = 0.5 + 0.3 * h + 0.01 * self.budget
        return EvalResult(acc, train_time=0.01, state_dict=net.state_dict())


@pytest.mark.slow
def test_search_loop_records_fidelity_and_resumes(tmp_path: Path) -> None:
    values = {  # cheap_config's data-free search, one stage of 8 with halving
        "search.children_per_step": "4", "search.stage1_networks": "8",
        "search.stage2_networks": "0", "search.schedule": "wider,deeper",
        "search.run_name": "sh", "search.cache": "false", "halving.rungs": "1,3",
        "halving.eta": "2",
        "search.parent_control": "false",  # evaluator calls are then exactly the children
    }
    calls: list = []
    out = run_search(cheap_config(tmp_path, **values), evaluator=CheapBudgetEvaluator(calls=calls),
                     log=lambda _: None)
    records = out.state.history
    for k in (0, 4):  # per round: its distinct children at 1, the best half 2 more
        distinct = {r["arch"]: r["fidelity"] for r in records[k:k + 4]}
        assert sorted(distinct.values()) == [1] * (len(distinct) - len(distinct) // 2) + \
            [3] * (len(distinct) // 2)
    assert calls[:6] == [1, 1, 1, 1, 2, 2]  # round 1 has four distinct children
    assert all(0.0 <= r["reward"] <= 1.0 for r in records)
    # stopped after one round and resumed: the same children, fidelities and rewards
    values["search.run_name"] = "sh2"
    first = run_search(cheap_config(tmp_path, **values, **{"search.max_rounds": "1"}),
                       evaluator=CheapBudgetEvaluator(), log=lambda _: None)
    assert not first.finished
    resumed = run_search(cheap_config(tmp_path, **values), run_dir=first.run_dir, resume=True,
                         evaluator=CheapBudgetEvaluator(), log=lambda _: None)
    keys = ("arch", "accuracy", "reward", "fidelity")
    assert [[r[k] for k in keys] for r in resumed.state.history] == \
        [[r[k] for k in keys] for r in records]
