"""Command-line entry point: ``python -m eas.train_controller`` (also the ``eas-search`` script).

::

    python -m eas.train_controller                                  # configs/default.toml
    python -m eas.train_controller --config configs/cifar10.toml    # the paper's search
    python -m eas.train_controller --agent random --search.seed 3   # any field: --section.field
    python -m eas.train_controller --resume runs/<run name>         # continue a stopped run
    python -m eas.train_controller --help                           # every field, doc, default

A bad value stops the program before any work and before anything is written,
with one line naming the field, file or folder (exit code 2); a failure at run
time is one line too (exit code 1), and so is a final training that failed (exit code
1 after the summary is written). ``--debug`` (or ``EAS_DEBUG=1``) shows the
traceback instead. SIGTERM is handled like Ctrl-C (exit 143 / 130).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eas.checkpoint import CheckpointError
from eas.config.engine import DEFAULT_CONFIG, load_config, parse_command
from eas.config.sections import ConfigError, SearchConfig
from eas.data import DatasetError, DatasetNotFoundError
from eas.envs.evaluators import StopSearch
from eas.search.failures import SearchFailed, final_training_failure
from eas.search.loop import run_search
from eas.search.rundir import CLAIMED
from eas.search.state import CHECKPOINT, CONFIG_FILE

__all__ = ["main", "resolve_run_dir"]

PROG = "python -m eas.train_controller"
"""The program's name when run as a module; ``eas search`` and ``eas-search`` pass their own."""


def default_prog() -> str:
    """The name this process was started under: ``eas-search`` (the script) or
    ``python -m eas.train_controller``."""
    return "eas-search" if Path(sys.argv[0]).name == "eas-search" else PROG


def resolve_run_dir(run: str, runs_dir: str = "runs") -> Path:
    """The folder of a ``--resume`` argument: a path to a run folder, or a name under runs_dir."""
    path = Path(run).expanduser()
    if path.is_dir():
        return path
    candidate = Path(runs_dir) / run
    if candidate.is_dir():
        return candidate
    raise ConfigError("--resume", f"no run folder {run!r} (looked for {path} and {candidate})")


def check_folder_agent(saved: Path, overrides: dict[str, Any]) -> None:
    """Refuse to resume a run whose ``config.toml`` names a ``module:Class`` agent, unless the
    command line names it too: importing it runs code the run folder chose, not the user.

    (Built-in agents and installed ``eas.agents`` plug-ins are the user's own code.)
    """
    if "search.agent" in overrides:
        return  # the user named the agent (a different one is refused by preflight)
    try:
        agent = tomllib.loads(saved.read_text()).get("search", {}).get("agent")
    except (OSError, UnicodeDecodeError, AttributeError, tomllib.TOMLDecodeError):
        return  # load_config reports an unreadable config.toml
    if isinstance(agent, str) and ":" in agent:
        raise ConfigError("--resume", f"{saved} names the plug-in agent {agent!r}: resuming "
                          "imports and runs its code; if you trust that code, resume with "
                          f"--search.agent {agent}")


def _fail(message: str, code: int = 2, prog: str = PROG) -> int:
    print(f"{prog}: error: {_one_line(message)}", file=sys.stderr)
    return code


def _one_line(message: str) -> str:
    return " ".join(str(message).split()) or "unknown error"


INPUT_ERRORS = (ConfigError, CheckpointError, DatasetError, DatasetNotFoundError)
"""Exceptions that mean bad input (exit 2); anything else at run time exits 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the run stops like on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in this process (not in its worker processes)."""
    me = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != me:  # a forked child: die as SIGTERM asks
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse the command line, then run or resume the search. Returns the exit code.

    Every error is one line ``<prog>: error: ...`` (``prog``: ``eas search``,
    ``eas-search`` or ``python -m eas.train_controller``, the default) naming
    the field, file or folder: exit 2 for bad input (found before any work and
    before anything is written), 1 for a failure at run time (also a failed final
    training, once the summary is written). ``--debug`` or
    ``EAS_DEBUG=1`` re-raises instead, with the traceback. Ctrl-C and SIGTERM
    leave the last checkpoint valid, print the resume hint and return 130/143.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or default_prog()
    debug = "--debug" in args or os.environ.get("EAS_DEBUG", "") not in ("", "0")
    claimed = len(CLAIMED)
    try:
        with _sigterm_as_interrupt():
            return _main(args, prog)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted"
        folder = CLAIMED[-1] if len(CLAIMED) > claimed else None
        if folder is None:
            print(f"\n{what} before the run folder was created; nothing was written",
                  file=sys.stderr)
        elif not (folder / CHECKPOINT).is_file():
            print(f"\n{what} before the first checkpoint of {folder}; start the run again "
                  "(with --overwrite to reuse its name)", file=sys.stderr)
        else:
            print(f"\n{what}; the last completed round is in {folder / CHECKPOINT} (continue "
                  f"with --resume {folder})", file=sys.stderr)
        return 143 if term else 130
    except INPUT_ERRORS as exc:
        if debug:
            raise
        return _fail(str(exc), 2, prog)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless --debug
        if debug:
            raise
        if isinstance(exc, (SearchFailed, StopSearch)):
            text = str(exc)
        elif isinstance(exc, OSError) and exc.filename is not None:  # a full disk, ...
            text = f"{exc.filename}: {exc.strerror or exc}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        return _fail(f"{text} (run with --debug for the traceback)", 1, prog)


def _main(argv: list[str], prog: str = PROG) -> int:
    cmd = parse_command(argv, prog)
    if cmd.resume is not None:
        if cmd.config is not None:
            raise ConfigError("--config", "cannot be combined with --resume (the run's saved "
                              "config is used; override single fields instead)")
        if cmd.overwrite:
            raise ConfigError("--overwrite", "cannot be combined with --resume")
        runs_dir = cmd.overrides.get("search.runs_dir", "runs")
        run_dir = resolve_run_dir(cmd.resume, runs_dir)
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise ConfigError("--resume", f"{run_dir} has no {CONFIG_FILE}")
        check_folder_agent(saved, cmd.overrides)
        # Overrides are checked here and by preflight inside run_search before the
        # run's config.toml is rewritten, so a bad one leaves the run as it was.
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
    outcome = run_search(cfg, run_dir=run_dir, resume=cmd.resume is not None,
                         overwrite=cmd.overwrite)
    if outcome is None:
        return 1
    failure = final_training_failure(outcome.state.final)  # summary written; still exit 1
    return _fail(failure, 1, prog) if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
