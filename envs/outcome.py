"""The end of an episode: a child's evaluation result turned into the reward and last info.

:func:`episode_outcome` is what :class:`~envs.net_transform.NetTransformEnv` does
once the child has been evaluated (at once, or later through
``complete_evaluation`` with ``defer_evaluation``): load the trained weights into
the child, mark it failed when they do not fit, fill the last step's ``info`` and
compute the reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from eas.envs.record import EvalResult
from eas.network import ChildNet

__all__ = ["episode_outcome"]


def episode_outcome(child: ChildNet, result: EvalResult, cached: bool,
                    actions: Sequence[dict[str, Any]],
                    reward_fn: Callable[[float, bool, dict[str, Any]], float],
                    shrink: dict[str, Any] | None = None,
                    ) -> tuple[float, dict[str, Any]]:
    """``(reward, info)`` of an episode whose ``child`` was evaluated to ``result``.

    The trained weights (``result.state_dict``) are loaded into ``child`` in place;
    weights that do not fit make the child failed. A failed child has accuracy 0.
    The child's record is a copy of ``result`` completed with ``arch``, ``params``,
    ``flops``, ``train_time`` (0 when ``cached``), ``cached``, ``net``, ``actions``,
    the ``shrink`` facts (``shrunk``, ``distilled``, ``distill_error``) and the
    reward; ``info`` is its :meth:`~eas.envs.record.EvalResult.to_dict` plus
    ``net``, ``actions`` and the record itself under ``"child"``. The reward is
    ``result.reward`` when the evaluator set one (successive halving's rank reward,
    comparable across fidelities: ``eas.envs.halving``) and the child did not fail,
    else ``reward_fn(accuracy, failed, info)``.
    """
    failed, reason = bool(result.failed), result.reason
    net = child
    if result.state_dict is not None and not failed:
        try:
            net.load_state_dict(result.state_dict)
        except Exception as exc:  # noqa: BLE001 - weights of another architecture
            failed, reason = True, f"could not load the trained weights: {exc}"
    record = replace(
        result, accuracy=0.0 if failed else float(result.accuracy), failed=failed,
        reason=reason, arch=str(child.arch), params=int(child.num_parameters()),
        flops=int(child.flops()), train_time=0.0 if cached else float(result.train_time),
        cached=bool(cached), extra=dict(result.extra), state_dict=None, net=net,
        actions=list(actions), **(shrink or {}))
    info = {**record.to_dict(), "net": net, "actions": record.actions, "child": record}
    if result.reward is not None and not failed:
        record.reward = float(result.reward)
    else:
        record.reward = float(reward_fn(record.accuracy, failed, info))
    info["reward"] = record.reward
    return record.reward, info
