"""Command-line entry point: ``python -m eas.train_controller`` (also the ``eas-search`` script).

::

    python -m eas.train_controller                                  # configs/default.toml
    python -m eas.train_controller --config configs/cifar10.toml    # the paper's search
    python -m eas.train_controller --agent random --search.seed 3   # any field: --section.field
    python -m eas.train_controller --resume runs/<run name>         # continue a stopped run
    python -m eas.train_controller --help                           # every field, doc, default

A bad value stops the program before any work with one line naming the field
and the allowed values (exit code 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from eas.data import DatasetNotFoundError
from eas.search.config import (
    DEFAULT_CONFIG,
    ConfigError,
    SearchConfig,
    load_config,
    parse_command,
)
from eas.search.loop import CONFIG_FILE, run_search

__all__ = ["main", "resolve_run_dir"]

PROG = "python -m eas.train_controller"


def resolve_run_dir(run: str, runs_dir: str = "runs") -> Path:
    """The folder of a ``--resume`` argument: a path to a run folder, or a name under runs_dir."""
    path = Path(run).expanduser()
    if path.is_dir():
        return path
    candidate = Path(runs_dir) / run
    if candidate.is_dir():
        return candidate
    raise ConfigError("--resume", f"no run folder {run!r} (looked for {path} and {candidate})")


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, then run or resume the search. Returns the exit code.

    Configuration errors print one line and return 2 (``SystemExit(2)`` when run
    as a script); ``--help`` exits 0.
    """
    try:
        cmd = parse_command(argv)
        if cmd.resume is not None:
            runs_dir = cmd.overrides.get("search.runs_dir", "runs")
            run_dir = resolve_run_dir(cmd.resume, runs_dir)
            saved = run_dir / CONFIG_FILE
            if not saved.is_file():
                raise ConfigError("--resume", f"{run_dir} has no {CONFIG_FILE}")
            if cmd.config is not None:
                raise ConfigError("--config", "cannot be combined with --resume (the run's saved "
                                  "config is used; override single fields instead)")
            cfg: SearchConfig = load_config(saved, cmd.overrides)
        else:
            path = cmd.config
            if path is None and DEFAULT_CONFIG.is_file():
                path = str(DEFAULT_CONFIG)
            elif path is None:
                print(f"note: {DEFAULT_CONFIG} not found (installed without the configs/ "
                      "folder?); using the built-in defaults, the paper's CIFAR-10 search",
                      file=sys.stderr)
            cfg = load_config(path, cmd.overrides)
            run_dir = None
    except ConfigError as exc:
        return _fail(str(exc))

    try:
        outcome = run_search(cfg, run_dir=run_dir, resume=cmd.resume is not None)
    except ConfigError as exc:  # a value that only proves wrong once the data is there
        return _fail(str(exc))
    except DatasetNotFoundError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        print("\ninterrupted; the last completed round is in checkpoint.pt (continue with "
              "--resume)", file=sys.stderr)
        return 130
    return 0 if outcome is not None else 1


if __name__ == "__main__":
    sys.exit(main())
