"""The built-in agents' hyperparameter dataclasses (the ``[random]``, ``[hill_climbing]``,
``[lemonade]`` and ``[sb3]`` sections; ``[controller]`` is :mod:`eas.agents.reinforce_config`).

Light on purpose (no torch, no agent code): the configuration schema reads them
without importing the agents. Each agent class names its own as ``Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HillClimbingConfig", "LemonadeConfig", "RandomConfig", "SB3Config"]


@dataclass
class RandomConfig:
    """Hyperparameters of random search."""

    wider_prob: float = 0.5
    """Probability that each widenable layer is marked in a Net2Wider step."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.wider_prob <= 1.0:
            raise ValueError(f"wider_prob must be in [0, 1], got {self.wider_prob}")


@dataclass
class HillClimbingConfig:
    """Hyperparameters of NASH hill climbing (defaults: the paper's)."""

    n_steps: int = 5
    """Hill-climbing steps (search rounds)."""
    n_neigh: int = 8
    """Children (neighbours) trained per step."""
    n_nm: int = 5
    """Network morphisms applied per child (the env's free_steps)."""
    e_neigh: int = 17
    """Training epochs per child (SGDR, restarted for every child)."""
    e_final: int = 20
    """Epochs of the final training of the best network."""
    lr_start: float = 0.05
    """SGDR initial learning rate (lambda_start)."""
    lr_end: float = 0.0
    """SGDR final learning rate (lambda_end)."""
    deeper_kernels: tuple[int, ...] = (3, 5)
    """Kernel sizes a deeper morphism draws from (those the env allows)."""
    reevaluate_parent: bool = False
    """Re-train and re-evaluate the parent as child 0 every round (else only when unknown)."""

    def __post_init__(self) -> None:
        for field_name in ("n_steps", "n_neigh", "n_nm"):
            if int(getattr(self, field_name)) < 1:
                raise ValueError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.e_neigh < 0 or self.e_final < 0:
            raise ValueError("e_neigh and e_final must be >= 0")
        if self.lr_start < 0 or self.lr_end < 0:
            raise ValueError("lr_start and lr_end must be >= 0")
        self.deeper_kernels = tuple(int(k) for k in self.deeper_kernels)


@dataclass
class LemonadeConfig:
    """Hyperparameters of LEMONADE."""

    n_pc: int = 16
    """Candidate children generated per round (architecture and cost only, not trained)."""
    n_ac: int = 4
    """Children trained per round, picked from the candidates by their cheap cost."""
    n_nm: int = 3
    """Exact morphisms per child (the environment's free_steps)."""
    cost: str = "params"
    """The cheap objective: params or flops."""
    p_shrink: float = 0.3
    """Probability that a round's parent is first shrunk (narrow a layer or remove one)."""
    bandwidth: float = 0.0
    """KDE bandwidth in natural-log cost units; 0 = Silverman's rule of thumb (eas.pareto.kde_density)."""

    def __post_init__(self) -> None:
        for name in ("n_pc", "n_ac", "n_nm"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cost not in ("params", "flops"):
            raise ValueError(f"cost must be 'params' or 'flops', got {self.cost!r}")
        if not 0 <= self.p_shrink <= 1:
            raise ValueError(f"p_shrink must be in [0, 1], got {self.p_shrink}")
        if self.bandwidth < 0:
            raise ValueError(f"bandwidth must be >= 0, got {self.bandwidth}")


@dataclass
class SB3Config:
    """Hyperparameters of the SB3 agent (MaskablePPO's, one update per round)."""

    learning_rate: float = 3e-4
    """Adam learning rate of the policy and value network."""
    n_epochs: int = 4
    """Passes over each round's transitions per update."""
    batch_size: int = 32
    """Minibatch size (transitions) of an update."""
    gamma: float = 1.0
    """Discount (episodes are a few steps with one reward at the end: undiscounted)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO's ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    net_arch: tuple[int, ...] = field(default=(64, 64))
    """Hidden layer widths of the policy and value MLPs (over SB3's flattened Dict observation)."""

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("n_epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.clip_range <= 0:
            raise ValueError(f"clip_range must be > 0, got {self.clip_range}")
        self.net_arch = tuple(int(v) for v in self.net_arch)
        if not self.net_arch or min(self.net_arch) < 1:
            raise ValueError(f"net_arch must be positive widths, got {self.net_arch}")
