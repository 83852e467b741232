"""Search configuration: nested dataclasses, TOML presets and ``--section.field`` overrides.

A :class:`SearchConfig` has one section per concern::

    [data]            which dataset, how the validation split is drawn, device
    [child]           how every sampled child is trained (eas.recipe.TrainConfig)
    [start]           the start network (architecture, pre-training, weights file)
    [space]           the discrete layer widths/kernels the transformations may use
    [search]          the search itself: agent, seed, stages, schedule, outputs
    [controller]      the EAS REINFORCE agent's hyperparameters (agents.reinforce)
    [random]          random search's hyperparameters (agents.random_search)
    [hill_climbing]   hill climbing's hyperparameters (agents.hill_climbing)
    [sb3]             the sb3_ppo agent's hyperparameters (agents.sb3: sb3-contrib's MaskablePPO)
    [halving]         successive halving of each round's children (eas.envs.halving; off by default)
    [agent]           hyperparameters of a custom "module:Class" agent

Agent sections are the agents' own ``Config`` dataclasses, taken from
``agents.registry`` so their fields are defined once. Precedence: dataclass
defaults < the TOML file (``--config``) < command-line overrides. Every value is
type-checked and range-checked at start-up; a bad one raises :class:`ConfigError`
naming the field and what is allowed.

The sections themselves (and their own checks) live in :mod:`eas.config.sections`,
the field documentation and type conversion in :mod:`eas.config.field_types`; this
module reads TOML presets and ``--section.field`` overrides into them, checks what
needs several sections, and builds the command line. Import each name from its home
module (``ConfigError`` and the sections from :mod:`eas.config.sections`, ...).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import tomli_w

from eas import configs as _presets
from eas.agents.registry import available_agents, get_agent_class
from eas.arch import SearchSpace, resolve_start_arch
from eas.config.agent_sections import agent_config_cls, agent_section
from eas.config.checks import check_semantics
from eas.config.field_types import coerce, field_docs, field_type, split_optional, type_name
from eas.config.sections import (
    ConfigError,
    SearchConfig,
    check_finite,
    require,
)
from eas.datasets import DATASET_NAMES, DATASET_SHAPES, dataset_facts, dataset_key
from eas.envs.settings import BACKENDS
from eas.shapes import MAX_PARAMETERS, estimate_parameters

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "Command",
    "build_parser",
    "config_to_dict",
    "dump_toml",
    "field_choices",
    "load_config",
    "parse_command",
    "search_space",
    "validate",
]

CONFIG_DIR = Path(_presets.__file__).resolve().parent
"""Folder of the TOML presets (default.toml, cifar10.toml, densenet.toml, svhn.toml)."""
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"
"""The preset used when no ``--config`` is given."""



# ------------------------------------------------------------------ building
def _default_instance(section: str, agent: str) -> Any:
    if section == "agent":
        cls = agent_config_cls(agent)
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
        kwargs[key] = coerce(f"{section}.{key}", field_type(cls, f, current), value,
                              from_cli=from_cli)
    # Set the fields without running the class's own __post_init__ checks yet:
    # validate() first reports bad values by field name, then _run_own_checks.
    new = copy.copy(section_obj)
    for key, value in kwargs.items():
        object.__setattr__(new, key, value)
    return new


def _run_own_checks(cfg: SearchConfig) -> None:
    """Re-create every section so its own ``__post_init__`` checks run; name the field.

    A section that is not one of ours (``[child]`` is :class:`eas.recipe.TrainConfig`,
    agent sections are the agents' ``Config``) raises a plain ``ValueError``; the field
    to blame is found by trying each changed field alone on the section's defaults
    (the first that fails on its own), not by reading the message, unless the error
    names its field itself (a ``field`` attribute, for checks across fields). A check that
    only fails for a combination of fields and names none names the section.
    """
    for name, section in cfg.sections().items():
        try:
            setattr(cfg, name, dataclasses.replace(section))
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hit = getattr(exc, "field", None) or _culprit(name, section, cfg.search.agent)
            raise ConfigError(f"{name}.{hit}" if hit else name, message) from None


def _culprit(name: str, section: Any, agent: str) -> str | None:
    """The first field of ``section`` whose value alone makes the section's check fail."""
    default = _default_instance(name, agent)
    for f in fields(section):
        value = getattr(section, f.name)
        if value == getattr(default, f.name):
            continue
        try:
            dataclasses.replace(default, **{f.name: value})
        except (ValueError, TypeError, ConfigError):
            return f.name
    return None


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
            raw = tomllib.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", f"{p} is not a UTF-8 text file (TOML must be UTF-8; "
                              f"byte {exc.start} is 0x{exc.object[exc.start]:02x})") from None
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {p}: {exc.strerror or exc}") from None
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
    check_semantics(cfg)
    key = dataset_key(cfg.data.name)

    s = cfg.start
    shape, classes = dataset_facts(key) or ((3, 32, 32), 10)
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
        require(arch.num_classes == classes, "start.arch",
                f"ends in SM({arch.num_classes}) but {cfg.data.name} has {classes} classes")
    if s.weights is not None:
        require(not Path(s.weights).expanduser().is_dir(), "start.weights",
                f"{s.weights} is a folder, not a weights file")
        require(Path(s.weights).expanduser().is_file(), "start.weights",
                f"no such file: {s.weights}")
    sp = cfg.space
    require(sp.max_layers >= len(arch.layers), "space.max_layers",
            f"must be >= the start network's {len(arch.layers)} layers, got {sp.max_layers}")

    r = cfg.search
    try:
        get_agent_class(r.agent)
    except Exception as exc:  # noqa: BLE001 - report any loading failure as a config error
        text = " ".join(str(exc).split())[:300]
        raise ConfigError("search.agent", text if r.agent in text else
                          f"cannot load agent {r.agent!r}: {type(exc).__name__}: {text}") from None


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


def dump_toml(cfg: SearchConfig) -> str:
    """The config as TOML that :func:`load_config` reads back to an equal config.

    Written with ``tomli_w`` (strings escaped, non-finite floats as ``inf``/``nan``).
    TOML has no null: a field whose value is None is left out, so it reads back as
    its default, which is None for every optional field of the built-in sections; a
    field whose default is not None (a plug-in agent's) is written as ``"none"``, the
    word :func:`load_config` reads as None for optional fields (as on the command line).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, section_values in config_to_dict(cfg).items():
        default = _default_instance(name, cfg.search.agent)
        values = out[name] = {}
        for key, value in section_values.items():
            if value is not None:
                values[key] = value
            elif getattr(default, key) is not None:
                values[key] = "none"
    return tomli_w.dumps(out)


# ------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_choices() -> dict[str, list[str]]:
    """``"section.field" -> allowed values`` of the choice-valued string fields, from their
    registries (agents: the built-ins and installed plug-ins, then ``module:Class``)."""
    return {"data.name": list(DATASET_NAMES), "search.agent": [*available_agents(), "module:Class"],
            "search.backend": list(BACKENDS)}


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "empty"
    return str(value)


def build_parser(prog: str = "python -m eas.train_controller", agent: str | None = None,
                 defaults: SearchConfig | None = None, source: str | None = None
                 ) -> argparse.ArgumentParser:
    """The argument parser: --config, --agent, --resume and one --section.field per field.

    ``defaults`` is the configuration the command would run without overrides (the
    preset, ``--config``'s file or a resumed run's config; the dataclass defaults when
    None) and ``source`` names where it came from; each field's help shows its value.
    """
    from_where = source or "the built-in (dataclass) defaults"
    agents = ", ".join(field_choices()["search.agent"])
    parser = _Parser(
        prog=prog,
        description="Efficient architecture search by network transformation (EAS). "
        "Values come from the dataclass defaults, then --config (default: configs/default.toml), "
        f"then --section.field overrides. The defaults shown below are {from_where}.",
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
                        help=f"shortcut for --search.agent (one of: {agents})")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="continue runs/<RUN> (or the folder RUN) from its checkpoint.pt, "
                        "with its saved config (plus any overrides given here)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder of the same name (its files are "
                        "deleted); without it an existing folder is refused")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: EAS_DEBUG=1)")
    cfg = copy.deepcopy(defaults) if defaults is not None else SearchConfig()
    if agent is not None and agent_section(agent) == "agent" and not isinstance(
            cfg.agent, agent_config_cls(agent)):
        cfg.agent = _default_instance("agent", agent)
    choices = field_choices()
    for section_name, section in cfg.sections().items():
        doc = (type(section).__doc__ or "").strip().split("\n")[0]
        group = parser.add_argument_group(f"[{section_name}]", doc)
        docs = field_docs(type(section))
        for f in fields(section):
            default = getattr(section, f.name)
            tp = split_optional(field_type(type(section), f, default))[0]
            key = f"{section_name}.{f.name}"
            if key in choices:
                metavar = "{" + ",".join(choices[key]) + "}"
            elif typing.get_origin(tp) is Literal:
                metavar = "{" + ",".join(map(str, typing.get_args(tp))) + "}"
            else:
                metavar = type_name(field_type(type(section), f, default)).upper().replace(" ", "_")
            group.add_argument(f"--{key}", dest=key, default=argparse.SUPPRESS, metavar=metavar,
                               help=f"{docs.get(f.name, '')} (default: {_shown(default)})"
                               .replace("%", "%%"))
    return parser


def _help_defaults(argv: Sequence[str], agent: str | None
                   ) -> tuple[SearchConfig | None, str | None]:
    """The configuration a command line starts from, for --help: a resumed run's saved
    config, --config's file or the default preset, and a phrase saying which (None when
    it cannot be read: the built-in defaults are shown; a real run reports the problem)."""
    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--search.runs_dir", dest="runs_dir", default="runs")
    known, _ = pre.parse_known_args(list(argv))
    path: Path | None = None
    if known.resume is not None:
        for folder in (Path(known.resume).expanduser(), Path(known.runs_dir) / known.resume):
            if (folder / "config.toml").is_file():
                path = folder / "config.toml"
                break
    elif known.config is not None:
        path = Path(known.config)
    elif DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    if path is None:
        return None, None
    shown = f"configs/{path.name}" if path.resolve().parent == CONFIG_DIR else str(path)
    try:
        cfg = load_config(path, {"search.agent": agent} if agent else None, check=False)
    except (ConfigError, OSError, ValueError, TypeError) as exc:
        return None, (f"the built-in (dataclass) defaults, as {shown} cannot be read "
                      f"({_first_line(exc)})")
    return cfg, (f"the values of {shown}: what this command runs with no --section.field "
                 "override")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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


def parse_command(argv: Sequence[str] | None = None,
                  prog: str = "python -m eas.train_controller") -> Command:
    """Parse the command line into a :class:`Command` (values are checked by :func:`load_config`).

    ``--help`` prints every field with its documentation and the value the command
    would use (from the preset, ``--config`` or the resumed run) and exits 0; an unknown option or field raises :class:`ConfigError` (or argparse exits
    with code 2).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--agent", default=None)
    pre.add_argument("--search.agent", dest="search_agent", default=None)
    known, _ = pre.parse_known_args(argv)
    agent = known.agent or known.search_agent
    defaults, source = (_help_defaults(argv, agent) if any(a in ("-h", "--help") for a in argv)
                        else (None, None))
    parser = build_parser(prog, agent=agent, defaults=defaults, source=source)
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
