"""The shrink actions (narrow, remove) as environment actions: off by default, masked,
applied, refused, used by random search and hill climbing, and distilled before training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from helpers import FASHION

from eas.agents.controller import Controller
from eas.arch import SearchSpace, Tokenizer, width_of
from eas.config.engine import load_config
from eas.config.sections import ConfigError
from eas.distill import DistillConfig, agreement
from eas.envs import EvalResult, InvalidActionError, NetTransformEnv, ShrinkDistiller
from eas.envs.observation import NARROW, REMOVE, sample_legal_action
from eas.envs.synthetic import SyntheticEvaluator
from eas.kinds import ALL_KINDS, KINDS
from eas.morphisms.legal import narrow_levels
from eas.morphisms.narrow import narrow_refusal
from eas.morphisms.remove_layer import remove_refusal
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.search.loop import run_search
from eas.training import train_child

SPACE = SearchSpace(filters=(4, 8, 16, 32), fc_units=(16, 32, 64))
# layer 1 keeps 8 channels (removable), 2 and 3 are tied to a skip, 4 is a pool, 6 keeps 32
# features (removable)
ARCH = ("C(8,3,1), C(8,3,1), C(16,3,1), C(16,3,1), S(2,3,ADD), P(2,2,MAX), FC(32), FC(32), "
        "SM(10)")
PARENT = "C(8,3,1), P(2,2,MAX), C(8,3,1), P(2,2,MAX), FC(32), SM(10)"
SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"


pytestmark = pytest.mark.usefixtures("one_thread")


def make_env(shrink: bool = True, **kw) -> NetTransformEnv:
    kw.setdefault("schedule", None)
    return NetTransformEnv(start=ARCH, space=SPACE, max_layers=10, evaluator=SyntheticEvaluator(),
                           shrink=shrink, **kw)


def action(env: NetTransformEnv, kind: str, **fields) -> dict:
    act = {"kind": np.int64(env.kinds.index(kind)), "wider": np.zeros(10, np.int8),
           "deeper": np.zeros(3, np.int64), "skip": np.zeros(3, np.int64),
           "narrow": np.zeros(2, np.int64), "remove": np.int64(0)}
    act.update({k: np.asarray(v, np.int64) for k, v in fields.items()})
    return act


def test_shrinking_is_off_by_default_and_changes_nothing() -> None:
    env = NetTransformEnv(start=ARCH, space=SPACE, max_layers=10, schedule=None)
    assert env.kinds == KINDS == ("wider", "deeper", "skip") and not env.shrink
    assert set(env.action_space.spaces) == {"kind", "wider", "deeper", "skip"}
    assert env.action_space["kind"] == spaces.Discrete(3)
    obs, _ = env.reset(seed=0)
    assert "narrow_mask" not in obs and "remove_mask" not in obs
    assert obs["kind_mask"].shape == (3,) and set(obs) == set(env.observation_space.spaces)
    # the exact-kind part of a shrink environment is the same: same masks for the same state
    on, _ = make_env().reset(seed=0)
    for key, value in obs.items():
        if key != "kind_mask":
            assert np.array_equal(np.asarray(value), np.asarray(on[key])), key
    assert np.array_equal(on["kind_mask"][:3], obs["kind_mask"])
    # a shrink kind index is out of range with shrinking off
    with pytest.raises(InvalidActionError, match="shrink=True"):
        env.step({"kind": 3, "narrow": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="shrink=True"):
        NetTransformEnv(start=ARCH, space=SPACE, schedule=("wider", "narrow"))


def test_masks_name_exactly_the_legal_shrinks() -> None:
    env = make_env()
    assert env.kinds == ALL_KINDS
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    arch = env.net.arch
    W = narrow_levels(SPACE)
    assert obs["narrow_mask"].shape == (10, W) and obs["remove_mask"].shape == (10,)
    want_narrow = set()
    for i, layer in enumerate(arch.layers[:-1]):
        for k, w in enumerate(SPACE.levels_for(layer)):
            width = width_of(layer)
            if width is not None and w < width and narrow_refusal(arch, i, w) is None:
                want_narrow.add((i, k))
    got = {tuple(int(v) for v in ij) for ij in np.argwhere(obs["narrow_mask"])}
    assert got == want_narrow
    assert {i for i, _ in got} == {0, 1, 5, 6}  # 2 and 3 are tied to the ADD skip, 4 is a pool
    removable = {i for i in range(len(arch.layers)) if remove_refusal(arch, (1, 28, 28), i) is None}
    assert set(np.flatnonzero(obs["remove_mask"]).tolist()) == removable == {1, 6}
    assert obs["kind_mask"].tolist() == [1, 1, 1, 1, 1]
    assert env.legal_actions.has("narrow") and env.legal_actions.has("remove")


def test_applying_narrow_and_remove() -> None:
    env = make_env(free_steps=2)
    env.reset(seed=0)
    level = SPACE.fc_units.index(16)
    obs, _, _, _, info = env.step(action(env, "narrow", narrow=[5, level]))
    assert info["kind"] == "narrow" and not info["noop"]
    assert str(env.net.arch.layers[5]) == "FC(16)" and obs["remove_mask"].tolist()[6] == 0
    obs, reward, done, _, info = env.step(action(env, "remove", remove=1))
    assert done and not info["failed"] and reward > 0
    assert info["arch"] == ("C(8,3,1), C(16,3,1), C(16,3,1), S(1,2,ADD), P(2,2,MAX), FC(16), "
                            "FC(32), SM(10)")
    assert info["shrunk"] is True and info["distilled"] is False  # no distill hook given
    assert [int(a["kind"]) for a in info["actions"]] == [NARROW, REMOVE]
    net = info["net"].eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind, fields, match", [
    ("narrow", {"narrow": [2, 0]}, "not a legal narrowing"),          # tied to the skip
    ("narrow", {"narrow": [4, 0]}, "not a legal narrowing"),          # a pool
    ("narrow", {"narrow": [0, 2]}, "to 16"),                           # 8 -> 16 is not smaller
    ("narrow", {"narrow": [9, 0]}, "the network has 7 layers"),        # padding
    ("remove", {"remove": 0}, "cannot be removed"),                    # 1 -> 8 channels
    ("remove", {"remove": 3}, "cannot be removed"),                    # skip end
])
def test_illegal_shrink_actions_are_refused(kind: str, fields: dict, match: str) -> None:
    env = make_env()
    env.reset(seed=0)
    before = str(env.net.arch)
    with pytest.raises(InvalidActionError, match=match):
        env.step(action(env, kind, **fields))
    assert str(env.net.arch) == before and env.legal_actions is not None


def test_seeded_sampling_reaches_the_shrink_kinds() -> None:
    env = make_env(free_steps=1)
    env.action_space.seed(0)
    kinds = []
    for episode in range(30):
        env.reset(seed=episode)
        act = env.action_space.sample()
        kinds.append(int(act["kind"]))
        env.step(act)  # legal by construction
    assert NARROW in kinds and REMOVE in kinds
    # the same seed gives the same draws
    obs, _ = make_env().reset(seed=0)
    a = sample_legal_action(obs, np.random.default_rng(5))
    b = sample_legal_action(obs, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_config_keys_and_refusals() -> None:
    cfg = load_config(None, {"search.shrink": "true", "search.agent": "random",
                             "search.schedule": "wider,narrow,remove"})
    assert cfg.search.shrink and cfg.search.shrink_distill_steps == 300
    assert not load_config(None, {}).search.shrink
    with pytest.raises(ConfigError, match="search.schedule: 'narrow' is a shrink action"):
        load_config(None, {"search.schedule": "wider,narrow"})
    with pytest.raises(ConfigError, match="search.shrink: agent 'lemonade' cannot pick"):
        load_config(None, {"search.shrink": "true", "search.agent": "lemonade"})
    assert load_config(None, {"search.shrink": "true"}).search.agent == "reinforce"
    with pytest.raises(ConfigError, match="search.shrink_distill_steps"):
        load_config(None, {"search.shrink_distill_steps": "-1"})


class HashEvaluator:
    """Accuracy from a hash of the architecture; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        self.calls += 1
        digest = hashlib.blake2b(str(net.arch).encode(), digest_size=4).digest()
        acc = 0.5 + int.from_bytes(digest, "little") / 2**32 * 0.4
        return EvalResult(accuracy=acc, train_time=0.01)


@pytest.mark.parametrize("agent,mode", [("random", "paper"), ("hill_climbing", "paper"),
                                        ("reinforce", "paper"), ("reinforce", "pool")])
def test_search_with_shrinking_makes_shrunk_children(tmp_path: Path, agent: str,
                                                     mode: str) -> None:
    cfg = load_config(overrides={
        "search.agent": agent, "search.seed": 1, "controller.mode": mode, "search.children_per_step": 4,
        "search.stage1_networks": 12, "search.stage2_networks": 0, "search.final_top_k": 0,
        "search.progress": False, "search.parent_control": False, "search.schedule": "free",
        "search.free_steps": 2, "search.shrink": True, "search.shrink_distill_steps": 0,
        "hill_climbing.n_neigh": 4, "hill_climbing.n_nm": 2, "hill_climbing.n_steps": 3,
        "space.filters": "8,16,32", "space.fc_units": "32,64",
        "data.name": "fashion-mnist", "data.device": "cpu", "start.arch": SMALL,
        "start.epochs": 0})
    evaluator = HashEvaluator()
    res = run_search(cfg, run_dir=tmp_path / agent, evaluator=evaluator, log=lambda _m: None)
    history = res.state.history  # reinforce: shrunk children come from its shrink actors
    assert len(history) == 12 and evaluator.calls <= 12
    shrunk = [h for h in history if h["shrunk"]]
    assert shrunk, [h["arch"] for h in history]
    assert not any(h["distilled"] for h in history)  # shrink_distill_steps = 0
    start_widths = [width_of(layer) for layer in build_network(SMALL).arch.layers]
    assert any(len(h["arch"].split("), ")) < len(SMALL.split("), "))
               or any(w is not None and s is not None and w < s for w, s in zip(
                   [width_of(layer) for layer in build_network(h["arch"]).arch.layers],
                   start_widths))
               for h in shrunk)


def test_the_distill_hook_runs_once_per_shrunk_child() -> None:
    calls = []

    def hook(child, parent, seed):
        calls.append((str(child.arch), str(parent.arch), seed))
        return child.clone()

    env = make_env(free_steps=1, distill=hook)
    env.reset(seed=0)
    *_, info = env.step(action(env, "wider", wider=[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert info["shrunk"] is False and info["distilled"] is False and not calls
    for seed in (0, 0):  # the second time the child is in the cache: no distillation
        env.reset(seed=seed)
        *_, info = env.step(action(env, "remove", remove=1))
        assert info["shrunk"] is True
    assert len(calls) == 1 and calls[0][1] == ARCH and isinstance(calls[0][2], int)
    assert info["distilled"] is False and info["cached"] is True

    def broken(child, parent, seed):
        raise RuntimeError("out of memory")

    env = make_env(free_steps=1, distill=broken, cache=False)
    env.reset(seed=0)
    *_, info = env.step(action(env, "remove", remove=1))
    assert info["distilled"] is False and "out of memory" in info["distill_error"]
    assert not info["failed"]  # evaluated undistilled


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_a_shrunk_child_is_distilled_from_its_start_network() -> None:
    from eas.data import load_dataset

    data = load_dataset("fashion-mnist", val_size=500, train_subset=2000, seed=0)
    parent = build_network(PARENT, seed=0)  # trained long enough for settled BN statistics
    train_child(parent, data, TrainConfig(epochs=1, batch_size=32, channels_last=False), seed=0)
    parent.eval()
    distiller = ShrinkDistiller(data, DistillConfig(steps=40, batch_size=32))
    env = NetTransformEnv(start=parent, space=SPACE, max_layers=10, evaluator=SyntheticEvaluator(),
                          schedule=("narrow",), shrink=True, distill=distiller, cache=False)
    plain = NetTransformEnv(start=parent, space=SPACE, max_layers=10,
                            evaluator=SyntheticEvaluator(), schedule=("narrow",), shrink=True,
                            cache=False)
    level = SPACE.filters.index(4)  # conv 0: 8 -> 4 channels
    results = []
    for e in (env, plain):
        e.reset(seed=0)
        *_, info = e.step(action(e, "narrow", narrow=[0, level]))
        results.append(info)
    distilled, undistilled = results
    assert distilled["distilled"] is True and undistilled["distilled"] is False
    assert distilled["arch"] == undistilled["arch"] and distilled["arch"].startswith("C(4,3,1)")
    assert distiller.last is not None and distiller.last.steps == 40
    before = agreement(parent, undistilled["net"], data.val_x, data)
    after = agreement(parent, distilled["net"], data.val_x, data)
    assert after["top1"] > before["top1"] and after["kl"] < before["kl"], (before, after)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_search_distills_children_made_with_a_shrink_action(tmp_path: Path) -> None:
    cfg = load_config(overrides={
        "search.agent": "random", "search.seed": 2, "search.children_per_step": 2,
        "search.stage1_networks": 2, "search.stage2_networks": 0, "search.final_top_k": 0,
        "search.progress": False, "search.parent_control": False, "search.schedule": "narrow",
        "search.shrink": True, "search.shrink_distill_steps": 3, "search.cache": False,
        "space.filters": "8,16,32", "space.fc_units": "32,64", "data.name": "fashion-mnist",
        "data.device": "cpu", "data.train_subset": 256, "data.val_size": 200,
        "start.arch": SMALL, "start.epochs": 0})
    res = run_search(cfg, run_dir=tmp_path / "run", evaluator=HashEvaluator(),
                     log=lambda _m: None)
    assert [(h["shrunk"], h["distilled"]) for h in res.state.history] == [(True, True)] * 2


def test_controller_shrink_actors_pick_legal_shrinks_and_rescore_them() -> None:
    """With the shrink kinds the controller's narrow and remove actors sample only what
    the masks allow (the environment accepts every action), and rescoring the sampled
    actions gives the same log-probabilities (the learning rule's premise)."""
    env = make_env(free_steps=1)
    torch.manual_seed(0)
    ctrl = Controller(Tokenizer(SPACE).vocab_size, 10, len(SPACE.kernel_sizes), len(ALL_KINDS),
                      num_levels=narrow_levels(SPACE))
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for episode in range(40):
        obs, _ = env.reset(seed=episode)
        out = ctrl.act(obs, gen)
        acts = {k: v[0] for k, v in out.actions.items()}
        kind = env.kinds[int(acts["kind"])]
        seen.add(kind)
        if kind == "narrow":
            layer, level = map(int, acts["narrow"])
            assert obs["narrow_mask"][layer, level]
        if kind == "remove":
            assert obs["remove_mask"][int(acts["remove"])]
        env.step(acts)  # raises InvalidActionError on an illegal action
        again = ctrl.evaluate(obs, out.actions)
        assert torch.allclose(again.log_prob, out.log_prob, atol=1e-6)
    assert {"narrow", "remove"} <= seen
    with pytest.raises(ValueError, match="num_levels"):
        Controller(10, 10, 2, len(ALL_KINDS))
