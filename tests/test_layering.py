"""The package's layers: the configuration schema and the front doors import no torch,
and every public name of a lazy front door resolves to the object in its home module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from eas.agents.registry import get_agent_class
from eas.config.agent_sections import BUILTIN_CONFIGS, agent_config_cls, agent_section

LIGHT_MODULES = [
    "eas",
    "eas.envs",
    "eas.agents",
    "eas.config.sections",
    "eas.config.field_types",
    "eas.config.agent_sections",
    "eas.config.checks",
    "eas.config.engine",
    "eas.datasets",
    "eas.recipe",
    "eas.shapes",
    "eas.envs.record",
    "eas.envs.settings",
    "eas.envs.rewards",
    "eas.kinds",
    "eas.agents.settings",
    "eas.agents.reinforce_config",
]
"""Modules that must import without torch (the schema, its facts, the front doors)."""


def test_schema_and_front_doors_import_no_torch() -> None:
    """A fresh interpreter imports every light module and builds the default config without
    torch: the schema reads only light modules (agent configs included)."""
    code = (
        "import sys\n"
        f"for m in {LIGHT_MODULES!r}: __import__(m)\n"
        "from eas.config.sections import SearchConfig\n"
        "SearchConfig()\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(BUILTIN_CONFIGS))
def test_builtin_config_classes_are_the_agents_own(name: str) -> None:
    """The schema's light copy of each built-in agent's ``Config`` is the class the agent uses."""
    try:
        cls = get_agent_class(name)
    except ImportError:  # sb3_ppo without the sb3 extra
        pytest.skip(f"{name} cannot be imported here")
    assert cls.Config is BUILTIN_CONFIGS[name]
    assert agent_config_cls(name) is cls.Config


def test_agent_sections_resolve_aliases_without_loading() -> None:
    assert agent_section("eas") == "controller"
    assert agent_section("nash") == "hill_climbing"
    assert agent_config_cls("nash") is BUILTIN_CONFIGS["hill_climbing"]


@pytest.mark.parametrize("package", ["eas", "eas.envs", "eas.agents"])
def test_lazy_front_door_names_resolve(package: str) -> None:
    """Every name in ``__all__`` is the object of its home module, listed by ``dir()``;
    an unknown name is an AttributeError naming the package."""
    module = importlib.import_module(package)
    for name in module.__all__:
        home = importlib.import_module(module._HOMES[name])
        assert getattr(module, name) is getattr(home, name)
        assert name in dir(module)
    with pytest.raises(AttributeError, match=package.replace(".", r"\.")):
        module.no_such_name  # noqa: B018
