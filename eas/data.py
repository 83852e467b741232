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

import contextlib
import gzip
import io
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASET_NAMES",
    "DEBIAN_DATASET_DIR",
    "IMAGEFOLDER_TEST_FRACTION",
    "AugmentConfig",
    "Data",
    "DatasetNotFoundError",
    "augment_batch",
    "default_augment",
    "default_data_root",
    "load_dataset",
    "normalize_batch",
    "read_idx",
]

DATASET_NAMES: tuple[str, ...] = (
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "imagefolder",
)
DEBIAN_DATASET_DIR = Path("/usr/share/datasets")
IMAGEFOLDER_TEST_FRACTION = 0.2

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_FOLDER = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files could not be found locally nor downloaded."""


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
    n, c, h, w = x_uint8.shape
    p = cfg.crop_padding
    x = x_uint8
    if (p > 0 or cfg.hflip) and n > 0:
        dev = x.device
        cols = torch.arange(w, device=dev).expand(n, w)
        if p > 0:
            offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=dev)
            dy, dx = offsets[0, :, None], offsets[1, :, None]
            x = torch.nn.functional.pad(x, (p, p, p, p))
        else:
            dy = dx = torch.zeros((n, 1), dtype=torch.int64, device=dev)
        if cfg.hflip:
            flip = torch.rand(n, generator=generator, device=dev) < 0.5
            cols = torch.where(flip[:, None], (w - 1) - cols, cols)
        wp = w + 2 * p
        rows = dy + torch.arange(h, device=dev)  # (n, h) rows of the padded image
        index = rows[:, :, None] * wp + (dx + cols)[:, None, :]  # (n, h, w) flat positions
        flat = x.reshape(n, c, -1)
        x = torch.gather(flat, 2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return normalize_batch(x, mean, std, normalize=cfg.normalize)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def default_data_root() -> Path:
    """Folder for downloaded datasets: ``$EAS_DATA_ROOT`` or ``~/.cache/eas/datasets``."""
    return Path(os.environ.get("EAS_DATA_ROOT", "~/.cache/eas/datasets")).expanduser()


def _check_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed names: {', '.join(DATASET_NAMES)}")
    return key


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = bytearray(f.read())  # writable, so torch.from_numpy does not warn
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(raw) - offset < count * dtype.itemsize:
        raise ValueError(f"{path} is truncated: header says shape {shape}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)


def _find_idx_dir(candidates: Sequence[Path]) -> Path | None:
    for d in candidates:
        if all(
            (d / f"{stem}.gz").is_file() or (d / stem).is_file() for stem in _IDX_FILES.values()
        ):
            return d
    return None


def _idx_file(d: Path, stem: str) -> Path:
    gz = d / f"{stem}.gz"
    return gz if gz.is_file() else d / stem


_TORCHVISION_HOW = (
    "pass --data.root (or root=) pointing to a folder with the files (torchvision layout); "
    "or be online with download=True so torchvision can download it"
)
"""How to get a torchvision-format dataset (cifar10/cifar100/svhn)."""


def _not_found(
    name: str, looked: Sequence[Path], cause: BaseException | None
) -> DatasetNotFoundError:
    where = ", ".join(str(p) for p in looked)
    msg = f"dataset {name!r} not found; looked in: {where}. To get it: {_TORCHVISION_HOW}."
    if cause is not None:
        msg += f" (download failed: {type(cause).__name__}: {cause})"
    return DatasetNotFoundError(msg)


def _idx_not_found(
    name: str, root: Path | None, looked: Sequence[Path], download: bool
) -> DatasetNotFoundError:
    """One line for missing IDX files: where it looked, why no download, what to run or pass."""
    where = ", ".join(str(p) for p in looked)
    if not download:
        why = "downloading is off (data.download = false)"
    else:
        # The cause's text (URLs, DNS errors) is left out: the fix does not depend on it.
        why = "it could not be downloaded (offline?)"
    files = ", ".join(s + ".gz" for s in _IDX_FILES.values())
    if root is None and name == "fashion-mnist":
        todo = (
            "run `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
            f"--data.root DIR where DIR holds {files}"
        )
    else:
        todo = f"pass --data.root DIR where DIR holds {files}"
    return DatasetNotFoundError(f"dataset {name!r} not found (looked in {where}) and {why}; {todo}")


def _quiet_download(name: str, dl_root: Path) -> None:
    """Fetch ``name`` with torchvision, keeping its progress and per-mirror messages off the terminal."""
    import torchvision.datasets as tvd

    cls = tvd.FashionMNIST if name == "fashion-mnist" else tvd.MNIST
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cls(str(dl_root), train=True, download=True)
        cls(str(dl_root), train=False, download=True)


def _load_idx_dataset(
    name: str, root: Path | None, download: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = _TORCHVISION_FOLDER[name]
    if root is not None:
        candidates = [root, root / folder / "raw", root / name]
        dl_root = root
    else:
        cache = default_data_root()
        candidates = [DEBIAN_DATASET_DIR / name, cache / folder / "raw", cache / name]
        dl_root = cache
    found = _find_idx_dir(candidates)
    if found is None and download:
        try:
            _quiet_download(name, dl_root)
        except Exception:
            pass  # reported below as "could not be downloaded", without the URL/DNS details
        found = _find_idx_dir(candidates)
    if found is None:
        raise _idx_not_found(name, root, candidates, download)
    arrays = {k: read_idx(_idx_file(found, stem)) for k, stem in _IDX_FILES.items()}
    return (
        arrays["train_x"][:, None],
        arrays["train_y"],
        arrays["test_x"][:, None],
        arrays["test_y"],
    )


def _torchvision_dataset(name: str, root: Path, download: bool, split: str):
    import torchvision.datasets as tvd

    if name == "svhn":
        return tvd.SVHN(str(root), split=split, download=download)
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    return cls(str(root), train=(split == "train"), download=download)


def _load_torchvision(
    name: str, root: Path | None, download: bool, use_extra: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = root if root is not None else default_data_root()
    splits = ["train", "test"] + (["extra"] if use_extra and name == "svhn" else [])
    loaded = {}
    cause: BaseException | None = None
    for split in splits:
        ds = None
        try:
            ds = _torchvision_dataset(name, root, False, split)
        except RuntimeError:
            if download:
                try:
                    ds = _torchvision_dataset(name, root, True, split)
                except Exception as exc:
                    cause = exc
        if ds is None:
            raise _not_found(name, [root], cause)
        if name == "svhn":
            x = np.asarray(ds.data)  # already NCHW
            y = np.asarray(ds.labels)
        else:
            x = np.asarray(ds.data).transpose(0, 3, 1, 2)  # NHWC -> NCHW
            y = np.asarray(ds.targets)
        loaded[split] = (x, y)
    train_x, train_y = loaded["train"]
    if "extra" in loaded:
        train_x = np.concatenate([train_x, loaded["extra"][0]])
        train_y = np.concatenate([train_y, loaded["extra"][1]])
    return train_x, train_y, loaded["test"][0], loaded["test"][1]


def _load_image_folder(
    folder: Path, classes: list[str] | None, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(folder))
    if classes is not None and ds.classes != classes:
        raise ValueError(f"class folders of {folder} {ds.classes} differ from training's {classes}")
    images = []
    size = image_size
    for path, _ in ds.samples:
        img = ds.loader(path)  # RGB PIL image
        if size is None:
            size = (img.height, img.width)
        if (img.height, img.width) != size:
            if image_size is None:
                raise ValueError(
                    f"images in {folder} differ in size ({path} is {img.height}x{img.width}, "
                    f"expected {size[0]}x{size[1]}); pass image_size= to resize them"
                )
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
    if not images:
        raise DatasetNotFoundError(f"no images found in {folder}")
    return np.stack(images), np.asarray(ds.targets, dtype=np.int64), ds.classes


def _load_imagefolder(
    root: Path | None, seed: int, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    if root is None:
        raise DatasetNotFoundError(
            "dataset 'imagefolder' needs root= (--data.root): a folder with train/ and test/ "
            "subfolders (or class subfolders directly) in torchvision ImageFolder layout"
        )
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset 'imagefolder' not found; looked in: {root}. To get it: pass --data.root "
            "/ root= pointing to an ImageFolder tree (root/train/<class>/*.png, root/test/...)"
        )
    if (root / "train").is_dir():
        if not (root / "test").is_dir():
            raise DatasetNotFoundError(f"{root / 'train'} exists but {root / 'test'} is missing")
        tx, ty, classes = _load_image_folder(root / "train", None, image_size)
        image_size = image_size or (tx.shape[2], tx.shape[3])
        ex, ey, _ = _load_image_folder(root / "test", classes, image_size)
        return tx, ty, ex, ey, len(classes)
    x, y, classes = _load_image_folder(root, None, image_size)
    n_test = max(1, round(IMAGEFOLDER_TEST_FRACTION * len(y)))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1)).numpy()
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], len(classes)


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
    if key in _TORCHVISION_FOLDER:
        train_x, train_y, test_x, test_y = _load_idx_dataset(key, root_path, download)
        num_classes = 10
    elif key == "imagefolder":
        train_x, train_y, test_x, test_y, num_classes = _load_imagefolder(
            root_path, seed, image_size
        )
    else:
        train_x, train_y, test_x, test_y = _load_torchvision(key, root_path, download, use_extra)
        num_classes = 100 if key == "cifar100" else 10

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
    )
    return data.to(device)
