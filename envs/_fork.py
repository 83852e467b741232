"""Forked workers run torch single-threaded (gymnasium's ``AsyncVectorEnv`` forks them).

A child forked from a process whose OpenMP thread pool already ran would hang at its
first parallel torch op. :func:`single_threaded_forks` registers an
``os.register_at_fork`` hook once per process; the first
:class:`~envs.net_transform.NetTransformEnv` built calls it (``AsyncVectorEnv`` builds
one in the parent before it forks), so importing ``eas.envs`` changes nothing.
"""

from __future__ import annotations

import os

import torch

__all__ = ["single_threaded_forks"]

_REGISTERED: list[bool] = []
"""Holds one entry once the hook is registered in this process."""


def _single_threaded_after_fork() -> None:
    """In a forked child: one torch thread (the parent's OpenMP pool does not survive a fork)."""
    torch.set_num_threads(1)


def single_threaded_forks() -> None:
    """Make processes forked from now on run torch single-threaded (registered once)."""
    if not _REGISTERED:
        os.register_at_fork(after_in_child=_single_threaded_after_fork)
        _REGISTERED.append(True)
