"""Crash-safe files: atomic checkpoints and self-describing network files.

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

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eas.network import ChildNet, build_network

__all__ = [
    "CheckpointError",
    "read_torch_file",
    "atomic_save",
    "atomic_write_text",
    "load_checkpoint",
    "load_network",
    "network_record",
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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically: the old file survives any failure mid-write."""
    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write(path, lambda f: f.write(text.encode()))


class CheckpointError(ValueError):
    """A checkpoint or network file that cannot be read; ``str()`` is one line naming the file."""


def read_torch_file(path: str | Path, *, weights_only: bool,
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that fails with one :class:`CheckpointError` line naming the file.

    Missing files, folders, empty, truncated and non-PyTorch files are all told apart.
    """
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
    try:
        return torch.load(p, map_location=map_location, weights_only=weights_only)
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind: one message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):
            first = "its content is not plain tensors and containers (weights-only load refused)"
        raise CheckpointError(f"{p} is not a readable PyTorch file (damaged, truncated or "
                              f"another format): {first[:200]}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a search checkpoint written by :func:`atomic_save` (trusted: it holds RNG states).

    Raises :class:`CheckpointError` naming the file when it is missing, empty,
    truncated, a folder or not a search checkpoint.
    """
    obj = read_torch_file(path, weights_only=False, map_location=map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint (a dict)")
    return obj


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


def load_network(path: str | Path, map_location: str | torch.device = "cpu") -> ChildNet:
    """Load a network saved by :func:`save_network` (e.g. ``runs/<run>/best_1.pt``).

    The file's metadata (accuracy, params, ...) is attached as ``net.meta``.
    """
    record = read_torch_file(path, weights_only=True)
    if not isinstance(record, dict) or "arch" not in record or "state_dict" not in record:
        raise CheckpointError(f"{path} is not a network file written by "
                              "eas.checkpoint.save_network")
    try:
        net = network_from_record(record)
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: its weights do not fit its architecture "
                              f"{record['arch']}: {first[:200]}") from None
    net.meta = {k: v for k, v in record.items() if k not in ("state_dict",)}
    return net.to(map_location)


def copy_weights(net: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of a module's weights."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
