"""Crash-safe, code-free files: atomic checkpoints and self-describing network files.

Every file eas reads back (``checkpoint.pt``, journal entries, network files,
start weights) is read with ``torch.load(..., weights_only=True)``: only
tensors, numbers, strings, bytes, ``None`` and lists/tuples/dicts/sets of them
are rebuilt, so a file from someone else cannot run code (a file that holds any
other object is refused with :class:`UnsafeFileError`). :func:`atomic_save`
writes only such plain data (:func:`plain_data`), so everything eas writes
reads back.

Every file is written atomically: to a temporary file in the same folder,
flushed and ``fsync``-ed, then moved over the target with ``os.replace`` (an
atomic rename on POSIX and Windows). A crash at any moment leaves either the
old file or the new one, never a partial file.

Network files (``best_<k>.pt``, ``final_<k>.pt``, ``start.pt``) hold the
architecture string, input shape, dropout and weights, so one line rebuilds the
network::

    from eas.checkpoint import load_network
    net = load_network("runs/<run>/best_1.pt")     # a ChildNet, eval mode
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eas.network import ChildNet, build_network

__all__ = [
    "CheckpointError",
    "UnsafeFileError",
    "plain_data",
    "read_torch_file",
    "atomic_save",
    "atomic_write_text",
    "load_checkpoint",
    "checked_network",
    "load_network",
    "network_record",
    "rewrite_trusted",
    "network_from_record",
    "save_network",
]

FORMAT = "eas.network/1"
"""Tag stored in network files."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort; not possible on every OS)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _atomic_write(path: str | Path, write: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. ENOSPC: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    _fsync_dir(path.parent)
    return path


_SCALARS = (bool, int, float, complex, str, bytes, bytearray, type(None))
_TENSORS = (torch.Tensor, nn.Parameter)  # exactly these: a subclass pickles by reference
_TORCH_LEAVES = (torch.Size, torch.device, torch.dtype)
_MAPPINGS = (dict, collections.OrderedDict, collections.Counter)
_SEQUENCES = (list, tuple, set)


def plain_data(obj: Any, where: str = "the data") -> Any:
    """``obj`` as data a weights-only ``torch.load`` rebuilds: numpy scalars become Python ones.

    Allowed: tensors, ``torch.Size``/``device``/``dtype``, ``bool``, ``int``,
    ``float``, ``complex``, ``str``, ``bytes``, ``None``, and ``dict``,
    ``OrderedDict``, ``list``, ``tuple`` and ``set`` of them (shared and nested
    containers keep their sharing). Numpy scalars are replaced by the equal
    Python value (``float(np.float32(x))`` is exact). Anything else (a numpy
    array, a dataclass, any other object) raises ``TypeError`` naming where it is
    in ``obj`` (``where`` names ``obj`` itself), because such a file could not be
    read back without running code.
    """
    memo: dict[int, Any] = {}

    def walk(x: Any, at: str) -> Any:
        t = type(x)
        if t in _SCALARS or t in _TENSORS or t in _TORCH_LEAVES:
            return x
        if isinstance(x, np.generic):
            v = x.item()
            if type(v) not in _SCALARS:
                raise TypeError(f"{at} is a numpy {x.dtype} value; {_PLAIN_RULE}")
            return v
        if id(x) in memo:
            return memo[id(x)]
        if t in _MAPPINGS:
            out: Any = t()
            memo[id(x)] = out
            for k, v in x.items():
                out[walk(k, f"{at} (a key)")] = walk(v, f"{at}[{k!r}]")
            return out
        if t in _SEQUENCES:
            if t is list:
                out = memo[id(x)] = []
                out.extend(walk(v, f"{at}[{i}]") for i, v in enumerate(x))
                return out
            out = memo[id(x)] = t(walk(v, f"{at}[{i}]") for i, v in enumerate(x))
            return out
        name = f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__name__
        raise TypeError(f"{at} is a {name}; {_PLAIN_RULE}")

    return walk(obj, where)


_PLAIN_RULE = ("files eas writes hold only tensors, numbers, strings, bytes, None and lists, "
               "tuples, dicts and sets of them, so that reading them back cannot run code")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically: the old file survives any failure mid-write.

    ``obj`` goes through :func:`plain_data` first (numpy scalars become Python
    numbers; other objects raise ``TypeError`` before anything is written), so
    the file reads back with :func:`read_torch_file`.
    """
    data = plain_data(obj, Path(path).name)
    return _atomic_write(path, lambda f: torch.save(data, f))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write(path, lambda f: f.write(text.encode()))


class CheckpointError(ValueError):
    """A checkpoint or network file that cannot be read; ``str()`` is one line naming the file."""


class UnsafeFileError(CheckpointError):
    """A file that holds objects other than tensors and plain data: refused, never unpickled."""


REWRITE_HINT = "python -m eas.checkpoint --rewrite-trusted"
"""The command that rewrites a trusted old file as plain data (see :func:`rewrite_trusted`)."""


def _refused_what(exc: BaseException) -> str | None:
    """What a weights-only ``torch.load`` refused (a short phrase), or None for other errors."""
    text = " ".join(str(exc).split())
    if "weights_only" in text and "TorchScript" in text:
        return "a TorchScript program"
    if not (isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text):
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"a reference to {found.group(1)}"
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return f"pickle instruction {found.group(1)}, not a PyTorch file of tensors"
    return "objects other than tensors and plain data"


def _is_torchscript_archive(path: Path) -> bool:
    """Whether ``path`` is a zip holding a TorchScript program (a ``constants.pkl`` record).

    Checked by eas itself, before ``torch.load``, because torch before 2.6 dispatches such
    archives to ``torch.jit.load`` even with ``weights_only=True``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def read_torch_file(path: str | Path, *, weights_only: bool = True,
                    map_location: str | torch.device = "cpu") -> Any:
    """Read a PyTorch file *weights-only*; every failure is one :class:`CheckpointError` line.

    Only tensors, numbers, strings, bytes, ``None`` and containers of them are
    rebuilt (``torch.load(..., weights_only=True)``), so reading a file cannot
    run code, whoever wrote it. A file holding anything else raises
    :class:`UnsafeFileError` ("holds objects eas does not load") and nothing of
    it is executed. Missing files, folders, empty, truncated and non-PyTorch
    files are told apart. ``weights_only`` exists for old callers and must be True.
    """
    if not weights_only:
        raise ValueError("eas reads files weights-only (tensors and plain data) only")
    p = Path(path).expanduser()
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"no such file: {p}")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"{p} is empty (0 bytes), not a checkpoint")
    if _is_torchscript_archive(p):  # torch < 2.6 hands these to torch.jit.load even weights-only
        raise UnsafeFileError(f"{p} holds a TorchScript program, which eas does not load "
                              "(eas reads tensors and plain data only); nothing in it was run")
    try:
        with warnings.catch_warnings():  # torch warns (e.g. about TorchScript archives)
            warnings.simplefilter("ignore")
            return torch.load(p, map_location=map_location, weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind: one message
        what = _refused_what(exc)
        if what is not None:
            # numpy values are what older eas versions wrote; only then is a rewrite the way on
            way = (f"; if you wrote it yourself with an older eas, '{REWRITE_HINT} {p}' "
                   "converts it" if "numpy" in what else "")
            raise UnsafeFileError(
                f"{p} holds objects eas does not load ({what}); eas reads only tensors and "
                f"plain data from files, and nothing in this one was run{way}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is not a readable PyTorch file (damaged, truncated or "
                              f"another format): {first[:200]}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a search checkpoint written by :func:`atomic_save` (weights-only: plain data).

    Raises :class:`CheckpointError` naming the file when it is missing, empty,
    truncated, a folder or not a dict, and :class:`UnsafeFileError` when it
    holds objects other than tensors and plain data.
    """
    obj = read_torch_file(path, map_location=map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint (a dict)")
    return obj


def rewrite_trusted(path: str | Path) -> Path:
    """Rewrite a file *you trust* (it is fully unpickled: it may run code) as plain data.

    For checkpoints and network files written before eas read files weights-only
    that now raise :class:`UnsafeFileError`: numpy scalars become Python numbers;
    any other object raises ``TypeError`` naming it, and the file is left as it was.
    """
    p = Path(path).expanduser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = torch.load(p, map_location="cpu", weights_only=False)  # the caller trusts it
    return atomic_save(obj, p)


def network_record(net: ChildNet, **meta: Any) -> dict[str, Any]:
    """A plain dict describing ``net`` (arch string, input shape, dropout, CPU weights) + ``meta``."""
    return {
        "format": FORMAT,
        "arch": str(net.arch),
        "input_shape": list(net.input_shape),
        "dropout": float(getattr(net, "dropout", 0.0)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        **meta,
    }


def network_from_record(record: dict[str, Any]) -> ChildNet:
    """Rebuild the :class:`ChildNet` of a :func:`network_record` (eval mode, CPU)."""
    net = build_network(record["arch"], tuple(record["input_shape"]),
                        dropout=float(record.get("dropout", 0.0)), seed=0)
    net.load_state_dict(record["state_dict"])
    return net.eval()


def save_network(net: ChildNet, path: str | Path, **meta: Any) -> Path:
    """Save ``net`` (architecture + weights + ``meta`` such as accuracy) atomically."""
    return atomic_save(network_record(net, **meta), path)


def checked_network(record: Any, source: str | Path) -> ChildNet:
    """:func:`network_from_record`, with one :class:`CheckpointError` line naming ``source``
    when ``record`` is not a network record or its weights do not fit its architecture."""
    if not isinstance(record, dict) or "arch" not in record or "state_dict" not in record:
        raise CheckpointError(f"{source} is not a network file written by "
                              "eas.checkpoint.save_network")
    try:
        return network_from_record(record)
    except (ValueError, TypeError, RuntimeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: its weights do not fit its architecture "
                              f"{record['arch']}: {first[:200]}") from None


def load_network(path: str | Path, map_location: str | torch.device = "cpu") -> ChildNet:
    """Load a network saved by :func:`save_network` (e.g. ``runs/<run>/best_1.pt``).

    Read weights-only (see :func:`read_torch_file`): a file holding anything but
    tensors and plain data raises :class:`UnsafeFileError` and nothing of it runs.
    The file's metadata (accuracy, params, ...) is attached as ``net.meta``.
    """
    record = read_torch_file(path)
    net = checked_network(record, path)
    net.meta = {k: v for k, v in record.items() if k not in ("state_dict",)}
    return net.to(map_location)


def main(argv: list[str] | None = None) -> int:
    """``python -m eas.checkpoint --rewrite-trusted FILE ...``: see :func:`rewrite_trusted`."""
    parser = argparse.ArgumentParser(
        prog="python -m eas.checkpoint",
        description="Rewrite checkpoints or network files that you wrote yourself with an older "
                    "eas (and trust: they are fully unpickled, which can run code) as plain data "
                    "that eas reads weights-only.")
    parser.add_argument("--rewrite-trusted", nargs="+", metavar="FILE", required=True,
                        help="the files to rewrite in place (atomically)")
    args = parser.parse_args(argv)
    for name in args.rewrite_trusted:
        try:
            rewrite_trusted(name)
            read_torch_file(name)  # it now reads weights-only
        except Exception as exc:  # noqa: BLE001 - any failure: one line, file unchanged
            text = " ".join(str(exc).split())
            print(f"{parser.prog}: error: {name}: {text}", file=sys.stderr)
            return 2
        print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
