"""CUDA-graph child training (eas.graphed.StepRunner through train_child).

On CPU: the configuration value, the fallback when a capture fails (forced by
a monkeypatched ``capture``), and that the static-buffer step (what the graph
records) trains exactly like the eager loop: same batches, augmentation and
learning rates. On CUDA (marked ``gpu``, skipped elsewhere): graph against
eager over 200 steps and the validation accuracy after a short real run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_training import NaNNet, small_cnn, synthetic_data

from eas import graphed, training
from eas.data import DEBIAN_DATASET_DIR, AugmentConfig, load_dataset
from eas.search.config import load_config
from eas.training import TrainConfig, train_child

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    data = synthetic_data(n_train=256, seed=1)
    # crops and flips, so that the pre-drawn augmentation is exercised
    return data.__class__(**{**data.__dict__,
                             "augment": AugmentConfig(crop_padding=1, hflip=True)})


class _FakeGraph:
    """Replays like a captured step: gradients are written afresh, then the step runs."""

    def __init__(self, step: Callable[[], None], runner: graphed.StepRunner) -> None:
        self.step, self.runner = step, runner

    def replay(self) -> None:
        assert self.runner.optimizer is not None
        self.runner.optimizer.zero_grad(set_to_none=True)
        self.step()


def test_cuda_graph_is_a_config_value() -> None:
    assert TrainConfig().cuda_graph is True
    assert load_config(None, {"child.cuda_graph": "false"}).child.cuda_graph is False


def test_cpu_uses_the_eager_loop() -> None:
    res = train_child(small_cnn(size=8), _data(), TrainConfig(epochs=1, batch_size=32))
    assert not res.cuda_graph and res.note is None


@pytest.mark.parametrize("replayed", [False, True])
def test_static_buffer_steps_train_like_the_eager_loop(monkeypatch: pytest.MonkeyPatch,
                                                       replayed: bool) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    eager_net = small_cnn(size=8, seed=3)
    eager = train_child(eager_net, _data(), cfg, seed=5)
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: True)
    runners: list[graphed.StepRunner] = []
    real_init = graphed.StepRunner.__init__

    def init(self: graphed.StepRunner, *args, **kwargs) -> None:
        real_init(self, *args, **kwargs)
        runners.append(self)

    monkeypatch.setattr(graphed.StepRunner, "__init__", init)
    if replayed:
        monkeypatch.setattr(graphed, "capture", lambda step: _FakeGraph(step, runners[-1]))
    else:
        def fail(step: Callable[[], None]) -> None:
            raise RuntimeError("forced capture failure")

        monkeypatch.setattr(graphed, "capture", fail)
    net = small_cnn(size=8, seed=3)
    res = train_child(net, _data(), cfg, seed=5)
    assert not res.failed and res.steps == eager.steps == 24
    assert res.cuda_graph is replayed
    if replayed:
        assert res.note is None
    else:
        assert res.note is not None and "forced capture failure" in res.note
        assert "eager" in res.note
    assert res.train_loss == pytest.approx(eager.train_loss, rel=1e-4)
    assert res.val_accuracy == pytest.approx(eager.val_accuracy, abs=1e-9)
    for a, b in zip(net.state_dict().values(), eager_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fallback_still_detects_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: True)
    res = train_child(NaNNet(), synthetic_data(), TrainConfig(epochs=2, batch_size=32))
    assert res.failed and res.val_accuracy == 0.0 and "NaN" in (res.reason or "")


# ----------------------------------------------------------------------------- GPU
def _cuda_data():
    g = torch.Generator().manual_seed(0)
    n = 64 * 200 + 512
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randint(0, 255, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    x[:, 0, :8, :8] = (y * 25).to(torch.uint8)[:, None, None]  # learnable signal
    data = synthetic_data()
    return data.__class__(**{**data.__dict__, "train_x": x[:-512], "train_y": y[:-512],
                             "val_x": x[-512:], "val_y": y[-512:], "test_x": x[-512:],
                             "test_y": y[-512:], "num_classes": 10,
                             "mean": torch.full((3,), 0.5), "std": torch.full((3,), 0.29),
                             "augment": AugmentConfig(crop_padding=4, hflip=True)}).to("cuda")


@pytest.mark.gpu
@needs_cuda
def test_graph_loss_curve_matches_eager_over_200_steps() -> None:
    """Mean loss of each block of 20 steps (10 blocks = 200 steps), graph vs eager, bf16."""
    data = _cuda_data()
    curves = {}
    for graph in (False, True):
        curve = []
        for epochs in range(1, 11):
            cfg = TrainConfig(epochs=epochs, max_batches_per_epoch=20, cuda_graph=graph,
                              schedule="constant")
            res = train_child(small_cnn(in_ch=3, size=32, seed=0), data, cfg, seed=0)
            assert not res.failed and res.cuda_graph is graph, res.note
            curve.append(res.train_loss)
        curves[graph] = torch.tensor(curve)
    torch.testing.assert_close(curves[True], curves[False], rtol=0.05, atol=0.02)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not (DEBIAN_DATASET_DIR / "fashion-mnist").exists(),
                    reason="Fashion-MNIST not installed")
def test_graph_validation_accuracy_within_noise_of_eager() -> None:
    data = load_dataset("fashion-mnist", train_subset=10_000, device="cuda")
    accs = {}
    for graph in (False, True):
        cfg = TrainConfig(epochs=2, cuda_graph=graph)
        res = train_child(small_cnn(seed=0), data, cfg, seed=0)
        assert not res.failed and res.cuda_graph is graph, res.note
        accs[graph] = res.val_accuracy
    assert accs[False] > 0.75
    assert abs(accs[True] - accs[False]) <= 0.02, accs


@pytest.mark.gpu
@needs_cuda
def test_graph_detects_divergence() -> None:
    cfg = TrainConfig(epochs=2, max_batches_per_epoch=60, lr=1e8)
    res = train_child(small_cnn(in_ch=3, size=32, bn=False), _cuda_data(), cfg)
    assert res.failed and "non-finite" in (res.reason or "")
