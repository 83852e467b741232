"""Stable-Baselines3 on the environment: check_env on the flat view, MaskablePPO through it
and as a search agent (agents/sb3.py) inside run_search. Needs the sb3 extra (CI installs it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sb3_contrib")

import gymnasium  # noqa: E402
import torch  # noqa: E402
from helpers import ENV_SPACE, ENV_START, small_env, tensorboard_steps  # noqa: E402
from sb3_contrib import MaskablePPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

from eas import envs  # noqa: E402
from eas.agents.base import AgentContext  # noqa: E402
from eas.agents.registry import make_agent  # noqa: E402
from eas.agents.sb3 import SB3Agent  # noqa: E402
from eas.config.engine import load_config  # noqa: E402
from eas.config.sections import ConfigError  # noqa: E402
from eas.envs.flat import FlatNetTransformEnv  # noqa: E402
from eas.envs.synthetic import SyntheticEvaluator  # noqa: E402
from eas.search.loop import run_search  # noqa: E402


def test_check_env_passes_in_both_illegal_modes() -> None:

    for illegal in ("penalty", "raise"):
        env = FlatNetTransformEnv(small_env(schedule=None), illegal=illegal)
        check_env(env)  # raises on any failure
        assert isinstance(env.action_space, gymnasium.spaces.Discrete)
        assert "arch" not in env.observation_space.spaces
    check_env(FlatNetTransformEnv(small_env(), flatten=True))  # a Box for MlpPolicy

@pytest.mark.slow
def test_maskable_ppo_trains_through_the_wrapper() -> None:

    env = FlatNetTransformEnv(small_env(schedule=("wider", "deeper", "deeper")))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=48, batch_size=24, n_epochs=2,
                        seed=0, device="cpu", policy_kwargs={"net_arch": [32]})
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=240)
    assert model.num_timesteps >= 240
    assert any(not np.allclose(a.numpy(), b.detach().numpy())
               for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=9)
    for _ in range(3):  # the masked policy only picks legal actions
        action, _ = model.predict(obs, action_masks=env.action_masks())
        obs, reward, term, _, info = env.step(action)
        assert "illegal" not in info
    assert term and reward > 0



def search_overrides(**extra: object) -> dict[str, object]:
    values: dict[str, object] = {
        "search.agent": "sb3_ppo", "search.seed": 0, "search.children_per_step": 3,
        "search.stage1_networks": 9, "search.stage2_networks": 0, "search.final_top_k": 0,
        "search.progress": False, "search.schedule": "wider,deeper,deeper",
        "data.name": "fashion-mnist", "data.device": "cpu", "start.arch": ENV_START,
        "start.epochs": 0, "space.filters": "16,32,48,64", "space.fc_units": "64,128,256",
        "space.max_layers": 12, "sb3.batch_size": 8, "sb3.net_arch": "32",
    }
    values.update(extra)
    return values


@pytest.mark.slow
def test_sb3_agent_runs_a_search_and_resumes_exactly(tmp_path) -> None:
    def run(folder: str, resume: bool = False, **extra: object):
        cfg = load_config(overrides=search_overrides(**extra))
        return run_search(cfg, run_dir=tmp_path / folder, resume=resume,
                          evaluator=SyntheticEvaluator(), log=lambda _m: None)

    full = run("full")
    assert full.finished and len(full.state.history) == 9
    assert full.summary["agent"] == "sb3_ppo"
    assert tensorboard_steps(full.run_dir, "losses/policy_loss") == [3, 6, 9]  # one update a round
    part = run("part", **{"search.max_rounds": 1})
    assert not part.finished and part.state.global_step == 3
    resumed = run("part", resume=True)
    key = [(h["arch"], h["accuracy"]) for h in full.state.history]
    assert [(h["arch"], h["accuracy"]) for h in resumed.state.history] == key
    assert len(set(a for a, _ in key)) > 3  # the policy samples, it does not repeat one child


def _ctx_and_obs(n: int = 4):
    vec = envs.VectorNetTransformEnv(n, start=ENV_START, space=ENV_SPACE, max_layers=12, schedule=None,
                                     free_steps=3, evaluator=SyntheticEvaluator())
    obs, _ = vec.reset(seed=0)
    ctx = AgentContext(max_layers=12, vocab_size=vec.envs[0].tokenizer.vocab_size,
                       kernel_sizes=tuple(ENV_SPACE.kernel_sizes), kinds=envs.KINDS, schedule=None,
                       steps_per_episode=3, children_per_round=n, seed=5,
                       extra={"space": ENV_SPACE})
    return vec, obs, ctx


def test_sb3_agent_proposes_legal_actions_learns_and_restores_its_state() -> None:
    vec, obs, ctx = _ctx_and_obs()
    agent = make_agent("sb3_ppo", ctx, batch_size=4, net_arch=(16,))
    assert isinstance(agent, SB3Agent)
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    for _ in range(3):
        action = agent.propose(obs)
        obs, reward, term, _, infos = vec.step(action)  # raises on an illegal action
    assert term.all()
    before = [p.detach().clone() for p in agent.policy.parameters()]
    results = [envs.EvalResult(f["accuracy"], arch=f["arch"], reward=float(r))
               for f, r in zip(infos["final"], reward)]
    metrics = agent.learn(results)
    assert {"losses/policy_loss", "losses/value_loss", "charts/mean_reward"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    # global RNGs untouched by sampling and the update
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])

    twin = make_agent("sb3_ppo", ctx, batch_size=4, net_arch=(16,))
    twin.load_state_dict(agent.state_dict())
    obs, _ = vec.reset(seed=1)
    a, b = agent.propose(obs), twin.propose(obs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_sb3_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(overrides=search_overrides(**{"sb3.batch_size": 0}))
