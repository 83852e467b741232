"""Small helpers the command lines share: one-line argument errors and output-path checks.

Bad input to ``eas search``, ``eas compare`` and ``eas export`` is one line
``<prog>: error: ...`` (exit code 2), found before any work and before anything
is written. :func:`output_folder_problem` tells, without writing anything, why
a folder the user named for output cannot be used; :func:`remove_new` takes
back what a failed command wrote there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import typing
from pathlib import Path

__all__ = ["OneLineParser", "existing_ancestor", "fail", "output_folder_problem", "remove_new"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog: str, message: object, code: int = 2) -> int:
    """Print ``prog: error: message`` as one line on stderr; return ``code``."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{prog}: error: {text}", file=sys.stderr)
    return code


def existing_ancestor(path: str | Path) -> Path:
    """``path`` itself (absolute) if it exists, else its nearest existing parent."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def output_folder_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot hold output (it, or the folders above it, are created as
    needed), or None when it can. Looks only; writes nothing."""
    p = Path(folder).expanduser()
    if p.exists() and not p.is_dir():
        return f"{folder} exists and is not a folder"
    q = existing_ancestor(p)
    if not q.is_dir():
        return f"{q} is a file, not a folder (needed to hold {folder})"
    if not os.access(q, os.W_OK | os.X_OK):
        return f"cannot write to {folder}: {q} is not writable"
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(q).f_flag & os.ST_RDONLY:
            return f"cannot write to {folder}: {q} is on a read-only file system"
    return None


def remove_new(folder: Path, before: set[str] | None, top: Path) -> None:
    """Take back a failed command's output: ``before`` names what ``folder`` held (None:
    it did not exist, and ``top`` is the highest folder this command created for it)."""
    with contextlib.suppress(OSError):
        if before is None:
            if top.is_dir():
                shutil.rmtree(top, ignore_errors=True)
            return
        for p in folder.iterdir():
            if p.name in before:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def creation_root(folder: Path) -> Path:
    """The highest folder that creating ``folder`` (with its parents) would make."""
    p = Path(folder).expanduser().absolute()
    while not p.parent.exists() and p.parent != p.parent.parent:
        p = p.parent
    return p
