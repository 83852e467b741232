"""The EAS meta-controller network (Cai et al., AAAI 2018), without its learning rule.

The controller reads the current architecture as a sequence of layer tokens
(one per layer, the classifier excluded, padded to ``max_layers``) and decides
one network transformation per call:

* **encoder** -- an embedding (16) and a one-layer bidirectional LSTM (50 units
  per direction) run over the real tokens only (``pack_padded_sequence``);
* **Net2Wider actor** -- one shared linear layer + sigmoid on every position's
  encoder output: an independent "widen this layer?" decision per layer,
  restricted to the layers ``wider_mask`` allows;
* **Net2Deeper actor** -- an LSTMCell decoder (100 units) started from the
  encoder's final states (both directions concatenated) that chooses the block,
  the position inside the block and the kernel size in turn, each step fed an
  embedding of the previous choice. No kernel is chosen when the new layer is
  fully connected (``deeper_is_fc``);
* **kind head** and **skip actor** -- small extras for the environment's free
  mode: which transformation to apply (from ``kind_mask``) and a skip connection
  (source, destination, mode) chosen in that order from ``skip_mask``;
* **shrink actors** (only when the environment offers the shrink kinds,
  ``search.shrink``): narrow -- one (layer, width level) from ``narrow_mask``,
  scored by a linear layer on each layer's encoding with one logit per level;
  remove -- one layer from ``remove_mask``, one logit per layer's encoding.

:meth:`Controller.act` samples actions for a batch of observations (the numpy
dict of the environment's observation space with a leading batch dimension) with
an explicit :class:`torch.Generator`; :meth:`Controller.evaluate` recomputes the
log-probabilities and entropies of given actions, so that a learner may store
observations and actions and backpropagate later. Both go through the same code
(:meth:`Controller.forward`), so they agree exactly.

A decision that has a single legal choice, or none, contributes no
log-probability and no entropy; a masked choice is never sampled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from eas.agents.masked import masked_categorical, masked_stat
from eas.checkpoint import load_checkpoint
from eas.kinds import ALL_KINDS, KINDS

__all__ = [
    "Controller",
    "ControllerOutput",
    "batch_observation",
    "controller_weights",
]

_OBS_KEYS = (
    "tokens",
    "length",
    "kind_mask",
    "wider_mask",
    "deeper_mask",
    "deeper_is_fc",
    "kernel_mask",
    "skip_mask",
)
_SHRINK_KEYS = ("narrow_mask", "remove_mask")
"""Observation entries of an environment with the shrink kinds (read when present)."""


@dataclass
class ControllerOutput:
    """What one controller call returns for a batch of B observations."""

    actions: dict[str, np.ndarray]
    """Actions in the environment's format, batched: kind [B], wider [B, L],
    deeper [B, 3] (block, position, kernel index), skip [B, 3] (src, dst, mode), and
    with the shrink actors narrow [B, 2] (layer, width level) and remove [B].
    Fields of kinds that are not applied are zero."""
    log_prob: torch.Tensor
    """[B] sum of the log-probabilities of every decision taken for each child."""
    entropy: torch.Tensor
    """[B] sum of the entropies of the distributions of those decisions."""
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Diagnostics as name -> (sum, count), so that several calls can be pooled:
    ``widen_prob`` (Net2Wider probability over unmasked layers), ``kind_entropy``,
    ``deeper_block_entropy``, ``deeper_position_entropy``, ``deeper_kernel_entropy``,
    ``skip_entropy`` -- each over the children whose decision it was."""


def batch_observation(obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert an observation dict (numpy, batched or not) to batched CPU tensors.

    ``arch`` and ``step`` are ignored (the controller reads the architecture
    from its tokens). An unbatched observation (1-D ``tokens``) gets a batch
    dimension of 1.
    """
    tokens = np.asarray(obs["tokens"])
    unbatched = tokens.ndim == 1
    out: dict[str, torch.Tensor] = {}
    for key in _OBS_KEYS + tuple(k for k in _SHRINK_KEYS if k in obs):
        arr = np.asarray(obs[key])
        if unbatched:
            arr = arr[None]
        t = torch.as_tensor(np.ascontiguousarray(arr))
        out[key] = t.long() if key in ("tokens", "length") else t.bool()
    out["length"] = out["length"].reshape(-1)
    return out


class Controller(nn.Module):
    """The EAS meta-controller: a shared BiLSTM encoder with separate actor networks.

    Args:
        vocab_size: number of token ids (``Tokenizer.vocab_size``; id 0 = padding).
        max_layers: L, the padded sequence length and size of per-layer masks.
        num_kernels: K, the number of kernel sizes a Net2Deeper action chooses from.
        num_kinds: number of transformation kinds (wider, deeper, skip; 5 adds the
            shrink kinds narrow and remove, and their actors).
        embed_dim: token (and decoder input) embedding size (16 in EAS).
        hidden_size: encoder LSTM units per direction (50 in EAS).
        decoder_hidden: Net2Deeper decoder units (100 in EAS = both directions'
            final states concatenated; any other value adds a linear bridge).
        wider_one: a Net2Wider step widens exactly one layer, drawn from a softmax over
            the same per-layer logits, instead of each layer by its own Bernoulli (the
            paper); no parameters change, only how the head's logits are read.
        num_levels: W, the width levels a narrow action chooses from (the
            environment's ``narrow_mask`` width); needed with the shrink kinds.
    """

    def __init__(
        self,
        vocab_size: int,
        max_layers: int,
        num_kernels: int,
        num_kinds: int = len(KINDS),
        *,
        embed_dim: int = 16,
        hidden_size: int = 50,
        decoder_hidden: int = 100,
        wider_one: bool = False,
        num_levels: int = 0,
    ) -> None:
        super().__init__()
        self.wider_one = bool(wider_one)
        if min(vocab_size, max_layers, num_kernels, num_kinds) < 1:
            raise ValueError("vocab_size, max_layers, num_kernels and num_kinds must be >= 1")
        if num_kinds > len(ALL_KINDS):
            raise ValueError(f"num_kinds must be at most {len(ALL_KINDS)}, got {num_kinds}")
        self.shrink = num_kinds > len(KINDS)
        if self.shrink and num_levels < 1:
            raise ValueError("the shrink kinds need num_levels >= 1 (the narrow width levels)")
        self.vocab_size = vocab_size
        self.max_layers = max_layers
        self.num_kernels = num_kernels
        self.num_kinds = num_kinds
        self.hidden_size = hidden_size
        self.decoder_hidden = decoder_hidden
        enc = 2 * hidden_size

        # encoder
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = nn.LSTM(embed_dim, hidden_size, num_layers=1, batch_first=True,
                               bidirectional=True)
        # Net2Wider actor: one shared sigmoid classifier over every layer's encoding
        self.wider_head = nn.Linear(enc, 1)
        # Net2Deeper actor: LSTM decoder block -> position -> kernel
        same = decoder_hidden == enc
        self.bridge_h: nn.Module = nn.Identity() if same else nn.Linear(enc, decoder_hidden)
        self.bridge_c: nn.Module = nn.Identity() if same else nn.Linear(enc, decoder_hidden)
        self.decoder = nn.LSTMCell(embed_dim, decoder_hidden)
        self.deeper_start = nn.Parameter(torch.zeros(embed_dim))
        self.block_embedding = nn.Embedding(max_layers, embed_dim)
        self.position_embedding = nn.Embedding(max_layers + 1, embed_dim)
        self.block_head = nn.Linear(decoder_hidden, max_layers)
        self.position_head = nn.Linear(decoder_hidden, max_layers + 1)
        self.kernel_head = nn.Linear(decoder_hidden, num_kernels)
        # free mode: kind head and skip actor
        self.kind_head = nn.Linear(enc, num_kinds)
        self.skip_src_head = nn.Linear(enc, 1)
        self.skip_dst_head = nn.Linear(2 * enc, 1)
        self.skip_mode_head = nn.Linear(2 * enc, 2)
        # shrink actors, built last so the other heads start from the same weights
        self.num_levels = int(num_levels) if self.shrink else 0
        if self.shrink:
            self.narrow_head = nn.Linear(enc, self.num_levels)
            self.remove_head = nn.Linear(enc, 1)

    # ------------------------------------------------------------------ encoder
    def encode(
        self, tokens: torch.Tensor, length: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Encode token sequences; the LSTM never runs over padding.

        Args:
            tokens: [B, T] token ids (anything after ``length`` is ignored).
            length: [B] number of real tokens (0 is treated as 1).

        Returns:
            ``(outputs [B, T, 2H], (h, c))`` where outputs past a sequence's length
            are zero and ``h``/``c`` [B, 2H] concatenate the forward direction's
            state after the last real token with the backward direction's state
            after the first.
        """
        tokens = tokens.long()
        batch, total = tokens.shape
        lengths = length.long().clamp(1, total).cpu()
        emb = self.embedding(tokens)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        h = torch.cat([h_n[0], h_n[1]], dim=-1)
        c = torch.cat([c_n[0], c_n[1]], dim=-1)
        return out, (h, c)

    # ------------------------------------------------------------------- public
    def act(
        self, obs: Mapping[str, Any], generator: torch.Generator
    ) -> ControllerOutput:
        """Sample one transformation per observation in the batch."""
        return self.forward(obs, generator=generator)

    def evaluate(
        self, obs: Mapping[str, Any], actions: Mapping[str, Any]
    ) -> ControllerOutput:
        """Log-probabilities and entropies of given ``actions`` (differentiable)."""
        return self.forward(obs, actions=actions)

    def widen_probabilities(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """[B, L] Net2Wider probability of every layer (0 where ``wider_mask`` is 0)."""
        o = batch_observation(obs)
        enc_out, _ = self.encode(o["tokens"], o["length"])
        p = torch.sigmoid(self.wider_head(enc_out).squeeze(-1))
        return p * o["wider_mask"][:, : p.shape[1]].float()

    def forward(
        self,
        obs: Mapping[str, Any],
        generator: torch.Generator | None = None,
        actions: Mapping[str, Any] | None = None,
    ) -> ControllerOutput:
        """Sample actions (``actions is None``) or score the given ones.

        The observation is encoded afresh; the kind is chosen from ``kind_mask``
        (a one-hot mask, as in the environment's schedule mode, gives a
        deterministic choice with no log-probability); then the actor of each
        child's kind makes its decisions. Decisions of the actors of other kinds
        are not taken and contribute nothing.
        """
        o = batch_observation(obs)
        tokens, length = o["tokens"], o["length"]
        batch, L = tokens.shape
        if L != self.max_layers:
            raise ValueError(f"observation has {L} tokens per sequence, the controller expects "
                             f"max_layers={self.max_layers}")
        forced = None if actions is None else {
            k: torch.as_tensor(np.asarray(v)).long().reshape(batch, -1) for k, v in actions.items()
            if k in ("kind", "wider", "deeper", "skip", "narrow", "remove")
        }
        enc_out, (h, c) = self.encode(tokens, length)
        stats: dict[str, tuple[float, float]] = {}

        # ---- kind
        kind, logp, ent, has = masked_categorical(
            self.kind_head(h), o["kind_mask"], generator,
            None if forced is None else forced["kind"][:, 0],
        )
        stats["kind_entropy"] = masked_stat(ent, o["kind_mask"].sum(-1) > 1)
        log_prob, entropy = logp, ent
        is_kind = [(kind == k) & has for k in range(self.num_kinds)]
        no = torch.zeros(batch, dtype=torch.bool)
        is_wider, is_deeper, is_skip, is_narrow, is_remove = (is_kind + [no] * 5)[:5]
        widen = torch.zeros(batch, L, dtype=torch.bool)
        deeper = torch.zeros(batch, 3, dtype=torch.long)
        skip = torch.zeros(batch, 3, dtype=torch.long)
        # an actor whose kind no child applies is not run at all (it would add nothing)
        if bool(is_wider.any()):
            widen, lp, en = self._wider(o, enc_out, is_wider, generator, forced, stats)
            log_prob, entropy = log_prob + lp, entropy + en
        if bool(is_deeper.any()):
            deeper, lp, en = self._deeper(o, (h, c), is_deeper, generator, forced, stats)
            log_prob, entropy = log_prob + lp, entropy + en
        if bool(is_skip.any()):
            skip, lp, en = self._skip(o, enc_out, is_skip, generator, forced, stats)
            log_prob, entropy = log_prob + lp, entropy + en
        acts = {
            "kind": kind.numpy().astype(np.int64),
            "wider": widen.numpy().astype(np.int8),
            "deeper": deeper.numpy().astype(np.int64),
            "skip": skip.numpy().astype(np.int64),
        }
        if self.shrink:
            narrow = torch.zeros(batch, 2, dtype=torch.long)
            remove = torch.zeros(batch, dtype=torch.long)
            if bool(is_narrow.any()):
                narrow, lp, en = self._narrow(o, enc_out, is_narrow, generator, forced, stats)
                log_prob, entropy = log_prob + lp, entropy + en
            if bool(is_remove.any()):
                remove, lp, en = self._remove(o, enc_out, is_remove, generator, forced, stats)
                log_prob, entropy = log_prob + lp, entropy + en
            acts["narrow"] = narrow.numpy().astype(np.int64)
            acts["remove"] = remove.numpy().astype(np.int64)
        return ControllerOutput(actions=acts, log_prob=log_prob, entropy=entropy, stats=stats)

    # ------------------------------------------------------------------ actors
    def _wider(
        self,
        o: dict[str, torch.Tensor],
        enc_out: torch.Tensor,
        active: torch.Tensor,
        generator: torch.Generator | None,
        forced: dict[str, torch.Tensor] | None,
        stats: dict[str, tuple[float, float]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Net2Wider actor: an independent Bernoulli per unmasked layer of active rows (or,
        with ``wider_one``, one layer from a softmax over the same logits)."""
        wmask = o["wider_mask"] & active[:, None]
        z = self.wider_head(enc_out).squeeze(-1)  # [B, L]
        if self.wider_one:
            pick = None if forced is None else forced["wider"].long().argmax(-1)
            layer, lp1, ent1, has = masked_categorical(z, wmask, generator, pick)
            widen = F.one_hot(layer, z.shape[-1]).bool() & has[:, None]
            stats["widen_entropy"] = masked_stat(ent1, has)
            return widen, lp1, ent1
        p = torch.sigmoid(z)
        if forced is None:
            u = torch.rand(z.shape, generator=generator)
            widen = (u < p.detach()) & wmask
        else:
            widen = forced["wider"].bool() & wmask
        log_p, log_q = F.logsigmoid(z), F.logsigmoid(-z)
        lp = torch.where(wmask, torch.where(widen, log_p, log_q), torch.zeros_like(z))
        ent = torch.where(wmask, -(p * log_p + (1 - p) * log_q), torch.zeros_like(z))
        stats["widen_prob"] = masked_stat(p, wmask)
        return widen, lp.sum(-1), ent.sum(-1)

    def _deeper(
        self,
        o: dict[str, torch.Tensor],
        state: tuple[torch.Tensor, torch.Tensor],
        active: torch.Tensor,
        generator: torch.Generator | None,
        forced: dict[str, torch.Tensor] | None,
        stats: dict[str, tuple[float, float]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Net2Deeper actor: decoder steps block -> position -> kernel (none for FC)."""
        batch = active.shape[0]
        rows = torch.arange(batch)
        dmask = o["deeper_mask"] & active[:, None, None]  # [B, L, L+1]
        hd, cd = self.bridge_h(state[0]), self.bridge_c(state[1])
        hd, cd = self.decoder(self.deeper_start.expand(batch, -1), (hd, cd))
        block, lpb, entb, hasb = masked_categorical(
            self.block_head(hd), dmask.any(-1), generator,
            None if forced is None else forced["deeper"][:, 0],
        )
        hd, cd = self.decoder(self.block_embedding(block), (hd, cd))
        position, lpp, entp, hasp = masked_categorical(
            self.position_head(hd), dmask[rows, block], generator,
            None if forced is None else forced["deeper"][:, 1],
        )
        hd, cd = self.decoder(self.position_embedding(position), (hd, cd))
        needs_kernel = hasp & ~o["deeper_is_fc"][rows, block, position]
        kernel, lpk, entk, hask = masked_categorical(
            self.kernel_head(hd), o["kernel_mask"] & needs_kernel[:, None], generator,
            None if forced is None else forced["deeper"][:, 2],
        )
        stats["deeper_block_entropy"] = masked_stat(entb, hasb)
        stats["deeper_position_entropy"] = masked_stat(entp, hasp)
        stats["deeper_kernel_entropy"] = masked_stat(entk, hask)
        action = torch.stack([block, position, kernel], -1)
        return action, lpb + lpp + lpk, entb + entp + entk

    def _skip(
        self,
        o: dict[str, torch.Tensor],
        enc_out: torch.Tensor,
        active: torch.Tensor,
        generator: torch.Generator | None,
        forced: dict[str, torch.Tensor] | None,
        stats: dict[str, tuple[float, float]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Skip actor: source layer -> destination layer -> mode (ADD/CAT)."""
        batch, L = enc_out.shape[:2]
        rows = torch.arange(batch)
        smask = o["skip_mask"] & active[:, None, None, None]  # [B, L, L, 2]
        src, lps, ents, hass = masked_categorical(
            self.skip_src_head(enc_out).squeeze(-1), smask.any(-1).any(-1), generator,
            None if forced is None else forced["skip"][:, 0],
        )
        e_src = enc_out[rows, src]  # [B, 2H]
        pair = torch.cat([e_src[:, None].expand(-1, L, -1), enc_out], dim=-1)
        dst, lpd, entd, _ = masked_categorical(
            self.skip_dst_head(pair).squeeze(-1), smask[rows, src].any(-1), generator,
            None if forced is None else forced["skip"][:, 1],
        )
        mode, lpm, entm, _ = masked_categorical(
            self.skip_mode_head(torch.cat([e_src, enc_out[rows, dst]], dim=-1)),
            smask[rows, src, dst], generator,
            None if forced is None else forced["skip"][:, 2],
        )
        ent = ents + entd + entm
        stats["skip_entropy"] = masked_stat(ent, hass)
        return torch.stack([src, dst, mode], -1), lps + lpd + lpm, ent

    def _narrow(
        self,
        o: dict[str, torch.Tensor],
        enc_out: torch.Tensor,
        active: torch.Tensor,
        generator: torch.Generator | None,
        forced: dict[str, torch.Tensor] | None,
        stats: dict[str, tuple[float, float]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Narrow actor: one (layer, width level) from a softmax over every legal pair."""
        batch, L = enc_out.shape[:2]
        W = self.num_levels
        nmask = o["narrow_mask"][:, :L, :W] & active[:, None, None]  # [B, L, W]
        pick = None if forced is None else forced["narrow"][:, 0] * W + forced["narrow"][:, 1]
        flat, lp, ent, has = masked_categorical(
            self.narrow_head(enc_out).reshape(batch, L * W), nmask.reshape(batch, L * W),
            generator, pick)
        stats["narrow_entropy"] = masked_stat(ent, has)
        return torch.stack([flat // W, flat % W], -1), lp, ent

    def _remove(
        self,
        o: dict[str, torch.Tensor],
        enc_out: torch.Tensor,
        active: torch.Tensor,
        generator: torch.Generator | None,
        forced: dict[str, torch.Tensor] | None,
        stats: dict[str, tuple[float, float]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Remove actor: one layer from a softmax over the removable ones."""
        L = enc_out.shape[1]
        rmask = o["remove_mask"][:, :L] & active[:, None]
        layer, lp, ent, has = masked_categorical(
            self.remove_head(enc_out).squeeze(-1), rmask, generator,
            None if forced is None else forced["remove"][:, 0])
        stats["remove_entropy"] = masked_stat(ent, has)
        return layer, lp, ent


def controller_weights(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The controller weights in a run's ``checkpoint.pt`` (or run folder) and the file's path.

    Read weights-only (:func:`eas.checkpoint.load_checkpoint`); ``ValueError`` (one line
    naming the file) when there is no checkpoint, it cannot be read, it holds objects eas
    does not load, or it holds no controller weights.
    """
    p = Path(path).expanduser()
    p = p / "checkpoint.pt" if p.is_dir() else p
    if not p.is_file():
        raise ValueError(f"no checkpoint at {p}")
    state = load_checkpoint(p)
    agent = state.get("agent", state)
    weights = agent.get("controller") if isinstance(agent, dict) else None
    if not isinstance(weights, Mapping):
        raise ValueError(f"{p} holds no controller weights (not a reinforce run)")
    return dict(weights), p
