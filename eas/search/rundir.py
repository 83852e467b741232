"""Run folders belong to one run: refuse reuse, collision-free names, a lock file.

* A new run refuses a folder that already exists (``ConfigError``, exit 2) and
  names the two ways on: ``--resume`` to continue it, ``--overwrite`` to replace it.
* An auto-generated name (``{dataset}__{agent}__{seed}__{timestamp}``) never
  collides: the folder is created with an atomic ``mkdir`` and a ``-2``, ``-3``,
  ... suffix is added when another run took the name in the same second.
* ``run.lock`` in the folder holds the owner's host, pid and process start
  time; a second live process is refused, a lock left by a killed run (its
  process is gone) is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from eas.search.config import RUN_NAME_MAX, ConfigError

__all__ = ["LOCK_FILE", "RUN_MARKERS", "RunLock", "check_run_dir", "claim_run_dir", "lock_owner"]

LOCK_FILE = "run.lock"
"""Name of the lock file inside a run folder."""
RUN_MARKERS = ("config.toml", "checkpoint.pt", "summary.json")
"""Files that show a folder is a run folder (only such folders may be overwritten)."""


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: /proc/<pid>/stat field 22), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _me() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def lock_owner(folder: str | Path) -> dict[str, object] | None:
    """The live owner recorded in ``folder/run.lock``, or None (no lock, or a stale one)."""
    path = Path(folder) / LOCK_FILE
    try:
        owner = json.loads(path.read_text())
        pid = int(owner["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a lock its writer did not finish: that process died while starting
    if owner.get("host") != socket.gethostname():
        return owner  # cannot look at another machine's processes: assume it is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    start = owner.get("start")
    if start is not None and _start_time(pid) not in (None, start):
        return None  # the pid was reused by an unrelated process
    return owner


def _busy(folder: Path, owner: dict[str, object]) -> ConfigError:
    return ConfigError("run folder", f"{folder} is in use by process {owner.get('pid')} on "
                       f"{owner.get('host')} (since {owner.get('since')}); wait for it to end or "
                       f"stop it (a lock of a dead process is taken over: {folder / LOCK_FILE})")


@dataclass
class RunLock:
    """A held run-folder lock; :meth:`release` removes the lock file if it is still ours."""

    folder: Path
    """The run folder."""
    token: str
    """The lock file's content written by this process."""

    def release(self) -> None:
        """Remove the lock (only if it still holds this process's token)."""
        path = self.folder / LOCK_FILE
        with contextlib.suppress(OSError):
            if path.read_text() == self.token:
                path.unlink()


def _acquire(folder: Path) -> RunLock:
    path = folder / LOCK_FILE
    token = json.dumps(_me())
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock_owner(folder)
            if owner is not None:
                raise _busy(folder, owner) from None
            # A stale lock: move it aside atomically (only one taker succeeds), then retry.
            with contextlib.suppress(FileNotFoundError):
                stale = path.with_name(f".{LOCK_FILE}.stale.{os.getpid()}")
                os.rename(path, stale)
                stale.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
        return RunLock(folder, token)
    raise ConfigError("run folder", f"could not take the lock {path} (another process keeps "
                      "taking it)")


def _is_run_folder(folder: Path) -> bool:
    return any((folder / m).exists() for m in RUN_MARKERS) or not any(folder.iterdir())


def check_run_dir(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """Check (without writing anything) that this run may use ``folder``; ConfigError if not."""
    if len(folder.name.encode()) > RUN_NAME_MAX + 20:
        raise ConfigError("search.run_name", f"run folder name {folder.name[:40]}... is too long "
                          f"({len(folder.name.encode())} bytes)")
    if folder.exists() and not folder.is_dir():
        raise ConfigError("run folder", f"{folder} exists and is not a folder")
    if folder.is_dir():
        owner = lock_owner(folder)
        if owner is not None:
            raise _busy(folder, owner)
        if not resume and not overwrite:
            raise ConfigError("run folder", f"{folder} already exists; continue that run with "
                              f"--resume {folder}, or replace it with --overwrite")
        if overwrite and not resume and not _is_run_folder(folder):
            raise ConfigError("run folder", f"{folder} is not a run folder (none of "
                              f"{', '.join(RUN_MARKERS)}); refusing to overwrite it")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError("run folder", f"{folder} is not writable")
    elif resume:
        raise ConfigError("--resume", f"no run folder {folder}")


def claim_run_dir(folder: Path, *, resume: bool, overwrite: bool, auto_name: bool
                  ) -> tuple[Path, RunLock]:
    """Create (or, on resume, open) the run folder and lock it; returns (folder, lock).

    With ``auto_name`` an existing folder is never reused: ``-2``, ``-3``, ...
    is appended until an atomic ``mkdir`` succeeds. With ``overwrite`` an old run
    folder's contents are removed once the lock is held.
    """
    if resume:
        return folder, _acquire(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    base = folder
    for k in range(2, 10_000):
        try:
            folder.mkdir()
            return folder, _acquire(folder)
        except FileExistsError:
            if auto_name:
                folder = base.with_name(f"{base.name}-{k}")
                continue
            if not overwrite:
                check_run_dir(folder, resume=False, overwrite=False)  # raises, naming the folder
            lock = _acquire(folder)
            for p in folder.iterdir():
                if p.name == LOCK_FILE:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            return folder, lock
    raise ConfigError("run folder", f"no free name for {base} after 10000 tries")
