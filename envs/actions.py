"""Checking an action against the legal actions and turning it into a transformation.

:func:`check_action` reads one action dict of
:class:`~envs.net_transform.NetTransformEnv` (only the fields of the kind being
applied), checks it against the state's :class:`~eas.morphisms.legal.LegalActions`
and returns a :class:`CheckedAction` holding the transformation to apply; an
action the masks rule out raises :class:`InvalidActionError` saying what and why.
Nothing is changed until the caller applies the transformation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from eas import morphisms
from eas.arch import Architecture, SearchSpace, width_of
from eas.kinds import KINDS, SHRINK_KINDS
from eas.layers import Dense
from eas.morphisms.legal import SKIP_MODES, LegalActions
from eas.network import ChildNet

__all__ = ["CheckedAction", "InvalidActionError", "check_action"]


class InvalidActionError(ValueError):
    """An action the current masks rule out; the environment state is left unchanged."""


class CheckedAction(NamedTuple):
    """An action that :meth:`NetTransformEnv.check_action` accepted, ready to apply."""

    kind: str
    """The kind applied (one of the environment's kinds: :data:`KINDS`, plus the shrink kinds)."""
    op: Callable[[ChildNet], ChildNet] | None
    """The transformation, or None for a no-op."""
    record: dict[str, Any]
    """The action as recorded in the episode's ``actions``."""


def _field(action: Mapping[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``action[name]`` as an int64 array of ``shape``; InvalidActionError otherwise."""
    if name not in action:
        raise InvalidActionError(f"the action has no {name!r} field")
    try:
        arr = np.asarray(action[name])
        if arr.dtype.kind not in "biu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError
        arr = arr.astype(np.int64)
    except (TypeError, ValueError):
        raise InvalidActionError(
            f"action[{name!r}] must hold integers, got {action[name]!r}"
        ) from None
    if arr.shape != shape:
        raise InvalidActionError(
            f"action[{name!r}] must have shape {shape}, got {arr.shape}"
        )
    return arr


def check_action(action: Mapping[str, Any], legal: LegalActions, kind_mask: np.ndarray,
                 scheduled: str | None, arch: Architecture, space: SearchSpace, L: int,
                 rng: np.random.Generator, noise: bool,
                 kinds: tuple[str, ...] = KINDS, *,
                 deeper_batch: Tensor | None = None) -> CheckedAction:
    """Check ``action`` for the state ``arch`` whose legal actions are ``legal``.

    ``scheduled`` is the kind the schedule imposes (None in free mode, where
    ``action["kind"]`` must be allowed by ``kind_mask``); ``L`` is ``max_layers``.
    The returned transformation draws its noise from ``rng`` (``noise`` on/off).
    ``kinds`` is the environment's kind tuple (with the shrink kinds when on).
    ``deeper_batch`` (normalised training images) fits a Net2Deeper layer's BatchNorm.
    """
    if scheduled is not None:
        kind = scheduled
    else:
        k = int(_field(action, "kind", ()))
        if not 0 <= k < len(kinds):
            extra = "" if len(kinds) > len(KINDS) else (
                "; the shrink kinds (narrow, remove) need an environment with shrink=True")
            raise InvalidActionError(f"action['kind']={k} is not in 0..{len(kinds) - 1}{extra}")
        kind = kinds[k]
        if not kind_mask[k]:
            raise InvalidActionError(
                f"kind {kind!r} is not allowed now: it has no legal action "
                f"(kind_mask={kind_mask.tolist()})"
            )
    record: dict[str, Any] = {"kind": np.int64(kinds.index(kind))}
    if kind in SHRINK_KINDS:
        return _check_shrink(kind, action, legal, arch, space, record)
    if kind == "wider":
        w = _field(action, "wider", (L,))
        if np.any((w != 0) & (w != 1)):
            raise InvalidActionError("action['wider'] must be 0/1 per layer")
        marked = [int(i) for i in np.flatnonzero(w)]
        bad = [i for i in marked if i not in set(legal.wider)]
        if bad:
            why = []
            for i in bad:
                if i >= len(arch.layers) - 1:
                    why.append(f"{i} (padding: the network has {len(arch.layers) - 1} layers)")
                elif width_of(arch.layers[i]) is None:
                    why.append(f"{i} {arch.layers[i]} (pooling has no width)")
                elif space.next_width(arch.layers[i]) is None:
                    why.append(f"{i} {arch.layers[i]} (already at the search space's top width)")
                else:
                    why.append(f"{i} {arch.layers[i]} (tied to an ADD skip)")
            raise InvalidActionError(
                f"wider: layer(s) {', '.join(why)} cannot be widened; widenable: {list(legal.wider)}"
            )
        record["wider"] = w.astype(np.int8)
        if not marked:
            return CheckedAction(kind, None, record)
        return CheckedAction(kind, _widen_op(marked, space, rng, noise), record)
    if kind == "deeper":
        d = _field(action, "deeper", (3,))
        if not legal.deeper:
            return CheckedAction(kind, None, record)  # schedule mode, nothing insertable
        b, p, k = (int(v) for v in d)
        if (b, p) not in set(legal.deeper):
            where = "dense block" if legal.densenet else "block"
            raise InvalidActionError(
                f"deeper: cannot insert at {where} {b}, position {p} "
                f"(legal (block, position): {list(legal.deeper[:20])}"
                f"{' ...' if len(legal.deeper) > 20 else ''}"
                + (f"; max_layers={L} reached" if len(arch.layers) - 1 >= L else "") + ")"
            )
        is_fc = (b, p) in legal.deeper_fc
        if not is_fc and k not in legal.kernels:
            raise InvalidActionError(
                f"deeper: kernel index {k} is not allowed (kernel sizes "
                f"{space.kernel_sizes}, legal indices {list(legal.kernels)})"
            )
        record["deeper"] = d
        kernel = None if is_fc else space.kernel_sizes[k]
        return CheckedAction(kind, _deeper_op(legal.densenet, b, p, kernel, rng, deeper_batch),
                             record)
    s = _field(action, "skip", (3,))
    if not legal.skips:
        return CheckedAction(kind, None, record)  # schedule mode, no skip possible
    src, dst, m = (int(v) for v in s)
    if (src, dst, m) not in set(legal.skips):
        mode = SKIP_MODES[m] if 0 <= m < 2 else str(m)
        raise InvalidActionError(
            f"skip: S({src},{dst},{mode}) is not a legal skip connection "
            f"(legal: {list(legal.skips[:20])}{' ...' if len(legal.skips) > 20 else ''})"
        )
    record["skip"] = s
    mode = SKIP_MODES[m]
    return CheckedAction(kind, lambda net: morphisms.add_skip(net, src, dst, mode=mode), record)


def _check_shrink(kind: str, action: Mapping[str, Any], legal: LegalActions,
                  arch: Architecture, space: SearchSpace, record: dict[str, Any]) -> CheckedAction:
    """The narrow / remove branch of :func:`check_action` (approximate, deterministic)."""
    if kind == "narrow":
        n = _field(action, "narrow", (2,))
        if not legal.narrow:
            return CheckedAction(kind, None, record)  # schedule mode, nothing narrowable
        layer, level = (int(v) for v in n)
        if (layer, level) not in set(legal.narrow):
            layers = sorted({i for i, _ in legal.narrow})
            if 0 <= layer < len(arch.layers) - 1:
                levels = space.levels_for(arch.layers[layer])
                to = f" to {levels[level]}" if 0 <= level < len(levels) else \
                    f" to width level {level} (the layer has {len(levels)} levels)"
                what = f"layer {layer} {arch.layers[layer]}{to}"
            else:
                what = f"layer {layer} (the network has {len(arch.layers) - 1} layers)"
            raise InvalidActionError(
                f"narrow: {what} is not a legal narrowing (a conv/FC layer, not tied to a skip, "
                f"to a width level of the space below its width; narrowable layers: {layers})")
        width = space.levels_for(arch.layers[layer])[level]
        record["narrow"] = n
        return CheckedAction(kind, lambda net: morphisms.narrow(net, layer, width), record)
    r = _field(action, "remove", ())
    if not legal.remove:
        return CheckedAction(kind, None, record)  # schedule mode, nothing removable
    layer = int(r)
    if layer not in set(legal.remove):
        what = (f"layer {layer} {arch.layers[layer]}" if 0 <= layer < len(arch.layers) - 1
                else f"layer {layer} (the network has {len(arch.layers) - 1} layers)")
        raise InvalidActionError(
            f"remove: {what} cannot be removed (a conv/FC layer keeping its input's shape, not "
            f"tied to a skip; removable: {list(legal.remove)})")
    record["remove"] = r
    return CheckedAction(kind, lambda net: morphisms.remove_layer(net, layer), record)


def _widen_op(layers: list[int], space: SearchSpace, rng: np.random.Generator,
              noise: bool) -> Callable[[ChildNet], ChildNet]:
    def op(net: ChildNet) -> ChildNet:
        for i in layers:
            if isinstance(net.arch.layers[i], Dense):
                net = morphisms.dense_widen(net, i, space=space, rng=rng, noise=noise)
            else:
                net = morphisms.net2wider(net, i, space=space, rng=rng, noise=noise)
        return net

    return op


def _deeper_op(densenet: bool, block: int, position: int, kernel: int | None,
               rng: np.random.Generator, data_batch: Tensor | None = None
               ) -> Callable[[ChildNet], ChildNet]:
    kw: dict[str, Any] = {"rng": rng}
    if kernel is not None:
        kw["kernel"] = kernel

    def op(net: ChildNet) -> ChildNet:
        if densenet:
            return morphisms.dense_insert(net, block, position, **kw)
        if data_batch is None:
            return morphisms.net2deeper(net, block, position, **kw)
        mode = net.training
        net.train()  # fitted in the mode the child is trained in (dropout draws kept apart)
        try:
            with torch.random.fork_rng(devices=[]):
                child = morphisms.net2deeper(net, block, position, data_batch=data_batch, **kw)
        finally:
            net.train(mode)
        return child.train(mode)

    return op
