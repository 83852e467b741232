"""Baseline agents (random search, NASH hill climbing), the agent registry and plug-ins."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from eas import envs
from eas.agents import (
    Agent,
    AgentContext,
    HillClimbingAgent,
    RandomSearchAgent,
    available_agents,
    get_agent_class,
    make_agent,
)
from eas.agents.registry import BUILTINS, ENTRY_POINT_GROUP
from eas.arch import Architecture, Tokenizer
from eas.config.agent_sections import agent_section
from eas.config.engine import load_config
from eas.envs.record import EvalResult
from eas.envs.synthetic import SyntheticEvaluator, synthetic_accuracy
from eas.network import build_network
from eas.search.callbacks import SearchCallback
from eas.search.loop import run_search

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"
"""A small start network (28x28 inputs) so that transformations are fast on a CPU."""
SHORT_SCHEDULE = ("wider", "deeper", "deeper")

# The README's custom-agent example, executed verbatim by test_readme_custom_agent_example.
README_EXAMPLE = '''
import numpy as np

from eas.agents import Agent


class DeepenOnlyAgent(Agent):
    """Toy strategy: insert a layer at a random legal place whenever allowed."""

    name = "deepen_only"

    def propose(self, obs):
        n, L = obs["wider_mask"].shape
        act = {"kind": np.zeros(n, np.int64), "wider": np.zeros((n, L), np.int8),
               "deeper": np.zeros((n, 3), np.int64), "skip": np.zeros((n, 3), np.int64)}
        for i in range(n):
            legal = np.argwhere(obs["deeper_mask"][i])
            if obs["kind_mask"][i][1] and len(legal):  # kind 1 = deeper
                block, position = legal[self.rng.integers(len(legal))]
                kernel = np.flatnonzero(obs["kernel_mask"][i])[0]
                act["kind"][i], act["deeper"][i] = 1, (block, position, kernel)
        return act  # otherwise kind 0 with an all-zero "wider": keep the network

    def learn(self, results):
        return {"charts/best_accuracy": max(r.accuracy for r in results)}
'''


class _Rounds(SearchCallback):
    """Records what the search loop handed the agent, round by round."""

    def __init__(self):
        self.rounds: list[list[EvalResult]] = []
        self.best: list[float | None] = []
        self.parents: list[str | None] = []
        self.agent = None

    def on_round_end(self, run, results, metrics, round_time):
        self.agent = run.agent
        self.rounds.append(list(results))
        self.best.append(getattr(run.agent, "best_accuracy", None))
        self.parents.append(getattr(run.agent, "best_arch", None))

    @property
    def results(self) -> list[EvalResult]:
        return [r for round_ in self.rounds for r in round_]


def _search(tmp_path, agent, children, *, evaluator=None, per_round=5,
            schedule=SHORT_SCHEDULE, seed=0, **agent_overrides):
    """One stage of ``children`` children through eas.search.loop.run_search (no final training)."""
    section = agent_section(agent)
    overrides = {
        "search.agent": agent, "search.seed": seed, "search.children_per_step": per_round,
        "search.stage1_networks": children, "search.stage2_networks": 0,
        "search.final_top_k": 0, "search.final_epochs": 0, "search.progress": False,
        "search.schedule": ",".join(schedule) if schedule else "free",
        "data.name": "fashion-mnist", "data.device": "cpu", "start.arch": SMALL,
        "start.epochs": 0, **{f"{section}.{k}": v for k, v in agent_overrides.items()},
    }
    rounds = _Rounds()
    outcome = run_search(load_config(overrides=overrides), run_dir=tmp_path / "run",
                         evaluator=evaluator or SyntheticEvaluator(), callbacks=[rounds],
                         log=lambda _m: None)
    return outcome, rounds


def _ctx(schedule=envs.DEFAULT_SCHEDULE, steps=None, per_round=4, seed=0, **extra):
    return AgentContext(
        max_layers=50, vocab_size=Tokenizer().vocab_size, kernel_sizes=(1, 3, 5),
        kinds=envs.KINDS, schedule=None if schedule is None else tuple(schedule),
        steps_per_episode=steps or (len(schedule) if schedule else 5),
        children_per_round=per_round, seed=seed, extra=extra)


def _obs_batch(n, schedule=None, start=SMALL, steps=3, seed=0):
    """A batched observation of n envs, each moved a few random legal steps from ``start``."""
    rng = np.random.default_rng(seed)
    obs = []
    for i in range(n):
        env = envs.NetTransformEnv(start=start, schedule=schedule, free_steps=steps + 1,
                                   evaluator=SyntheticEvaluator())
        o, _ = env.reset(seed=i)
        env.action_space.seed(seed * 1000 + i)  # sample() draws from the space's own RNG
        for _ in range(rng.integers(0, min(steps, env.steps - 1) + 1)):
            o, *_ = env.step(env.action_space.sample())
        obs.append(o)
    return {k: (tuple(o[k] for o in obs) if k == "arch" else np.stack([o[k] for o in obs]))
            for k in obs[0]}


def _assert_legal(obs, action, i, free):
    """Check env i's action against its masks (only the applied kind's fields)."""
    kind = int(action["kind"][i]) if free else int(np.flatnonzero(obs["kind_mask"][i])[0])
    assert obs["kind_mask"][i][kind] == 1
    if kind == 0:
        marked = np.asarray(action["wider"][i]) != 0
        assert not np.any(marked & (obs["wider_mask"][i] == 0))
    elif kind == 1:
        b, p, k = (int(v) for v in action["deeper"][i])
        assert obs["deeper_mask"][i][b, p] == 1
        assert obs["deeper_is_fc"][i][b, p] == 1 or obs["kernel_mask"][i][k] == 1
    else:
        s, d, m = (int(v) for v in action["skip"][i])
        assert obs["skip_mask"][i][s, d, m] == 1


# --------------------------------------------------------------------------- random
def test_random_proposals_respect_masks_free_mode():
    obs = _obs_batch(6, schedule=None)
    agent = RandomSearchAgent(_ctx(schedule=None, steps=4))
    kinds = set()
    for _ in range(20):
        action = agent.propose(obs)
        for i in range(6):
            _assert_legal(obs, action, i, free=True)
            kinds.add(int(action["kind"][i]))
    assert kinds == {0, 1, 2}  # all three kinds get drawn in free mode


def test_random_search_end_to_end_schedule_mode(tmp_path):
    outcome, rounds = _search(tmp_path, "random", 5, per_round=2, seed=3)
    agent, seen = rounds.agent, rounds.results
    assert [len(r) for r in rounds.rounds] == [2, 2, 1]  # the budget caps the last round
    assert outcome.state.global_step == 5 and agent.children_seen == 5
    for r in seen:  # the env accepted every action and each child ran the whole schedule
        assert not r.failed
        assert [int(a["kind"]) for a in r.actions] == [0, 1, 1]
        assert r.accuracy == pytest.approx(synthetic_accuracy(r.arch))
    assert agent.best_accuracy == max(r.accuracy for r in seen)


def test_random_learn_metrics():
    agent = RandomSearchAgent(_ctx())
    m = agent.learn([EvalResult(0.5, arch="a", reward=1.0), EvalResult(0.7, arch="b", reward=2.0)])
    assert m["charts/mean_reward"] == pytest.approx(1.5)
    assert m["charts/best_reward"] == pytest.approx(2.0)
    assert agent.best_arch == "b"


def test_random_config_validation():
    with pytest.raises(ValueError, match="wider_prob"):
        RandomSearchAgent.Config(wider_prob=1.5)


# ------------------------------------------------------------------- hill climbing
def test_hill_climbing_requirements_and_overrides():
    cfg = HillClimbingAgent.Config(n_nm=3, n_neigh=4, e_neigh=2, lr_start=0.1)
    assert HillClimbingAgent.env_requirements(cfg) == {
        "schedule": None, "free_steps": 3, "children_per_round": 4}
    agent = HillClimbingAgent(_ctx(schedule=None, steps=3), cfg)
    assert agent.steps == 3 and agent.children_this_round() == 4
    assert agent.child_train_overrides() == {
        "epochs": 2, "lr": 0.1, "lr_min": 0.0, "schedule": "cosine"}
    assert agent.final_train_overrides()["epochs"] == 20
    defaults = HillClimbingAgent.Config()
    assert (defaults.n_steps, defaults.n_neigh, defaults.n_nm, defaults.e_neigh,
            defaults.e_final, defaults.lr_start, defaults.lr_end) == (5, 8, 5, 17, 20, 0.05, 0.0)


def test_hill_climbing_warns_in_schedule_mode():
    with pytest.warns(UserWarning, match="free mode"):
        HillClimbingAgent(_ctx(schedule=envs.DEFAULT_SCHEDULE))


def test_hill_climbing_morphisms_one_at_a_time():
    obs = _obs_batch(6, schedule=None)
    agent = HillClimbingAgent(_ctx(schedule=None, start_accuracy=0.5))
    kinds = set()
    for _ in range(20):
        action = agent.propose(obs)
        for i in range(6):
            _assert_legal(obs, action, i, free=True)
            kind = int(action["kind"][i])
            kinds.add(kind)
            if kind == 0:  # NASH widens exactly one conv layer
                marked = np.flatnonzero(action["wider"][i])
                assert len(marked) == 1
                arch = Architecture.parse(obs["arch"][i])
                assert type(arch.layers[marked[0]]).__name__ == "Conv"
            elif kind == 1:  # a conv-BN-ReLU with kernel 3 or 5
                b, p, k = action["deeper"][i]
                assert obs["deeper_is_fc"][i][b, p] == 0 and (1, 3, 5)[k] in (3, 5)
    assert kinds == {0, 1, 2}


def test_hill_climbing_end_to_end_free_mode(tmp_path):
    _, rounds = _search(tmp_path, "hill_climbing", 6, seed=1, n_neigh=3, n_nm=2)
    agent, seen = rounds.agent, rounds.results
    assert isinstance(agent, HillClimbingAgent)
    assert agent.ctx.schedule is None and agent.ctx.steps_per_episode == 2
    assert len(seen) == 6 and agent.round == 2
    for r in seen:
        assert len(r.actions) == 2  # n_NM morphisms per child
    # the start's accuracy is unknown (not trained): child 0 of round 0 is the parent
    assert seen[0].arch == str(Architecture.parse(SMALL))
    # the agent moved to the best child and starts the next round from its network
    assert agent.best_accuracy == pytest.approx(max(r.accuracy for r in seen))
    best = agent.start_network()
    assert best is not None and synthetic_accuracy(best) == pytest.approx(agent.best_accuracy)


def _constant_evaluator(start_arch: str, start_acc: float):
    """Deterministic: the unchanged start scores start_acc, every other child less."""
    def evaluate(net):
        if str(net.arch) == start_arch:
            return start_acc
        return 0.5 + 0.1 * (len(net.arch.layers) % 3) / 3

    return evaluate


def test_hill_climbing_never_worse_than_start_parent_competes(tmp_path):
    start = str(Architecture.parse(SMALL))
    # the start is not trained, so its accuracy is unknown to the agent: parent slot
    _, rounds = _search(tmp_path, "hill_climbing", 8, evaluator=_constant_evaluator(start, 0.9),
                        n_neigh=4, n_nm=2)
    agent = rounds.agent
    assert agent.round == 2
    assert agent.best_accuracy == pytest.approx(0.9)  # the parent won every round
    assert str(agent.start_network().arch) == start
    assert rounds.results[0].arch == start  # child 0 of round 0 was the unchanged parent


def test_hill_climbing_reevaluate_parent_every_round(tmp_path):
    _, rounds = _search(tmp_path, "hill_climbing", 9, seed=2, n_neigh=3, n_nm=1,
                        reevaluate_parent=True)
    agent, seen, parents = rounds.agent, rounds.results, rounds.parents
    assert agent.round == 3
    # child 0 of rounds 2 and 3 is the best network chosen in the round before
    assert seen[3].arch == parents[0] and seen[6].arch == parents[1]
    assert all(int(a["kind"]) == 0 and not np.any(a["wider"]) for a in seen[3].actions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hill_climbing_monotone_under_deterministic_evaluator(tmp_path, seed):
    start_acc = synthetic_accuracy(build_network(SMALL))
    _, rounds = _search(tmp_path, "hill_climbing", 6, seed=seed, n_neigh=2, n_nm=1)
    history = rounds.best
    assert len(history) == 3 and history[0] >= start_acc
    assert all(b >= a for a, b in zip(history, history[1:]))


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("cls,schedule", [(RandomSearchAgent, envs.DEFAULT_SCHEDULE),
                                          (HillClimbingAgent, None)])
def test_state_dict_round_trip_restores_rng(cls, schedule):
    obs = _obs_batch(4, schedule=schedule)
    a = cls(_ctx(schedule=schedule, seed=7, start_accuracy=0.1))
    a.propose(obs)
    a.learn([EvalResult(0.6, arch=SMALL, reward=1.0, net=build_network(SMALL, seed=1)),
             EvalResult(0.4, arch=SMALL, reward=0.5)])
    state = copy.deepcopy(a.state_dict())
    expected = [a.propose(obs) for _ in range(3)]
    b = cls(_ctx(schedule=schedule, seed=99, start_accuracy=0.1))
    b.load_state_dict(state)
    got = [b.propose(obs) for _ in range(3)]
    for e, g in zip(expected, got):
        for key in e:
            np.testing.assert_array_equal(e[key], g[key])
    assert b.best_accuracy == a.best_accuracy
    if cls is HillClimbingAgent:
        assert b.round == a.round == 1
        for (k, v), (k2, v2) in zip(a.best_net.state_dict().items(),
                                    b.best_net.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)


# ------------------------------------------------------------------------- registry
def test_builtin_names_and_alias():
    assert available_agents()[:3] == ["reinforce", "random", "hill_climbing"]
    assert get_agent_class("random") is RandomSearchAgent
    assert get_agent_class("hill_climbing") is HillClimbingAgent
    assert get_agent_class(" nash ") is HillClimbingAgent
    try:
        reinforce = get_agent_class("reinforce")
    except ImportError:  # pragma: no cover - agents/reinforce.py not importable here
        pytest.skip("agents.reinforce is not importable")
    assert get_agent_class("eas") is reinforce
    assert reinforce.__name__ == "ReinforceAgent" and issubclass(reinforce, Agent)


def test_unknown_agent_lists_names():
    with pytest.raises(ValueError) as err:
        get_agent_class("no_such_agent")
    msg = str(err.value)
    for name in BUILTINS:
        assert name in msg
    assert "module:Class" in msg
    with pytest.raises(ValueError, match="no module named"):
        get_agent_class("no_such_module_xyz:Agent")
    with pytest.raises(ValueError, match="has no attribute"):
        get_agent_class("eas.agents.random_search:Missing")
    with pytest.raises(TypeError, match="not a subclass"):
        get_agent_class("eas.envs.observation:split_obs")


def _write_example_module(tmp_path: Path, monkeypatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(README_EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_module_class_path_resolves_and_runs(tmp_path, monkeypatch):
    _write_example_module(tmp_path, monkeypatch, "eas_test_custom_agent")
    cls = get_agent_class("eas_test_custom_agent:DeepenOnlyAgent")
    assert cls.name == "deepen_only" and issubclass(cls, Agent)
    outcome, rounds = _search(tmp_path, "eas_test_custom_agent:DeepenOnlyAgent", 3, per_round=3)
    assert outcome.state.global_step == 3 and isinstance(rounds.agent, cls)
    for arch in (h["arch"] for h in outcome.state.history):  # wider step: no change; two deeper steps: two more layers
        assert len(Architecture.parse(arch).layers) == len(Architecture.parse(SMALL).layers) + 2


def test_entry_point_plugin_resolves_and_runs(tmp_path, monkeypatch):
    """A plug-in distribution (a ``*.dist-info`` with entry_points.txt) on sys.path."""
    _write_example_module(tmp_path, monkeypatch, "eas_test_plugin")
    dist = tmp_path / "eas_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: eas-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nmy_plugin = eas_test_plugin:DeepenOnlyAgent\n")
    assert "my_plugin" in available_agents()
    cls = get_agent_class("my_plugin")
    assert cls.__name__ == "DeepenOnlyAgent" and cls.__module__ == "eas_test_plugin"
    agent = make_agent("my_plugin", _ctx(schedule=SHORT_SCHEDULE))
    assert isinstance(agent, cls)
    outcome, _ = _search(tmp_path, "my_plugin", 2, per_round=2)
    assert outcome.state.global_step == 2
    with pytest.raises(ValueError, match="my_plugin"):  # listed among installed plug-ins
        get_agent_class("not_there")


def test_readme_custom_agent_example():
    namespace: dict = {}
    exec(compile(README_EXAMPLE, "README_EXAMPLE", "exec"), namespace)  # noqa: S102
    assert len(README_EXAMPLE.strip().splitlines()) < 30
    cls = namespace["DeepenOnlyAgent"]
    obs = _obs_batch(3, schedule=SHORT_SCHEDULE[1:])
    agent = cls(_ctx(schedule=SHORT_SCHEDULE[1:]))
    action = agent.propose(obs)
    for i in range(3):
        _assert_legal(obs, action, i, free=False)
    assert agent.learn([EvalResult(0.3, arch="x", reward=0.1), EvalResult(0.8, arch="y", reward=1.0)]) == {
        "charts/best_accuracy": 0.8}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hill_climbing", "random"])
def test_resume_through_search_loop_matches_uninterrupted(tmp_path, name):
    """Checkpoint/resume via eas.search restores the agent (RNG, current best) exactly."""
    overrides = {
        "search.agent": name, "search.seed": 0, "search.children_per_step": 2,
        "search.stage1_networks": 6, "search.stage2_networks": 0, "search.final_top_k": 0,
        "search.final_epochs": 0, "search.progress": False, "search.schedule": "wider,deeper",
        "data.name": "fashion-mnist", "data.device": "cpu", "start.arch": SMALL,
        "start.epochs": 0, "hill_climbing.n_neigh": 2, "hill_climbing.n_nm": 2,
        "hill_climbing.n_steps": 3,
    }

    def run(folder, resume=False, **extra):
        cfg = load_config(overrides={**overrides, **extra})
        return run_search(cfg, run_dir=tmp_path / folder, resume=resume,
                                 evaluator=SyntheticEvaluator(), log=lambda _m: None)

    full = run("full")
    part = run("part", **{"search.max_rounds": 1})
    assert not part.finished and part.state.global_step == 2
    resumed = run("part", resume=True)
    key = [(h["arch"], h["accuracy"]) for h in full.state.history]
    assert len(key) == 6
    assert [(h["arch"], h["accuracy"]) for h in resumed.state.history] == key
