"""The compounding controller (controller.mode = "pool"): its pool, the no-repeat rule,
PPO passes, warm start, and checkpoint/resume of everything it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cheap_config

from eas.agents.base import AgentContext
from eas.agents.controller_pool import NetworkPool
from eas.agents.predictor import AccuracyPredictor, spearman
from eas.agents.reinforce import ReinforceAgent
from eas.agents.reinforce_config import MODE_DEFAULTS, ReinforceConfig
from eas.arch import Architecture, SearchSpace, Tokenizer
from eas.checkpoint import load_checkpoint
from eas.envs.synthetic import SYNTHETIC_TASKS, SyntheticTaskEvaluator
from eas.network import build_network
from eas.search.loop import run_search

START = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"


def _search(tmp_path: Path, name: str, resume: bool = False, **over: str):
    values = {"search.agent": "reinforce", "controller.mode": "pool", "start.arch": START,
              "search.stage1_networks": "12", "search.stage2_networks": "0",
              "search.seed": "4", "search.run_name": name, **over}
    cfg = cheap_config(tmp_path, **values)
    return run_search(cfg, run_dir=tmp_path / name, resume=resume,
                      evaluator=SyntheticTaskEvaluator("deep"), log=lambda _m: None)


def _children(out) -> list[tuple[str, float]]:
    return [(h["arch"], round(h["accuracy"], 12)) for h in out.state.history]


def test_modes_fill_unset_fields_and_explicit_values_win() -> None:
    paper = ReinforceConfig(mode="paper").resolved()
    assert (paper.lr, paper.baseline_mode, paper.pool_size, paper.no_repeat) == (
        2e-3, "ema", 0, False)
    pool = ReinforceConfig(mode="pool", lr=3e-3).resolved()
    assert pool.lr == 3e-3 and pool.baseline_mode == "loo" and pool.pool_size == 5
    assert set(MODE_DEFAULTS["paper"]) == set(MODE_DEFAULTS["pool"])
    with pytest.raises(ValueError, match="mode"):
        ReinforceConfig(mode="fancy")
    with pytest.raises(ValueError, match="pool_select"):
        ReinforceConfig(pool_select="worst")


def test_free_steps_sets_the_episode_length_in_free_mode() -> None:
    assert ReinforceAgent.env_requirements(ReinforceConfig(mode="pool", free=False,
                                                           free_steps=2)) == {}
    assert ReinforceAgent.env_requirements(ReinforceConfig(mode="paper", free=True)) == {
        "schedule": None}
    assert ReinforceAgent.env_requirements(ReinforceConfig(mode="pool", free=True,
                                                           free_steps=2)) == {
        "schedule": None, "free_steps": 2}
    with pytest.raises(ValueError, match="free_steps"):
        ReinforceConfig(free_steps=0)


def test_pool_keeps_the_best_distinct_networks_and_round_trips() -> None:
    pool = NetworkPool(2)
    net = build_network(START, (1, 28, 28), seed=0)
    assert pool.add("a", 0.5, 10, None)
    assert pool.add("b", 0.7, 10, net)
    assert pool.add("c", 0.6, 10, None)  # pushes "a" out
    assert [m["arch"] for m in pool.members] == ["b", "c"]
    assert not pool.add("c", 0.55, 10, None)  # a worse copy of a member changes nothing
    assert not pool.add("d", 0.1, 10, None)
    again = NetworkPool(2)
    again.load_state_dict(pool.state_dict())
    assert [(m["arch"], m["accuracy"]) for m in again.members] == [("b", 0.7), ("c", 0.6)]
    for key, value in net.state_dict().items():
        assert torch.equal(again.members[0]["net"].state_dict()[key], value)
    draws = again.draw(50, np.random.default_rng(0))
    assert {m["arch"] for m in draws} == {"b", "c"}


def test_pareto_pool_keeps_the_front() -> None:
    pool = NetworkPool(5, "pareto")
    pool.add("big", 0.9, 1000, None)
    pool.add("small", 0.8, 10, None)
    pool.add("dominated", 0.7, 500, None)
    assert sorted(m["arch"] for m in pool.members) == ["big", "small"]


def test_pool_mode_compounds_and_never_repeats(tmp_path: Path) -> None:
    out = _search(tmp_path, "pool", **{"search.cache": "true", "controller.free": "false"})
    archs = [a for a, _ in _children(out)]
    assert len(archs) == 12 and len(set(archs)) == 12  # every child a new architecture
    # an episode adds 2 layers (wider, deeper, deeper): deeper children started from children
    start_layers = len(Architecture.parse(START).layers)
    assert max(len(Architecture.parse(a).layers) for a in archs) > start_layers + 2
    # the mode's default: one free step per child, so a child has at most one layer more
    # than a network found before it; the pool the next rounds start from holds children
    free = _search(tmp_path, "free", **{"search.cache": "true"})
    known = [START]
    for arch in (a for a, _ in _children(free)):
        n = len(Architecture.parse(arch).layers)
        assert n <= 1 + max(len(Architecture.parse(k).layers) for k in known)
        known.append(arch)
    assert len(set(known)) == 13
    pool = load_checkpoint(free.run_dir / "checkpoint.pt")["agent"]["pool"]["members"]
    assert pool and {m["arch"] for m in pool} <= set(known[1:])
    paper = _search(tmp_path, "paper", **{"controller.mode": "paper"})
    assert max(len(Architecture.parse(a).layers) for a, _ in _children(paper)) == start_layers + 2


@pytest.mark.parametrize("extra", [{}, pytest.param({"controller.ppo_epochs": "3"},
                                                     marks=pytest.mark.slow),
                                   pytest.param({"controller.pool_select": "pareto"},
                                                marks=pytest.mark.slow)],
                         ids=["reinforce", "ppo", "pareto"])
def test_resumed_pool_run_gives_the_same_children(tmp_path: Path, extra: dict) -> None:
    whole = _search(tmp_path, "whole", **extra)
    part = _search(tmp_path, "part", **{"search.max_rounds": "2", **extra})
    assert not part.finished and len(part.state.history) == 6
    resumed = _search(tmp_path, "part", resume=True, **extra)
    assert _children(resumed) == _children(whole)


def test_warm_start_loads_the_controller(tmp_path: Path) -> None:
    first = _search(tmp_path, "first", **{"search.max_rounds": "2"})
    saved = load_checkpoint(first.run_dir / "checkpoint.pt")["agent"]["controller"]
    space = SearchSpace(filters=(16, 32, 48, 64), fc_units=(64, 128, 256))  # cheap_config's
    ctx = AgentContext(max_layers=50, vocab_size=Tokenizer(space).vocab_size,
                       kernel_sizes=space.kernel_sizes, kinds=("wider", "deeper", "skip"),
                       schedule=("wider", "deeper", "deeper"), steps_per_episode=3,
                       children_per_round=3, seed=0)
    warm = ReinforceAgent(ctx, ReinforceConfig(mode="pool", init=str(first.run_dir)))
    cold = ReinforceAgent(ctx, ReinforceConfig(mode="pool"))
    for key, value in warm.controller.state_dict().items():
        assert torch.equal(value, saved[key])
    assert any(not torch.equal(v, saved[k]) for k, v in cold.controller.state_dict().items())
    with pytest.raises(ValueError, match="no checkpoint at"):
        ReinforceAgent(ctx, ReinforceConfig(init=str(tmp_path / "nothing")))


def test_synthetic_tasks_have_their_optimum_at_the_target() -> None:
    for task in SYNTHETIC_TASKS.values():
        assert task.score(task.target) == pytest.approx(task.optimum)
        assert task.reached(task.score(task.target))
        preset_start = ("C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), "
                        "C(32,3,1), P(3,3,AVG), FC(64), SM(10)")
        assert task.score(preset_start) < task.optimum - 0.05


def test_spearman_and_predictor_learn_a_ranking() -> None:
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 6, size=(40, 8))
    lengths = np.full(40, 8)
    acc = (tokens == 5).mean(1)  # accuracy = share of token 5
    pred = AccuracyPredictor(vocab_size=6, seed=0, steps=150)
    pred.observe(tokens[:30], lengths[:30], acc[:30])
    metrics = pred.observe(tokens[30:], lengths[30:], acc[30:])
    assert metrics["charts/predictor_spearman"] > 0.5  # held-out children ranked
    again = AccuracyPredictor(vocab_size=6, seed=0, steps=150)
    again.load_state_dict(pred.state_dict())
    np.testing.assert_allclose(again.predict(tokens[:5], lengths[:5]),
                               pred.predict(tokens[:5], lengths[:5]))


@pytest.mark.slow
def test_screening_run_reports_its_rank_correlation_and_resumes(tmp_path: Path) -> None:
    extra = {"controller.screen": "3", "controller.predictor_steps": "5"}
    whole = _search(tmp_path, "whole", **extra)
    assert len({a for a, _ in _children(whole)}) == 12
    state = load_checkpoint(whole.run_dir / "checkpoint.pt")["agent"]["predictor"]
    assert len(state["targets"]) == 12 and len(state["correlations"]) == 3
    _search(tmp_path, "part", **{"search.max_rounds": "2", **extra})
    resumed = _search(tmp_path, "part", resume=True, **extra)
    assert _children(resumed) == _children(whole)


def test_a_child_whose_neighbours_are_all_known_moves_to_another_member() -> None:
    space = SearchSpace(filters=(16, 32, 48, 64), fc_units=(64, 128, 256))
    ctx = AgentContext(max_layers=50, vocab_size=Tokenizer(space).vocab_size,
                       kernel_sizes=space.kernel_sizes, kinds=("wider", "deeper", "skip"),
                       schedule=("wider",), steps_per_episode=1, children_per_round=4, seed=0,
                       extra={"input_shape": (1, 28, 28), "space": space})
    agent = ReinforceAgent(ctx, ReinforceConfig(mode="pool", wider_one=True, pool_size=2,
                                                resample_tries=40))
    other = START.replace("FC(64)", "FC(128)")
    agent.pool.add(START, 0.9, 10, None)
    agent.pool.add(other, 0.8, 10, None)
    # the four one-layer widenings of START (C 16->32 twice, C 32->48, FC 64->128)
    layers = [part.strip() for part in START.split(", ")]
    widened = {0: "C(32,3,1)", 2: "C(32,3,1)", 4: "C(48,3,1)", 6: "FC(128)"}
    known = {", ".join(widened[i] if i == j else x for j, x in enumerate(layers))
             for i in widened}
    agent.seen |= known
    nets = agent.start_network()
    assert nets is None  # members without weights (as the stage start is)
    assert [m["arch"] for m in agent._starts] == [other] * 4  # all moved off START
    archs = [p.arch for p in agent._plans]
    assert len(set(archs)) == 4 and not set(archs) & known
    # from START, every proposal is one of `known` (the set above is complete)
    fresh = ReinforceAgent(ctx, ReinforceConfig(mode="pool", wider_one=True, pool_size=1))
    fresh.pool.add(START, 0.9, 10, None)
    fresh.start_network()
    assert {p.arch for p in fresh._plans} <= known


@pytest.mark.parametrize("explore", [True, False])
def test_explore_replaces_a_stuck_controllers_repeats_by_uniform_steps(explore: bool) -> None:
    space = SearchSpace(filters=(16, 32, 48, 64), fc_units=(64, 128, 256))
    ctx = AgentContext(max_layers=50, vocab_size=Tokenizer(space).vocab_size,
                       kernel_sizes=space.kernel_sizes, kinds=("wider", "deeper", "skip"),
                       schedule=("wider",), steps_per_episode=1, children_per_round=4, seed=0,
                       extra={"input_shape": (1, 28, 28), "space": space})
    agent = ReinforceAgent(ctx, ReinforceConfig(mode="pool", pool_size=1, resample_tries=3,
                                                explore=explore, wider_one=False))
    with torch.no_grad():
        agent.controller.wider_head.bias.fill_(-50.0)  # the controller never widens: no change
    agent.pool.add(START, 0.9, 10, None)
    agent.start_network()
    archs = [p.arch for p in agent._plans]
    if explore:
        assert len(set(archs)) == 4 and START not in archs and agent._repeats == 0
    else:
        assert archs == [START] * 4 and agent._repeats == 4
