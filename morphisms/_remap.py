"""Shared machinery of the function-preserving transformations.

Every transformation is described by a :class:`Plan`: the child architecture,
which child layer continues which parent layer, which layers were widened (and
how: the random mapping ``G`` of EAS Eq. 1) and which layers are brand new
(and which of their input channels each of their units replicates, Eq. 5).
:func:`apply_plan` builds the child from that description alone:

* every channel of the child is traced back to the parent *value* it equals
  (``(owner, channel)`` of the parent, or nothing for genuinely new signals
  such as the channels of a new CAT skip);
* every layer that reads channels gets its input weight columns remapped
  (Eq. 3/4): a column reading parent value ``v`` gets ``W[:, v] / n_v`` where
  ``n_v`` counts how often ``v`` occurs in the child's input, and columns of new
  signals are zero;
* widened layers get their output rows (and BatchNorm entries) copied by ``G``;
  new layers get identity/replication kernels with BatchNorm set to undo itself.

Channel keys come from :func:`eas.shapes.channel_layouts`: an ``ADD`` skip
re-owns every channel present when it is merged (those channels are sums, no
longer the values of their original producers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from eas.arch import Architecture
from eas.layers import FC, Conv, Dense, Layer, Softmax
from eas.network import ChildNet, build_network
from eas.shapes import channel_layouts, infer_shapes

Key = tuple[int, int]


def as_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """The given generator, or a fresh ``np.random.default_rng()``."""
    return np.random.default_rng() if rng is None else rng


def layouts(arch: Architecture, in_channels: int) -> tuple[list[list[Key]], list[list[Key]]]:
    """Channel keys ``(owner, channel)`` of every layer's input and output.

    See :func:`eas.shapes.channel_layouts` (an ``ADD`` skip re-owns the
    channels present when it is merged).
    """
    return channel_layouts(arch, in_channels)


def maybe_negative_owners(arch: Architecture) -> set[int]:
    """Owners whose channels may be negative: the image (-1) and layers receiving ADD skips."""
    return {-1} | {s.dst for s in arch.skips if s.mode == "ADD"}


def add_carriers(arch: Architecture, layer: int) -> list[int]:
    """Layers in an ADD skip whose output contains channels of ``layer`` (directly or via CAT)."""
    carriers = {layer}
    changed = True
    while changed:
        changed = False
        for s in arch.skips:
            if s.mode == "CAT" and s.src in carriers and s.dst not in carriers:
                carriers.add(s.dst)
                changed = True
    in_add = {s.src for s in arch.skips if s.mode == "ADD"} | {
        s.dst for s in arch.skips if s.mode == "ADD"
    }
    return sorted(carriers & in_add)


@dataclass
class Insert:
    """A brand-new layer: unit ``r`` replicates input position ``select[r]``.

    For a bottleneck dense layer ``select`` has ``bottleneck`` entries (the 1x1
    conv's units) and the k x k conv passes bottleneck unit ``r`` to output ``r``.
    """

    select: np.ndarray


@dataclass
class Plan:
    """What a transformation does, in terms of child layer indices."""

    arch: Architecture
    parent_of: dict[int, int]
    widen: dict[int, np.ndarray] = field(default_factory=dict)
    insert: dict[int, Insert] = field(default_factory=dict)


def _input_weight_name(layer: Layer, module: torch.nn.Module) -> str | None:
    if isinstance(layer, Conv):
        return "conv.weight"
    if isinstance(layer, (FC, Softmax)):
        return "fc.weight"
    if isinstance(layer, Dense):
        return "bconv.weight" if hasattr(module, "bconv") else "conv.weight"
    return None


_BN = ("weight", "bias", "running_mean", "running_var")


def _output_names(layer: Layer) -> list[str]:
    if isinstance(layer, (Conv, Dense)):
        return ["conv.weight"] + [f"bn.{n}" for n in _BN]
    if isinstance(layer, FC):
        return ["fc.weight"] + [f"bn.{n}" for n in _BN]
    return []


def _remap_columns(w: Tensor, old_in: list[Key], new_values: list[Key | None], hw: int) -> Tensor:
    """Eq. 3 on dimension 1 of ``w`` (``hw`` columns per channel for flattened inputs)."""
    positions: dict[Key, list[int]] = defaultdict(list)
    for k, key in enumerate(old_in):
        positions[key].append(k)
    counts: dict[Key, int] = defaultdict(int)
    for v in new_values:
        if v is not None and v in positions:
            counts[v] += 1
    missing = [key for key in positions if counts[key] == 0]
    if missing:  # pragma: no cover - would mean a transformation dropped information
        raise RuntimeError(f"internal error: child input lost parent channels {missing[:5]}")
    shape = w.shape
    c_old = len(old_in)
    if shape[1] != c_old * hw:  # pragma: no cover
        raise RuntimeError("internal error: weight does not match the channel layout")
    grouped = w.reshape(shape[0], c_old, hw, *shape[2:])
    c_new = len(new_values)
    slots = max((len(positions[v]) for v in counts), default=1)
    out = torch.zeros((shape[0], c_new, hw, *shape[2:]), dtype=w.dtype, device=w.device)
    for t in range(slots):
        idx = np.zeros(c_new, dtype=np.int64)
        scale = np.zeros(c_new, dtype=np.float64)
        for m, v in enumerate(new_values):
            if v is not None and counts.get(v, 0) and t < len(positions[v]):
                idx[m] = positions[v][t]
                scale[m] = 1.0 / counts[v]
        if not scale.any():
            continue
        sel = grouped.index_select(1, torch.as_tensor(idx, device=w.device))
        bshape = (1, c_new) + (1,) * (sel.dim() - 2)
        out += sel * torch.as_tensor(scale, dtype=w.dtype, device=w.device).reshape(bshape)
    return out.reshape(shape[0], c_new * hw, *shape[2:])


def _undone_bn(n: int, eps: float, like: Tensor) -> dict[str, Tensor]:
    kw = {"dtype": like.dtype, "device": like.device}
    return {
        "weight": torch.full((n,), math.sqrt(1.0 + eps), **kw),
        "bias": torch.zeros(n, **kw),
        "running_mean": torch.zeros(n, **kw),
        "running_var": torch.ones(n, **kw),
        "num_batches_tracked": torch.zeros((), dtype=torch.long, device=like.device),
    }


def apply_plan(net: ChildNet, plan: Plan) -> ChildNet:
    """Build the child described by ``plan`` with function-preserving weights.

    The parent is only read (under ``torch.no_grad``); every child tensor is
    freshly allocated on the parent's device and dtype.
    """
    arch = plan.arch
    infer_shapes(arch, net.input_shape)  # raises ValueError if the child does not fit
    like = next(net.parameters())
    with torch.device("meta"):
        child = build_network(arch, net.input_shape, dropout=net.dropout)
    shapes = child.shapes
    old_arch = net.arch
    in_ch = int(net.input_shape[0])
    old_ins, old_outs = layouts(old_arch, in_ch)
    new_ins, _ = layouts(arch, in_ch)

    cache: dict[Key, Key | None] = {}

    def value(key: Key) -> Key | None:
        """The parent channel a child channel equals (None: a genuinely new signal)."""
        if key in cache:
            return cache[key]
        owner, c = key
        if owner == -1:
            result: Key | None = key
        elif owner in plan.insert:
            result = value(new_ins[owner][int(plan.insert[owner].select[c])])
        else:
            g = plan.widen.get(owner)
            po = plan.parent_of[owner]
            result = old_outs[po][int(g[c]) if g is not None else c]
        cache[key] = result
        return result

    old_sd = net.state_dict()
    expected = child.state_dict()
    names_of: dict[int, list[str]] = defaultdict(list)
    for k in expected:
        if k.startswith("layers."):
            idx, rest = k[len("layers."):].split(".", 1)
            names_of[int(idx)].append(rest)
    new_sd: dict[str, Tensor] = {}
    with torch.no_grad():
        for i, layer in enumerate(arch.layers):
            module = child.layers[i]
            prefix = f"layers.{i}."
            names = names_of[i]
            if i in plan.insert:
                new_sd.update({prefix + k: v for k, v in
                               _inserted_state(layer, module, plan.insert[i], like).items()})
                continue
            o = plan.parent_of[i]
            tensors = {n: old_sd[f"layers.{o}.{n}"] for n in names}
            fresh: set[str] = set()
            wname = _input_weight_name(layer, module)
            if wname is not None:
                hw = 1
                if isinstance(layer, (FC, Softmax)):
                    h, w = shapes[i].in_hw
                    hw = max(h, 1) * max(w, 1)
                values = [value(k) for k in new_ins[i]]
                if values != old_ins[o]:
                    tensors[wname] = _remap_columns(tensors[wname], old_ins[o], values, hw)
                    fresh.add(wname)
            g = plan.widen.get(i)
            if g is not None:
                gi = torch.as_tensor(g, dtype=torch.long, device=like.device)
                for n in _output_names(layer):
                    tensors[n] = tensors[n].index_select(0, gi)
                    fresh.add(n)
            for n, t in tensors.items():
                new_sd[prefix + n] = t if n in fresh else t.detach().clone()
        inverse = {o: i for i, o in plan.parent_of.items()}
        for s in arch.skips:
            if s.mode != "ADD":
                continue
            name = f"{s.src}_{s.dst}"
            po_src, po_dst = plan.parent_of.get(s.src), plan.parent_of.get(s.dst)
            old_name = f"{po_src}_{po_dst}"
            if (po_src is not None and po_dst is not None and inverse.get(po_src) == s.src
                    and old_name in net.gates):
                new_sd["gates." + name] = net.gates[old_name].detach().clone()
            else:
                new_sd["gates." + name] = torch.zeros((), dtype=like.dtype, device=like.device)
        for k, meta in expected.items():
            if k not in new_sd or tuple(new_sd[k].shape) != tuple(meta.shape):  # pragma: no cover
                got = None if k not in new_sd else tuple(new_sd[k].shape)
                raise RuntimeError(f"internal error: {k} expected {tuple(meta.shape)}, got {got}")
        child.load_state_dict(new_sd, strict=True, assign=True)
    child.train(net.training)
    return child


def _inserted_state(layer: Layer, module: torch.nn.Module, spec: Insert,
                    like: Tensor) -> dict[str, Tensor]:
    kw = {"dtype": like.dtype, "device": like.device}
    sel = torch.as_tensor(np.asarray(spec.select, dtype=np.int64), device=like.device)
    rows = torch.arange(len(spec.select), device=like.device)
    out: dict[str, Tensor] = {}
    if isinstance(layer, Conv):
        w = torch.zeros(module.conv.weight.shape, **kw)
        c = layer.kernel // 2
        w[rows, sel, c, c] = 1.0
        out["conv.weight"] = w
        out.update({f"bn.{k}": v for k, v in _undone_bn(layer.filters, module.bn.eps, like).items()})
    elif isinstance(layer, FC):
        w = torch.zeros(module.fc.weight.shape, **kw)
        w[rows, sel] = 1.0
        out["fc.weight"] = w
        out.update({f"bn.{k}": v for k, v in _undone_bn(layer.units, module.bn.eps, like).items()})
    elif isinstance(layer, Dense):
        c = layer.kernel // 2
        conv = torch.zeros(module.conv.weight.shape, **kw)
        if layer.bottleneck:
            b = torch.zeros(module.bconv.weight.shape, **kw)
            b[rows, sel, 0, 0] = 1.0
            out["bconv.weight"] = b
            out.update({f"bbn.{k}": v for k, v in
                        _undone_bn(layer.bottleneck, module.bbn.eps, like).items()})
            g = torch.arange(layer.growth, device=like.device)
            conv[g, g, c, c] = 1.0
        else:
            conv[rows, sel, c, c] = 1.0
        out["conv.weight"] = conv
        out.update({f"bn.{k}": v for k, v in _undone_bn(layer.growth, module.bn.eps, like).items()})
    else:  # pragma: no cover
        raise RuntimeError(f"internal error: cannot insert {layer}")
    return out


def gaussian_(t: Tensor, std: float, rng: np.random.Generator, rows: slice | None = None) -> None:
    """Add N(0, std^2) noise from ``rng`` to ``t`` (or to ``t[rows]``) in place."""
    target = t if rows is None else t[rows]
    if target.numel() == 0 or std == 0:
        return
    noise = rng.normal(0.0, std, size=tuple(target.shape))
    with torch.no_grad():
        target.add_(torch.as_tensor(noise, dtype=t.dtype, device=t.device))


def check_layer_index(arch: Architecture, layer: int, what: str) -> None:
    """Raise ValueError unless ``layer`` is a valid layer index."""
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
        raise ValueError(f"{what}: layer must be an integer index, got {layer!r}")
    if not 0 <= layer < len(arch.layers):
        raise ValueError(
            f"{what}: layer {layer} is out of range (the network has {len(arch.layers)} layers, "
            f"0..{len(arch.layers) - 1})"
        )


def check_kernel(kernel: int, space_kernels: tuple[int, ...] | None, what: str) -> None:
    """Raise ValueError unless ``kernel`` is a positive odd size (and in the space if given)."""
    if not isinstance(kernel, (int, np.integer)) or isinstance(kernel, bool) or kernel < 1 \
            or kernel % 2 == 0:
        raise ValueError(f"{what}: kernel must be a positive odd integer, got {kernel!r} "
                         "(an even kernel cannot keep the spatial size with 'same' padding)")
    if space_kernels is not None and kernel not in space_kernels:
        raise ValueError(f"{what}: kernel {kernel} is not in the search space's kernel sizes "
                         f"{list(space_kernels)}")
