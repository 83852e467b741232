"""The LEMONADE agent: planning with cheap objectives, shrinking, hypervolume, resume."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cheap_config, quiet

from eas.agents.base import AgentContext
from eas.agents.lemonade import LemonadeAgent
from eas.agents.registry import get_agent_class
from eas.arch import SearchSpace, Tokenizer
from eas.envs import EvalResult, VectorNetTransformEnv
from eas.network import build_network
from eas.search.loop import run_search

START = "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), FC(64), SM(10)"
SPACE = SearchSpace(filters=(8, 16, 32, 48, 64), fc_units=(32, 64, 128))


class SizeEvaluator:
    """Accuracy grows with the parameter count (saturating), plus a small hash term."""

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        p = net.num_parameters()
        digest = hashlib.blake2b(str(net.arch).encode(), digest_size=4).digest()
        acc = 0.95 - 0.4 / (1 + p / 3e4) + int.from_bytes(digest, "little") / 2**32 * 0.02
        return EvalResult(accuracy=min(acc, 0.99),
                          state_dict={k: v.clone() for k, v in net.state_dict().items()})


def context(**config) -> tuple[AgentContext, LemonadeAgent]:
    cfg = LemonadeAgent.Config(**config)
    ctx = AgentContext(max_layers=12, vocab_size=Tokenizer(SPACE).vocab_size,
                       kernel_sizes=SPACE.kernel_sizes, kinds=("wider", "deeper", "skip"),
                       schedule=None, steps_per_episode=cfg.n_nm, children_per_round=cfg.n_ac,
                       seed=0, extra={"input_shape": (1, 28, 28), "space": SPACE})
    return ctx, LemonadeAgent(ctx, cfg)


def seeded(agent: LemonadeAgent) -> None:
    net = build_network(START, seed=0)
    agent.learn([EvalResult(arch=START, accuracy=0.8, reward=0.0, params=net.num_parameters(),
                             flops=net.flops(), net=net)])


def play(agent: LemonadeAgent, start) -> list[str]:
    """One round in a vector env: replay the agent's actions, return the children's archs."""
    n = agent.children_this_round()
    venv = VectorNetTransformEnv(n, start=start, space=SPACE, schedule=None,
                                 free_steps=agent.config.n_nm, max_layers=12, noise=False,
                                 evaluator=SizeEvaluator())
    obs, _ = venv.reset(seed=0)
    for _ in range(agent.config.n_nm):
        obs, _, term, _, infos = venv.step(agent.propose(obs))
    assert np.all(term)
    return [str(f["arch"]) for f in infos["final"]]


def test_registered_and_config_checks() -> None:
    assert get_agent_class("lemonade") is LemonadeAgent
    for kwargs, match in [({"n_ac": 0}, "n_ac"), ({"cost": "latency_ms"}, "cost"),
                          ({"p_shrink": 2}, "p_shrink")]:
        with pytest.raises(ValueError, match=match):
            LemonadeAgent.Config(**kwargs)
    assert LemonadeAgent.env_requirements(LemonadeAgent.Config(n_nm=2, n_ac=3)) == {
        "schedule": None, "free_steps": 2, "children_per_round": 3}


def test_children_are_picked_from_cheap_candidates_and_replayed() -> None:
    _, agent = context(n_pc=12, n_ac=4, n_nm=2, p_shrink=0.0)
    assert agent.start_network() is None  # round 0: the env's start network
    seeded(agent)
    start = agent.start_network()
    assert str(start.arch) == START
    assert len(agent.planned) == 4 and len(set(agent.planned)) == 4  # distinct candidates
    assert play(agent, start) == agent.planned  # the env builds exactly the planned children


def test_shrinking_rounds_start_from_a_smaller_parent() -> None:
    _, agent = context(n_pc=6, n_ac=3, n_nm=2, p_shrink=1.0)
    seeded(agent)
    parent = agent.population.items[0]["net"]
    start = agent.start_network()
    assert start.num_parameters() < parent.num_parameters()
    removed = len(start.arch.layers) == len(parent.arch.layers) - 1
    assert removed or sum(a != b for a, b in zip(start.arch.layers, parent.arch.layers)) == 1
    assert play(agent, start) == agent.planned


def test_state_dict_round_trip_gives_the_same_next_round() -> None:
    _, agent = context(n_pc=8, n_ac=3, n_nm=2, p_shrink=0.5)
    seeded(agent)
    start = agent.start_network()
    results = []
    for arch in play(agent, start):
        net = build_network(arch, seed=0)
        results.append(EvalResult(arch=arch, accuracy=float(SizeEvaluator()(net).accuracy),
                                   reward=0.0, params=net.num_parameters(), flops=net.flops(),
                                   net=net))
    agent.learn(results)
    state = agent.state_dict()
    _, other = context(n_pc=8, n_ac=3, n_nm=2, p_shrink=0.5)
    other.load_state_dict(state)
    assert other.population.points == agent.population.points
    a, b = agent.start_network(), other.start_network()
    assert str(a.arch) == str(b.arch) and agent.planned == other.planned
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def lemonade_config(tmp_path: Path, name: str, **extra: str):
    return cheap_config(tmp_path, **{
        "search.agent": "lemonade", "search.stage1_networks": "16",
        "search.stage2_networks": "0", "search.run_name": name,
        "lemonade.n_pc": "8", "lemonade.n_ac": "4", "lemonade.n_nm": "2", **extra})


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_search_improves_hypervolume_and_resumes(tmp_path: Path) -> None:
    full = run_search(lemonade_config(tmp_path, "full"), evaluator=SizeEvaluator(), log=quiet)
    hv = [h["hypervolume"] for h in full_agent_history(full.run_dir)]
    assert len(hv) == 4 and hv[-1] > hv[0]  # the front grows beyond round 1's
    assert (full.run_dir / "pareto.png").is_file()
    # interrupted after 2 rounds and resumed: the same children
    cfg = lemonade_config(tmp_path, "split", **{"search.max_rounds": "2"})
    first = run_search(cfg, evaluator=SizeEvaluator(), log=quiet)
    assert not first.finished
    cfg2 = lemonade_config(tmp_path, "split")
    second = run_search(cfg2, run_dir=first.run_dir, resume=True, evaluator=SizeEvaluator(),
                        log=quiet)
    assert [r["arch"] for r in second.state.history] == [r["arch"] for r in full.state.history]


def full_agent_history(run_dir: Path) -> list[dict]:
    from eas.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoint.pt")["agent"]["history"]
