"""Field documentation and typed values for the configuration engine.

:func:`field_docs` reads each dataclass field's one-line documentation (the
string literal after it); :func:`coerce` turns a command-line string or a TOML
value into the field's annotated type, raising :class:`ConfigError` naming the
field when it cannot.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any, Literal

from eas.config.sections import ConfigError

__all__ = ["coerce", "field_docs", "field_type", "split_optional", "type_name"]

_NONE_WORDS = ("none", "null")


def field_docs(cls: type) -> dict[str, str]:
    """One-line documentation of each field of dataclass ``cls``.

    Read from attribute docstrings (a string literal right after the field), a
    trailing ``# comment`` on the field's line, or ``field(metadata={"doc": ...})``,
    along the class's MRO.
    """
    docs: dict[str, str] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        if klass is object:
            continue
        docs.update(_class_docs(klass))
    if is_dataclass(cls):
        for f in fields(cls):
            if "doc" in f.metadata:
                docs[f.name] = str(f.metadata["doc"])
    return docs


@cache
def _class_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    lines = source.splitlines()
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.ClassDef):
        return {}
    out: dict[str, str] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name = stmt.target.id
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[name] = " ".join(nxt.value.value.strip().split("\n")[0].split())
            continue
        line = lines[stmt.lineno - 1]
        if "#" in line:
            comment = line.split("#", 1)[1].strip()
            if comment and not comment.startswith(("noqa", "type:")):
                out[name] = comment
    return out


# ------------------------------------------------------------------ types
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotation: fall back to defaults' types
        return {}


def field_type(cls: type, f: dataclasses.Field, default: Any) -> Any:
    """The annotated type of field ``f`` of ``cls`` (the default's type if unannotated)."""
    hint = _hints(cls).get(f.name)
    if hint is None or hint is Any:
        return type(default) if default is not None else str
    return hint


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007 - built at runtime
    return tp, False


def type_name(tp: Any) -> str:
    """A short readable name of type ``tp`` for help and errors ('int or none')."""
    base, optional = split_optional(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        name = " | ".join(repr(a) for a in typing.get_args(base))
    elif origin in (tuple, list):
        args = typing.get_args(base)
        inner = args[0].__name__ if args and isinstance(args[0], type) else "value"
        name = f"list of {inner}"
    else:
        name = getattr(base, "__name__", str(base))
    return f"{name} or none" if optional else name


def coerce(name: str, tp: Any, value: Any, *, from_cli: bool) -> Any:
    """Convert ``value`` (a CLI string or a TOML value) to ``tp``; ConfigError if impossible."""
    base, optional = split_optional(tp)
    if value is None or (
        optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS
    ):
        if optional:
            return None
        raise ConfigError(name, f"must not be none (expected {type_name(tp)})")
    origin = typing.get_origin(base)
    if origin is Literal:
        allowed = typing.get_args(base)
        if value not in allowed:
            raise ConfigError(
                name, f"{value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}"
            )
        return value
    if origin in (tuple, list):
        args = typing.get_args(base)
        inner = args[0] if args else str
        if isinstance(value, str):
            items: list[Any] = [v.strip() for v in value.strip().strip("[]()").split(",")]
            items = [v for v in items if v]
            cli = True
        elif isinstance(value, (list, tuple)):
            items, cli = list(value), from_cli
        else:
            raise ConfigError(name, f"expected a list of {inner.__name__}, got {value!r}")
        out = [coerce(name, inner, v, from_cli=cli) for v in items]
        return tuple(out) if origin is tuple else out
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer() and from_cli:
            return int(value)
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(name, f"expected a number, got {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"expected a string, got {value!r}")
    if isinstance(base, type) and isinstance(value, base):
        return value
    if from_cli and isinstance(value, str):
        for candidate in (int, float):
            try:
                return candidate(value)
            except ValueError:
                continue
        return value
    return value
