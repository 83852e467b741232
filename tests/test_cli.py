"""The ``eas`` console command (eas.cli.main): subcommands search and compare."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from eas.cli import main as cli

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"


def test_help_lists_the_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "search" in out and "compare" in out and "export" in out
    assert cli.main([]) == 2  # no command: usage, exit 2


def test_unknown_command_is_one_line(capsys):
    assert cli.main(["serch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'serch'" in err[0]


def test_search_help_and_bad_field_go_to_the_search_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["search", "--help"])
    assert exc.value.code == 0 and "--section.field" in capsys.readouterr().out
    assert cli.main(["search", "--search.nope", "1"]) == 2
    assert "search.nope" in capsys.readouterr().err


def test_compare_runs(tmp_path):
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--agents", "random", "--seeds", "0", "--children", "2",
                     "--start", SMALL, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [(r["agent"], r["children"]) for r in rows] == [("random", "2")]


def test_export_goes_to_eas_export(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: eas export") and "--max-params" in out
    assert cli.main(["export", str(tmp_path / "nope")]) == 2  # bad input: one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eas export: error:") and "nope" in err[0]


@pytest.mark.parametrize(("script", "argv", "usage"), [
    ("eas", ["search", "--help"], "usage: eas search "),
    ("eas", ["export", "--help"], "usage: eas export "),
    ("eas-search", ["--help"], "usage: eas-search "),
])
def test_the_installed_console_scripts_run(script, argv, usage):
    """The scripts pip installed from pyproject's [project.scripts] start the right command."""
    exe = Path(sys.executable).parent / script
    assert exe.is_file(), f"{exe} is not installed (pip install -e .)"
    proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(usage), proc.stdout[:200]
