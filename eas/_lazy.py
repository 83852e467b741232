"""Lazy package front doors (PEP 562): ``import eas`` loads no torch until a name is used.

A package's ``__init__`` lists its public names and the module each lives in;
:func:`lazy_exports` returns the module-level ``__getattr__`` and ``__dir__`` that
import the home module on first use. The configuration schema and ``--help`` thus
import only light modules, while ``from eas import train_child`` works as before.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in ``homes``
    (name -> module); a resolved name is cached in ``namespace`` (the package's globals)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
