"""Layer tokens: one dataclass per token type of an architecture string, and their parser.

:mod:`eas.arch` builds architectures from these (import the tokens from here, or
``from eas import Conv``); the notation is described there. :func:`split_tokens` cuts a string into tokens and
:func:`parse_token` reads one, raising a ``ValueError`` that names the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FC",
    "MAX_LAYER_VALUE",
    "Conv",
    "Dense",
    "Layer",
    "Pool",
    "Skip",
    "Softmax",
    "parse_token",
    "split_tokens",
]


@dataclass(frozen=True)
class Conv:
    """Convolution -> BatchNorm -> ReLU (``C(filters,kernel,stride)``)."""

    filters: int
    kernel: int
    stride: int = 1

    def __str__(self) -> str:
        return f"C({self.filters},{self.kernel},{self.stride})"


@dataclass(frozen=True)
class Pool:
    """Max or average pooling (``P(kernel,stride,MAX|AVG)``)."""

    kernel: int
    stride: int
    mode: str = "MAX"

    def __str__(self) -> str:
        return f"P({self.kernel},{self.stride},{self.mode})"


@dataclass(frozen=True)
class FC:
    """Fully connected -> BatchNorm -> ReLU (``FC(units)``)."""

    units: int

    def __str__(self) -> str:
        return f"FC({self.units})"


@dataclass(frozen=True)
class Softmax:
    """The classifier: a linear layer to ``classes`` logits (``SM(classes)``)."""

    classes: int

    def __str__(self) -> str:
        return f"SM({self.classes})"


@dataclass(frozen=True)
class Dense:
    """A DenseNet layer (``DL(growth,kernel,bottleneck)``), post-activation."""

    growth: int
    kernel: int = 3
    bottleneck: int = 0

    def __str__(self) -> str:
        return f"DL({self.growth},{self.kernel},{self.bottleneck})"


@dataclass(frozen=True)
class Skip:
    """A skip connection from layer ``src`` to layer ``dst`` (``S(src,dst,ADD|CAT)``)."""

    src: int
    dst: int
    mode: str = "ADD"

    def __str__(self) -> str:
        return f"S({self.src},{self.dst},{self.mode})"


Layer = Conv | Pool | FC | Softmax | Dense

_TOKEN_RE = re.compile(r"^\s*([A-Za-z]+)\s*\(([^()]*)\)\s*$")


def split_tokens(text: str) -> list[str]:
    """Split on commas outside parentheses (an unclosed parenthesis keeps the rest together)."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    parts.append(text[start:])
    return parts


MAX_LAYER_VALUE = 1 << 20
"""Largest width, kernel, stride or index an architecture string may hold (far beyond any
network that fits in memory; stops absurd values before anything is allocated)."""


def _ints(args: list[str], n: int, tok: str, pos: int) -> list[int]:
    if len(args) != n:
        raise ValueError(f"token {pos} {tok!r}: expected {n} arguments, got {len(args)}")
    out = []
    for a in args:
        try:
            v = int(a)
        except ValueError:
            raise ValueError(f"token {pos} {tok!r}: {a!r} is not an integer") from None
        if v < 0:
            raise ValueError(f"token {pos} {tok!r}: {a!r} must not be negative")
        if v > MAX_LAYER_VALUE:
            raise ValueError(f"token {pos} {tok!r}: {a} is too large (at most {MAX_LAYER_VALUE})")
        out.append(v)
    return out


def _positive(tok: str, pos: int, **values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ValueError(f"token {pos} {tok!r}: {name} must be >= 1, got {v}")


def parse_token(tok: str, pos: int) -> Layer | Skip:
    """Parse one token (``pos``: its 0-based position, for messages); ``ValueError`` if bad."""
    m = _TOKEN_RE.match(tok)
    if not m:
        raise ValueError(
            f"token {pos} {tok.strip()!r} is malformed: expected NAME(args), e.g. C(16,3,1)"
        )
    name, body = m.group(1).upper(), m.group(2)
    args = [a.strip() for a in body.split(",")] if body.strip() else []
    if name in ("P", "S") and len(args) == 3:
        args[2] = args[2].upper()
    tok = tok.strip()
    if name == "C":
        f, k, s = _ints(args, 3, tok, pos)
        _positive(tok, pos, filters=f, kernel=k, stride=s)
        return Conv(f, k, s)
    if name == "P":
        if len(args) != 3:
            raise ValueError(f"token {pos} {tok!r}: expected 3 arguments, got {len(args)}")
        k, s = _ints(args[:2], 2, tok, pos)
        _positive(tok, pos, kernel=k, stride=s)
        mode = args[2]
        if mode not in ("MAX", "AVG"):
            raise ValueError(f"token {pos} {tok!r}: pooling mode {mode!r} is not MAX or AVG")
        return Pool(k, s, mode)
    if name == "FC":
        (u,) = _ints(args, 1, tok, pos)
        _positive(tok, pos, units=u)
        return FC(u)
    if name == "SM":
        (c,) = _ints(args, 1, tok, pos)
        _positive(tok, pos, classes=c)
        return Softmax(c)
    if name == "DL":
        g, k, b = _ints(args, 3, tok, pos)
        _positive(tok, pos, growth=g, kernel=k)
        return Dense(g, k, b)
    if name == "S":
        if len(args) != 3:
            raise ValueError(f"token {pos} {tok!r}: expected 3 arguments, got {len(args)}")
        i, j = _ints(args[:2], 2, tok, pos)
        mode = args[2]
        if mode not in ("ADD", "CAT"):
            raise ValueError(f"token {pos} {tok!r}: skip mode {mode!r} is not ADD or CAT")
        return Skip(i, j, mode)
    raise ValueError(
        f"token {pos} {tok!r}: unknown layer type {name!r} (expected C, P, FC, SM, DL or S)"
    )
