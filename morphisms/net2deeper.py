"""Net2DeeperNet: insert an identity-initialised conv or FC layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eas.arch import Architecture, SearchSpace
from eas.layers import FC, Conv
from eas.morphisms._remap import (
    Insert,
    Plan,
    apply_plan,
    as_rng,
    check_kernel,
    gaussian_,
    layouts,
    maybe_negative_owners,
)
from eas.network import ChildNet

__all__ = ["net2deeper", "deeper_refusal"]


def deeper_refusal(arch: Architecture, block: int, position: int) -> str | None:
    """Why inserting after (block, position) is not allowed, or None when it is."""
    blocks = arch.blocks()
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) \
            or not 0 <= block < len(blocks):
        return f"block {block!r} is out of range (the network has {len(blocks)} blocks)"
    members = blocks[block]
    if not isinstance(position, (int, np.integer)) or isinstance(position, bool) \
            or not 0 <= position < len(members):
        return (f"position {position!r} is out of range: block {block} has {len(members)} "
                f"layer(s), so 0 <= position < {len(members)}")
    p = members[position]
    layer = arch.layers[p]
    if not isinstance(layer, (Conv, FC)):
        return (f"layer {p} {layer} is not a conv or FC layer; an identity layer can only "
                "follow C(...) or FC(...) (dense blocks grow with dense_insert)")
    if any(s.mode == "ADD" for s in arch.skips_into(p)):
        return (f"layer {p} {layer} receives an ADD skip, so its output can be negative and "
                "the new layer's ReLU would not be an identity")
    neg = maybe_negative_owners(arch)
    _, outs = layouts(arch, 1)
    bad = sorted({o for o, _ in outs[p] if o in neg})
    if bad:
        return (f"layer {p} {layer} concatenates the output of layer(s) {bad}, which receive "
                "ADD skips and can be negative; the new layer's ReLU would not be an identity")
    return None


def net2deeper(net: ChildNet, block: int, position: int, kernel: int = 3, *,
               data_batch: Tensor | None = None, space: SearchSpace | None = None,
               rng: np.random.Generator | None = None, noise: bool = False,
               noise_scale: float = 1e-3) -> ChildNet:
    """Insert an identity layer right after the ``position``-th layer of block ``block``.

    Blocks are ``net.arch.blocks()`` (runs between poolings). After a conv with
    ``c`` output channels (CAT skips included) a ``C(c, kernel, 1)`` with one-hot
    centre taps is inserted, after an FC an identity ``FC(units)``. Its BatchNorm
    undoes itself: running mean 0, variance 1, weight sqrt(1 + eps), bias 0. Given
    ``data_batch`` (normalised images), the new layer's pre-BN activations on that
    batch (computed in the parent's mode) set the running mean/var to the batch
    mean/variance and weight = sqrt(var + eps), bias = mean: exact in eval mode
    and, for a parent in train mode, on that batch in train mode too (close to it
    on similar batches). The ReLU after the new layer is an identity because its
    input is post-ReLU. ``noise`` adds N(0, noise_scale^2) to the identity kernel.
    ``kernel`` must be odd (and in ``space.kernel_sizes`` when a space is given).
    """
    what = f"net2deeper(block={block}, position={position}, kernel={kernel})"
    arch = net.arch
    check_kernel(kernel, space.kernel_sizes if space is not None else None, what)
    reason = deeper_refusal(arch, block, position)
    if reason is not None:
        raise ValueError(f"{what}: {reason}")
    rng = as_rng(rng)
    p = arch.blocks()[block][position]
    layer = arch.layers[p]
    channels = net.shapes[p].out_channels
    new_layer = Conv(channels, kernel, 1) if isinstance(layer, Conv) else FC(channels)
    q = p + 1
    new_arch = arch.insert_layer(q, new_layer)
    parent_of = {i: (i if i < q else i - 1) for i in range(len(new_arch.layers)) if i != q}
    plan = Plan(new_arch, parent_of, insert={q: Insert(np.arange(channels))})
    child = apply_plan(net, plan)
    module = child.layers[q]
    weight = module.conv.weight if isinstance(layer, Conv) else module.fc.weight
    if noise:
        gaussian_(weight, noise_scale, rng)
    if data_batch is not None:
        _fit_bn_to_batch(child, q, data_batch)
    return child


class _Stop(Exception):
    pass


def _fit_bn_to_batch(child: ChildNet, q: int, batch: Tensor) -> None:
    """Set layer q's BN so that it undoes itself on ``batch``.

    The activations are taken in the child's current mode (the parent's): in
    eval mode with running statistics, in train mode with batch statistics (the
    running statistics of earlier layers are restored afterwards).
    """
    module = child.layers[q]
    lin = module.conv if hasattr(module, "conv") else module.fc
    like = lin.weight
    captured: list[Tensor] = []

    def hook(_mod: torch.nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        captured.append(out.detach())
        raise _Stop

    saved = {k: v.clone() for k, v in child.named_buffers()} if child.training else {}
    handle = lin.register_forward_hook(hook)
    try:
        with torch.no_grad():
            child(batch.to(device=like.device, dtype=like.dtype))
    except _Stop:
        pass
    finally:
        handle.remove()
        if saved:
            with torch.no_grad():
                for k, v in child.named_buffers():
                    v.copy_(saved[k])
    if not captured:  # pragma: no cover
        raise RuntimeError("internal error: the new layer was not reached")
    act = captured[0]
    dims = [0, 2, 3] if act.dim() == 4 else [0]
    mean = act.mean(dim=dims)
    var = act.var(dim=dims, unbiased=False)
    bn = module.bn
    with torch.no_grad():
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean)
