"""Device-resident datasets and batched augmentation for child-network training.

Every dataset is loaded once into memory as tensors (images ``uint8`` NCHW, labels
``int64``) and can be moved to the GPU as a whole, so the trainer slices batches
from tensors and augments them with vectorised tensor ops instead of running a
per-sample ``DataLoader`` pipeline.

Splits: ``val_size`` images are held out of the official training set with a
seeded permutation (``torch.Generator().manual_seed(seed)``) and used as the
validation set that the architecture search optimises; the official test set is
only meant for final evaluation.

Where the data comes from:

* ``fashion-mnist`` / ``mnist``: gzipped (or plain) IDX files, read with numpy.
  Looked up in ``root`` (also ``root/FashionMNIST/raw`` resp. ``root/MNIST/raw``,
  torchvision's layout) if given, otherwise in ``/usr/share/datasets/<name>``
  (Debian package ``dataset-fashion-mnist``) and then the cache folder
  ``$EAS_DATA_ROOT`` (default ``~/.cache/eas/datasets``); finally torchvision's
  downloader is tried when ``download=True``.
* ``cifar10`` / ``cifar100`` / ``svhn``: torchvision datasets under ``root``
  (default: the cache folder), downloaded if missing and ``download=True``.
* ``imagefolder``: torchvision ``ImageFolder`` layout. If ``root/train`` exists it
  is the training set and ``root/test`` (required then) the test set. Otherwise
  ``root`` itself holds all images and a seeded random fraction
  ``IMAGEFOLDER_TEST_FRACTION`` (20 %) is carved out as the test set
  before the validation split is taken from the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eas._data_files import (
    _TORCHVISION_FOLDER,
    DEBIAN_DATASET_DIR,
    IMAGEFOLDER_TEST_FRACTION,
    DatasetError,
    DatasetNotFoundError,
    _check_name,
    _load_idx_dataset,
    _load_imagefolder,
    _load_torchvision,
    check_image_folder,
    default_data_root,
    read_idx,
)
from eas.datasets import (
    DATASET_CLASS_NAMES,
    DATASET_CLASSES,
    DATASET_NAMES,
    dataset_key,
)

__all__ = ["DATA_FILE", "DATASET_NAMES", "DEBIAN_DATASET_DIR", "IMAGEFOLDER_TEST_FRACTION", "AugmentConfig", "Data", "DatasetError", "DatasetNotFoundError", "check_image_folder", "dataset_key", "fitting_batch", "augment_batch", "crop_flip", "default_augment", "default_data_root", "draw_augment", "input_contract", "load_dataset", "normalize_batch", "read_idx"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation applied batch-wise on the device."""

    crop_padding: int = 0
    """Zero-pad each side by this many pixels, then randomly crop back (0 = no crop)."""
    hflip: bool = False
    """Randomly mirror half of the images left-right."""
    normalize: bool = True
    """Standardise per channel with the training split's mean/std (else only /255)."""

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")


def default_augment(name: str, input_shape: Sequence[int] | None = None) -> AugmentConfig:
    """Return the default augmentation for dataset ``name``.

    * cifar10/cifar100: pad-4 random crop, horizontal flip, normalisation (EAS paper).
    * svhn: normalisation only (the EAS paper uses no augmentation on SVHN).
    * mnist: pad-2 random crop, no flip (mirrored digits are different symbols).
    * fashion-mnist: pad-2 random crop and horizontal flip (garments are roughly
      left-right symmetric and a mirrored shoe is still the same class).
    * imagefolder: crop padding H/8 (4 for 32 px, like CIFAR) and flip.
    """
    name = _check_name(name)
    if name in ("cifar10", "cifar100"):
        return AugmentConfig(crop_padding=4, hflip=True, normalize=True)
    if name == "svhn":
        return AugmentConfig(crop_padding=0, hflip=False, normalize=True)
    if name == "mnist":
        return AugmentConfig(crop_padding=2, hflip=False, normalize=True)
    if name == "fashion-mnist":
        return AugmentConfig(crop_padding=2, hflip=True, normalize=True)
    height = int(input_shape[1]) if input_shape is not None else 32
    return AugmentConfig(crop_padding=max(1, height // 8), hflip=True, normalize=True)


@dataclass(repr=False)
class Data:
    """A dataset held in memory as tensors on one device.

    Images are ``uint8`` NCHW, labels ``int64``. ``mean``/``std`` are float32
    per-channel statistics in [0, 1] pixel units, computed on the training split.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: Tensor
    std: Tensor
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train_index: Tensor | None = None
    """Positions of the training images in the official training set (CPU, int64)."""
    val_index: Tensor | None = None
    """Positions of the validation images in the official training set (CPU, int64)."""
    class_names: tuple[str, ...] | None = None
    """Name of each label, when known (``DATASET_CLASS_NAMES``; imagefolder: folder names)."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.train_x.device

    def to(self, device: str | torch.device) -> Data:
        """Return a copy with every tensor on ``device`` (self if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        moved = {
            k: getattr(self, k).to(device)
            for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std")
        }
        return replace(self, **moved)

    def full_train(self) -> Data:
        """Return a copy whose training set is train + validation and whose validation set is empty.

        Used for final training before reporting test accuracy. ``mean``/``std``
        are kept unchanged so that normalisation matches the search phase.
        """
        index = None
        if self.train_index is not None and self.val_index is not None:
            index = torch.cat([self.train_index, self.val_index])
        return replace(
            self,
            train_x=torch.cat([self.train_x, self.val_x]),
            train_y=torch.cat([self.train_y, self.val_y]),
            val_x=self.val_x[:0],
            val_y=self.val_y[:0],
            train_index=index,
            val_index=None if self.val_index is None else self.val_index[:0],
        )

    def __repr__(self) -> str:
        a = self.augment
        return (
            f"Data({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
            f"test={len(self.test_y)}, shape={self.input_shape}, classes={self.num_classes}, "
            f"device={self.device}, augment=(pad={a.crop_padding}, hflip={a.hflip}, "
            f"normalize={a.normalize}))"
        )


DATA_FILE = "data.json"
"""File in a run folder holding :func:`input_contract` of the search's data (read by
``eas export``; finally trained networks carry their own in ``final_<k>.pt``)."""


def input_contract(data: Data) -> dict[str, Any]:
    """What a network trained on ``data`` expects, as plain JSON-friendly values.

    Images as stored (``uint8`` in [0, 255], NCHW ``shape``) become the network's
    input as ``(x / 255 - mean) / std`` per channel (``mean``/``std`` in [0, 1]
    pixel units, the training split's statistics; 0 and 1 when the dataset is not
    standardised). ``class_names`` is None when unknown.
    """
    c = data.input_shape[0]
    norm = data.augment.normalize
    return {
        "dataset": data.name,
        "shape": list(data.input_shape),
        "stored_dtype": "uint8",
        "stored_range": [0, 255],
        "normalize": bool(norm),
        "mean": [float(v) for v in data.mean.cpu()] if norm else [0.0] * c,
        "std": [float(v) for v in data.std.cpu()] if norm else [1.0] * c,
        "num_classes": int(data.num_classes),
        "class_names": list(data.class_names) if data.class_names is not None else None,
    }


def fitting_batch(data: Data, size: int = 64, seed: int = 0) -> Tensor:
    """A fixed batch of ``size`` training images, as the networks see them (CPU float32).

    The images are drawn without replacement from the training split by a
    ``torch.Generator`` seeded with ``seed`` and normalised like every training batch
    (no crop or flip): equal data and seed give the same batch. Net2Deeper fits a
    new layer's BatchNorm to it (``envs.NetTransformEnv(deeper_batch=...)``).
    """
    n = int(data.train_x.shape[0])
    if size < 1 or n == 0:
        raise ValueError(f"fitting_batch needs size >= 1 and training images, got size {size} "
                         f"and {n} images")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:size]
    images = data.train_x[idx.to(data.train_x.device)]
    return normalize_batch(images, data.mean, data.std, normalize=data.augment.normalize).cpu()


# ---------------------------------------------------------------------------
# Batched augmentation
# ---------------------------------------------------------------------------


def _scale_shift(mean: Tensor, std: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel ``scale, shift`` so that ``x_uint8 * scale - shift`` normalises."""
    mean = mean.to(device=device, dtype=torch.float32).view(-1, 1, 1)
    std = std.to(device=device, dtype=torch.float32).view(-1, 1, 1)
    return 1.0 / (255.0 * std), mean / std


def normalize_batch(
    x_uint8: Tensor, mean: Tensor, std: Tensor, *, normalize: bool = True
) -> Tensor:
    """Convert a ``uint8`` NCHW batch to float32: ``(x/255 - mean)/std`` (or ``x/255``)."""
    x = x_uint8.to(torch.float32)
    if not normalize:
        return x.div_(255.0)
    scale, shift = _scale_shift(mean, std, x_uint8.device)
    return x.mul_(scale).sub_(shift)


def augment_batch(
    x_uint8: Tensor,
    cfg: AugmentConfig,
    mean: Tensor,
    std: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """Randomly crop/flip and normalise a ``uint8`` NCHW batch, all vectorised.

    The random crop zero-pads by ``cfg.crop_padding`` and takes a window at a
    random offset per image (like torchvision's ``RandomCrop(padding=p)``, fill 0);
    flips mirror a random half of the images. Crop and flip are fused into one
    ``torch.gather`` over the flattened padded images (no per-sample loop).
    ``generator`` must live on ``x_uint8``'s device; results are reproducible
    for a given generator state. Returns float32 NCHW.
    """
    if x_uint8.dim() != 4:
        raise ValueError(f"expected an NCHW batch, got shape {tuple(x_uint8.shape)}")
    offsets, flips = draw_augment(x_uint8.shape[0], cfg, generator, x_uint8.device)
    x = crop_flip(x_uint8, cfg.crop_padding, offsets, flips)
    return normalize_batch(x, mean, std, normalize=cfg.normalize)


def draw_augment(n: int, cfg: AugmentConfig, generator: torch.Generator,
                 device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """The random numbers :func:`augment_batch` draws for ``n`` images, in its order.

    Returns ``(offsets, flips)``: crop offsets ``(2, n)`` int64 in ``[0, 2p]``
    (None without padding) and uniform ``(n,)`` draws, an image being mirrored
    when its draw is below 0.5 (None without flips).
    """
    if n == 0 or not (cfg.crop_padding > 0 or cfg.hflip):
        return None, None
    p = cfg.crop_padding
    offsets = (torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=device)
               if p > 0 else None)
    flips = torch.rand(n, generator=generator, device=device) if cfg.hflip else None
    return offsets, flips


def crop_flip(x_uint8: Tensor, padding: int, offsets: Tensor | None,
              flips: Tensor | None) -> Tensor:
    """Crop (zero padding ``padding``, window at ``offsets``) and mirror (``flips < 0.5``).

    Both fused into one ``torch.gather``; ``offsets``/``flips`` as drawn by
    :func:`draw_augment` (None: no crop / no flip). No host synchronisation,
    so it can run inside a CUDA graph.
    """
    n, c, h, w = x_uint8.shape
    if (offsets is None and flips is None) or n == 0:
        return x_uint8
    p = padding if offsets is not None else 0
    dev = x_uint8.device
    x = x_uint8
    cols = torch.arange(w, device=dev).expand(n, w)
    if offsets is not None:
        dy, dx = offsets[0, :, None], offsets[1, :, None]
        x = torch.nn.functional.pad(x, (p, p, p, p))
    else:
        dy = dx = torch.zeros((n, 1), dtype=torch.int64, device=dev)
    if flips is not None:
        cols = torch.where((flips < 0.5)[:, None], (w - 1) - cols, cols)
    wp = w + 2 * p
    rows = dy + torch.arange(h, device=dev)  # (n, h) rows of the padded image
    index = rows[:, :, None] * wp + (dx + cols)[:, None, :]  # (n, h, w) flat positions
    flat = x.reshape(n, c, -1)
    return torch.gather(flat, 2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def _channel_stats(x: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean/std of a uint8 NCHW tensor in [0, 1] units (float64 accumulation)."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()


def load_dataset(
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    *,
    val_size: int = 5000,
    seed: int = 0,
    train_subset: int | None = None,
    device: str | torch.device = "cpu",
    use_extra: bool = False,
    augment: AugmentConfig | None = None,
    download: bool = True,
    image_size: tuple[int, int] | None = None,
) -> Data:
    """Load dataset ``name`` into memory and split off a seeded validation set.

    Args:
        name: one of ``DATASET_NAMES``.
        root: folder holding the data (see the module docstring for the lookup order).
        val_size: images held out of the training set for validation (by a permutation
            from ``torch.Generator().manual_seed(seed)``), disjoint from train.
        seed: seed of the split and of ``train_subset``.
        train_subset: keep only this many (seeded, random) of the remaining training images.
        device: where all tensors are put.
        use_extra: SVHN only: add the 531k "extra" images to the training set.
        augment: override the per-dataset default (``default_augment``).
        download: allow a torchvision download when the files are missing.
        image_size: ``imagefolder`` only: resize every image to ``(H, W)``.

    Raises:
        ValueError: unknown ``name`` or impossible sizes.
        DatasetNotFoundError: (a ``FileNotFoundError``) the files are missing; the
            message lists where it looked and how to get them.
    """
    key = _check_name(name)
    root_path = Path(root).expanduser() if root is not None else None
    if root_path is not None and not root_path.is_dir():  # never created as a side effect
        raise DatasetNotFoundError(
            f"data root {root_path} is not an existing folder (create it first to download "
            "into it, or leave the root unset)")
    class_names = DATASET_CLASS_NAMES.get(key)
    if key in _TORCHVISION_FOLDER:
        train_x, train_y, test_x, test_y = _load_idx_dataset(key, root_path, download)
        num_classes = DATASET_CLASSES[key]
    elif key == "imagefolder":
        train_x, train_y, test_x, test_y, folders = _load_imagefolder(
            root_path, seed, image_size
        )
        num_classes, class_names = len(folders), tuple(folders)
    else:
        train_x, train_y, test_x, test_y = _load_torchvision(key, root_path, download, use_extra)
        num_classes = DATASET_CLASSES[key]

    n = len(train_y)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}) for {key}, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, rest = perm[:val_size], perm[val_size:]
    if train_subset is not None:
        if not 0 < train_subset <= len(rest):
            raise ValueError(
                f"train_subset must be in [1, {len(rest)}] for {key} with val_size={val_size}, "
                f"got {train_subset}"
            )
        rest = rest[:train_subset]

    all_x = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.uint8))
    all_y = torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    tr_x, tr_y = all_x[rest], all_y[rest]
    mean, std = _channel_stats(tr_x)
    data = Data(
        name=key,
        train_x=tr_x,
        train_y=tr_y,
        val_x=all_x[val_idx],
        val_y=all_y[val_idx],
        test_x=torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.uint8)),
        test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        num_classes=num_classes,
        mean=mean,
        std=std,
        augment=augment if augment is not None else default_augment(key, tr_x.shape[1:]),
        train_index=rest.clone(),
        val_index=val_idx.clone(),
        class_names=class_names,
    )
    return data.to(device)

