"""The ``eas`` console command: one entry point with subcommands.

::

    eas search [--config FILE] [--section.field VALUE ...] [--resume RUN]   # an architecture search
    eas compare --agents random,hill_climbing --children 30                 # compare agents
    eas export runs/<run> [--which best|front] [--max-params N]             # ONNX + torch.export
    eas --help

``eas search`` is ``python -m eas.train_controller`` (also installed as the
``eas-search`` alias); ``eas compare`` is ``python -m eas.compare``; ``eas export``
is ``python -m eas.export``. Each subcommand's ``--help`` lists its options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from eas import export
from eas.cli import compare
from eas.cli import search as train_controller

__all__ = ["COMMANDS", "main"]

def _search(argv: list[str]) -> int:
    return train_controller.main(argv, prog="eas search")


def _compare(argv: list[str]) -> int:
    return compare.main(argv, prog="eas compare")


def _export(argv: list[str]) -> int:
    return export.main(argv, prog="eas export")


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "search": ("run or resume an architecture search (= python -m eas.train_controller)",
               _search),
    "compare": ("compare search agents on one budget (= python -m eas.compare)", _compare),
    "export": ("export a run's best network or Pareto front as ONNX + torch.export "
               "(= python -m eas.export)", _export),
}
"""Subcommand name -> (one-line help, entry point taking the remaining arguments)."""


def _usage() -> str:
    lines = ["usage: eas {" + ",".join(COMMANDS) + "} [options]", "",
             "Efficient architecture search by network transformation.", "", "commands:"]
    lines += [f"  {name:<9s}{text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "Run 'eas <command> --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``eas <command> ...``; returns the exit code (2 for an unknown command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"eas: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    return COMMANDS[name][1](rest)


if __name__ == "__main__":
    raise SystemExit(main())
