"""Tests for eas.data: loading, splits, statistics and batched augmentation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from eas.data import (
    DEBIAN_DATASET_DIR,
    AugmentConfig,
    Data,
    augment_batch,
    default_augment,
    load_dataset,
    normalize_batch,
    read_idx,
)
from eas.datasets import DATASET_NAMES

FMNIST_DIR = DEBIAN_DATASET_DIR / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def fmnist() -> Data:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not installed in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)"
        )
    return load_dataset("fashion-mnist", val_size=5000, seed=0, download=False)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_idx_root(root: Path, n_train: int = 120, n_test: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        _write_idx(root / f"{stem}.gz", arr)
    return arrays


# --------------------------------------------------------------------------- loading


@needs_fmnist
def test_fashion_mnist_split(fmnist: Data) -> None:
    d = fmnist
    assert d.name == "fashion-mnist"
    assert d.input_shape == (1, 28, 28)
    assert d.num_classes == 10
    assert len(d.train_y) == 55000 and len(d.val_y) == 5000 and len(d.test_y) == 10000
    assert d.train_x.shape == (55000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    for y in (d.train_y, d.val_y, d.test_y):
        assert int(y.min()) >= 0 and int(y.max()) < 10
    # disjoint, together covering the official training set exactly once
    tr, va = set(d.train_index.tolist()), set(d.val_index.tolist())
    assert not tr & va
    assert tr | va == set(range(60000))
    raw = read_idx(FMNIST_DIR / "train-images-idx3-ubyte.gz")
    assert torch.equal(d.val_x[:, 0], torch.from_numpy(raw[d.val_index.numpy()]))
    assert torch.equal(d.train_x[:50, 0], torch.from_numpy(raw[d.train_index[:50].numpy()]))
    # per-channel statistics come from the training split
    assert d.mean.shape == (1,) and d.std.shape == (1,)
    expected_mean = d.train_x.double().mean().item() / 255
    assert d.mean.item() == pytest.approx(expected_mean, rel=1e-5)
    assert "fashion-mnist" in repr(d) and "55000" in repr(d)


@needs_fmnist
def test_split_is_seeded_and_subset_keeps_validation(fmnist: Data) -> None:
    same = load_dataset("fashion-mnist", val_size=5000, seed=0, train_subset=1000, download=False)
    other = load_dataset("fashion-mnist", val_size=5000, seed=1, train_subset=1000, download=False)
    assert torch.equal(same.val_index, fmnist.val_index)  # subset does not move the val split
    assert len(same.train_y) == 1000
    assert set(same.train_index.tolist()) <= set(fmnist.train_index.tolist())
    assert not torch.equal(other.val_index, same.val_index)


def test_unknown_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="imagenet-42") as info:
        load_dataset("imagenet-42")
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "svhn"])
def test_missing_files_raise_file_not_found(tmp_path: Path, name: str) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=root, download=False)
    assert str(root) in str(info.value)
    assert "--data.root" in str(info.value)


def test_imagefolder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("imagefolder", root=tmp_path / "nowhere")


def test_idx_files_from_root(tmp_path: Path) -> None:
    arrays = _fake_idx_root(tmp_path / "MNIST" / "raw")  # torchvision layout
    d = load_dataset("mnist", root=tmp_path, val_size=20, seed=3, download=False)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (100, 20, 30)
    raw = arrays["train-images-idx3-ubyte"]
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(raw[d.train_index.numpy()]))
    assert torch.equal(
        d.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    )
    assert d.augment == default_augment("mnist") and not d.augment.hflip
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("mnist", root=tmp_path, val_size=120, download=False)
    with pytest.raises(ValueError, match="train_subset"):
        load_dataset("mnist", root=tmp_path, val_size=20, train_subset=101, download=False)


def test_read_idx_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(bad)


def _write_png_tree(root: Path, n_per_class: int, size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("ant", "bee", "cat"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.png")


def test_imagefolder_layouts(tmp_path: Path) -> None:
    _write_png_tree(tmp_path / "split" / "train", 6)
    _write_png_tree(tmp_path / "split" / "test", 2)
    d = load_dataset("imagefolder", root=tmp_path / "split", val_size=3)
    assert d.num_classes == 3 and d.input_shape == (3, 12, 12)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (15, 3, 6)

    _write_png_tree(tmp_path / "flat", 10)
    flat = load_dataset("imagefolder", root=tmp_path / "flat", val_size=4)
    assert len(flat.test_y) == 6 and len(flat.train_y) + len(flat.val_y) == 24
    resized = load_dataset("imagefolder", root=tmp_path / "flat", val_size=4, image_size=(8, 8))
    assert resized.input_shape == (3, 8, 8)


def test_default_augmentations() -> None:
    assert default_augment("cifar10") == AugmentConfig(4, True, True)
    assert default_augment("cifar100") == AugmentConfig(4, True, True)
    assert default_augment("svhn") == AugmentConfig(0, False, True)
    assert not default_augment("mnist").hflip
    assert default_augment("fashion-mnist").hflip
    with pytest.raises(ValueError):
        AugmentConfig(crop_padding=-1)


def test_to_and_full_train() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.arange(10)
    d = Data("t", x[:6], y[:6], x[6:8], y[6:8], x[8:], y[8:], 10, torch.zeros(1), torch.ones(1))
    full = d.full_train()
    assert len(full.train_y) == 8 and len(full.val_y) == 0 and len(full.test_y) == 2
    assert torch.equal(full.train_y, y[:8])
    assert d.to("cpu") is d


# --------------------------------------------------------------------------- augmentation


def _batch(n: int = 64, c: int = 3, h: int = 10, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_normalize_batch_matches_formula() -> None:
    x = _batch()
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.3, 0.4])
    out = normalize_batch(x, mean, std)
    ref = (x.float() / 255 - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(normalize_batch(x, mean, std, normalize=False), x.float() / 255)


@needs_fmnist
def test_normalized_training_split_is_standardised(fmnist: Data) -> None:
    out = normalize_batch(fmnist.train_x[:20000], fmnist.mean, fmnist.std)
    assert abs(out.mean().item()) < 0.02
    assert out.std().item() == pytest.approx(1.0, abs=0.02)


def test_augment_shapes_dtype_and_identity() -> None:
    x = _batch()
    mean, std = torch.zeros(3), torch.ones(3)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, AugmentConfig(2, True, True), mean, std, g)
    assert out.shape == x.shape and out.dtype == torch.float32
    ident = augment_batch(x, AugmentConfig(0, False, False), mean, std, g)
    torch.testing.assert_close(ident, x.float() / 255)


def test_random_crop_shifts_and_matches_padded_windows() -> None:
    x = _batch(n=32)
    p = 2
    cfg = AugmentConfig(crop_padding=p, hflip=False, normalize=False)
    out = augment_batch(x, cfg, torch.zeros(3), torch.ones(3), torch.Generator().manual_seed(1))
    out_u8 = (out * 255).round().to(torch.uint8)
    assert not torch.equal(out_u8, x)  # some sample really moved
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out_u8[i], padded[i, :, dy : dy + 10, dx : dx + 10])
        ]
        assert hits, f"sample {i} is not a {p}-padded crop of its input"
        offsets.update(hits)
    assert len(offsets) > 5  # many distinct shifts over the batch


def test_flips() -> None:
    x = _batch()
    mean, std = torch.zeros(3), torch.ones(3)
    no_flip = augment_batch(x, AugmentConfig(0, False, False), mean, std, torch.Generator())
    torch.testing.assert_close(no_flip, x.float() / 255)
    out = augment_batch(
        x, AugmentConfig(0, True, False), mean, std, torch.Generator().manual_seed(0)
    )
    ref = x.float() / 255
    flipped = torch.tensor([torch.equal(o, r.flip(2)) for o, r in zip(out, ref)])
    same = torch.tensor([torch.equal(o, r) for o, r in zip(out, ref)])
    assert bool((flipped | same).all())
    assert 10 < int(flipped.sum()) < 54  # about half of 64


def test_augment_is_deterministic_per_generator_seed() -> None:
    x = _batch()
    cfg = AugmentConfig(3, True, True)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    a = augment_batch(x, cfg, mean, std, torch.Generator().manual_seed(7))
    b = augment_batch(x, cfg, mean, std, torch.Generator().manual_seed(7))
    c = augment_batch(x, cfg, mean, std, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_crop_and_flip_together_are_mirrored_windows() -> None:
    x = _batch(n=48, c=2, h=9, w=11, seed=5)
    p = 3
    cfg = AugmentConfig(crop_padding=p, hflip=True, normalize=False)
    out = augment_batch(x, cfg, torch.zeros(2), torch.ones(2), torch.Generator().manual_seed(2))
    out_u8 = (out * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    mirrored = 0
    for i in range(len(x)):
        windows = [
            padded[i, :, dy : dy + 9, dx : dx + 11]
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
        ]
        plain = any(torch.equal(out_u8[i], win) for win in windows)
        flipped = any(torch.equal(out_u8[i], win.flip(2)) for win in windows)
        assert plain or flipped, f"sample {i} is neither a crop nor a mirrored crop"
        mirrored += flipped and not plain
    assert 8 < mirrored < 40
