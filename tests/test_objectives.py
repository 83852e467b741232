"""Objectives (params, FLOPs, latency), the reward functions and the [objectives] config."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import CheapEvaluator, cheap_config, quiet

from eas.config.engine import load_config
from eas.config.sections import ConfigError
from eas.envs import (
    ConstrainedReward,
    EvalResult,
    NetTransformEnv,
    ObjectivesConfig,
    ObjectivesEvaluator,
    PaperReward,
    evaluate_batch,
    make_reward,
    paper_reward,
)
from eas.network import build_network, count_parameters
from eas.objectives import cost_objectives, measure_latency
from eas.search.loop import run_search
from eas.shapes import count_flops

ARCH = "C(8,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), FC(32), SM(10)"


def fixed(acc: float):
    """An evaluator returning a fixed accuracy and the untrained weights."""
    def evaluate(net: torch.nn.Module) -> EvalResult:
        return EvalResult(accuracy=acc, train_time=0.0,
                          state_dict={k: v.clone() for k, v in net.state_dict().items()})
    return evaluate


def test_paper_reward_is_the_default_and_unchanged() -> None:
    r = PaperReward()
    for acc in (0.0, 0.3, 0.9, 0.999, 1.0):
        assert r(acc, False, {}) == paper_reward(acc) == pytest.approx(
            math.tan(min(acc, 0.999) * math.pi / 2))
    assert r(0.9, True, {}) == 0.0
    env = NetTransformEnv(ARCH, evaluator=fixed(0.8), schedule=("wider",), max_layers=8)
    assert isinstance(env.reward_fn, PaperReward)


def test_env_reward_paper_and_constrained() -> None:
    for reward, expect in [(None, lambda acc, p: math.tan(acc * math.pi / 2)),
                           (ConstrainedReward("params", 1000.0, alpha=-0.07, beta=-0.07),
                            lambda acc, p: acc * (p / 1000.0) ** -0.07)]:
        env = NetTransformEnv(ARCH, evaluator=fixed(0.8), schedule=("wider",), max_layers=8,
                              reward=reward, noise=False)
        env.reset(seed=0)
        env.action_space.seed(0)
        _, r, terminated, _, info = env.step(env.action_space.sample())
        assert terminated
        assert r == pytest.approx(expect(0.8, info["params"]))


def test_constrained_reward_soft_and_hard() -> None:
    soft = ConstrainedReward("flops", 100.0)
    assert soft(0.9, False, {"flops": 100}) == pytest.approx(0.9)
    assert soft(0.9, False, {"flops": 200}) == pytest.approx(0.9 * 2 ** -0.07)
    assert soft(0.9, False, {"flops": 50}) == pytest.approx(0.9 * 0.5 ** -0.07)
    assert soft(0.9, True, {"flops": 50}) == 0.0
    hard = ConstrainedReward("params", 100.0, alpha=0.0, beta=-1.0)
    assert hard(0.9, False, {"params": 50}) == pytest.approx(0.9)  # within budget: no bonus
    assert hard(0.9, False, {"params": 300}) == pytest.approx(0.3)  # 3x over: a third
    tan = ConstrainedReward("params", 100.0, base="tan")
    assert tan(0.5, False, {"params": 100}) == pytest.approx(1.0)
    lat = ConstrainedReward("latency_ms", 2.0)
    assert lat(0.5, False, {"latency_ms": 4.0}) == pytest.approx(0.5 * 2 ** -0.07)
    with pytest.raises(ValueError, match="latency"):
        lat(0.5, False, {"params": 3})
    for kwargs, match in [({"cost": "size"}, "unknown cost"), ({"target": 0}, "target"),
                          ({"base": "x"}, "base"), ({"alpha": 0.1}, "alpha")]:
        args = {"cost": "params", "target": 10.0, **kwargs}
        with pytest.raises(ValueError, match=match):
            ConstrainedReward(args.pop("cost"), args.pop("target"), **args)


def test_objectives_config_section() -> None:
    cfg = load_config(None, {"objectives.reward": "constrained", "objectives.target": "1e5",
                             "objectives.cost": "flops", "objectives.beta": "-1"})
    reward = make_reward(cfg.objectives)
    assert isinstance(reward, ConstrainedReward) and reward.cost == "flops" and reward.beta == -1
    assert isinstance(make_reward(ObjectivesConfig()), PaperReward)
    bad = [({"objectives.reward": "constrained"}, "objectives.target"),
           ({"objectives.reward": "best"}, "objectives.reward"),
           ({"objectives.reward": "constrained", "objectives.target": "5",
             "objectives.cost": "latency_ms"}, "objectives.latency"),
           ({"objectives.latency_repeats": "0"}, "objectives.latency_repeats")]
    for values, field in bad:
        with pytest.raises(ConfigError) as err:
            load_config(None, values)
        assert str(err.value).startswith(field + ":"), str(err.value)


def test_cost_objectives_and_latency() -> None:
    net = build_network(ARCH, seed=0)
    obj = cost_objectives(net)
    assert obj == {"params": count_parameters(net), "flops": count_flops(ARCH, (1, 28, 28))}
    ms = measure_latency(net, (1, 28, 28), batch_size=2, repeats=3, warmup=1)
    assert ms > 0 and math.isfinite(ms)
    assert net.training  # the network itself is untouched
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(net, (1, 28, 28), repeats=0)


def test_objectives_evaluator_adds_costs_and_keeps_failures() -> None:
    nets = [build_network(ARCH, seed=0), build_network("C(4,3,1), P(2,2,MAX), FC(16), SM(10)",
                                                       seed=0),
            build_network("C(4,3,1), P(2,2,MAX), FC(8), SM(10)", seed=0)]

    def inner(net):
        if "FC(16)" in str(net.arch):
            raise RuntimeError("boom")
        if "FC(8)" in str(net.arch):
            return EvalResult(0.0, failed=True, reason="diverged")
        return 0.7

    ev = ObjectivesEvaluator(inner, latency=True, repeats=2, warmup=0)
    seen: list[int] = []  # each child reported the moment it is known, in order
    res = evaluate_batch(ev, nets, on_result=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2]
    assert res[0].accuracy == 0.7 and not res[0].failed
    assert res[0].params == count_parameters(nets[0])
    assert res[0].flops == count_flops(nets[0].arch, (1, 28, 28))
    assert res[0].latency_ms > 0
    assert res[1].failed and "boom" in res[1].reason
    assert res[2].failed and res[2].latency_ms is None
    assert res[2].params == count_parameters(nets[2])
    one = ObjectivesEvaluator(fixed(0.6))(nets[0])
    assert one.accuracy == 0.6 and one.latency_ms is None

    class Batched:
        def __call__(self, net):
            return 0.5

        def evaluate_many(self, batch):
            return [EvalResult(0.5 + 0.1 * i) for i in range(len(batch))]

    many = ObjectivesEvaluator(Batched()).evaluate_many(nets[:2])
    assert [r.accuracy for r in many] == [0.5, 0.6]
    assert many[1].params == count_parameters(nets[1])


def test_latency_reaches_the_env_reward() -> None:
    ev = ObjectivesEvaluator(fixed(0.8), latency=True, repeats=2, warmup=0)
    env = NetTransformEnv(ARCH, evaluator=ev, schedule=("wider",), max_layers=8,
                          reward=ConstrainedReward("latency_ms", 1e6), noise=False)
    env.reset(seed=0)
    env.action_space.seed(0)
    _, r, _, _, info = env.step(env.action_space.sample())
    lat = info["latency_ms"]
    assert r == pytest.approx(0.8 * (lat / 1e6) ** -0.07)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_search_uses_the_configured_reward_and_records_latency(tmp_path) -> None:
    cfg = cheap_config(tmp_path, **{"objectives.reward": "constrained",
                                    "objectives.target": "50000", "objectives.beta": "-1",
                                    "objectives.latency": "true",
                                    "objectives.latency_repeats": "2"})
    out = run_search(cfg, evaluator=CheapEvaluator(), log=quiet)
    hist = out.state.history
    assert len(hist) == 9
    for rec in hist:
        w = -0.07 if rec["params"] <= 50000 else -1.0
        assert rec["reward"] == pytest.approx(rec["accuracy"] * (rec["params"] / 50000) ** w)
        assert rec["latency_ms"] > 0
    assert "latency_ms" in out.summary["pareto"]
