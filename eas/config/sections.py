"""The configuration's sections: one dataclass per TOML section, each validating itself.

:class:`SearchConfig` gathers the sections (``[data]``, ``[child]``, ``[start]``,
``[space]``, ``[search]``, ``[objectives]``, ``[halving]`` and one per agent).
Constructing a section runs its :meth:`~_Section.check`, so ``DataConfig(val_size=0)``
raises :class:`ConfigError` naming ``data.val_size``. Reading TOML files and the
command line into these sections is :mod:`eas.config.engine`'s job.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from eas.arch import SearchSpace
from eas.config.agent_sections import agent_config_cls, agent_section, loadable_agent_class
from eas.datasets import DATASET_NAMES, dataset_key
from eas.envs.rewards import ObjectivesConfig
from eas.envs.settings import BACKENDS, DEFAULT_SCHEDULE, HalvingConfig
from eas.kinds import ALL_KINDS, SHRINK_KINDS, kinds_for
from eas.layers import MAX_LAYER_VALUE
from eas.recipe import TrainConfig

__all__ = [
    "PAPER_SCHEDULE",
    "RUN_NAME_MAX",
    "SEED_MAX",
    "ConfigError",
    "DataConfig",
    "SearchConfig",
    "SearchSection",
    "SpaceConfig",
    "StartConfig",
    "check_finite",
    "require",
    "schedule_tuple",
]


PAPER_SCHEDULE = ",".join(DEFAULT_SCHEDULE)  # the one definition, in eas.envs
"""EAS's episode: 4 Net2Wider steps, then 5 Net2Deeper steps."""


class ConfigError(ValueError):
    """An invalid configuration value; ``str()`` is one line naming the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


SEED_MAX = 2**32 - 1
"""Largest seed accepted (numpy and torch both take seeds in [0, 2**32))."""
RUN_NAME_MAX = 200
"""Longest run folder name (file systems allow 255 bytes; room is left for suffixes)."""
_MAX_COUNT = 10**9
"""Upper bound of count fields (children, epochs, rounds): catches typos such as 1e12."""


# ------------------------------------------------------------------ sections
def require(cond: bool, name: str, message: str) -> None:
    """Raise :class:`ConfigError` for field ``name`` with ``message`` unless ``cond``."""
    if not cond:
        raise ConfigError(name, message)


def _check_count(section: str, obj: Any, names: Sequence[str], low: int) -> None:
    for name in names:
        v = getattr(obj, name)
        require(v is None and name in _OPTIONAL_COUNTS or
                isinstance(v, int) and not isinstance(v, bool) and low <= v <= _MAX_COUNT,
                f"{section}.{name}", f"must be >= {low}"
                f"{' or none' if name in _OPTIONAL_COUNTS else ''} (an integer up to "
                f"{_MAX_COUNT}), got {v!r}")


_OPTIONAL_COUNTS = ("train_subset", "workers", "max_rounds")


def _check_seed(name: str, seed: Any) -> None:
    require(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX, name,
            f"must be an integer in [0, {SEED_MAX}], got {seed!r}")


def check_finite(section: str, obj: Any) -> None:
    """Every float (or list of floats) field of dataclass ``obj`` must be finite (no nan/inf)."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        values = v if isinstance(v, (list, tuple)) else [v]
        for x in values:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{section}.{f.name}", f"must be a finite number, got {v!r}")


class _Section:
    """Mixin: a section validates itself on construction (``section.check()``)."""

    SECTION: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field of this section."""
        check_finite(self.SECTION, self)


@dataclass
class DataConfig(_Section):
    """Which dataset to search on and how it is split."""

    SECTION: typing.ClassVar[str] = "data"

    name: str = "cifar10"
    """Dataset: fashion-mnist, mnist, cifar10, cifar100, svhn or imagefolder."""
    root: str | None = None
    """Folder holding the data (None = /usr/share/datasets, then ~/.cache/eas/datasets)."""
    val_size: int = 5000
    """Images held out of the training set as the validation set the search optimises."""
    train_subset: int | None = None
    """Keep only this many (seeded, random) training images; None = all the rest."""
    seed: int = 0
    """Seed of the validation split and of train_subset."""
    device: str = "auto"
    """Where data and training live: auto (cuda if available), cpu, cuda, cuda:N or mps."""
    use_extra: bool = False
    """SVHN only: add the 531k 'extra' images to the training set."""
    download: bool = True
    """Allow torchvision to download a missing dataset."""

    def check(self) -> None:  # noqa: D102
        super().check()
        require(isinstance(self.name, str)
                and dataset_key(self.name) in DATASET_NAMES, "data.name",
                f"unknown dataset {self.name!r}; allowed values: {', '.join(DATASET_NAMES)}")
        require(self.root is None or (isinstance(self.root, str) and self.root.strip() != ""
                                      and "\0" not in self.root),
                "data.root", f"must be a folder or none, got {self.root!r}")
        _check_count("data", self, ("val_size",), 1)
        _check_count("data", self, ("train_subset",), 1)
        _check_seed("data.seed", self.seed)
        require(isinstance(self.device, str)
                and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
                "data.device",
                f"unknown device {self.device!r}; allowed values: auto, cpu, cuda, cuda:N, mps")


@dataclass
class StartConfig(_Section):
    """The network every episode of the first stage starts from."""

    SECTION: typing.ClassVar[str] = "start"

    arch: str = "default"
    """Start architecture: 'default' (Table 1 fitted to the dataset), 'densenet_bc(L,k)' or an architecture string."""
    epochs: int = 100
    """Epochs to train the start network first when it has no weights (child recipe, full epochs)."""
    weights: str | None = None
    """A .pt file with trained start weights (a best_k.pt file or a state_dict); skips pre-training."""
    lr: float | None = None
    """Initial learning rate when a start network is trained (this one, and each later stage's start); none = child.lr."""
    dropout: float = 0.0
    """Dropout after every conv but the first and after FC layers (SVHN in the paper: 0.2)."""

    def check(self) -> None:  # noqa: D102
        super().check()
        require(isinstance(self.arch, str) and self.arch.strip() != "", "start.arch",
                f"must be 'default', 'densenet_bc(L,k)' or an architecture string, "
                f"got {self.arch!r}")
        _check_count("start", self, ("epochs",), 0)
        require(self.lr is None or (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
                                    and 0 < self.lr < float("inf")),
                "start.lr", f"must be a positive learning rate or none, got {self.lr!r}")
        require(isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1,
                "start.dropout", f"must be in [0, 1), got {self.dropout!r}")
        require(self.weights is None or (isinstance(self.weights, str) and self.weights.strip()),
                "start.weights", f"must be a file or none, got {self.weights!r}")

    def recipe(self, child: TrainConfig, epochs: int) -> TrainConfig:
        """How a start network is trained: the child recipe ``child`` for ``epochs`` full
        epochs, at ``lr`` when set (the first stage's start and each later one's)."""
        return replace(child, epochs=epochs, max_batches_per_epoch=None,
                       **({} if self.lr is None else {"lr": float(self.lr)}))


@dataclass
class SpaceConfig(_Section):
    """The discrete values layers may take (the EAS plain-CNN space by default)."""

    SECTION: typing.ClassVar[str] = "space"

    kernel_sizes: tuple[int, ...] = SearchSpace.kernel_sizes
    """Kernel sizes a Net2Deeper layer may have."""
    filters: tuple[int, ...] = SearchSpace.filters
    """Widths a conv layer may be widened to."""
    fc_units: tuple[int, ...] = SearchSpace.fc_units
    """Widths an FC layer may be widened to."""
    growth_rates: tuple[int, ...] = SearchSpace.growth_rates
    """Growth rates a DenseNet layer may be widened to."""
    max_layers: int = SearchSpace.max_layers
    """Most layers a network may have (length of the controller's token sequence)."""

    def check(self) -> None:  # noqa: D102
        for name in ("kernel_sizes", "filters", "fc_units", "growth_rates"):
            values = getattr(self, name)
            ok = (isinstance(values, (list, tuple)) and bool(values)
                  and all(isinstance(v, int) and not isinstance(v, bool)
                          and 1 <= v <= MAX_LAYER_VALUE for v in values)
                  and list(values) == sorted(set(values)))
            require(ok, f"space.{name}", f"must be a non-empty increasing list of integers in "
                    f"[1, {MAX_LAYER_VALUE}], got {values!r}")
        even = [k for k in self.kernel_sizes if k % 2 == 0]
        require(not even, "space.kernel_sizes",
                f"kernel sizes must be odd (a Net2Deeper conv keeps the spatial size only with "
                f"an odd kernel), got {list(self.kernel_sizes)}")
        require(isinstance(self.max_layers, int) and not isinstance(self.max_layers, bool)
                and 1 <= self.max_layers <= 10_000, "space.max_layers",
                f"must be an integer in [1, 10000], got {self.max_layers!r}")


@dataclass
class SearchSection(_Section):
    """The search: agent, stages, episode schedule, final training and outputs."""

    SECTION: typing.ClassVar[str] = "search"

    agent: str = "reinforce"
    """Search strategy: a registered agent (reinforce = EAS, random, hill_climbing, lemonade, installed plug-ins) or module:Class."""
    seed: int = 1
    """Seed of the search (agent, transformations, child training, start network init)."""
    children_per_step: int = 10
    """Children sampled per round (per controller step)."""
    stage1_networks: int = 300
    """Children sampled in stage 1."""
    stage1_best_epochs: int = 100
    """Extra epochs (child recipe, full epochs) for stage 1's best network before it starts stage 2."""
    stage2_networks: int = 150
    """Children sampled in stage 2, starting from stage 1's retrained best (0 = one stage)."""
    stages: tuple[int, ...] | None = None
    """Children per stage, e.g. [35, 20, 20] (each stage starts from the best so far); none = [stage1_networks, stage2_networks]."""
    stage_start_epochs: tuple[int, ...] | None = None
    """Extra epochs for the start of stages 2, 3, ...: one value for all or one per stage; none = stage1_best_epochs."""
    parent_control: bool = True
    """Train each stage's start network as one more child (same recipe) and report it: the search's gain over plain further training."""
    max_child_seconds: float | None = None
    """End the sampling once the children's training time (seconds, summed on child_clock) reaches this; none = no limit."""
    child_clock: Literal["wall", "cpu"] = "wall"
    """What max_child_seconds and the summary's child_seconds count: 'wall' (each child's train_time) or 'cpu' (its train_cpu_time: the training process's CPU seconds, which other load on a CPU machine does not inflate)."""
    schedule: str = PAPER_SCHEDULE
    """Transformation kinds of one episode, comma-separated (wider, deeper, skip; narrow, remove with search.shrink), or 'free'."""
    free_steps: int = 5
    """Episode length when schedule = 'free' (the agent picks the kind of every step)."""
    shrink: bool = False
    """Offer the approximate shrinking actions narrow (a conv/FC layer to a smaller width of the space) and remove (a shape-keeping layer); agents random and hill_climbing."""
    shrink_distill_steps: int = 300
    """Distillation steps from the round's start network for a child made with a shrink action, before its training (0 = none)."""
    noise: bool = True
    """Add small noise to widened copies (breaks symmetry, as in EAS)."""
    deeper_batch_size: int = 64
    """Training images (a fixed batch drawn with search.seed) Net2Deeper fits a new layer's BatchNorm to, as the EAS code; 0 = no fitting (the BatchNorm undoes itself without data)."""
    cache: bool = True
    """Reuse the accuracy of a child already trained from the same start network."""
    workers: int | None = None
    """Children trained concurrently (eas.envs.parallel); none = GPUs x children_per_gpu with CUDA, 1 on CPU."""
    backend: str = "auto"
    """How children are trained concurrently: auto (process if workers > 1, else serial), serial, process or ray."""
    children_per_gpu: int = 4
    """Children sharing one GPU at a time (process back-end)."""
    gpu_memory_fraction: float | None = None
    """Cap on each GPU worker's share of its GPU's memory, in (0, 1]; none = no cap."""
    max_retries: int = 2
    """Extra attempts for a child that failed for an infrastructure reason (worker died, OOM, timeout)."""
    child_timeout: float | None = None
    """Seconds one child may train before its worker is stopped (process/ray); none = no limit."""
    ray_address: str | None = None
    """Address of a running Ray cluster (backend ray); none = start or reuse a local one."""
    ray_gpus_per_child: float = 0.25
    """GPUs each Ray task asks for: a fraction in (0, 1] or a whole number."""
    final_top_k: int = 1
    """How many of the best distinct architectures get the final training."""
    final_epochs: int = 300
    """Epochs of the final training on train + validation, full epochs (0 = skip it)."""
    final_init: Literal["weights", "scratch"] = "weights"
    """Final training starts from the searched weights ('weights', the paper's 'further train') or from scratch."""
    final_lr: float | None = None
    """Initial learning rate of the final training; None = child.lr."""
    final_full_data: bool = True
    """Final training (and the no-search control) use the whole official training set, ignoring data.train_subset: with the validation split added for one fixed run of final_epochs (the paper's 'further train'), without it under the plateau rule (final_patience), whose stopping it judges."""
    final_patience: int | None = None
    """Plateau rule: train the final networks in cosine cycles (final_epochs, then x final_growth) until this many cycles in a row gain less than final_min_delta validation accuracy, keeping the best weights (validation split held out, also with final_full_data); none = one fixed run of final_epochs."""
    final_min_delta: float = 0.001
    """Smallest validation-accuracy gain (0-1) of a final-training cycle that counts as progress."""
    final_growth: float = 2.0
    """Each final-training cycle is this many times longer than the one before (>= 1)."""
    final_max_epochs: int | None = None
    """Cap on the epochs of one network's final training (plateau rule); none = no cap."""
    final_budget_share: float | None = None
    """Cap on one network's final-training seconds, as a share of the search's seconds before it (plateau rule), both counted on control_clock; none = no time cap."""
    no_search_control: bool = False
    """After the final training, train the start architecture from scratch (start recipe, one cosine run) for the run's wall-clock so far and report it beside the final network: the answer to 'would plain training have done better?'."""
    control_seconds: float | None = None
    """The no-search control's budget in seconds (of control_clock); none = the whole run's seconds before it (start, search and final training)."""
    control_clock: Literal["wall", "cpu"] = "wall"
    """What the no-search control's budget and final_budget_share count: 'wall' (wall-clock seconds) or 'cpu' (this process's CPU seconds, all threads: fairer on a shared machine)."""
    keep_best: int = 5
    """How many of the best distinct networks are kept (with weights) as best_<k>.pt."""
    rank_by: Literal["accuracy", "reward"] = "accuracy"
    """What orders the best networks (best_<k>.pt, later stages' starts, the final networks): 'accuracy' (validation accuracy, the EAS paper) or 'reward' (the environment's reward, [objectives]; with a constrained reward a cost-aware choice)."""
    max_rounds: int | None = None
    """Stop this invocation after this many rounds (resume later); None = run to the end."""
    run_name: str | None = None
    """Name of the run folder; None = {dataset}__{agent}__{seed}__{timestamp}."""
    runs_dir: str = "runs"
    """Folder holding run folders (TensorBoard events, checkpoints, summaries)."""
    progress: bool = True
    """Show a progress bar over children."""

    def check(self) -> None:  # noqa: D102
        super().check()
        require(isinstance(self.agent, str) and self.agent.strip() != "", "search.agent",
                f"must be reinforce, random, hill_climbing or module:Class, got {self.agent!r}")
        _check_seed("search.seed", self.seed)
        _check_count("search", self, ("children_per_step", "free_steps"), 1)
        _check_count("search", self, ("stage1_networks", "stage1_best_epochs",
                                      "stage2_networks", "final_top_k", "final_epochs",
                                      "keep_best", "deeper_batch_size"), 0)
        _check_count("search", self, ("workers", "max_rounds"), 1)
        check_stages(self)
        require(self.final_lr is None or (isinstance(self.final_lr, (int, float))
                                          and self.final_lr > 0), "search.final_lr",
                f"must be > 0 or none, got {self.final_lr!r}")
        require(self.final_init in ("weights", "scratch"), "search.final_init",
                f"{self.final_init!r} is not allowed; allowed values: weights, scratch")
        check_final(self)
        require(self.backend in BACKENDS, "search.backend",
                f"unknown backend {self.backend!r}; allowed values: {', '.join(BACKENDS)}")
        require(not (self.backend == "serial" and self.workers is not None and self.workers > 1),
                "search.backend", f"'serial' trains one child at a time, but search.workers is "
                f"{self.workers}; use backend auto, process or ray (or workers 1)")
        _check_count("search", self, ("children_per_gpu",), 1)
        _check_count("search", self, ("max_retries",), 0)
        require(self.gpu_memory_fraction is None or 0 < self.gpu_memory_fraction <= 1,
                "search.gpu_memory_fraction",
                f"must be in (0, 1] or none, got {self.gpu_memory_fraction}")
        require(self.child_timeout is None or self.child_timeout > 0, "search.child_timeout",
                f"must be > 0 or none, got {self.child_timeout}")
        require(self.ray_gpus_per_child > 0 and (self.ray_gpus_per_child <= 1
                                                 or float(self.ray_gpus_per_child).is_integer()),
                "search.ray_gpus_per_child",
                f"must be in (0, 1] or a whole number, got {self.ray_gpus_per_child}")
        sched = schedule_tuple(self.schedule) if isinstance(self.schedule, str) else ("?",)
        bad = [tok for tok in sched or () if tok not in ALL_KINDS]
        require(not bad, "search.schedule",
                f"unknown transformation {bad[0]!r} in {self.schedule!r}; allowed tokens: "
                f"{', '.join(ALL_KINDS)} (comma-separated; {', '.join(SHRINK_KINDS)} with "
                "search.shrink true), or 'free'" if bad else "")
        check_shrink(self, sched)
        name = self.run_name
        require(name is None or (isinstance(name, str) and name.strip() == name and name != ""
                                 and not re.search(r"[/\\\x00-\x1f]", name)
                                 and name not in (".", "..")),
                "search.run_name", f"must be a plain folder name (no '/' or '\\'), got {name!r}")
        require(name is None or len(name.encode()) <= RUN_NAME_MAX, "search.run_name",
                f"is {len(str(name).encode())} bytes long; at most {RUN_NAME_MAX} are allowed")
        require(isinstance(self.runs_dir, str) and self.runs_dir.strip() != ""
                and "\0" not in self.runs_dir, "search.runs_dir",
                f"must be a folder, got {self.runs_dir!r}")


def check_stages(s: Any) -> None:
    """search.stages, search.stage_start_epochs and search.max_child_seconds."""
    def counts(v: Any, low: int) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(isinstance(x, int) and not isinstance(x, bool)
                        and low <= x <= _MAX_COUNT for x in v))

    require(s.stages is None or counts(s.stages, 1), "search.stages",
            f"must be a non-empty list of children per stage (integers >= 1) or none, "
            f"got {s.stages!r}")
    n = len(s.stages) if s.stages is not None else 2
    e = s.stage_start_epochs
    require(e is None or (counts(e, 0) and len(e) in (1, n - 1)), "search.stage_start_epochs",
            f"must be one epoch count (integer >= 0) or one per stage after the first "
            f"({n - 1}), or none, got {e!r}")
    m = s.max_child_seconds
    require(m is None or (isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0),
            "search.max_child_seconds", f"must be > 0 (seconds) or none, got {m!r}")


def check_final(s: Any) -> None:
    """The plateau rule of the final training and the no-search control's budget."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    p = s.final_patience
    require(p is None or (isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 1000),
            "search.final_patience", f"must be an integer in [1, 1000] or none, got {p!r}")
    require(number(s.final_min_delta) and 0 <= s.final_min_delta < 1, "search.final_min_delta",
            f"must be in [0, 1), got {s.final_min_delta!r}")
    require(number(s.final_growth) and 1 <= s.final_growth <= 100, "search.final_growth",
            f"must be in [1, 100], got {s.final_growth!r}")
    m = s.final_max_epochs
    require(m is None or (isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= _MAX_COUNT),
            "search.final_max_epochs", f"must be an integer >= 1 or none, got {m!r}")
    b = s.final_budget_share
    require(b is None or (number(b) and b > 0), "search.final_budget_share",
            f"must be > 0 or none, got {b!r}")
    require(isinstance(s.no_search_control, bool), "search.no_search_control",
            f"must be true or false, got {s.no_search_control!r}")
    require(s.rank_by in ("accuracy", "reward"), "search.rank_by",
            f"{s.rank_by!r} is not allowed; allowed values: accuracy, reward")
    require(s.control_clock in ("wall", "cpu"), "search.control_clock",
            f"{s.control_clock!r} is not allowed; allowed values: wall, cpu")
    c = s.control_seconds
    require(c is None or (number(c) and c > 0), "search.control_seconds",
            f"must be > 0 (seconds) or none, got {c!r}")


def check_shrink(s: Any, sched: tuple[str, ...] | None) -> None:
    """search.shrink, search.shrink_distill_steps and the shrink kinds in search.schedule."""
    require(isinstance(s.shrink, bool), "search.shrink", f"must be true or false, got {s.shrink!r}")
    _check_count("search", s, ("shrink_distill_steps",), 0)
    named = [tok for tok in sched or () if tok in SHRINK_KINDS and tok not in kinds_for(s.shrink)]
    require(not named, "search.schedule",
            f"{named[0]!r} is a shrink action; set search.shrink true to use it" if named else "")
    cls = loadable_agent_class(s.agent) if s.shrink else None
    require(cls is None or bool(getattr(cls, "shrink_actions", False)), "search.shrink",
            f"agent {s.agent!r} cannot pick the shrink actions (narrow, remove); use random or "
            "hill_climbing, or set search.shrink false")


def schedule_tuple(schedule: str) -> tuple[str, ...] | None:
    """The episode schedule as a tuple of kinds, or None for free mode."""
    text = schedule.strip().lower()
    if text == "free":
        return None
    return tuple(tok.strip() for tok in text.split(","))


@dataclass
class SearchConfig:
    """Everything a search run needs; one attribute per TOML section."""

    data: DataConfig = field(default_factory=DataConfig)
    """Dataset and split."""
    child: TrainConfig = field(default_factory=TrainConfig)
    """How each sampled child is trained (the EAS recipe: 20 epochs, SGD 0.02 cosine)."""
    start: StartConfig = field(default_factory=StartConfig)
    """The start network."""
    space: SpaceConfig = field(default_factory=SpaceConfig)
    """The architecture search space."""
    search: SearchSection = field(default_factory=SearchSection)
    """The search loop."""
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    """Recorded objectives (params, FLOPs, latency) and the reward (paper or constrained)."""
    controller: Any = field(default_factory=lambda: agent_config_cls("reinforce")())
    """The EAS meta-controller (REINFORCE) hyperparameters."""
    random: Any = field(default_factory=lambda: agent_config_cls("random")())
    """Random search hyperparameters."""
    hill_climbing: Any = field(default_factory=lambda: agent_config_cls("hill_climbing")())
    """Hill climbing (NASH) hyperparameters."""
    halving: HalvingConfig = field(default_factory=HalvingConfig)
    """Successive halving of each round's children (off by default; eas.envs.halving)."""
    lemonade: Any = field(default_factory=lambda: agent_config_cls("lemonade")())
    """LEMONADE (Pareto-front population) hyperparameters."""
    sb3: Any = field(default_factory=lambda: agent_config_cls("sb3_ppo")())
    """The SB3 agent's (sb3-contrib MaskablePPO) hyperparameters (agents.sb3; the sb3 extra)."""
    agent: Any = None
    """Hyperparameters of a custom module:Class agent (its Config), else None."""

    def sections(self) -> dict[str, Any]:
        """Section name -> section dataclass instance (custom agent section only if present)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["agent"] is None:
            del out["agent"]
        return out

    def agent_config(self) -> Any:
        """The config object of the selected agent."""
        return getattr(self, agent_section(self.search.agent))
