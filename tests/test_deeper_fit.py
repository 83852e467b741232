"""Net2Deeper fitted to a fixed batch of training data inside the environment (EAS code's
``set_identity4deepen``): exact in eval mode, and in train mode on the batch; same search path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FASHION

from eas.config.engine import load_config
from eas.data import fitting_batch, load_dataset
from eas.envs import NetTransformEnv
from eas.envs.observation import sample_legal_action
from eas.envs.synthetic import SyntheticEvaluator
from eas.network import ChildNet, build_network
from eas.search.callbacks import SearchCallback
from eas.search.loop import run_search

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"
needs_data = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Fashion-MNIST")


@pytest.fixture(scope="module")
def data():
    return load_dataset("fashion-mnist", train_subset=512, val_size=256, download=False)


def _trained_start() -> ChildNet:
    """A start network whose BatchNorm running statistics are not the initial 0/1."""
    net = build_network(SMALL, (1, 28, 28), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(32, 1, 28, 28, generator=gen) * 2 + 0.5)
    return net.eval()


def _deepen(start: ChildNet, batch: torch.Tensor | None) -> ChildNet:
    env = NetTransformEnv(start=start, schedule=("deeper",), evaluator=lambda net: 0.5,
                          cache=False, noise=False, deeper_batch=batch)
    obs, _ = env.reset(seed=0)
    _, _, done, _, info = env.step(sample_legal_action(obs, np.random.default_rng(3)))
    assert done and info["arch"] != str(start.arch)
    return info["net"]


@needs_data
def test_fitting_batch_is_fixed_by_the_seed(data) -> None:
    a, b, c = fitting_batch(data, 64, seed=0), fitting_batch(data, 64, seed=0), \
        fitting_batch(data, 64, seed=1)
    assert a.shape == (64, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean())) < 0.5  # normalised like the training batches


@needs_data
def test_the_new_layer_is_fitted_to_the_batch(data) -> None:
    start, batch = _trained_start(), fitting_batch(data, 64, seed=0)
    fitted, plain = _deepen(start, batch), _deepen(start, None)
    assert fitted.arch == plain.arch
    q = next(i for i, (a, b) in enumerate(zip(fitted.arch.layers, start.arch.layers)) if a != b)
    assert torch.equal(plain.layers[q].bn.running_var, torch.ones_like(plain.layers[q].bn.running_var))
    assert not torch.allclose(fitted.layers[q].bn.running_var, plain.layers[q].bn.running_var)
    with torch.no_grad():  # eval mode: both are function-preserving
        want = start.eval()(batch)
        for child in (fitted, plain):
            torch.testing.assert_close(child.eval()(batch), want, rtol=1e-4, atol=1e-4)
        # train mode: the fitted layer stays an identity, the unfitted one standardises
        want = copy.deepcopy(start).train()(batch)
        err = {name: float((copy.deepcopy(net).train()(batch) - want).abs().mean())
               for name, net in (("fitted", fitted), ("plain", plain))}
    assert err["fitted"] < 1e-4 < err["plain"], err  # exact on the batch it was fitted to
    assert not start.training and not fitted.training  # modes are kept


class _Grab(SearchCallback):
    def on_search_start(self, run) -> None:
        self.batch = run.deeper_batch


@needs_data
def test_fitting_in_the_search_keeps_the_same_children(tmp_path: Path, data) -> None:
    """The same-seed test's random-search run, with data (so Net2Deeper is fitted)."""
    saved = json.loads((Path(__file__).parent / "data" / "same_seed_children.json").read_text())
    cfg = load_config(overrides={
        "search.agent": "random", "search.seed": 3, "search.children_per_step": 3,
        "search.stage1_networks": 6, "search.stage2_networks": 3, "search.stage1_best_epochs": 0,
        "search.final_top_k": 0, "search.final_epochs": 0, "search.progress": False,
        "search.schedule": "wider,deeper,deeper", "data.name": "fashion-mnist",
        "data.device": "cpu", "start.arch": SMALL, "start.epochs": 0})
    grab = _Grab()
    res = run_search(cfg, run_dir=tmp_path / "r", evaluator=SyntheticEvaluator(), data=data,
                     callbacks=[grab], log=lambda _m: None)
    assert torch.equal(grab.batch, fitting_batch(data, 64, seed=3))
    got = [[h["stage"], h["arch"], round(h["accuracy"], 12)] for h in res.state.history]
    assert got == saved["random"]
