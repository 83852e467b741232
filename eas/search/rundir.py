"""Run folders belong to one run: refuse reuse, collision-free names, a lock file.

* A new run refuses a folder that already exists (``ConfigError``, exit 2) and
  names the two ways on: ``--resume`` to continue it, ``--overwrite`` to replace it.
* An auto-generated name (``{dataset}__{agent}__{seed}__{timestamp}``) never
  collides: the folder is created with an atomic ``mkdir`` and a ``-2``, ``-3``,
  ... suffix is added when another run took the name in the same second.
* ``run.lock`` in the folder is an OS file lock (``filelock``) held while the run
  is live, with the holder's host, pid and start written to ``run.owner``; a
  second process is refused. The kernel releases the lock when its process ends
  (also when it is killed), so a killed run leaves nothing to take over.
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

from filelock import FileLock, Timeout

from eas.config.sections import RUN_NAME_MAX, ConfigError
from eas.envs.evaluators import StopSearch
from eas.search.failures import SearchFailed

__all__ = ["LOCK_FILE", "OWNER_FILE", "RUN_MARKERS", "RunFolderLost", "RunLock", "check_run_dir", "claim_run_dir",
           "lock_owner"]

LOCK_FILE = "run.lock"
"""Name of the lock file inside a run folder (an OS file lock, :class:`filelock.FileLock`)."""
OWNER_FILE = "run.owner"
"""Who holds the lock (host, pid, since), written by the holder, removed when it releases."""
_PROBE_GRACE = 1.0
"""Seconds :func:`claim_run_dir` waits for a lock another process is only probing."""
RUN_MARKERS = ("config.toml", "checkpoint.pt", "summary.json")
"""Files that show a folder is a run folder (only such folders may be overwritten)."""
CLAIMED: list[Path] = []
"""Run folders this process has claimed, in order (the command line's interrupt message
tells from it whether a run folder exists yet)."""


def _read_owner(folder: Path) -> dict[str, object]:
    """Who holds the lock, as its holder wrote it (best effort: the lock itself is the flock)."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def lock_owner(folder: str | Path) -> dict[str, object] | None:
    """The owner of ``folder``'s lock while a live process holds it, else None.

    The lock is an OS file lock (:class:`filelock.FileLock` on ``run.lock``): the
    kernel drops it when its process ends, however it ends, so there is no stale
    lock to detect. Probing writes nothing (no lock file is created).
    """
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    probe = FileLock(path, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return _read_owner(Path(folder))
    except OSError:
        return None  # not lockable here (read-only folder, ...): the write checks say why
    probe.release()
    return None


def _busy(folder: Path, owner: dict[str, object]) -> ConfigError:
    return ConfigError("run folder", f"{folder} is in use by process {owner.get('pid', '?')} on "
                       f"{owner.get('host', '?')} (since {owner.get('since', '?')}); wait for it "
                       f"to end or stop it (its lock: {folder / LOCK_FILE})")


class RunFolderLost(SearchFailed, StopSearch):
    """The live run's folder vanished, changed hands or became unwritable (exit code 1)."""


@dataclass
class RunLock:
    """A held run-folder lock; :meth:`release` lets go of it (the OS does when the process ends)."""

    folder: Path
    """The run folder."""
    lock: FileLock
    """The held OS file lock on ``run.lock``."""
    identity: tuple[int, int] | None = None
    """(device, inode) of ``run.lock`` when it was taken: a folder deleted and made anew,
    or a lock file replaced, is told apart from the one this run holds."""

    def check(self) -> None:
        """Raise :class:`RunFolderLost` unless the folder is still there, writable and holds
        this run's lock file: a live run must not write into (and so recreate) a folder that
        was deleted, moved, replaced or made read-only under it."""
        try:
            st = os.stat(self.folder / LOCK_FILE)
            ours = self.identity is None or (st.st_dev, st.st_ino) == self.identity
        except OSError:
            ours = False
        if not self.folder.is_dir():
            why = "was deleted or moved"
        elif not ours:
            why = f"no longer holds this run's lock file {LOCK_FILE} (removed or replaced)"
        elif not os.access(self.folder, os.W_OK | os.X_OK):
            why = "is no longer writable"
        else:
            return
        raise RunFolderLost(f"the run folder {self.folder} {why} while the run was live; "
                            "stopped without writing anything more (restore the folder and "
                            "continue with --resume, or start the run again)")

    def release(self) -> None:
        """Remove the owner note and release the lock."""
        if self.lock.is_locked:
            with contextlib.suppress(OSError):
                (self.folder / OWNER_FILE).unlink()
            self.lock.release()


def _acquire(folder: Path) -> RunLock:
    # A short wait: another process's lock_owner() probe holds it for microseconds.
    lock = FileLock(folder / LOCK_FILE, timeout=_PROBE_GRACE)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(folder, _read_owner(folder)) from None
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    (folder / OWNER_FILE).write_text(json.dumps(owner))
    st = os.stat(folder / LOCK_FILE)
    CLAIMED.append(folder)
    return RunLock(folder, lock, (st.st_dev, st.st_ino))


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
                if p.name in (LOCK_FILE, OWNER_FILE):
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            return folder, lock
    raise ConfigError("run folder", f"no free name for {base} after 10000 tries")
