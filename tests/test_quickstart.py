"""The README's first command on a machine without the Fashion-MNIST package, offline.

The Debian package is simulated as missing by pointing ``eas._data_files.DEBIAN_DATASET_DIR``
and the download cache (``$EAS_DATA_ROOT``) at empty folders, and the network as down
by a torchvision dataset class that prints download noise and then fails, like
torchvision's downloader does without DNS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torchvision.datasets as tvd

import eas._data_files
from eas.cli.search import main
from eas.data import DatasetNotFoundError, load_dataset

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class OfflineDataset:
    """Stands in for torchvision's FashionMNIST/MNIST when there is no network."""

    calls = 0

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        OfflineDataset.calls += 1
        print("Downloading http://fashion-mnist.example/train-images-idx3-ubyte.gz")
        print("Failed to download (trying next):\n<urlopen error [Errno -3] Temporary failure "
              "in name resolution>", file=sys.stderr)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")


@pytest.fixture
def no_package_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Debian package, an empty cache, no network. Returns the cache folder."""
    monkeypatch.setattr(eas._data_files, "DEBIAN_DATASET_DIR", tmp_path / "no-debian-package")
    cache = tmp_path / "cache"
    monkeypatch.setenv("EAS_DATA_ROOT", str(cache))
    monkeypatch.setattr(tvd, "FashionMNIST", OfflineDataset)
    monkeypatch.setattr(tvd, "MNIST", OfflineDataset)
    OfflineDataset.calls = 0
    return cache


def test_offline_without_package_is_one_clean_line(no_package_offline, capsys) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    msg = str(info.value)
    assert OfflineDataset.calls >= 1  # the download was tried ...
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # ... but its messages stay off the terminal
    assert "\n" not in msg
    assert "http" not in msg and "name resolution" not in msg
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "--data.root DIR" in msg and all(f in msg for f in FILES)
    assert str(no_package_offline) in msg  # says where it looked


def test_mnist_and_given_root_name_only_data_root(no_package_offline, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    assert "apt-get" not in str(info.value) and "--data.root DIR" in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=empty, download=False)
    msg = str(info.value)
    assert OfflineDataset.calls == 1  # mnist tried once; download=False tries nothing
    assert "downloading is off" in msg and str(empty) in msg and "apt-get" not in msg


def test_cli_default_search_offline_prints_one_line(no_package_offline, tmp_path: Path,
                                                    capsys) -> None:
    runs = tmp_path / "runs"
    code = main(["--search.runs_dir", str(runs)])
    out, err = capsys.readouterr()
    assert code == 2  # a missing dataset is bad input (see the README's exit codes)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m eas.train_controller: error: dataset 'fashion-mnist'")
    assert "sudo apt-get install dataset-fashion-mnist" in lines[0] and "http" not in lines[0]
    assert not runs.exists()  # nothing written before the data is there
