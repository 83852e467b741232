"""Tests for eas.training: child trainer, evaluation, schedules and failure handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eas.data import DEBIAN_DATASET_DIR, AugmentConfig, Data, load_dataset
from eas.evaluation import evaluate
from eas.recipe import TrainConfig
from eas.training import TrainResult, final_train, lr_at, train_child

FMNIST_DIR = DEBIAN_DATASET_DIR / "fashion-mnist"


def small_cnn(
    in_ch: int = 1, classes: int = 10, size: int = 28, seed: int = 0, bn: bool = True
) -> nn.Module:
    """(conv-BN-ReLU, max-pool) x2, flatten, linear; seeded init."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        return [*layers, nn.ReLU(), nn.MaxPool2d(2)]

    net = nn.Sequential(
        *block(in_ch, 16),
        *block(16, 32),
        nn.Flatten(),
        nn.Linear(32 * (size // 4) ** 2, classes),
    )
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def synthetic_data(n_train: int = 256, n_val: int = 64, n_test: int = 64, seed: int = 0) -> Data:
    """Random 1x8x8 images whose class is which quadrant is bright (learnable, tiny)."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val + n_test
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for q in range(4):
        r, c = divmod(q, 2)
        sel = y == q
        x[sel, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 180
    a, b = n_train, n_train + n_val
    return Data(
        "synthetic",
        x[:a],
        y[:a],
        x[a:b],
        y[a:b],
        x[b:],
        y[b:],
        4,
        torch.tensor([0.3]),
        torch.tensor([0.35]),
        AugmentConfig(crop_padding=1, hflip=False, normalize=True),
    )


# module scope: the shared data and trained networks below are made single-threaded too
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def fmnist_small() -> Data:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not installed in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)"
        )
    return load_dataset("fashion-mnist", val_size=2000, train_subset=5000, seed=0, download=False)


def test_train_config_defaults_are_the_eas_recipe() -> None:
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.nesterov) == (20, 64, 0.02, 0.9, True)
    assert (c.weight_decay, c.schedule, c.lr_min) == (1e-4, "cosine", 0.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")  # type: ignore[arg-type]


def test_cosine_schedule() -> None:
    c = TrainConfig(lr=0.1, lr_min=0.01)
    assert lr_at(c, 0, 100) == pytest.approx(0.1)
    assert lr_at(c, 50, 100) == pytest.approx(0.055)
    assert lr_at(c, 100, 100) == pytest.approx(0.01)
    values = [lr_at(c, s, 100) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_at(TrainConfig(lr=0.1, schedule="constant"), 70, 100) == 0.1


def test_fashion_mnist_training_beats_chance(fmnist_small: Data) -> None:
    net = small_cnn()
    cfg = TrainConfig(epochs=2)
    res = train_child(net, fmnist_small, cfg, seed=0)
    assert isinstance(res, TrainResult)
    assert not res.failed and res.reason is None
    assert res.val_accuracy > 0.6, res
    assert res.epochs == 2 and res.steps == 2 * (5000 // 64)
    assert res.images_per_second > 0 and res.train_time > 0 and res.cpu_time > 0
    assert math.isfinite(res.train_loss) and 0 < res.train_accuracy <= 1
    assert not net.training  # ends in eval mode
    # evaluate() agrees with the reported validation accuracy
    acc = evaluate(net, fmnist_small.val_x, fmnist_small.val_y, fmnist_small)
    assert acc == pytest.approx(res.val_accuracy)


def test_same_seed_same_result() -> None:
    data = synthetic_data()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    a, b, c = small_cnn(size=8), small_cnn(size=8), small_cnn(size=8)
    ra = train_child(a, data, cfg, seed=3)
    rb = train_child(b, data, cfg, seed=3)
    rc = train_child(c, data, cfg, seed=4)
    assert ra.val_accuracy == rb.val_accuracy and ra.train_loss == rb.train_loss
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert ra.train_loss != rc.train_loss  # the seed drives batch order and augmentation


def test_fashion_mnist_determinism(fmnist_small: Data) -> None:
    cfg = TrainConfig(epochs=1)
    r1 = train_child(small_cnn(), fmnist_small, cfg, seed=1)
    r2 = train_child(small_cnn(), fmnist_small, cfg, seed=1)
    assert r1.val_accuracy == r2.val_accuracy and r1.train_loss == r2.train_loss


def test_trains_in_place_and_respects_max_batches() -> None:
    data = synthetic_data()
    net = small_cnn(size=8)
    before = [p.detach().clone() for p in net.parameters()]
    res = train_child(net, data, TrainConfig(epochs=3, batch_size=32, max_batches_per_epoch=2))
    assert res.steps == 6 and res.epochs == 3
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    assert not res.failed and not net.training


def test_learns_synthetic_task() -> None:
    data = synthetic_data(n_train=512)
    res = train_child(small_cnn(size=8), data, TrainConfig(epochs=4, batch_size=32, lr=0.05))
    assert res.val_accuracy > 0.9, res


class NaNNet(nn.Module):
    """Outputs NaN logits after a learnable layer (so the optimizer has parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def test_nan_output_fails_gracefully() -> None:
    res = train_child(NaNNet(), synthetic_data(), TrainConfig(epochs=2, batch_size=32))
    assert res.failed and res.val_accuracy == 0.0
    assert res.reason is not None and "NaN" in res.reason
    assert res.epochs == 0


def test_huge_learning_rate_fails_gracefully() -> None:
    net = small_cnn(size=8, bn=False)
    res = train_child(net, synthetic_data(), TrainConfig(epochs=3, batch_size=32, lr=1e8))
    assert res.failed and res.val_accuracy == 0.0 and "non-finite" in (res.reason or "")


def test_final_train_reports_test_accuracy() -> None:
    data = synthetic_data()
    res = final_train(small_cnn(size=8), data, TrainConfig(epochs=2, batch_size=32, lr=0.05))
    assert res.test_accuracy is not None and 0.0 <= res.test_accuracy <= 1.0
    assert math.isnan(res.val_accuracy)  # no validation images left
    assert res.steps == 2 * ((256 + 64) // 32)  # trained on train + val


def test_evaluate_restores_mode_and_handles_empty() -> None:
    data = synthetic_data()
    net = small_cnn(size=8).train()
    acc = evaluate(net, data.test_x, data.test_y, (data.mean, data.std), batch_size=10)
    assert 0.0 <= acc <= 1.0 and net.training
    assert math.isnan(evaluate(net, data.test_x[:0], data.test_y[:0], data))


def test_parameters_come_back_contiguous() -> None:
    net = small_cnn(size=8)
    res = train_child(net, synthetic_data(), TrainConfig(epochs=1, batch_size=32))
    assert not res.failed
    assert all(p.is_contiguous() for p in net.parameters())
    plain = small_cnn(size=8)
    cfg = TrainConfig(epochs=1, batch_size=32, channels_last=False)
    assert not train_child(plain, synthetic_data(), cfg).failed
