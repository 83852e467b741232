"""The transformation kinds and their order in the environment's ``kind`` action.

Light on purpose (no torch): the configuration schema checks kind names with
these; :mod:`eas.morphisms.legal` says where each kind applies.
"""

from __future__ import annotations

__all__ = ["ALL_KINDS", "KINDS", "SHRINK_KINDS", "kinds_for"]

KINDS: tuple[str, ...] = ("wider", "deeper", "skip")
"""The exact (function-preserving) kinds, in the index order of the environment's ``kind`` action."""

SHRINK_KINDS: tuple[str, ...] = ("narrow", "remove")
"""The approximate shrinking kinds (``morphisms.narrow``, ``morphisms.remove_layer``).

Environment actions only when the environment is built with ``shrink=True``;
their indices then follow :data:`KINDS` (3 and 4), so the exact kinds keep
their indices and, with shrinking off, the kind space is exactly :data:`KINDS`.
"""

ALL_KINDS: tuple[str, ...] = KINDS + SHRINK_KINDS
"""Every kind, in index order (an environment with ``shrink=True`` offers all of them)."""


def kinds_for(shrink: bool) -> tuple[str, ...]:
    """The kinds of an environment with shrinking on or off (the ``kind`` action's order)."""
    return ALL_KINDS if shrink else KINDS
