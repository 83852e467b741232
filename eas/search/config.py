"""Search configuration: nested dataclasses, TOML presets and ``--section.field`` overrides.

A :class:`SearchConfig` has one section per concern::

    [data]            which dataset, how the validation split is drawn, device
    [child]           how every sampled child is trained (eas.training.TrainConfig)
    [start]           the start network (architecture, pre-training, weights file)
    [space]           the discrete layer widths/kernels the transformations may use
    [search]          the search itself: agent, seed, stages, schedule, outputs
    [controller]      the EAS REINFORCE agent's hyperparameters (agents.reinforce)
    [random]          random search's hyperparameters (agents.random_search)
    [hill_climbing]   hill climbing's hyperparameters (agents.hill_climbing)
    [halving]         successive halving of each round's children (eas.envs.halving; off by default)
    [agent]           hyperparameters of a custom "module:Class" agent

Agent sections are the agents' own ``Config`` dataclasses, taken from
``agents.registry`` so their fields are defined once. Precedence: dataclass
defaults < the TOML file (``--config``) < command-line overrides. Every value is
type-checked and range-checked at start-up; a bad one raises :class:`ConfigError`
naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import math
import re
import sys
import textwrap
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from eas import configs as _presets
from eas.agents.registry import get_agent_class
from eas.arch import MAX_LAYER_VALUE, TABLE1, Architecture, SearchSpace, densenet_bc
from eas.data import DATASET_CLASSES, DATASET_NAMES, DATASET_SHAPES  # the one home of dataset facts
from eas.envs import DEFAULT_SCHEDULE, KINDS
from eas.envs.halving import HalvingConfig
from eas.envs.parallel import BACKENDS
from eas.envs.rewards import ObjectivesConfig
from eas.network import MAX_PARAMETERS, estimate_parameters
from eas.training import TrainConfig

__all__ = [
    "AGENT_SECTIONS",
    "DATASET_SHAPES",
    "DEFAULT_CONFIG",
    "ConfigError",
    "DataConfig",
    "SearchConfig",
    "SearchSection",
    "SpaceConfig",
    "StartConfig",
    "agent_section",
    "build_parser",
    "config_to_dict",
    "dump_toml",
    "field_docs",
    "load_config",
    "parse_command",
    "Command",
    "resolve_start_arch",
    "schedule_tuple",
    "validate",
    "check_finite",
    "SEED_MAX",
    "RUN_NAME_MAX",
]

CONFIG_DIR = Path(_presets.__file__).resolve().parent
"""Folder of the TOML presets (default.toml, cifar10.toml, densenet.toml, svhn.toml)."""
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"
"""The preset used when no ``--config`` is given."""


_BACKENDS = BACKENDS  # the one list, in eas.envs.parallel
_NONE_WORDS = ("none", "null")
_DENSENET_RE = re.compile(r"^\s*densenet_bc\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.IGNORECASE)

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
def _check(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise ConfigError(name, message)


def _check_count(section: str, obj: Any, names: Sequence[str], low: int) -> None:
    for name in names:
        v = getattr(obj, name)
        _check(v is None and name in _OPTIONAL_COUNTS or
               isinstance(v, int) and not isinstance(v, bool) and low <= v <= _MAX_COUNT,
               f"{section}.{name}", f"must be >= {low}"
               f"{' or none' if name in _OPTIONAL_COUNTS else ''} (an integer up to "
               f"{_MAX_COUNT}), got {v!r}")


_OPTIONAL_COUNTS = ("train_subset", "workers", "max_rounds")


def _check_seed(name: str, seed: Any) -> None:
    _check(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX, name,
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
        _check(isinstance(self.name, str)
               and self.name.lower().replace("_", "-") in DATASET_NAMES, "data.name",
               f"unknown dataset {self.name!r}; allowed values: {', '.join(DATASET_NAMES)}")
        _check(self.root is None or (isinstance(self.root, str) and self.root.strip() != ""
                                     and "\0" not in self.root),
               "data.root", f"must be a folder or none, got {self.root!r}")
        _check_count("data", self, ("val_size",), 1)
        _check_count("data", self, ("train_subset",), 1)
        _check_seed("data.seed", self.seed)
        _check(isinstance(self.device, str)
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
    dropout: float = 0.0
    """Dropout after every conv but the first and after FC layers (SVHN in the paper: 0.2)."""

    def check(self) -> None:  # noqa: D102
        super().check()
        _check(isinstance(self.arch, str) and self.arch.strip() != "", "start.arch",
               f"must be 'default', 'densenet_bc(L,k)' or an architecture string, "
               f"got {self.arch!r}")
        _check_count("start", self, ("epochs",), 0)
        _check(isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1,
               "start.dropout", f"must be in [0, 1), got {self.dropout!r}")
        _check(self.weights is None or (isinstance(self.weights, str) and self.weights.strip()),
               "start.weights", f"must be a file or none, got {self.weights!r}")


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
            _check(ok, f"space.{name}", f"must be a non-empty increasing list of integers in "
                   f"[1, {MAX_LAYER_VALUE}], got {values!r}")
        even = [k for k in self.kernel_sizes if k % 2 == 0]
        _check(not even, "space.kernel_sizes",
               f"kernel sizes must be odd (a Net2Deeper conv keeps the spatial size only with "
               f"an odd kernel), got {list(self.kernel_sizes)}")
        _check(isinstance(self.max_layers, int) and not isinstance(self.max_layers, bool)
               and 1 <= self.max_layers <= 10_000, "space.max_layers",
               f"must be an integer in [1, 10000], got {self.max_layers!r}")


@dataclass
class SearchSection(_Section):
    """The search: agent, stages, episode schedule, final training and outputs."""

    SECTION: typing.ClassVar[str] = "search"

    agent: str = "reinforce"
    """Search strategy: reinforce (EAS), random, hill_climbing, or module:Class."""
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
    """End the sampling once the children's training time (sum of train_time, seconds) reaches this; none = no limit."""
    schedule: str = PAPER_SCHEDULE
    """Transformation kinds of one episode, comma-separated (wider, deeper, skip), or 'free'."""
    free_steps: int = 5
    """Episode length when schedule = 'free' (the agent picks the kind of every step)."""
    noise: bool = True
    """Add small noise to widened copies (breaks symmetry, as in EAS)."""
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
    """Final training uses the whole official training set (ignoring data.train_subset) + validation."""
    keep_best: int = 5
    """How many of the best distinct networks are kept (with weights) as best_<k>.pt."""
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
        _check(isinstance(self.agent, str) and self.agent.strip() != "", "search.agent",
               f"must be reinforce, random, hill_climbing or module:Class, got {self.agent!r}")
        _check_seed("search.seed", self.seed)
        _check_count("search", self, ("children_per_step", "free_steps"), 1)
        _check_count("search", self, ("stage1_networks", "stage1_best_epochs",
                                      "stage2_networks", "final_top_k", "final_epochs",
                                      "keep_best"), 0)
        _check_count("search", self, ("workers", "max_rounds"), 1)
        check_stages(self)
        _check(self.final_lr is None or (isinstance(self.final_lr, (int, float))
                                         and self.final_lr > 0), "search.final_lr",
               f"must be > 0 or none, got {self.final_lr!r}")
        _check(self.final_init in ("weights", "scratch"), "search.final_init",
               f"{self.final_init!r} is not allowed; allowed values: weights, scratch")
        _check(self.backend in _BACKENDS, "search.backend",
               f"unknown backend {self.backend!r}; allowed values: {', '.join(_BACKENDS)}")
        _check(not (self.backend == "serial" and self.workers is not None and self.workers > 1),
               "search.backend", f"'serial' trains one child at a time, but search.workers is "
               f"{self.workers}; use backend auto, process or ray (or workers 1)")
        _check_count("search", self, ("children_per_gpu",), 1)
        _check_count("search", self, ("max_retries",), 0)
        _check(self.gpu_memory_fraction is None or 0 < self.gpu_memory_fraction <= 1,
               "search.gpu_memory_fraction",
               f"must be in (0, 1] or none, got {self.gpu_memory_fraction}")
        _check(self.child_timeout is None or self.child_timeout > 0, "search.child_timeout",
               f"must be > 0 or none, got {self.child_timeout}")
        _check(self.ray_gpus_per_child > 0 and (self.ray_gpus_per_child <= 1
                                                or float(self.ray_gpus_per_child).is_integer()),
               "search.ray_gpus_per_child",
               f"must be in (0, 1] or a whole number, got {self.ray_gpus_per_child}")
        sched = schedule_tuple(self.schedule) if isinstance(self.schedule, str) else ("?",)
        bad = [tok for tok in sched or () if tok not in KINDS]
        _check(not bad, "search.schedule",
               f"unknown transformation {bad[0]!r} in {self.schedule!r}; allowed tokens: "
               f"{', '.join(KINDS)} (comma-separated), or 'free'" if bad else "")
        name = self.run_name
        _check(name is None or (isinstance(name, str) and name.strip() == name and name != ""
                                and not re.search(r"[/\\\x00-\x1f]", name)
                                and name not in (".", "..")),
               "search.run_name", f"must be a plain folder name (no '/' or '\\'), got {name!r}")
        _check(name is None or len(name.encode()) <= RUN_NAME_MAX, "search.run_name",
               f"is {len(str(name).encode())} bytes long; at most {RUN_NAME_MAX} are allowed")
        _check(isinstance(self.runs_dir, str) and self.runs_dir.strip() != ""
               and "\0" not in self.runs_dir, "search.runs_dir",
               f"must be a folder, got {self.runs_dir!r}")


def check_stages(s: Any) -> None:
    """search.stages, search.stage_start_epochs and search.max_child_seconds."""
    def counts(v: Any, low: int) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(isinstance(x, int) and not isinstance(x, bool)
                        and low <= x <= _MAX_COUNT for x in v))

    _check(s.stages is None or counts(s.stages, 1), "search.stages",
           f"must be a non-empty list of children per stage (integers >= 1) or none, "
           f"got {s.stages!r}")
    n = len(s.stages) if s.stages is not None else 2
    e = s.stage_start_epochs
    _check(e is None or (counts(e, 0) and len(e) in (1, n - 1)), "search.stage_start_epochs",
           f"must be one epoch count (integer >= 0) or one per stage after the first "
           f"({n - 1}), or none, got {e!r}")
    m = s.max_child_seconds
    _check(m is None or (isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0),
           "search.max_child_seconds", f"must be > 0 (seconds) or none, got {m!r}")


# ------------------------------------------------------------------ agents
AGENT_SECTIONS: dict[str, str] = {
    "reinforce": "controller",
    "random": "random",
    "hill_climbing": "hill_climbing",
    "lemonade": "lemonade",
}
"""Built-in agent name -> its config section."""


@dataclass
class _Unavailable:
    """This agent could not be imported, so it has no configurable fields here."""


@cache
def _agent_class(name: str) -> type | None:
    try:
        return get_agent_class(name)
    except Exception:  # noqa: BLE001 - an agent that cannot be loaded has no section
        return None


def _agent_config_cls(name: str) -> type:
    cls = _agent_class(name)
    cfg = getattr(cls, "Config", None)
    return cfg if cfg is not None and is_dataclass(cfg) else _Unavailable


def agent_section(agent: str) -> str:
    """The config section holding ``agent``'s hyperparameters (``agent`` for custom ones)."""
    if agent in AGENT_SECTIONS:
        return AGENT_SECTIONS[agent]
    cls = _agent_class(agent)
    for name, section in AGENT_SECTIONS.items():
        if cls is not None and cls is _agent_class(name):
            return section
    return "agent"


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
    controller: Any = field(default_factory=lambda: _agent_config_cls("reinforce")())
    """The EAS meta-controller (REINFORCE) hyperparameters."""
    random: Any = field(default_factory=lambda: _agent_config_cls("random")())
    """Random search hyperparameters."""
    hill_climbing: Any = field(default_factory=lambda: _agent_config_cls("hill_climbing")())
    """Hill climbing (NASH) hyperparameters."""
    halving: HalvingConfig = field(default_factory=HalvingConfig)
    """Successive halving of each round's children (off by default; eas.envs.halving)."""
    lemonade: Any = field(default_factory=lambda: _agent_config_cls("lemonade")())
    """LEMONADE (Pareto-front population) hyperparameters."""
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


# ------------------------------------------------------------------ docs
def field_docs(cls: type) -> dict[str, str]:
    """One-line documentation of each field of dataclass ``cls``.

    Read from attribute docstrings (a string literal right after the field), a
    trailing ``# comment`` on the field's line, or ``field(metadata={"doc": ...})``,
    along the class's MRO.
    """
    docs: dict[str, str] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        if klass is object:
            continue
        docs.update(_class_docs(klass))
    if is_dataclass(cls):
        for f in fields(cls):
            if "doc" in f.metadata:
                docs[f.name] = str(f.metadata["doc"])
    return docs


@cache
def _class_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    lines = source.splitlines()
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.ClassDef):
        return {}
    out: dict[str, str] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name = stmt.target.id
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[name] = " ".join(nxt.value.value.strip().split("\n")[0].split())
            continue
        line = lines[stmt.lineno - 1]
        if "#" in line:
            comment = line.split("#", 1)[1].strip()
            if comment and not comment.startswith(("noqa", "type:")):
                out[name] = comment
    return out


# ------------------------------------------------------------------ types
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotation: fall back to defaults' types
        return {}


def _field_type(cls: type, f: dataclasses.Field, default: Any) -> Any:
    hint = _hints(cls).get(f.name)
    if hint is None or hint is Any:
        return type(default) if default is not None else str
    return hint


def _split_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007 - built at runtime
    return tp, False


def _type_name(tp: Any) -> str:
    base, optional = _split_optional(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        name = " | ".join(repr(a) for a in typing.get_args(base))
    elif origin in (tuple, list):
        args = typing.get_args(base)
        inner = args[0].__name__ if args and isinstance(args[0], type) else "value"
        name = f"list of {inner}"
    else:
        name = getattr(base, "__name__", str(base))
    return f"{name} or none" if optional else name


def _coerce(name: str, tp: Any, value: Any, *, from_cli: bool) -> Any:
    """Convert ``value`` (a CLI string or a TOML value) to ``tp``; ConfigError if impossible."""
    base, optional = _split_optional(tp)
    if value is None or (
        optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS
    ):
        if optional:
            return None
        raise ConfigError(name, f"must not be none (expected {_type_name(tp)})")
    origin = typing.get_origin(base)
    if origin is Literal:
        allowed = typing.get_args(base)
        if value not in allowed:
            raise ConfigError(
                name, f"{value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}"
            )
        return value
    if origin in (tuple, list):
        args = typing.get_args(base)
        inner = args[0] if args else str
        if isinstance(value, str):
            items: list[Any] = [v.strip() for v in value.strip().strip("[]()").split(",")]
            items = [v for v in items if v]
            cli = True
        elif isinstance(value, (list, tuple)):
            items, cli = list(value), from_cli
        else:
            raise ConfigError(name, f"expected a list of {inner.__name__}, got {value!r}")
        out = [_coerce(name, inner, v, from_cli=cli) for v in items]
        return tuple(out) if origin is tuple else out
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer() and from_cli:
            return int(value)
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(name, f"expected a number, got {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"expected a string, got {value!r}")
    if isinstance(base, type) and isinstance(value, base):
        return value
    if from_cli and isinstance(value, str):
        for candidate in (int, float):
            try:
                return candidate(value)
            except ValueError:
                continue
        return value
    return value


# ------------------------------------------------------------------ building
def _default_instance(section: str, agent: str) -> Any:
    if section == "agent":
        cls = _agent_config_cls(agent)
        return cls()
    return getattr(SearchConfig(), section)


def _apply(section_obj: Any, section: str, values: dict[str, Any], *, from_cli: bool) -> Any:
    """A copy of dataclass ``section_obj`` with ``values`` applied (type-checked)."""
    cls = type(section_obj)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            allowed = ", ".join(known) or "(none)"
            raise ConfigError(f"{section}.{key}", f"unknown field; fields of [{section}]: {allowed}")
        f = known[key]
        current = getattr(section_obj, key)
        kwargs[key] = _coerce(f"{section}.{key}", _field_type(cls, f, current), value,
                              from_cli=from_cli)
    # Set the fields without running the class's own __post_init__ checks yet:
    # validate() first reports bad values by field name, then _run_own_checks.
    new = copy.copy(section_obj)
    for key, value in kwargs.items():
        object.__setattr__(new, key, value)
    return new


def _run_own_checks(cfg: SearchConfig) -> None:
    """Re-create every section so its own ``__post_init__`` checks run; name the field."""
    for name, section in cfg.sections().items():
        try:
            setattr(cfg, name, dataclasses.replace(section))
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            names = [f.name for f in fields(section)]
            hit = next((n for n in sorted(names, key=len, reverse=True)
                        if re.search(rf"\b{re.escape(n)}\b", message)), None)
            where = f"{name}.{hit}" if hit else name
            if hit and message.startswith(f"{hit} "):
                message = message[len(hit) + 1:]
            raise ConfigError(where, message) from None


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    check: bool = True,
) -> SearchConfig:
    """Build a :class:`SearchConfig` from defaults, a TOML file and ``overrides``.

    ``overrides`` maps ``"section.field"`` to a value (a string as typed on the
    command line, or a typed value). ``path=None`` uses only the defaults.
    ``check`` runs :func:`validate`.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", f"no such file: {p}")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{p} is not valid TOML: {exc}") from None
    cli: dict[str, dict[str, Any]] = {}
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(key, "expected section.field")
        cli.setdefault(section, {})[name] = value

    # The agent decides which section a custom agent's hyperparameters live in.
    agent = cli.get("search", {}).get("agent", raw.get("search", {}).get("agent"))
    cfg = SearchConfig()
    if agent is None:
        agent = cfg.search.agent
    if not isinstance(agent, str):
        raise ConfigError("search.agent", f"expected a string, got {agent!r}")
    if agent_section(agent) == "agent":
        cfg.agent = _default_instance("agent", agent)

    allowed_sections = list(cfg.sections())
    for source, from_cli in ((raw, False), (cli, True)):
        for section, values in source.items():
            if section not in allowed_sections:
                if section == "agent":
                    raise ConfigError(
                        section, "the [agent] section is only for custom module:Class agents"
                    )
                raise ConfigError(
                    section, f"unknown section; allowed sections: {', '.join(allowed_sections)}"
                )
            if not isinstance(values, dict):
                raise ConfigError(section, "expected a table of fields")
            setattr(cfg, section, _apply(getattr(cfg, section), section, values,
                                         from_cli=from_cli))
    if check:
        validate(cfg)
    return cfg


# ------------------------------------------------------------------ validation
def schedule_tuple(schedule: str) -> tuple[str, ...] | None:
    """The episode schedule as a tuple of kinds, or None for free mode."""
    text = schedule.strip().lower()
    if text == "free":
        return None
    return tuple(tok.strip() for tok in text.split(","))


def resolve_start_arch(
    spec: str, input_shape: tuple[int, int, int], num_classes: int
) -> Architecture:
    """The start architecture for ``start.arch`` on inputs ``(C, H, W)`` with ``num_classes``.

    'default' is the EAS Table-1 network with its final average pooling sized to
    the input (P(4,4,AVG) for 32x32, P(3,3,AVG) for 28x28) and SM(num_classes);
    'densenet_bc(L,k)' is :func:`eas.arch.densenet_bc`; anything else is parsed
    as an architecture string.
    """
    text = spec.strip()
    if text.lower() in ("default", "table1"):
        size = max(1, input_shape[1] // 8)
        arch = TABLE1.replace("P(4,4,AVG)", f"P({size},{size},AVG)")
        return Architecture.parse(arch.replace("SM(10)", f"SM({num_classes})"))
    m = _DENSENET_RE.match(text)
    if m:
        return densenet_bc(int(m.group(1)), int(m.group(2)), num_classes, spatial=input_shape[1])
    return Architecture.parse(text)


def validate(cfg: SearchConfig) -> None:
    """Check every value; raise :class:`ConfigError` naming the first bad field.

    Each section checks itself (finite numbers, ranges, seeds, names); then the
    checks that need several sections: the start architecture fits the dataset's
    input and classes and the search space, and the agent can be loaded.
    """
    for name, section in cfg.sections().items():
        if is_dataclass(section):
            check_finite(name, section)
    _run_own_checks(cfg)
    key = cfg.data.name.lower().replace("_", "-")

    s = cfg.start
    shape = DATASET_SHAPES.get(key, (3, 32, 32))
    classes = DATASET_CLASSES.get(key, 10)
    try:
        arch = resolve_start_arch(s.arch, shape, classes)
        if key in DATASET_SHAPES:
            n = estimate_parameters(arch, shape)
            if n > MAX_PARAMETERS:
                raise ValueError(f"about {n:,} weights, more than the {MAX_PARAMETERS:,} a "
                                 "network may have")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "start.arch",
            f"unusable start architecture {s.arch!r} ({exc}); allowed: 'default', "
            "'densenet_bc(L,k)' or an architecture string such as "
            "'C(16,3,1), P(2,2,MAX), FC(64), SM(10)'",
        ) from None
    if key in DATASET_SHAPES:
        _check(arch.num_classes == classes, "start.arch",
               f"ends in SM({arch.num_classes}) but {cfg.data.name} has {classes} classes")
    if s.weights is not None:
        _check(not Path(s.weights).expanduser().is_dir(), "start.weights",
               f"{s.weights} is a folder, not a weights file")
        _check(Path(s.weights).expanduser().is_file(), "start.weights",
               f"no such file: {s.weights}")
    sp = cfg.space
    _check(sp.max_layers >= len(arch.layers), "space.max_layers",
           f"must be >= the start network's {len(arch.layers)} layers, got {sp.max_layers}")

    r = cfg.search
    try:
        get_agent_class(r.agent)
    except Exception as exc:  # noqa: BLE001 - report any loading failure as a config error
        raise ConfigError("search.agent", str(exc).splitlines()[0] if str(exc) else
                          f"cannot load agent {r.agent!r}") from None


def search_space(cfg: SearchConfig) -> SearchSpace:
    """The :class:`eas.arch.SearchSpace` described by ``cfg.space``."""
    sp = cfg.space
    return SearchSpace(kernel_sizes=sp.kernel_sizes, filters=sp.filters, fc_units=sp.fc_units,
                       growth_rates=sp.growth_rates, max_layers=sp.max_layers)


# ------------------------------------------------------------------ (de)serialising
def config_to_dict(cfg: SearchConfig) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` of every section (tuples as lists)."""
    out: dict[str, dict[str, Any]] = {}
    for name, section in cfg.sections().items():
        values = {}
        for f in fields(section):
            v = getattr(section, f.name)
            values[f.name] = list(v) if isinstance(v, tuple) else v
        out[name] = values
    return out


def _toml_value(v: Any) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and not math.isfinite(v)) else f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dump_toml(cfg: SearchConfig) -> str:
    """The config as TOML that :func:`load_config` reads back (None written as "none")."""
    lines: list[str] = []
    for name, values in config_to_dict(cfg).items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "python -m eas.train_controller", agent: str | None = None
                 ) -> argparse.ArgumentParser:
    """The argument parser: --config, --agent, --resume and one --section.field per field."""
    parser = _Parser(
        prog=prog,
        description="Efficient architecture search by network transformation (EAS). "
        "Values come from the dataclass defaults, then --config (default: configs/default.toml), "
        "then --section.field overrides.",
        usage="%(prog)s [--config PATH] [--agent NAME] [--resume RUN] [--overwrite] [--debug] "
              "[--section.field VALUE ...]",
        epilog="Exit codes: 0 done (or stopped by search.max_rounds), 1 failed at run time, "
               "2 bad input (one line naming it), 130/143 interrupted (Ctrl-C/SIGTERM; "
               "continue with --resume).",
        allow_abbrev=False,
    )
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="TOML file of settings (default: configs/default.toml)")
    parser.add_argument("--agent", default=None, metavar="NAME",
                        help="shortcut for --search.agent (reinforce, random, hill_climbing, "
                        "module:Class)")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="continue runs/<RUN> (or the folder RUN) from its checkpoint.pt, "
                        "with its saved config (plus any overrides given here)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder of the same name (its files are "
                        "deleted); without it an existing folder is refused")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: EAS_DEBUG=1)")
    cfg = SearchConfig()
    if agent is not None and agent_section(agent) == "agent":
        cfg.agent = _default_instance("agent", agent)
    for section_name, section in cfg.sections().items():
        doc = (type(section).__doc__ or "").strip().split("\n")[0]
        group = parser.add_argument_group(f"[{section_name}]", doc)
        docs = field_docs(type(section))
        for f in fields(section):
            default = getattr(section, f.name)
            tp = _field_type(type(section), f, default)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            group.add_argument(
                f"--{section_name}.{f.name}",
                dest=f"{section_name}.{f.name}",
                default=argparse.SUPPRESS,
                metavar=_type_name(tp).upper().replace(" ", "_")
                if typing.get_origin(_split_optional(tp)[0]) is not Literal
                else "{" + ",".join(map(str, typing.get_args(_split_optional(tp)[0]))) + "}",
                help=f"{docs.get(f.name, '')} (default: {shown})",
            )
    return parser


@dataclass
class Command:
    """What the command line asked for."""

    config: str | None
    """The --config TOML file, or None (configs/default.toml, or the run's saved config on resume)."""
    overrides: dict[str, str]
    """``"section.field" -> value`` as typed (--agent becomes search.agent)."""
    resume: str | None
    """The --resume run (a folder or a name under search.runs_dir), or None."""
    overwrite: bool = False
    """--overwrite: replace an existing run folder of the same name."""
    debug: bool = False
    """--debug: show tracebacks."""


def parse_command(argv: Sequence[str] | None = None) -> Command:
    """Parse the command line into a :class:`Command` (values are checked by :func:`load_config`).

    ``--help`` prints every field with its documentation and default and exits
    0; an unknown option or field raises :class:`ConfigError` (or argparse exits
    with code 2).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--agent", default=None)
    pre.add_argument("--search.agent", dest="search_agent", default=None)
    known, _ = pre.parse_known_args(argv)
    agent = known.agent or known.search_agent
    parser = build_parser(agent=agent)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = unknown[0]
        if flag.startswith("--") and "." in flag:
            section, _, name = flag[2:].partition("=")[0].partition(".")
            cfg = SearchConfig()
            if agent is not None and agent_section(agent) == "agent":
                cfg.agent = _default_instance("agent", agent)
            sections = cfg.sections()
            if section not in sections:
                raise ConfigError(section, f"unknown section; allowed sections: "
                                  f"{', '.join(sections)}")
            allowed = ", ".join(f.name for f in fields(sections[section])) or "(none)"
            raise ConfigError(f"{section}.{name}", f"unknown field; fields of [{section}]: "
                              f"{allowed}")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    values = {k: v for k, v in vars(args).items() if "." in k}
    if args.agent is not None:
        values["search.agent"] = args.agent
    return Command(config=args.config, overrides=values, resume=args.resume,
                   overwrite=args.overwrite, debug=args.debug)
