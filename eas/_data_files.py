"""Finding and reading dataset files on disk (IDX files, torchvision datasets, image folders).

The loaders behind :func:`eas.data.load_dataset`; see :mod:`eas.data` for where the data
comes from."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eas.datasets import DATASET_NAMES, dataset_key

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


class DatasetError(ValueError):
    """A dataset that is there but cannot be used (no images, a corrupt image); names the file."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings an ImageFolder class folder's images may have."""


def check_image_folder(folder: str | Path) -> int:
    """Check an ImageFolder tree cheaply; return its number of classes.

    Every class folder must hold at least one image and the first image must be
    readable. Raises :class:`DatasetNotFoundError` (missing folder) or
    :class:`DatasetError` naming the folder or file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"no such folder: {folder}")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
    first: Path | None = None
    for c in classes:
        images = sorted(p for p in c.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise DatasetError(f"class folder {c} holds no images "
                               f"({', '.join(IMAGE_EXTENSIONS)})")
        first = first or images[0]
    try:
        with Image.open(first) as img:
            img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable image
        raise DatasetError(f"cannot read image {first}: {type(exc).__name__}: {exc}") from None
    return len(classes)



# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def default_data_root() -> Path:
    """Folder for downloaded datasets: ``$EAS_DATA_ROOT`` or ``~/.cache/eas/datasets``."""
    return Path(os.environ.get("EAS_DATA_ROOT", "~/.cache/eas/datasets")).expanduser()


def _check_name(name: str) -> str:
    key = dataset_key(name)
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
    from torchvision.datasets import ImageFolder

    check_image_folder(folder)
    ds = ImageFolder(str(folder))
    if classes is not None and ds.classes != classes:
        raise ValueError(f"class folders of {folder} {ds.classes} differ from training's {classes}")
    images = []
    size = image_size
    for path, _ in ds.samples:
        try:
            img = ds.loader(path)  # RGB PIL image
        except Exception as exc:  # noqa: BLE001 - name the file whatever the decoder says
            raise DatasetError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Train/test images and labels of an ImageFolder tree, and its class (folder) names."""
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
        return tx, ty, ex, ey, list(classes)
    x, y, classes = _load_image_folder(root, None, image_size)
    n_test = max(1, round(IMAGEFOLDER_TEST_FRACTION * len(y)))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1)).numpy()
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], list(classes)


