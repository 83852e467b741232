"""The evaluation cache shared by the environments of one search.

EAS trains hundreds of children; the same architecture is often proposed more
than once (by several children of one round, or again in a later round). The
cache remembers what an evaluation gave so an architecture is trained once.

The key is ``(start fingerprint, child architecture string)``. The original EAS
code cached by the architecture string alone, even though a child built by
transformations inherits its weights from the episode's start network: the same
string reached from a *different* start network (e.g. in stage 2, after the
best stage-1 network was retrained, or from a hill-climbing parent) starts from
different weights and can end at a different accuracy. Keying on a fingerprint
of the start network keeps stage-2 children from reusing stage-1 results, while
duplicate children of one round (same start, same string) are still trained once.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from eas.envs.evaluators import StopSearch, evaluate_batch
from eas.envs.record import EvalResult
from eas.network import ChildNet

__all__ = ["EvalCache", "evaluate_children", "fingerprint"]

_SAMPLES_PER_TENSOR = 4096


def fingerprint(net: nn.Module) -> str:
    """A short, cheap digest identifying a network's architecture and weights.

    It hashes the architecture string (``net.arch`` when present), every
    parameter/buffer name, shape and dtype, each tensor's sum, and up to 4096
    evenly strided values of each tensor. Two networks with equal weights get
    the same fingerprint; any training step changes it with overwhelming
    probability. Cost: a few small reductions per tensor, no full copy to host.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(str(getattr(net, "arch", type(net).__name__)).encode())
    with torch.no_grad():
        for name, t in net.state_dict().items():
            h.update(f"|{name}:{tuple(t.shape)}:{t.dtype}".encode())
            if t.numel() == 0:
                continue
            flat = t.detach().reshape(-1)
            stride = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            sample = flat[::stride]
            if flat.is_floating_point():
                total = flat.double().sum().reshape(1)
                sample = sample.double()
            else:
                total = flat.long().sum().reshape(1)
                sample = sample.long()
            h.update(torch.cat([total.to(sample.dtype), sample]).cpu().numpy().tobytes())
    return h.hexdigest()


class EvalCache:
    """Evaluation results keyed by ``(start fingerprint, child architecture string)``.

    One object can be shared by several environments (the vector environment
    shares one across its copies), so a round's duplicate children are
    trained once. Successful results are stored; failed ones are not (a failure
    may be transient, e.g. out of memory, and is retried next time).

    Trained weights (``EvalResult.state_dict``) are kept for at most
    ``max_weights`` entries (the most recently stored ones; default 32, ``None`` = all,
    0 = none) so a long search does not hold every child's weights in memory;
    older entries keep their accuracy only.
    """

    def __init__(self, max_weights: int | None = 32) -> None:
        if max_weights is not None and max_weights < 0:
            raise ValueError(f"max_weights must be >= 0 or None, got {max_weights}")
        self.max_weights = max_weights
        self._results: dict[tuple[str, str], EvalResult] = {}
        self._with_weights: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.hits = 0
        """Number of successful look-ups."""
        self.misses = 0
        """Number of look-ups that found nothing."""

    @staticmethod
    def key(start_fingerprint: str, arch: Any) -> tuple[str, str]:
        """The cache key of a child: ``(start fingerprint, canonical arch string)``."""
        return (str(start_fingerprint), str(arch))

    def get(self, key: tuple[str, str]) -> EvalResult | None:
        """The stored result for ``key`` (a copy) or None; counts hits and misses."""
        res = self._results.get(key)
        if res is None:
            self.misses += 1
            return None
        self.hits += 1
        return replace(res, extra=dict(res.extra))

    def put(self, key: tuple[str, str], result: EvalResult) -> None:
        """Store a result (ignored when it failed)."""
        if result.failed:
            return
        stored = replace(result, extra=dict(result.extra))
        if stored.state_dict is not None and self.max_weights != 0:
            self._with_weights[key] = None
            self._with_weights.move_to_end(key)
            while self.max_weights is not None and len(self._with_weights) > self.max_weights:
                old, _ = self._with_weights.popitem(last=False)
                if old in self._results:
                    self._results[old] = replace(self._results[old], state_dict=None)
        else:
            stored = replace(stored, state_dict=None)
            self._with_weights.pop(key, None)
        self._results[key] = stored

    def state_dict(self) -> dict[str, Any]:
        """The cache's entries *without* weights, plus hit/miss counts (for checkpoints)."""
        entries = [
            (list(key), res.to_dict())
            for key, res in self._results.items()
        ]
        return {"entries": entries, "hits": self.hits, "misses": self.misses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Add the entries of :meth:`state_dict` output (weights are not restored)."""
        for key, fields in state.get("entries", []):
            self.put(self.key(*key), EvalResult.from_dict(fields))
        self.hits = int(state.get("hits", 0))
        self.misses = int(state.get("misses", 0))

    def clear(self) -> None:
        """Forget everything (the next evaluation of any architecture trains it again)."""
        self._results.clear()
        self._with_weights.clear()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: object) -> bool:
        return key in self._results

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._results))

    def __repr__(self) -> str:
        return f"EvalCache(entries={len(self)}, hits={self.hits}, misses={self.misses})"


def evaluate_children(
    evaluator: Callable[[ChildNet], Any],
    children: Sequence[ChildNet],
    keys: Sequence[tuple[str, str]],
    cache: EvalCache | None,
) -> list[tuple[EvalResult, bool]]:
    """Evaluate children with one :func:`evaluate_batch` call; returns ``(result, cached)``.

    Children whose key is in ``cache`` are not trained (``cached=True``); of
    several children with the same key in this batch only the first is trained
    and the others reuse its result (``cached=True``), even when ``cache`` is
    None. New successful results are stored in ``cache``. An evaluator that
    raises (also a failing ``evaluate_many``) makes its children failed results.
    """
    out: list[tuple[EvalResult, bool] | None] = [None] * len(children)
    first: dict[tuple[str, str], int] = {}
    todo: list[int] = []
    for i, key in enumerate(keys):
        if key in first:
            continue
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            out[i] = (hit, True)
            first[key] = i
            continue
        first[key] = i
        todo.append(i)
    if todo:
        try:
            results = evaluate_batch(evaluator, [children[i] for i in todo])
            if len(results) != len(todo):
                raise RuntimeError(
                    f"the evaluator returned {len(results)} results for {len(todo)} children"
                )
        except StopSearch:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken evaluator fails its children
            reason = f"{type(exc).__name__}: {exc}"
            results = [EvalResult(0.0, failed=True, reason=reason) for _ in todo]
        for i, res in zip(todo, results):
            if not res.failed and not (math.isfinite(res.accuracy) and 0 <= res.accuracy <= 1):
                res = EvalResult(0.0, failed=True, train_time=res.train_time,
                                 reason=f"the evaluator returned accuracy {res.accuracy}")
            out[i] = (res, False)
            if cache is not None:
                cache.put(keys[i], res)
    for i, key in enumerate(keys):
        if out[i] is None:
            res, _ = out[first[key]]  # type: ignore[misc]
            out[i] = (res, True)
    return out  # type: ignore[return-value]
