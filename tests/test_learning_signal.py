"""Opt-in learning-signal options of the REINFORCE agent: loo baseline, advantage_norm,
wider_lr_scale (agents.reinforce); the defaults stay the paper's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_controller import START, make_ctx, make_obs, stack

from eas.agents.reinforce import ReinforceAgent
from eas.agents.reinforce_config import ReinforceConfig, baseline_step
from eas.envs.record import EvalResult


def test_leave_one_out_baseline() -> None:
    adv, b = baseline_step("loo", 1.0, [1.0, 2.0, 6.0], 0.95)
    np.testing.assert_allclose(adv, [1 - 4.0, 2 - 3.5, 6 - 1.5])
    assert b == pytest.approx(0.95 * 1.0 + 0.05 * 3.0)  # tracked as "ema", for logging
    adv, _ = baseline_step("loo", None, [4.0], 0.95)  # a lone child: its own mean
    np.testing.assert_allclose(adv, [0.0])


def test_defaults_are_the_paper_and_one_adam_group() -> None:
    cfg = ReinforceConfig(mode="paper").resolved()
    assert (cfg.baseline_mode, cfg.advantage_norm, cfg.wider_lr_scale) == ("ema", False, 1.0)
    agent = ReinforceAgent(make_ctx(), cfg)
    assert len(agent.optimizer.param_groups) == 1
    with pytest.raises(ValueError, match="wider_lr_scale"):
        ReinforceConfig(mode="paper", wider_lr_scale=0)


def test_wider_lr_scale_puts_the_wider_head_in_its_own_group() -> None:
    agent = ReinforceAgent(make_ctx(), ReinforceConfig(mode="paper", lr=1e-3, wider_lr_scale=5))
    rest, wider = agent.optimizer.param_groups
    assert wider["lr"] == pytest.approx(5e-3) and rest["lr"] == pytest.approx(1e-3)
    head = {id(p) for p in agent.controller.wider_head.parameters()}
    assert {id(p) for p in wider["params"]} == head
    n_all = len(list(agent.controller.parameters()))
    assert len(rest["params"]) + len(wider["params"]) == n_all
    # the checkpoint round trip keeps both groups
    state = agent.state_dict()
    again = ReinforceAgent(make_ctx(), ReinforceConfig(mode="paper", lr=1e-3, wider_lr_scale=5))
    again.load_state_dict(state)
    assert again.optimizer.param_groups[1]["lr"] == pytest.approx(5e-3)


def one_step(**cfg) -> tuple[torch.Tensor, dict]:
    agent = ReinforceAgent(make_ctx(children=2), ReinforceConfig(mode="paper", baseline_init=0.0, **cfg))
    obs = stack([make_obs(START, "wider")] * 2)
    agent.propose(obs)
    m = agent.learn([EvalResult(0.9, arch="a", reward=2.0), EvalResult(0.9, arch="b", reward=1.0)])
    return agent.controller.wider_head.weight.detach().clone(), m


def test_advantage_norm_divides_by_the_reward_std() -> None:
    _, plain = one_step()
    _, normed = one_step(advantage_norm=True)
    # advantages 2 and 1 (baseline 0); the std of [2, 1] is 0.5, so the loss doubles
    assert normed["losses/policy_loss"] == pytest.approx(2 * plain["losses/policy_loss"], rel=1e-5)
