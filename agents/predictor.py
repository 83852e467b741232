"""An accuracy predictor that screens the controller's proposals (``controller.screen``).

A small model of its own (token embedding, one-layer bidirectional LSTM over the
architecture's tokens, a linear head on both directions' final states) regresses
the validation accuracy of every child evaluated so far. Each round the
controller plans ``screen`` candidate episodes per child, the predictor scores
the architectures they lead to, and only the most promising distinct ones are
trained. Its quality is measured honestly: before it learns from a round's
children it predicts them, and the Spearman rank correlation of those held-out
predictions with the children's accuracies is reported
(``charts/predictor_spearman``) and averaged over the search
(``predictor_spearman_mean`` in the agent's state).

Training is full-batch Adam (no sampling, so no RNG) on the standardised
accuracies of every evaluated child (the latest ``capacity``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["AccuracyPredictor", "spearman"]


def spearman(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    rx, ry = _ranks(x), _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):  # ties share their mean rank
        where = v == value
        ranks[where] = ranks[where].mean()
    return ranks


class _Model(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        lengths = length.long().clamp(1, tokens.shape[1]).cpu()
        packed = pack_padded_sequence(self.embedding(tokens.long()), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, (h, _) = self.encoder(packed)
        return self.head(torch.cat([h[0], h[1]], dim=-1)).squeeze(-1)


class AccuracyPredictor:
    """Predicts a child's accuracy from its tokens; trained on every evaluated child."""

    def __init__(self, vocab_size: int, seed: int, *, embed_dim: int = 16, hidden: int = 32,
                 lr: float = 3e-3, steps: int = 50, capacity: int = 2000) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + 7919)
            self.model = _Model(vocab_size, embed_dim, hidden)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.steps, self.capacity = int(steps), int(capacity)
        self.tokens: list[np.ndarray] = []
        self.lengths: list[int] = []
        self.targets: list[float] = []
        self.correlations: list[float] = []
        """Held-out Spearman correlation of each round that had a prediction to check."""

    def __len__(self) -> int:
        return len(self.targets)

    def predict(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Predicted accuracies of a batch ([B, L] tokens, [B] lengths)."""
        if not self.targets:
            return np.zeros(len(lengths))
        mean, std = self._scale()
        self.model.eval()
        with torch.no_grad():
            out = self.model(torch.as_tensor(np.asarray(tokens)),
                             torch.as_tensor(np.asarray(lengths)))
        return out.numpy().astype(float) * std + mean

    def _scale(self) -> tuple[float, float]:
        t = np.asarray(self.targets, dtype=float)
        return float(t.mean()), float(t.std()) + 1e-6

    def observe(self, tokens: np.ndarray, lengths: np.ndarray, accuracies: np.ndarray
                ) -> dict[str, float]:
        """Check the predictions on these new children (held out), then learn from them."""
        metrics: dict[str, float] = {}
        acc = np.asarray(accuracies, dtype=float)
        if self.targets and len(acc) > 1:
            rho = spearman(self.predict(tokens, lengths), acc)
            self.correlations.append(rho)
            metrics["charts/predictor_spearman"] = rho
        for t, n, a in zip(np.asarray(tokens), np.asarray(lengths), acc):
            self.tokens.append(np.asarray(t, dtype=np.int64))
            self.lengths.append(int(n))
            self.targets.append(float(a))
        del self.tokens[:-self.capacity], self.lengths[:-self.capacity]
        del self.targets[:-self.capacity]
        metrics["losses/predictor_mse"] = self._fit()
        return metrics

    def _fit(self) -> float:
        mean, std = self._scale()
        x = torch.as_tensor(np.stack(self.tokens))
        n = torch.as_tensor(np.asarray(self.lengths))
        y = torch.as_tensor((np.asarray(self.targets) - mean) / std, dtype=torch.float32)
        self.model.train()
        loss = torch.zeros(())
        for _ in range(self.steps):
            loss = nn.functional.mse_loss(self.model(x, n), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser state, the training set and the correlations so far."""
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "tokens": [t.tolist() for t in self.tokens], "lengths": list(self.lengths),
                "targets": list(self.targets), "correlations": list(self.correlations)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens = [np.asarray(t, dtype=np.int64) for t in state["tokens"]]
        self.lengths = [int(n) for n in state["lengths"]]
        self.targets = [float(a) for a in state["targets"]]
        self.correlations = [float(c) for c in state["correlations"]]
