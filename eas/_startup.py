"""SIGTERM while ``eas`` is still starting: one line and exit code 143, not a silent -15.

Importing torch takes seconds; a SIGTERM in that time (before the command line's
own handler is installed and before anything is written) would kill the process
without a word. :func:`install` puts a small handler in place for exactly that
time, and only when ``eas`` itself is the program (the ``eas`` / ``eas-search``
scripts, ``python -m eas...``) and nobody else has set one: a program that
imports ``eas`` as a library keeps its own signal handling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

__all__ = ["install"]

_PROGRAMS = ("eas", "eas-search", "-m")
"""``sys.argv[0]`` while ``eas`` is imported by its own command lines (``-m``: python -m)."""


def _terminated(signum: int, frame: object) -> None:
    os.write(2, b"terminated (SIGTERM) while starting; nothing was written\n")
    os._exit(143)


def install() -> None:
    """Handle SIGTERM during start-up (see the module doc); a no-op for library users."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program not in _PROGRAMS or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _terminated)


install()
