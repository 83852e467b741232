"""Checks that run before any work and before anything is written.

:func:`preflight` looks at everything a search will need and raises
:class:`~eas.config.engine.ConfigError` (one line naming the field, file or
folder) at the first problem: the device exists, the optional back-end can be
imported, the start weights load and fit the start architecture, the run
folder may be used (and its parent created and written), the dataset's folders
are there with a readable first image, and on ``--resume`` the checkpoint
reads and the overrides leave the search's meaning alone. It writes nothing.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eas.agents.controller import controller_weights
from eas.arch import resolve_start_arch
from eas.checkpoint import CheckpointError, load_checkpoint, read_torch_file
from eas.config.agent_sections import agent_section
from eas.config.engine import config_to_dict
from eas.config.sections import ConfigError, SearchConfig
from eas.data import DatasetError, DatasetNotFoundError, check_image_folder
from eas.datasets import dataset_facts, dataset_key
from eas.envs.journal import check_journal
from eas.network import build_network
from eas.search.agent_setup import episode_settings, is_plugin, make_agent, restored_global_rng
from eas.search.rundir import check_run_dir
from eas.search.state import CHECKPOINT, JOURNAL_DIR, default_run_name

__all__ = [
    "FREE_ON_RESUME",
    "Plan",
    "check_resume_changes",
    "preflight",
]

FREE_ON_RESUME: frozenset[str] = frozenset({
    # where and how fast the children train, not which children or how they score
    "data.device", "data.download", "child.eval_batch_size", "child.channels_last",
    "child.cuda_graph", "child.cuda_graph_min_steps",
    "search.workers", "search.backend", "search.children_per_gpu", "search.gpu_memory_fraction",
    "search.max_retries", "search.child_timeout", "search.ray_address",
    "search.ray_gpus_per_child",
    # this invocation and its outputs
    "search.max_rounds", "search.run_name", "search.runs_dir", "search.progress",
    "search.keep_best",
})
"""The only fields a resumed run may change. Every other field (the data and its split, the
child, start and final recipes, the space, the agent and its settings, stages, schedule,
halving, objectives and reward) decides which children the search produces or how they
are scored, so changing it would give the rest of the run another meaning."""

@dataclass
class Plan:
    """What :func:`preflight` found: where the run goes and what it continues from."""

    run_dir: Path
    """The run folder (for an auto-named new run: the first free candidate)."""
    auto_name: bool
    """The name was generated (a collision picks another name instead of failing)."""
    checkpoint: dict[str, Any] | None
    """The checkpoint to continue from (resume only), already read."""


def check_device(name: str) -> None:
    """``data.device`` names a device this machine has."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("data.device", f"{name} asked for, but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False); use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError("data.device", f"{name} asked for, but this machine has "
                              f"{torch.cuda.device_count()} GPU(s) (cuda:0 ...)")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("data.device", "mps asked for, but it is not available; use auto or cpu")


def check_backend(cfg: SearchConfig) -> None:
    """The optional back-end (Ray) can be imported."""
    if cfg.search.backend != "ray":
        return
    try:  # find_spec alone is fooled by a stray folder named ray/ (e.g. /tmp/ray)
        ray = importlib.import_module("ray")
    except Exception:  # noqa: BLE001 - any import failure means no usable Ray
        ray = None
    if not hasattr(ray, "remote"):
        raise ConfigError("search.backend", "ray is not installed (pip install 'ray[default]'); "
                          "use serial or process")
    check_ray_address(cfg.search.ray_address)


RAY_CONNECT_TIMEOUT = 5.0
"""Seconds preflight waits for a TCP connection to ``search.ray_address``."""


def check_ray_address(address: str | None) -> None:
    """A given Ray cluster address (``host:port`` or ``ray://host:port``) answers on its port.

    ``None``, ``auto`` and ``local`` are left to Ray (start or find a local cluster).
    """
    if address is None or address.strip().lower() in ("auto", "local"):
        return
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    hostport = rest if sep else scheme
    host, colon, port = hostport.rstrip("/").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("search.ray_address", f"{address!r} is not a Ray address: expected "
                          "host:port, ray://host:port, auto or none")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=RAY_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError("search.ray_address", f"cannot reach the Ray cluster at {address} "
                          f"({why}); start it (ray start --head) or leave ray_address none "
                          "for a local one") from None


def _writable_parent(folder: Path, field: str) -> None:
    """``folder`` is a writable folder, or can be created inside a writable one."""
    p = folder.expanduser().absolute()
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise ConfigError(field, f"{p} is a file, not a folder (needed to hold {folder})")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot create {folder}: {p} is not writable")


def check_data(cfg: SearchConfig) -> None:
    """Dataset folders are present (never created here) and an ImageFolder's first image reads."""
    d = cfg.data
    key = dataset_key(d.name)
    root = Path(d.root).expanduser() if d.root is not None else None
    if root is not None and not root.is_dir():
        raise ConfigError("data.root", f"{root} is not an existing folder (it is not created "
                          "for you; leave data.root unset to use the default locations)")
    if key == "imagefolder":
        if root is None:
            raise ConfigError("data.root", "imagefolder needs data.root: a folder of class "
                              "folders (or train/ and test/ holding class folders)")
        parts = [root / "train", root / "test"] if (root / "train").is_dir() else [root]
        try:
            for part in parts:
                if check_image_folder(part) < 2:
                    raise ConfigError("data.root", f"{part} has one class folder; a classifier "
                                      "needs at least two")
        except (DatasetError, DatasetNotFoundError) as exc:
            raise ConfigError("data.root", str(exc)) from None


def _input_shape(cfg: SearchConfig) -> tuple[tuple[int, int, int], int] | None:
    return dataset_facts(cfg.data.name)  # None for imagefolder: known once loaded


def check_start_weights(cfg: SearchConfig) -> None:
    """``start.weights`` loads and fits the start architecture (when the input shape is known)."""
    path = cfg.start.weights
    if path is None:
        return
    try:
        obj = read_torch_file(path, weights_only=True)
    except CheckpointError as exc:
        raise ConfigError("start.weights", str(exc)) from None
    state = obj
    shape = _input_shape(cfg)
    if shape is None:
        return
    arch = resolve_start_arch(cfg.start.arch, *shape)
    if isinstance(obj, dict) and "state_dict" in obj and "arch" in obj:
        if str(obj["arch"]) != str(arch):
            raise ConfigError("start.weights", f"{path} holds {obj['arch']}, not the start "
                              f"architecture {arch}; set start.arch to match")
        state = obj["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError("start.weights", f"{path} holds a {type(state).__name__}, not a "
                          "network file or a state_dict")
    net = build_network(arch, shape[0], dropout=cfg.start.dropout, seed=0)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError("start.weights", f"{path} does not fit the start architecture "
                          f"{arch}: {first}") from None


def check_plugin_agent(cfg: SearchConfig) -> None:
    """A plug-in (``module:Class``) agent can be built: once, on a trial basis, with the
    run's settings (global RNG states restored), so a broken plug-in stops the run before
    anything is written. Built-in agents are not built twice."""
    name = cfg.search.agent
    if not is_plugin(name):
        return
    shape, classes = _input_shape(cfg) or ((3, 32, 32), 10)  # imagefolder: known once loaded
    try:
        with restored_global_rng():
            arch = resolve_start_arch(cfg.start.arch, shape, classes)
            agent = make_agent(cfg, episode_settings(cfg), input_shape=shape,
                               num_classes=classes, densenet=arch.is_densenet,
                               start_accuracy=None)
            agent.child_train_overrides()
    except Exception as exc:  # noqa: BLE001 - whatever the plug-in raises: one line naming it
        text = " ".join(str(exc).split())[:300]
        raise ConfigError("search.agent", f"plug-in agent {name!r} cannot be built: "
                          f"{type(exc).__name__}: {text}") from None


def check_controller_init(cfg: SearchConfig) -> None:
    """``controller.init`` (another run's checkpoint) reads weights-only and holds controller
    weights, before anything is written (their shape is checked when the agent is built)."""
    if agent_section(cfg.search.agent) != "controller":
        return
    init = getattr(cfg.controller, "init", None)
    if not init:
        return
    try:
        controller_weights(init)
    except ValueError as exc:
        raise ConfigError("controller.init", str(exc)) from None


def check_resume_changes(saved: dict[str, dict[str, Any]], cfg: SearchConfig) -> None:
    """Refuse a change of any field but :data:`FREE_ON_RESUME` (``saved``: the checkpoint's
    config); ``data.root`` may move, except for an ImageFolder (there it is the data)."""
    now = config_to_dict(cfg)
    free = set(FREE_ON_RESUME)
    if dataset_key(now["data"]["name"]) != "imagefolder":
        free.add("data.root")
    for section, values in now.items():
        for name, new in values.items():
            key = f"{section}.{name}"
            if key in free or section not in saved or name not in saved[section]:
                continue  # a field the run did not record (added later) keeps its default
            old = saved[section][name]
            if old != new:
                raise ConfigError(key, f"cannot be changed when resuming (the run used {old!r}, "
                                  f"got {new!r}): it changes which children the search "
                                  "produces or how they are scored; start a new run (another "
                                  "--search.run_name) for a different search")


def _resumable(run_dir: Path, cfg: SearchConfig) -> dict[str, Any]:
    """The checkpoint of a run that ``--resume`` may continue; ConfigError if there is none."""
    ckpt = run_dir / CHECKPOINT
    again = (f"start it again with --search.run_name {run_dir.name} "
             f"--search.runs_dir {run_dir.parent} --overwrite, or under another run name")
    if not ckpt.exists():
        raise ConfigError("--resume", f"{run_dir} has no {CHECKPOINT} (the run stopped before "
                          f"its first checkpoint); {again}")
    try:
        checkpoint = load_checkpoint(ckpt)
    except CheckpointError as exc:
        raise ConfigError("--resume", str(exc)) from None
    if not {"state", "agent", "rng"} <= set(checkpoint) or not isinstance(
            checkpoint["state"], dict):
        raise ConfigError("--resume", f"{ckpt} is not a search checkpoint (no "
                          "'state', 'agent' and 'rng' entries)")
    if checkpoint["state"].get("done"):
        raise ConfigError("--resume", f"{run_dir} holds a finished run (nothing is left to "
                          f"resume); {again}")
    for sub in (JOURNAL_DIR,):
        path = run_dir / sub
        if path.exists() and not path.is_dir():
            raise ConfigError("run folder", f"{path} is a file, but the run keeps its journal "
                              "of finished children in that folder; move the file away")
    try:  # the round to replay reads its finished children from here (weights-only)
        check_journal(run_dir / JOURNAL_DIR)
    except CheckpointError as exc:
        raise ConfigError("--resume", str(exc)) from None
    check_resume_changes(checkpoint.get("config", {}), cfg)
    return checkpoint


def preflight(cfg: SearchConfig, *, run_dir: str | Path | None, resume: bool,
              overwrite: bool = False, needs_data: bool = True) -> Plan:
    """Check everything the run needs; write nothing. Returns the :class:`Plan`.

    ``needs_data``: the dataset will be loaded (False with a stand-in evaluator
    and a known input shape).
    """
    check_device(cfg.data.device)
    check_backend(cfg)
    if needs_data:
        check_data(cfg)
    check_start_weights(cfg)
    check_plugin_agent(cfg)
    check_controller_init(cfg)
    s = cfg.search
    auto = run_dir is None and s.run_name is None
    if run_dir is None:
        _writable_parent(Path(s.runs_dir), "search.runs_dir")
        run_dir = Path(s.runs_dir) / (s.run_name or default_run_name(cfg))
    run_dir = Path(run_dir)
    _writable_parent(run_dir.parent, "search.runs_dir")
    checkpoint = None
    if resume:
        check_run_dir(run_dir, resume=True, overwrite=False)
        checkpoint = _resumable(run_dir, cfg)
    elif not auto:
        check_run_dir(run_dir, resume=False, overwrite=overwrite)
    return Plan(run_dir=run_dir, auto_name=auto, checkpoint=checkpoint)
