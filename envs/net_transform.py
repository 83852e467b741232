"""The network-transformation environment (EAS as a gymnasium environment).

One episode builds one child network: starting from a trained start network,
the agent applies a fixed number of function-preserving transformations
(Net2Wider, Net2Deeper, skip connections; DenseNet widening/insertion on
DenseNet start networks), and on the last step the child is trained and
evaluated; its validation accuracy ``acc`` gives the reward ``tan(acc * pi/2)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from eas.arch import Architecture, SearchSpace, Tokenizer
from eas.envs._fork import single_threaded_forks
from eas.envs.actions import CheckedAction, InvalidActionError, check_action
from eas.envs.cache import EvalCache, evaluate_children, fingerprint
from eas.envs.evaluators import TrainerEvaluator
from eas.envs.outcome import episode_outcome
from eas.envs.record import EvalResult
from eas.envs.rewards import PaperReward
from eas.envs.settings import DEFAULT_SCHEDULE
from eas.envs.shrink import distill_shrunk
from eas.envs.spaces import LegalActionDict, Masks, observation_space
from eas.kinds import SHRINK_KINDS, kinds_for
from eas.morphisms.legal import LegalActions, legal_actions, narrow_levels
from eas.network import ChildNet, build_network

__all__ = ["FASHION_START", "NetTransformEnv"]


FASHION_START = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(3,3,AVG), FC(256), SM(10)"
)
"""The EAS Table-1 start network adapted to 28x28 inputs (Fashion-MNIST)."""

# ----------------------------------------------------------------------- environment
class NetTransformEnv(gym.Env[dict[str, Any], dict[str, Any]]):
    """Architecture search by function-preserving network transformation (EAS).

    ## Description

    An episode turns a trained *start network* into one *child network* by a
    sequence of transformations that preserve the function the network
    computes, so the child inherits the start network's knowledge and needs
    only a short training. This follows Cai et al., "Efficient Architecture
    Search by Network Transformation" (AAAI 2018): Net2Wider widens layers,
    Net2Deeper inserts identity-initialised layers; in addition, skip
    connections can be added (zero-gated ``ADD`` or ``CAT``), and on DenseNet
    start networks "wider" raises growth rates (``dense_widen``) and "deeper"
    inserts dense layers (``dense_insert``). The transformations are the pure
    functions of ``morphisms``: the start network is never modified.

    In *schedule mode* (the default, EAS's 4 wider steps then 5 deeper steps)
    the kind of every step is fixed; in *free mode* (``schedule=None``) the
    agent picks the kind each step (hill climbing, NASH-style).

    ## Action Space

    ``Dict`` (``L = max_layers``, ``K = len(space.kernel_sizes)``):

    - ``"kind"``: ``Discrete(3)``, index into ``KINDS = ("wider", "deeper", "skip")``
      (``Discrete(5)`` with ``shrink``: ``+ ("narrow", "remove")``); read only in free mode.
    - ``"wider"``: ``MultiBinary(L)``: widen every marked layer to its next width in
      ``space`` (Net2Wider for C/FC, ``dense_widen`` for DL), all in one step;
      all zeros = no change.
    - ``"deeper"``: ``MultiDiscrete([L, L+1, K])``: (block, position, kernel index).
      Plain nets: insert after the ``position``-th layer of ``arch.blocks()[block]``;
      DenseNets: a new dense layer becomes the ``position``-th layer of
      ``arch.dense_blocks()[block]``. The kernel is ignored for FC insertions.
    - ``"skip"``: ``MultiDiscrete([L, L, 2])``: (src, dst, mode) with mode 0 = ADD, 1 = CAT.

    Only the fields of the applied kind are read. An action the masks rule out
    raises :class:`InvalidActionError` (a ``ValueError``) saying what and why,
    and leaves the environment unchanged. If the scheduled kind has no legal
    action at all (e.g. "deeper" with ``max_layers`` reached), the step is a
    no-op (``info["noop"] = True``). ``env.action_space.sample()`` draws a legal
    action for the current state (see :func:`~envs.observation.sample_legal_action`).

    ## Observation Space

    ``Dict``: ``"arch"`` (``Text``, the architecture string), ``"tokens"``
    (``Box(0, vocab_size-1, (L,), int64)``, one token per layer except SM, 0 =
    padding), ``"length"`` (``Discrete(L+1)``, real tokens), ``"step"``
    (``Discrete(steps+1)``), and the masks of the legal actions: ``"kind_mask"``
    (``MultiBinary(3)``; schedule mode: one-hot of the scheduled kind, all zeros
    once the episode ended), ``"wider_mask"`` and ``"wider_is_fc"`` (``MultiBinary(L)``;
    the latter marks the widenable layers that are FC layers), ``"deeper_mask"``
    and ``"deeper_is_fc"`` (``MultiBinary((L, L+1))``), ``"kernel_mask"``
    (``MultiBinary(K)``), ``"skip_mask"`` (``MultiBinary((L, L, 2))``, all zero on
    DenseNets). Masks are the sets of ``env.legal_actions``
    (:class:`~eas.morphisms.legal.LegalActions`); "deeper" is masked out once
    the network has ``max_layers`` tokens.

    ## Rewards

    0 on every step but the last. On the last step the child is evaluated by
    the evaluator and the reward is ``tan(min(acc, 0.999) * pi/2)``: the clamp
    keeps it finite (max ~= 636.6). A failed child (diverged, crashed, the
    evaluator raised) gets 0.0, the lowest reward, and the episode still ends
    normally. An evaluator whose results carry a ``reward`` sets the reward
    itself (successive halving's rank reward, comparable across fidelities:
    ``eas.envs.halving``).
    ``reward=`` replaces tan(acc * pi/2) by any reward function, e.g. MnasNet's
    cost-constrained ``acc * (cost / target) ** w`` (``envs.rewards``).

    ## Starting State

    The start network: ``options["start"]`` given to :meth:`reset` (a trained
    ``ChildNet``, or an architecture string/``Architecture``), else the
    constructor's ``start``. A string is built into a fresh, *untrained*
    network (``build_network(..., seed=0)``); the search loop therefore trains
    the start network first and passes the trained ``ChildNet``.

    ## Episode End

    ``terminated=True`` after ``steps`` transformations (``len(schedule)``, or
    ``free_steps`` in free mode); there is no truncation. The last step's
    ``info["child"]`` is the child's record (:class:`~envs.record.EvalResult`:
    the evaluator's result completed with ``arch``, ``params``, ``flops``,
    ``cached``, ``reward``, ``net`` (the trained child when the evaluator returned
    weights, else the untrained transformed child) and ``actions`` (the episode's
    actions)); ``info`` also holds the record's fields as keys (``accuracy``,
    ``arch``, ``failed``, ``reason``, ``train_time``, ``fidelity``, ...), ``net``
    and ``actions``.

    ## Arguments

    - ``start``: start network (``ChildNet``, string or ``Architecture``); default
      :data:`FASHION_START`.
    - ``input_shape``: ``(C, H, W)`` of the inputs.
    - ``evaluator``: any callable ``net -> float | EvalResult`` (optionally with
      ``evaluate_many``); ``None`` -> :class:`~envs.evaluators.TrainerEvaluator`
      on Fashion-MNIST with the default ``TrainConfig`` (created on first use).
      An evaluator that raises makes the child failed, not the episode crash.
    - ``space``: the :class:`~eas.arch.SearchSpace` of widths and kernels.
    - ``schedule``: kinds per step, or ``None`` for free mode.
    - ``free_steps``: episode length in free mode.
    - ``max_layers``: ``L``, the padded length of tokens and masks.
    - ``noise``: add symmetry-breaking noise when widening.
    - ``cache``: ``True`` (own :class:`~envs.cache.EvalCache`), ``False``/``None``
      (no cache) or an ``EvalCache`` to share; keyed by (start-network
      fingerprint, child arch string), see ``envs.cache``.
    - ``reward``: keyword-only, ``reward(accuracy, failed, info) -> float`` (see
      ``envs.rewards``); default :class:`~envs.rewards.PaperReward`, the paper's
      ``tan(acc * pi/2)``; :class:`~envs.rewards.ConstrainedReward` for a budget.
    - ``defer_evaluation``: keyword-only, used by the vector environment: the
      last step returns reward 0 and ``info["pending"] = True`` and the caller
      finishes with :meth:`complete_evaluation`.
    - ``shrink``: keyword-only; True adds the approximate kinds ``narrow``/``remove``
      (:data:`~eas.kinds.SHRINK_KINDS`; schedules may name them): actions
      ``"narrow"`` (``MultiDiscrete([L, W])``: layer, index into
      ``space.levels_for(layer)`` below its width; ``W`` = ``narrow_levels(space)``)
      and ``"remove"`` (``Discrete(L)``), masks ``"narrow_mask"`` (``(L, W)``) and
      ``"remove_mask"`` (``(L,)``), and ``shrunk``/``distilled`` in the last info.
      False (default, the paper's setting): spaces, masks and draws as without it.
    - ``distill``: keyword-only, ``distill(child, parent, seed) -> child``
      (:class:`~envs.shrink.ShrinkDistiller`): a shrunk child is distilled from the
      episode's start network before evaluation (not when the cache holds it).
    - ``deeper_batch``: keyword-only, a batch of normalised training images (``NCHW``
      float, e.g. :func:`eas.data.fitting_batch`): Net2Deeper sets a new layer's
      BatchNorm from the statistics of the layer's input on that batch, computed in
      train mode (running mean/variance = the batch's, weight = sqrt(var + eps),
      bias = mean), as the EAS code's ``set_identity4deepen`` does (it computes them in
      eval mode): the layer stays an identity in eval mode, and in train mode on
      that batch too. None (default): the BatchNorm undoes itself without data
      (mean 0, variance 1), exact in eval mode only. DenseNet inserts are not fitted.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        start: str | Architecture | ChildNet = FASHION_START,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        evaluator: Callable[[ChildNet], float | EvalResult] | None = None,
        space: SearchSpace | None = None,
        schedule: Sequence[str] | None = DEFAULT_SCHEDULE,
        free_steps: int = 5,
        max_layers: int = 50,
        noise: bool = True,
        cache: EvalCache | bool | None = True,
        *,
        reward: Callable[..., float] | None = None,
        defer_evaluation: bool = False,
        shrink: bool = False,
        distill: Callable[[ChildNet, ChildNet, int], ChildNet] | None = None,
        deeper_batch: torch.Tensor | None = None,
    ) -> None:
        single_threaded_forks()  # before gymnasium's AsyncVectorEnv forks its workers
        self.space = space if space is not None else SearchSpace()
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.max_layers = int(max_layers)
        if self.max_layers < 1:
            raise ValueError(f"max_layers must be >= 1, got {max_layers}")
        if isinstance(schedule, str):
            raise ValueError("schedule must be a sequence of kinds, e.g. ('wider', 'deeper')")
        self.shrink = bool(shrink)
        self.kinds = kinds_for(self.shrink)
        """The kinds of the ``kind`` action, in index order (:func:`~eas.morphisms.legal.kinds_for`)."""
        self.distill = distill
        self.deeper_batch = deeper_batch
        """Normalised training images Net2Deeper fits a new layer's BatchNorm to, or None."""
        self.schedule = None if schedule is None else tuple(str(k) for k in schedule)
        if self.schedule is not None:
            shrinking = [k for k in self.schedule if k in SHRINK_KINDS]
            if shrinking and not self.shrink:
                raise ValueError(
                    f"schedule names the shrink kind {shrinking[0]!r}; build the environment "
                    "with shrink=True to use narrow/remove")
            bad = [k for k in self.schedule if k not in self.kinds]
            if bad or not self.schedule:
                raise ValueError(
                    f"schedule must be a non-empty sequence of kinds from {self.kinds}, got "
                    f"{list(self.schedule)}"
                )
        self.free_steps = int(free_steps)
        if self.schedule is None and self.free_steps < 1:
            raise ValueError(f"free_steps must be >= 1, got {free_steps}")
        self.steps = len(self.schedule) if self.schedule is not None else self.free_steps
        self.noise = bool(noise)
        self.evaluator = evaluator
        self.defer_evaluation = bool(defer_evaluation)
        self.reward_fn = reward if reward is not None else PaperReward()
        if cache is True:
            cache = EvalCache()
        self.cache: EvalCache | None = cache if isinstance(cache, EvalCache) else None
        self.tokenizer = Tokenizer(self.space)
        self.start = self._as_start(start)

        L, K = self.max_layers, len(self.space.kernel_sizes)
        W = narrow_levels(self.space) if self.shrink else None
        self.observation_space = observation_space(L, K, self.steps, self.tokenizer.vocab_size, W)
        self.action_space = LegalActionDict.for_layers(L, K, W)
        self.action_space.attach(self)

        self._start_net: ChildNet | None = None
        self._net: ChildNet | None = None
        self._fingerprint: str | None = None
        self._step = 0
        self._masks: Masks | None = None
        self._actions: list[dict[str, Any]] = []
        self._pending: ChildNet | None = None
        self._shrunk = False
        self._shrink_facts: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def _as_start(self, start: Any) -> ChildNet:
        if isinstance(start, ChildNet):
            net = start
            if tuple(net.input_shape) != self.input_shape:
                raise ValueError(
                    f"the start network takes inputs {tuple(net.input_shape)}, but the "
                    f"environment's input_shape is {self.input_shape}"
                )
        elif isinstance(start, (str, Architecture)):
            net = build_network(start, self.input_shape, seed=0)
        else:
            raise TypeError(
                f"start must be a ChildNet, an architecture string or an Architecture, got "
                f"{type(start).__name__}"
            )
        tokens = len(net.arch.layers) - 1
        if tokens > self.max_layers:
            raise ValueError(
                f"the start network has {tokens} layers (SM excluded), more than "
                f"max_layers={self.max_layers}"
            )
        return net

    def _kind_now(self) -> str | None:
        if self.schedule is None or self._step >= self.steps:
            return None
        return self.schedule[self._step]

    def _compute_masks(self) -> Masks:
        assert self._net is not None
        if self._masks is None:
            legal = legal_actions(self._net.arch, self.input_shape, self.space, self.max_layers)
            self._masks = Masks(legal, self._kind_now(), self._step >= self.steps, self.kinds)
        return self._masks

    @property
    def legal_actions(self) -> LegalActions | None:
        """The legal actions of the current network (None before :meth:`reset`).

        Each kind's set is computed when first read; the observation's masks
        are these sets as arrays.
        """
        return None if self._net is None else self._compute_masks().legal

    def legal_masks(self) -> dict[str, np.ndarray] | None:
        """The current mask arrays (fresh copies), or None before reset / after the episode.

        A dict of per-kind masks (the observation's ``*_mask`` entries). It is not
        called ``action_masks``: sb3-contrib's ``MaskablePPO`` looks for a method of
        that name returning one flat boolean array, which :class:`envs.flat.FlatNetTransformEnv`
        provides.
        """
        if self._net is None or self._step >= self.steps:
            return None
        return self._compute_masks().arrays()

    def _get_obs(self) -> dict[str, Any]:
        assert self._net is not None
        arch = self._net.arch
        obs: dict[str, Any] = {
            "arch": str(arch),
            "tokens": np.asarray(self.tokenizer.encode(arch, max_len=self.max_layers), np.int64),
            "length": np.int64(len(arch.layers) - 1),
            "step": np.int64(self._step),
        }
        obs.update(self._compute_masks().arrays())
        return obs

    def resolve_evaluator(self) -> Callable[[ChildNet], Any]:
        """The evaluator, creating the default Fashion-MNIST trainer on first use."""
        if self.evaluator is None:
            self.evaluator = TrainerEvaluator.fashion_mnist()
        return self.evaluator

    @property
    def net(self) -> ChildNet | None:
        """The current (transformed, untrained) network of the episode."""
        return self._net

    @property
    def start_fingerprint(self) -> str | None:
        """Fingerprint of this episode's start network (the first half of cache keys)."""
        return self._fingerprint

    @property
    def pending_child(self) -> ChildNet | None:
        """With ``defer_evaluation``: the finished child awaiting evaluation, else None."""
        return self._pending

    @property
    def pending_key(self) -> tuple[str, str] | None:
        """The cache key of :attr:`pending_child`."""
        if self._pending is None or self._fingerprint is None:
            return None
        return EvalCache.key(self._fingerprint, self._pending.arch)

    # -------------------------------------------------------------------- reset
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode from ``options["start"]`` or the configured start network.

        ``seed`` seeds ``self.np_random``, the RNG handed to every transformation
        (noise), so equal seeds and actions give equal children.
        ``options["fingerprint"]`` may carry a precomputed fingerprint of the
        start network (the vector environment computes it once for all copies).
        """
        super().reset(seed=seed)
        options = dict(options or {})
        start = options.get("start")
        net = self.start if start is None else self._as_start(start)
        self._start_net = net
        self._net = net
        fp = options.get("fingerprint")
        self._fingerprint = str(fp) if fp is not None else fingerprint(net)
        self._step = 0
        self._masks = None
        self._actions = []
        self._pending = None
        self._shrunk = False
        self._shrink_facts = None
        return self._get_obs(), {"arch": str(net.arch), "fingerprint": self._fingerprint}

    # --------------------------------------------------------------------- step
    def check_action(self, action: Any) -> CheckedAction:
        """Check an action against the legal actions without applying it.

        Returns a :class:`CheckedAction` for :meth:`apply_checked`; raises
        :class:`InvalidActionError` saying why an action is ruled out. Only the
        kind being applied has its legal set computed (see :mod:`envs.actions`).
        """
        if not isinstance(action, Mapping):
            raise InvalidActionError(
                f"an action must be a dict with keys {list(self.action_space.spaces)}, got "
                f"{type(action).__name__}"
            )
        masks = self._compute_masks()
        scheduled = None if self.schedule is None else self.schedule[self._step]
        return check_action(action, masks.legal, masks.kind_mask, scheduled,
                            self._net.arch, self.space, self.max_layers,  # type: ignore[union-attr]
                            self.np_random, self.noise, self.kinds,
                            deeper_batch=self.deeper_batch)

    def step(self, action: dict[str, Any]) -> tuple[dict[str, Any], float, bool, bool,
                                                    dict[str, Any]]:
        """Apply one transformation; on the last step evaluate the child.

        Raises :class:`InvalidActionError` (state unchanged) for an action the
        masks rule out, and ``RuntimeError`` when called before :meth:`reset` or
        after the episode ended.
        """
        self.check_ready()
        return self.apply_checked(self.check_action(action))

    def check_ready(self) -> None:
        """Raise ``RuntimeError`` unless an episode is running (reset, not yet ended)."""
        if self._net is None:
            raise RuntimeError("call reset() before step()")
        if self._step >= self.steps:
            raise RuntimeError("the episode has ended; call reset() to start a new one")

    def apply_checked(self, checked: CheckedAction) -> tuple[dict[str, Any], float, bool, bool,
                                                             dict[str, Any]]:
        """Apply an action from :meth:`check_action`; evaluate the child on the last step.

        Returns what :meth:`step` returns (with ``defer_evaluation`` the last
        step leaves the child pending).
        """
        assert self._net is not None
        kind, op, record = checked
        new_net = self._net
        if op is not None:
            try:
                new_net = op(self._net)
            except ValueError as exc:  # masks and morphisms disagree: reject, stay unchanged
                raise InvalidActionError(f"{kind}: the transformation rejected it: {exc}") from exc
        self._net = new_net
        self._step += 1
        self._masks = None
        self._actions.append(record)
        self._shrunk = self._shrunk or (op is not None and kind in SHRINK_KINDS)
        info: dict[str, Any] = {"kind": kind, "arch": str(new_net.arch), "noop": op is None}
        if self._step < self.steps:
            return self._get_obs(), 0.0, False, False, info
        child = new_net
        if child is self._start_net:  # nothing changed: never hand out the start network
            child = child.clone()
            self._net = child
        if self.shrink:
            child = self._distill_shrunk(child, info)
        if self.defer_evaluation:
            self._pending = child
            info["pending"] = True
            return self._get_obs(), 0.0, True, False, info
        key = EvalCache.key(self._fingerprint or "", child.arch)
        ((result, cached),) = evaluate_children(self.resolve_evaluator(), [child], [key],
                                                self.cache)
        reward, final = self._finish(child, result, cached)
        info.update(final)
        return self._get_obs(), reward, True, False, info

    def _distill_shrunk(self, child: ChildNet, info: dict[str, Any]) -> ChildNet:
        """Distil a shrunk child from the episode's start network (:func:`envs.shrink.distill_shrunk`)."""
        cached = (self.cache is not None
                  and EvalCache.key(self._fingerprint or "", child.arch) in self.cache)
        out = distill_shrunk(child, self._start_net, self.distill, self.np_random,
                             shrunk=self._shrunk, cached=cached, info=info)
        if info["distilled"]:
            self._net = out
        self._shrink_facts = {k: info[k] for k in ("shrunk", "distilled", "distill_error")
                              if k in info}
        return out

    def complete_evaluation(self, result: EvalResult, cached: bool = False
                            ) -> tuple[float, dict[str, Any]]:
        """Finish a deferred episode with the pending child's evaluation result.

        Returns ``(reward, info)`` where ``info`` has the last-step keys.
        """
        if self._pending is None:
            raise RuntimeError("no child awaits evaluation (defer_evaluation off or not done)")
        child, self._pending = self._pending, None
        return self._finish(child, result, cached)

    def _finish(self, child: ChildNet, result: EvalResult, cached: bool
                ) -> tuple[float, dict[str, Any]]:
        return episode_outcome(child, result, cached, self._actions, self.reward_fn,
                               shrink=self._shrink_facts)
