"""Tests of the network-transformation environment (envs/)."""

from __future__ import annotations

import importlib.util
import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from eas import build_network, densenet_bc, envs
from eas.arch import Architecture, SearchSpace
from eas.envs import (
    KINDS,
    EvalCache,
    EvalResult,
    InvalidActionError,
    NetTransformEnv,
    VectorNetTransformEnv,
    paper_reward,
    sample_legal_action,
)
from eas.layers import FC, Conv, Dense

SMALL_SPACE = SearchSpace(filters=(16, 20, 24, 32, 40, 48, 64, 96, 128, 160),
                          fc_units=(256, 288, 320, 384, 512))
"""Fine-grained small widths: episodes stay cheap on CPU."""
SHORT = ("wider", "deeper")


def param_evaluator(net: torch.nn.Module) -> float:
    """A cheap stand-in for training: accuracy grows with the parameter count."""
    return min(1.0, sum(p.numel() for p in net.parameters()) / 2e6)


class CountingEvaluator:
    """Returns a fixed accuracy and records the architectures it was asked about."""

    def __init__(self, acc: float = 0.5) -> None:
        self.acc = acc
        self.seen: list[str] = []

    def __call__(self, net: torch.nn.Module) -> float:
        self.seen.append(str(net.arch))
        return self.acc


def run_episode(env: NetTransformEnv, rng: np.random.Generator, seed: int = 0,
                options: dict | None = None) -> tuple[list, float, dict]:
    """Play one episode with legal random actions; returns (observations, reward, info)."""
    obs, _ = env.reset(seed=seed, options=options)
    observations = [obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(sample_legal_action(obs, rng))
        observations.append(obs)
        assert not truncated
        if terminated:
            return observations, reward, info
        assert reward == 0.0


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def no_op_action(L: int = 50) -> dict:
    return {"kind": 0, "wider": np.zeros(L, np.int8), "deeper": np.zeros(3, np.int64),
            "skip": np.zeros(3, np.int64)}


# --------------------------------------------------------------------------- API
# check_env samples an action in one state and replays it after a reset, from the
# start state; the free-mode configuration keeps the legal set the same in both
# (deeper masked out by max_layers, no skip candidates in FASHION_START: widening
# only), so the check cannot depend on which action the sampler happens to draw.
@pytest.mark.parametrize("kwargs", [{}, {"schedule": None, "free_steps": 4, "max_layers": 9}],
                         ids=["schedule", "free"])
def test_check_env_passes_without_warnings(kwargs: dict) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gymnasium.make("eas/NetTransform-v0", evaluator=param_evaluator, **kwargs)
        env.action_space.seed(0)
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_make_after_import_and_spaces() -> None:
    env = gymnasium.make("eas/NetTransform-v0", start=envs.FASHION_START, input_shape=(1, 28, 28),
                         evaluator=param_evaluator, max_layers=20)
    assert isinstance(env.unwrapped, NetTransformEnv)
    obs, info = env.reset(seed=1)
    assert obs in env.observation_space
    assert obs["arch"] == str(Architecture.parse(envs.FASHION_START)) == info["arch"]
    assert obs["tokens"].shape == (20,) and obs["length"] == 9
    assert (obs["tokens"][:9] > 0).all() and (obs["tokens"][9:] == 0).all()
    assert obs["kind_mask"].tolist() == [1, 0, 0]  # schedule starts with "wider"
    assert obs["wider_mask"][[0, 2, 4, 6, 8]].all() and not obs["wider_mask"][[1, 3, 5, 7]].any()
    assert obs["skip_mask"].sum() == 0  # no two convs share a spatial size in this net
    assert env.action_space["deeper"].nvec.tolist() == [20, 21, 3]
    assert env.unwrapped.steps == 9 and KINDS == ("wider", "deeper", "skip")


def test_action_space_sample_is_legal_and_plain_sample_with_mask_still_works() -> None:
    env = NetTransformEnv(evaluator=param_evaluator, schedule=None, free_steps=6)
    env.reset(seed=0)
    env.action_space.seed(3)
    for _ in range(6):
        env.step(env.action_space.sample())
    mask = {"kind": np.array([1, 0, 0], np.int8), "wider": np.zeros(50, np.int8),
            "deeper": None, "skip": None}
    action = env.action_space.sample(mask=mask)
    assert action["kind"] == 0 and not action["wider"].any()


def test_action_space_sample_draws_what_the_shared_sampler_draws() -> None:
    # one definition of a random legal action: the space samples with random search's draws
    env = NetTransformEnv(evaluator=param_evaluator, schedule=None, free_steps=6)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(3)
    rng = np.random.default_rng()
    rng.bit_generator.state = env.action_space.np_random.bit_generator.state
    kinds = set()
    for _ in range(6):
        action = env.action_space.sample()
        expected = sample_legal_action(obs, rng)
        assert action.keys() == expected.keys()
        assert all(np.array_equal(action[k], expected[k]) for k in action)
        kinds.add(int(action["kind"]))
        obs, *_ = env.step(action)
    assert len(kinds) > 1  # free mode: the kind was drawn, not fixed


# ------------------------------------------------------------------ determinism
def test_same_seed_same_trajectory_and_weights() -> None:
    def play(seed: int) -> tuple[list[str], torch.nn.Module]:
        env = NetTransformEnv(evaluator=param_evaluator, cache=False, space=SMALL_SPACE)
        observations, _, info = run_episode(env, np.random.default_rng(7), seed=seed)
        return [o["arch"] for o in observations], info["net"]

    archs_a, net_a = play(5)
    archs_b, net_b = play(5)
    archs_c, net_c = play(6)
    assert archs_a == archs_b and state_equal(net_a, net_b)
    assert archs_c == archs_a  # same actions -> same architectures ...
    assert not state_equal(net_a, net_c)  # ... but the widening noise follows the seed


def test_start_network_is_never_mutated() -> None:
    start = build_network(envs.FASHION_START, (1, 28, 28), seed=3)
    before = {k: v.clone() for k, v in start.state_dict().items()}

    def in_place(net: torch.nn.Module) -> float:
        with torch.no_grad():
            for p in net.parameters():
                p.zero_()
        return 0.5

    env = NetTransformEnv(start=start, evaluator=in_place, schedule=("wider",))
    env.reset(seed=0)
    _, _, done, _, info = env.step(no_op_action())  # the child is architecturally the start
    assert done and info["net"] is not start and info["arch"] == str(start.arch)
    run_episode(NetTransformEnv(start=start, evaluator=in_place, space=SMALL_SPACE),
                np.random.default_rng(0))
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())


# ------------------------------------------------------------------------ masks
def _check_transition(prev: dict, action: dict, obs: dict, kind: str) -> None:
    a, b = Architecture.parse(prev["arch"]), Architecture.parse(obs["arch"])
    if kind == "wider":
        marked = set(np.flatnonzero(action["wider"]).tolist())
        assert len(a.layers) == len(b.layers)
        for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
            if i in marked:
                assert type(la) is type(lb) and lb != la  # widened one level
            else:
                assert la == lb
    elif kind == "deeper":
        if prev["deeper_mask"].any():
            assert len(b.layers) == len(a.layers) + 1
    else:
        assert len(b.skips) == len(a.skips) + 1


@pytest.mark.parametrize("free, space, episodes", [
    (False, SMALL_SPACE, 2),
    (True, SMALL_SPACE, 2),
    pytest.param(False, None, 3, marks=pytest.mark.slow),
    pytest.param(True, None, 3, marks=pytest.mark.slow),
], ids=["schedule", "free", "schedule-full-space", "free-full-space"])
def test_random_legal_actions_plain_space(free: bool, space: SearchSpace | None,
                                          episodes: int) -> None:
    kwargs = {"schedule": None, "free_steps": 8} if free else {}
    env = NetTransformEnv(evaluator=param_evaluator, noise=False, space=space, **kwargs)
    rng = np.random.default_rng(0)
    kinds_seen = set()
    x = torch.randn(4, 1, 28, 28)
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        start = env.net
        for t in range(env.steps):
            assert obs in env.observation_space
            action = sample_legal_action(obs, rng)
            kind = env.schedule[t] if env.schedule else KINDS[int(action["kind"])]
            kinds_seen.add(kind)
            new, reward, done, _, info = env.step(action)
            _check_transition(obs, action, new, kind)
            assert info["kind"] == kind and done == (t == env.steps - 1)
            obs = new
        assert info["arch"] == obs["arch"] and 0 < reward < 700
        start.eval()
        child = info["net"].eval()
        with torch.no_grad():  # function preserving (noise off)
            assert torch.allclose(start(x), child(x), atol=1e-3, rtol=1e-3)
    assert kinds_seen >= {"wider", "deeper"}


def test_random_legal_actions_densenet() -> None:
    start = densenet_bc(16, 12, spatial=32)  # 2 DL layers per block
    env = NetTransformEnv(start=start, input_shape=(3, 32, 32), evaluator=param_evaluator,
                          schedule=("wider", "deeper", "wider", "deeper"), max_layers=30)
    rng = np.random.default_rng(1)
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        n_dense = sum(isinstance(la, Dense) for la in Architecture.parse(obs["arch"]).layers)
        for _ in range(env.steps):
            assert obs in env.observation_space
            assert obs["skip_mask"].sum() == 0 and not obs["deeper_is_fc"].any()
            arch = Architecture.parse(obs["arch"])
            # DL layers and plain convs (stem, transitions) are widenable; pools are not
            for i in np.flatnonzero(obs["wider_mask"]):
                assert isinstance(arch.layers[i], (Dense, Conv))
            assert obs["wider_mask"][[i for i, la in enumerate(arch.layers[:-1])
                                      if isinstance(la, Dense)]].all()
            # deeper means dense_insert: (dense block, position 0..len)
            blocks = arch.dense_blocks()
            legal = {tuple(bp) for bp in np.argwhere(obs["deeper_mask"]).tolist()}
            assert legal == {(b, p) for b in range(len(blocks)) for p in range(len(blocks[b]) + 1)}
            obs, reward, done, _, info = env.step(sample_legal_action(obs, rng))
        layers = Architecture.parse(info["arch"]).layers
        assert sum(isinstance(la, Dense) for la in layers) == n_dense + 2
        assert 0 < reward and not info["failed"]


def test_deeper_masked_out_at_max_layers_is_a_noop_in_schedule_mode() -> None:
    env = NetTransformEnv(evaluator=param_evaluator, max_layers=9, schedule=("deeper",))
    obs, _ = env.reset(seed=0)
    assert not obs["deeper_mask"].any()
    _, _, done, _, info = env.step(no_op_action(9))
    assert done and info["noop"] and info["arch"] == obs["arch"]


# --------------------------------------------------------------- invalid actions
@pytest.mark.parametrize("bad, message", [
    ({"wider": [1]}, "layer(s) 1 P(2,2,MAX) (pooling has no width)"),
    ({"wider": [20]}, "padding"),
    ({"kind": 1, "deeper": np.array([0, 5, 1])}, "cannot insert at block 0, position 5"),
    ({"kind": 1, "deeper": np.array([49, 50, 2])}, "cannot insert"),
    ({"kind": 2, "skip": np.array([0, 2, 0])}, "kind 'skip' is not allowed now"),
    ({"kind": 7}, "not in 0..2"),
    ({"deeper": np.zeros(4, np.int64), "kind": 1}, "must have shape (3,)"),
    ({"wider": "lots"}, "must hold integers"),
])
def test_invalid_action_raises_and_leaves_env_unchanged(bad: dict, message: str) -> None:
    env = NetTransformEnv(evaluator=param_evaluator, schedule=None, free_steps=3)
    obs, _ = env.reset(seed=0)
    action = no_op_action()
    for key, value in bad.items():
        if key == "wider" and isinstance(value, list):
            action["wider"][value] = 1
        else:
            action[key] = value
    net_before, rng_state = env.net, env.np_random.bit_generator.state
    with pytest.raises(InvalidActionError) as err:
        env.step(action)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)
    assert env.net is net_before and env.np_random.bit_generator.state == rng_state
    assert env._get_obs()["step"] == 0 and env._get_obs()["arch"] == obs["arch"]
    env.step(sample_legal_action(obs, np.random.default_rng(0)))  # still usable


def test_step_without_reset_and_after_end() -> None:
    env = NetTransformEnv(evaluator=param_evaluator, schedule=("wider",))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(no_op_action())
    env.reset(seed=0)
    env.step(no_op_action())
    with pytest.raises(RuntimeError, match="ended"):
        env.step(no_op_action())
    with pytest.raises(InvalidActionError, match="dict"):
        env.reset(seed=0)
        env.step([1, 2, 3])


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="schedule"):
        NetTransformEnv(evaluator=param_evaluator, schedule=("wider", "sideways"))
    with pytest.raises(ValueError, match="max_layers"):
        NetTransformEnv(evaluator=param_evaluator, max_layers=5)
    with pytest.raises(ValueError, match="input_shape"):
        NetTransformEnv(start=build_network(envs.FASHION_START, (1, 28, 28)),
                        input_shape=(3, 32, 32), evaluator=param_evaluator)


# ---------------------------------------------------------------------- rewards
def test_reward_is_tan_of_accuracy_and_info_keys() -> None:
    env = NetTransformEnv(evaluator=CountingEvaluator(0.7), space=SMALL_SPACE)
    observations, reward, info = run_episode(env, np.random.default_rng(0))
    assert reward == pytest.approx(math.tan(0.7 * math.pi / 2))
    for key in ("accuracy", "arch", "params", "flops", "train_time", "failed", "reason",
                "cached", "net"):
        assert key in info
    assert info["accuracy"] == 0.7 and info["failed"] is False and info["cached"] is False
    assert info["params"] == info["net"].num_parameters() and info["flops"] > 0
    assert str(info["net"].arch) == info["arch"] == observations[-1]["arch"]
    assert len(info["actions"]) == env.steps


def test_reward_clamped_at_0999() -> None:
    env = NetTransformEnv(evaluator=lambda net: 1.0, schedule=("wider",))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(no_op_action())
    assert math.isfinite(reward)
    assert reward == pytest.approx(math.tan(0.999 * math.pi / 2)) == pytest.approx(636.6, abs=0.1)
    assert paper_reward(0.9995) == paper_reward(0.999) == reward
    assert paper_reward(0.5, failed=True) == 0.0 and paper_reward(float("nan")) == 0.0


def test_failing_evaluator_gives_failed_child_and_zero_reward() -> None:
    def broken(net: torch.nn.Module) -> float:
        raise RuntimeError("CUDA exploded")

    env = NetTransformEnv(evaluator=broken, schedule=SHORT, space=SMALL_SPACE)
    _, reward, info = run_episode(env, np.random.default_rng(0))
    assert reward == 0.0 and info["failed"] is True and info["accuracy"] == 0.0
    assert "CUDA exploded" in info["reason"]
    assert len(env.cache) == 0  # failures are not cached
    run_episode(env, np.random.default_rng(0))  # the env is still usable


def test_evaluator_returning_nonsense_fails_the_child() -> None:
    env = NetTransformEnv(evaluator=lambda net: 1.5, schedule=("wider",))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(no_op_action())
    assert info["failed"] and reward == 0.0 and "outside [0, 1]" in info["reason"]


# ------------------------------------------------------------------------ cache
def test_cache_hit_on_repeated_architecture() -> None:
    counter = CountingEvaluator(0.6)
    env = NetTransformEnv(evaluator=counter, schedule=SHORT, space=SMALL_SPACE)
    _, r1, info1 = run_episode(env, np.random.default_rng(4), seed=0)
    _, r2, info2 = run_episode(env, np.random.default_rng(4), seed=0)
    assert info1["arch"] == info2["arch"] and r1 == r2
    assert info1["cached"] is False and info2["cached"] is True
    assert counter.seen == [info1["arch"]] and env.cache.hits == 1
    env.cache.clear()
    run_episode(env, np.random.default_rng(4), seed=0)
    assert len(counter.seen) == 2
    # another start network (other weights) -> another key, trained again
    other = build_network(envs.FASHION_START, (1, 28, 28), seed=1)
    _, _, info3 = run_episode(env, np.random.default_rng(4), seed=0, options={"start": other})
    assert info3["arch"] == info1["arch"] and not info3["cached"] and len(counter.seen) == 3


def test_cache_disabled_trains_again() -> None:
    counter = CountingEvaluator(0.6)
    env = NetTransformEnv(evaluator=counter, cache=False, schedule=SHORT, space=SMALL_SPACE)
    run_episode(env, np.random.default_rng(4))
    _, _, info = run_episode(env, np.random.default_rng(4))
    assert len(counter.seen) == 2 and info["cached"] is False and env.cache is None


def test_cached_result_returns_stored_trained_net() -> None:
    def fake_trainer(net: torch.nn.Module) -> EvalResult:
        state = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v.clone()
                 for k, v in net.state_dict().items()}
        return EvalResult(0.8, train_time=3.0, state_dict=state)

    cache = EvalCache()
    env = NetTransformEnv(evaluator=fake_trainer, schedule=("wider",), cache=cache)
    env.reset(seed=0)
    action = no_op_action()
    action["wider"][[0, 8]] = 1
    _, _, _, _, first = env.step(action)
    env.reset(seed=0)
    _, reward, _, _, second = env.step(action)
    assert second["cached"] and second["accuracy"] == 0.8 and second["train_time"] == 0.0
    assert reward == pytest.approx(math.tan(0.8 * math.pi / 2))
    assert first["net"] is not second["net"] and state_equal(first["net"], second["net"])
    assert second["net"].layers[0].conv.weight.detach().flatten()[0].item() == 0.25


def test_fingerprint_depends_on_weights() -> None:
    a = build_network(envs.FASHION_START, (1, 28, 28), seed=0)
    b = build_network(envs.FASHION_START, (1, 28, 28), seed=0)
    assert envs.fingerprint(a) == envs.fingerprint(b)
    with torch.no_grad():
        b.layers[8].fc.weight[3, 7] += 1e-3
    assert envs.fingerprint(a) != envs.fingerprint(b)


# ------------------------------------------------------------------- vector env
class BatchEvaluator:
    """An evaluator with ``evaluate_many``; records each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, net: torch.nn.Module) -> float:  # pragma: no cover - must not be used
        raise AssertionError("the vector env must call evaluate_many")

    def evaluate_many(self, nets: list) -> list[EvalResult]:
        self.batches.append([str(n.arch) for n in nets])
        return [EvalResult(param_evaluator(n)) for n in nets]


def test_vector_env_evaluates_the_batch_once() -> None:
    ev = BatchEvaluator()
    venv = VectorNetTransformEnv(3, evaluator=ev, space=SMALL_SPACE)
    assert isinstance(venv, gymnasium.vector.VectorEnv) and venv.num_envs == 3
    assert venv.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.DISABLED
    obs, _ = venv.reset(seed=0)
    assert obs in venv.observation_space and isinstance(obs["arch"], tuple)
    venv.action_space.seed(0)
    for t in range(venv.steps):
        obs, rewards, term, trunc, infos = venv.step(venv.action_space.sample())
        assert obs in venv.observation_space and not trunc.any()
        if t < venv.steps - 1:
            assert infos["final"] == [None] * 3 and not term.any() and ev.batches == []
    assert term.all() and len(ev.batches) == 1 and len(ev.batches[0]) == 3
    finals = infos["final"]
    assert [f["arch"] for f in finals] == list(obs["arch"])
    assert sorted(ev.batches[0]) == sorted(f["arch"] for f in finals)
    for f, r in zip(finals, rewards):
        assert r == pytest.approx(paper_reward(f["accuracy"])) and not f["cached"]
    assert infos["_accuracy"].all() and infos["accuracy"].shape == (3,)


def test_vector_env_duplicates_trained_once_and_list_actions() -> None:
    ev = BatchEvaluator()
    venv = VectorNetTransformEnv(3, evaluator=ev, schedule=SHORT, space=SMALL_SPACE)
    start = build_network(envs.FASHION_START, (1, 28, 28), seed=2)
    venv.reset(seed=0, options={"start": start})
    widen = no_op_action()
    widen["wider"][2] = 1
    deepen = no_op_action()
    deepen["deeper"] = np.array([1, 0, 1])
    venv.step([widen] * 3)
    _, rewards, _, _, infos = venv.step({k: np.stack([v] * 3) for k, v in deepen.items()})
    assert len(ev.batches) == 1 and len(ev.batches[0]) == 1
    assert [f["cached"] for f in infos["final"]] == [False, True, True]
    assert len(set(rewards.tolist())) == 1
    venv.reset(seed=0, options={"start": start})  # the shared cache serves the next round too
    venv.step([widen] * 3)
    _, _, _, _, infos = venv.step([deepen] * 3)
    assert len(ev.batches) == 1 and all(f["cached"] for f in infos["final"])


def test_vector_env_invalid_action_changes_nothing() -> None:
    venv = VectorNetTransformEnv(2, evaluator=param_evaluator)
    obs, _ = venv.reset(seed=0)
    good = no_op_action()
    good["wider"][0] = 1
    bad = no_op_action()
    bad["wider"][1] = 1
    with pytest.raises(InvalidActionError, match="environment 1"):
        venv.step([good, bad])
    assert all(env._step == 0 and str(env.net.arch) == obs["arch"][0] for env in venv.envs)


def test_make_vec_entry_point() -> None:
    venv = gymnasium.make_vec("eas/NetTransform-v0", num_envs=2,
                              vectorization_mode="vector_entry_point", evaluator=param_evaluator)
    assert isinstance(venv, VectorNetTransformEnv) and venv.num_envs == 2


# --------------------------------------------------------------- real training
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("eas.data") is None, reason="eas/data.py missing")
def test_episode_with_real_trainer_on_fashion_mnist_slice() -> None:
    from eas.data import DatasetNotFoundError, load_dataset
    from eas.recipe import TrainConfig

    try:
        data = load_dataset("fashion-mnist", train_subset=256, val_size=256, download=False)
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not available offline: {exc}")
    config = TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=3)
    trainer = envs.TrainerEvaluator(data, config, seed=0)
    untrained: list[dict] = []

    def evaluator(net: torch.nn.Module) -> EvalResult:
        untrained.append({k: v.clone() for k, v in net.state_dict().items()})
        return trainer(net)

    env = NetTransformEnv(evaluator=evaluator, schedule=SHORT, space=SMALL_SPACE)
    observations, reward, info = run_episode(env, np.random.default_rng(0))
    assert not info["failed"], info["reason"]
    assert 0.0 <= info["accuracy"] <= 1.0 and info["train_time"] > 0
    assert reward == pytest.approx(paper_reward(info["accuracy"]))
    assert info["steps"] == 3
    child = info["child"]  # the trainer's facts are on the child's record
    assert (child.epochs, child.precision, child.cuda_graph) == (1, "fp32", False)
    assert child.note == info["note"] and child.reward == reward
    assert isinstance(Architecture.parse(info["arch"]).layers[-2], FC)
    trained = info["net"]
    assert str(trained.arch) == observations[-1]["arch"]
    assert len(untrained) == 1 and untrained[0].keys() == trained.state_dict().keys()
    assert not all(torch.equal(v, trained.state_dict()[k]) for k, v in untrained[0].items())
    # the trained weights came back: evaluating the returned net reproduces the accuracy
    from eas.evaluation import evaluate

    acc = evaluate(trained, data.val_x, data.val_y, data)
    assert acc == pytest.approx(info["accuracy"], abs=1e-6)


def test_widening_a_layer_at_the_top_width_is_rejected_with_the_reason() -> None:
    start = "C(512,3,1), P(2,2,MAX), C(32,3,1), P(14,14,AVG), SM(10)"
    env = NetTransformEnv(start=start, evaluator=param_evaluator, schedule=("wider",))
    obs, _ = env.reset(seed=0)
    assert obs["wider_mask"][:4].tolist() == [0, 0, 1, 0]
    action = no_op_action()
    action["wider"][0] = 1
    with pytest.raises(InvalidActionError, match="top width"):
        env.step(action)


def test_cache_state_dict_round_trip() -> None:
    cache = EvalCache(max_weights=1)
    cache.put(("fp", "a"), EvalResult(0.5, train_time=2.0, state_dict={"w": torch.ones(2)}))
    cache.put(("fp", "b"), EvalResult(0.6, state_dict={"w": torch.zeros(2)}))
    cache.put(("fp", "c"), EvalResult(0.0, failed=True, reason="NaN"))
    assert len(cache) == 2 and ("fp", "c") not in cache  # failures are not stored
    assert cache.get(("fp", "a")).state_dict is None  # only the newest keeps weights
    assert cache.get(("fp", "b")).state_dict is not None
    restored = EvalCache()
    restored.load_state_dict(cache.state_dict())
    assert (restored.hits, restored.misses) == (cache.hits, cache.misses) == (2, 0)
    assert restored.get(("fp", "a")).accuracy == 0.5
    assert restored.get(("fp", "b")).state_dict is None and restored.get(("fp", "x")) is None
