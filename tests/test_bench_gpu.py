"""bench/bench_gpu.py can run where no GPU is: its --dry-run and its time budget (no figures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_is_tiny_and_on_cpu(bench) -> None:
    args = bench.parse_args(["--dry-run"])
    assert args.device == "cpu" and args.images <= 1024 and args.at_once == [1]
    full = bench.parse_args(["--device", "cuda"])
    assert full.images == 45_000 and full.epochs == 20 and full.at_once == [1, 4, 8]
    assert full.max_minutes == 10.0 and full.only == list(bench.SECTIONS)


def test_every_section_is_skipped_past_the_budget(bench, capsys) -> None:
    bench.main(["--dry-run", "--max-minutes", "0"])
    out = capsys.readouterr().out
    assert all(f"## {name}: skipped" in out for name in bench.SECTIONS)


@pytest.mark.slow
def test_dry_run_prints_its_tables(bench, capsys) -> None:
    bench.main(["--dry-run", "--only", "child", "step"])
    out = capsys.readouterr().out
    assert "| cuda_graph=True |" in out and "| 64 |" in out and "# total" in out
    assert "DRY RUN" in out
