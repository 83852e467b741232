"""The SB3-ready view of the environment (envs/flat.py) and vector envs that just work."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv
from helpers import ENV_SPACE, ENV_START, small_env

from eas import densenet_bc, envs
from eas.envs.flat import FlatActions, FlatNetTransformEnv, sample_masked
from eas.envs.synthetic import SyntheticEvaluator


@pytest.mark.parametrize("kw", [dict(schedule=None), dict(schedule=None, shrink=True),
                                dict(schedule=("wider", "deeper", "skip", "deeper"))])
def test_every_legal_flat_action_is_accepted_and_every_env_action_is_covered(kw) -> None:
    env = FlatNetTransformEnv(small_env(**kw))
    base, codec = env.base, env.codec
    rng = np.random.default_rng(0)
    for episode in range(3):
        env.reset(seed=episode)
        for _ in range(base.steps):
            mask = env.action_masks()
            masks = base.legal_masks()
            assert mask.shape == (codec.n,) and mask.dtype == bool and mask.any()
            legal = base.legal_actions
            for index in np.flatnonzero(mask):  # legal => the environment accepts it
                base.check_action(codec.decode(int(index), masks))
            names = [codec.split(int(i))[0] for i in np.flatnonzero(mask)]
            if masks["kind_mask"][1]:  # deeper: every (block, position), FC ones once
                want = sum(1 if bp in legal.deeper_fc else len(legal.kernels)
                           for bp in legal.deeper)
                assert names.count("deeper") == want
            if masks["kind_mask"][2]:
                assert names.count("skip") == len(legal.skips)
            if masks["kind_mask"][0]:  # runs of consecutive widenable layers
                m = len(legal.wider)
                assert names.count("wider") == m * (m + 1) // 2
            if base.shrink and masks["kind_mask"][3]:
                assert names.count("narrow") == len(legal.narrow)
            env.step(sample_masked(mask, rng))
    assert codec.n == FlatActions.for_env(base).n


def test_densenet_start_flat_actions() -> None:
    start = densenet_bc(16, 12, spatial=32)
    env = FlatNetTransformEnv(envs.NetTransformEnv(
        start=start, input_shape=(3, 32, 32), evaluator=SyntheticEvaluator(),
        schedule=("wider", "deeper"), max_layers=30))
    env.reset(seed=0)
    names = {env.codec.split(int(i))[0] for i in np.flatnonzero(env.action_masks())}
    assert names == {"noop", "wider"}
    _, _, _, _, info = env.step(env.codec.offsets["wider"] + 1 * 30 + 1)  # widen layer 1
    assert "DL" in info["arch"] and info["action"] == "wider layer 1"
    names = {env.codec.split(int(i))[0] for i in np.flatnonzero(env.action_masks())}
    assert names == {"deeper"}  # dense_insert, no no-op: deeper has legal actions


def test_illegal_action_penalty_or_raise() -> None:
    env = FlatNetTransformEnv(small_env(), illegal_penalty=2.5, max_illegal=2)
    obs, info = env.reset(seed=0)
    illegal = int(np.flatnonzero(~env.action_masks())[0])
    obs2, reward, term, trunc, info2 = env.step(illegal)
    assert reward == -2.5 and not term and not trunc and "not legal" in info2["illegal"]
    assert info2["arch"] == info["arch"] and all(np.array_equal(obs[k], obs2[k]) for k in obs)
    *_, trunc = env.step(illegal)[:4]
    assert trunc  # max_illegal reached
    raising = FlatNetTransformEnv(small_env(), illegal="raise")
    raising.reset(seed=0)
    with pytest.raises(envs.InvalidActionError, match="not legal"):
        raising.step(illegal)
    with pytest.raises(ValueError, match="illegal must be"):
        FlatNetTransformEnv(small_env(), illegal="ignore")


def test_registered_id_and_seeded_sampling() -> None:
    def episode(seed: int) -> tuple[str, float]:
        env = gymnasium.make("eas/NetTransformFlat-v0", start=ENV_START, space=ENV_SPACE, max_layers=12,
                             evaluator=SyntheticEvaluator())
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, term, trunc, info = env.step(env.action_space.sample())
            assert "illegal" not in info
            done = term or trunc
        return info["arch"], reward
    assert episode(3) == episode(3)


@pytest.mark.parametrize("vector", [SyncVectorEnv, AsyncVectorEnv])
def test_vector_envs_with_defaults_return_the_right_arch_strings(vector) -> None:
    vec = vector([lambda: small_env(schedule=None, free_steps=4)] * 3)  # defaults: shared memory
    try:
        obs, info = vec.reset(seed=0)
        rng = np.random.default_rng(0)
        assert tuple(obs["arch"]) == (ENV_START,) * 3
        for _ in range(4):
            obs, reward, term, _, info = vec.step(envs.sample_legal_actions(obs, rng))
            assert tuple(obs["arch"]) == tuple(info["arch"])
            assert all(a != ENV_START for a in obs["arch"]) or not term.all()
        assert term.all() and (reward > 0).all()
    finally:
        vec.close()


def test_make_vec_modes_agree_and_batched_legal_sampling_never_raises() -> None:
    archs = {}
    for mode in ("sync", "async", "vector_entry_point"):
        vec = gymnasium.make_vec("eas/NetTransform-v0", num_envs=2, vectorization_mode=mode,
                                 start=ENV_START, space=ENV_SPACE, max_layers=12, shrink=True,
                                 schedule=None, free_steps=3, evaluator=SyntheticEvaluator())
        try:
            rng = np.random.default_rng(1)
            seen = []
            for episode in range(2):
                obs, _ = vec.reset(seed=10 * episode)
                for _ in range(3):
                    obs, *_ = vec.step(envs.sample_legal_actions(obs, rng))
                seen.append(tuple(obs["arch"]))
            archs[mode] = seen
        finally:
            vec.close()
    assert archs["sync"] == archs["async"] == archs["vector_entry_point"]


FORK_PROBE = """
import os, sys, torch
import eas.envs
from eas.envs.net_transform import NetTransformEnv

def threads_in_fork():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, str(torch.get_num_threads()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    return int(os.read(r, 16))

torch.set_num_threads(2)
before = threads_in_fork()
NetTransformEnv()
print(before, threads_in_fork())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forks_run_single_threaded_once_an_env_is_built_not_on_import() -> None:
    """Importing eas.envs leaves forks alone; building an env makes forked workers use one
    torch thread (what gymnasium's AsyncVectorEnv needs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", FORK_PROBE], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split()
    assert out == ["2", "1"]
