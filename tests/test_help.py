"""Help that tells the truth: the values a command will use, its real name, registry choices,
and readable plot axes."""

from __future__ import annotations

import tomllib
from itertools import combinations

import matplotlib
import pytest

from eas.agents.registry import available_agents
from eas.cli import compare
from eas.cli import main as cli
from eas.cli import search as train_controller
from eas.config.engine import CONFIG_DIR, DEFAULT_CONFIG, dump_toml, load_config
from eas.datasets import DATASET_NAMES
from eas.reports.pareto import compact_number, readable_log_ticks

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless back-end


def help_text(capsys: pytest.CaptureFixture[str], run) -> str:
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # unwrapped: one space between words


def shown_default(text: str, option: str) -> str:
    """The ``(default: X)`` of ``--option`` in unwrapped help text."""
    after = text.split(option, 1)[1]
    return after.split("(default: ", 1)[1].split(")", 1)[0]


def test_search_help_shows_the_default_preset_under_its_real_name(capsys) -> None:
    preset = tomllib.loads(DEFAULT_CONFIG.read_text())
    text = help_text(capsys, lambda: cli.main(["search", "--help"]))
    assert text.startswith("usage: eas search ")
    assert "python -m eas.train_controller [" not in text
    assert "the values of configs/default.toml" in text
    # the preset's values, not the dataclass defaults (cifar10, 20 epochs, 300 children)
    assert shown_default(text, "--data.name {") == preset["data"]["name"] == "fashion-mnist"
    assert shown_default(text, "--child.epochs INT") == str(preset["child"]["epochs"])
    assert shown_default(text, "--search.stage1_networks INT") == str(
        preset["search"]["stage1_networks"])
    text = help_text(capsys, lambda: train_controller.main(["--help"]))
    assert text.startswith("usage: python -m eas.train_controller ")


def test_search_help_shows_the_values_of_config_and_of_a_resumed_run(capsys, tmp_path) -> None:
    cifar = CONFIG_DIR / "cifar10.toml"
    text = help_text(capsys, lambda: train_controller.main(["--config", str(cifar), "--help"]))
    assert "the values of configs/cifar10.toml" in text
    assert shown_default(text, "--data.name {") == "cifar10"
    assert shown_default(text, "--child.epochs INT") == str(load_config(cifar).child.epochs)
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    saved = load_config(DEFAULT_CONFIG, {"child.epochs": "7", "search.seed": "42"})
    (run / "config.toml").write_text(dump_toml(saved))
    text = help_text(capsys, lambda: train_controller.main(["--resume", str(run), "--help"]))
    assert shown_default(text, "--child.epochs INT") == "7"
    assert shown_default(text, "--search.seed INT") == "42"
    # an unreadable --config: the built-in defaults, and help says so
    text = help_text(capsys, lambda: train_controller.main(
        ["--config", str(tmp_path / "none.toml"), "--help"]))
    assert "the built-in (dataclass) defaults, as" in text and "none.toml cannot be read" in text
    assert shown_default(text, "--data.name {") == "cifar10"


def test_choice_options_list_the_registry(capsys) -> None:
    text = help_text(capsys, lambda: cli.main(["search", "--help"]))
    agents = available_agents()
    assert "lemonade" in agents
    assert f"--search.agent {{{','.join([*agents, 'module:Class'])}}}" in text
    assert f"one of: {', '.join(agents)}, module:Class" in text  # --agent
    assert f"--data.name {{{','.join(DATASET_NAMES)}}}" in text
    assert "--search.backend {auto,serial,process,ray}" in text


def test_compare_help_shows_its_defaults(capsys) -> None:
    text = help_text(capsys, lambda: compare.main(["--help"])).split("options:", 1)[1]
    parser = compare.build_parser()
    for action in parser._actions:
        if (not action.option_strings or action.default in (None, [])
                or isinstance(action.default, bool) or action.dest == "help"):  # flags
            continue
        flag = action.option_strings[0]
        assert "default" in text.split(f"{flag} ", 1)[1].split(" --", 1)[0], flag
    assert shown_default(text, "--epochs EPOCHS") == "1"
    assert ", ".join(available_agents()) in text


def test_log_ticks_are_few_compact_and_do_not_overlap() -> None:
    assert [compact_number(v) for v in (950, 1234, 540e3, 999_999, 2.5e9)] == \
        ["950", "1.2k", "540k", "1M", "2.5G"]
    for lo, hi in ((1.1e6, 9.8e6), (3.1e6, 5.6e6), (2e4, 3e7), (5e5, 5e5)):
        fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
        try:
            values = [lo, (lo * hi) ** 0.5, hi]
            ax.scatter(values, [0.5, 0.6, 0.7])
            ax.set_xscale("log")
            readable_log_ticks(ax, values)
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            labels = [t for t in ax.get_xticklabels(which="both")
                      if t.get_visible() and t.get_text()
                      and lo * 0.99 <= t.get_position()[0] <= hi * 1.01]
            assert 1 <= len(labels) <= 5
            assert all("10^" not in t.get_text() and "e+" not in t.get_text() for t in labels)
            boxes = [t.get_window_extent(renderer) for t in labels]
            assert not any(a.overlaps(b) for a, b in combinations(boxes, 2)), (lo, hi)
        finally:
            plt.close(fig)



def test_errors_and_usage_carry_the_name_the_program_was_called_by(capsys, monkeypatch) -> None:
    assert cli.main(["search", "--search.nope", "1"]) == 2
    assert capsys.readouterr().err.startswith("eas search: error: search.nope")
    assert train_controller.main(["--search.nope", "1"]) == 2
    assert capsys.readouterr().err.startswith("python -m eas.train_controller: error:")
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/eas-search", "--help"])
    text = help_text(capsys, lambda: train_controller.main())
    assert text.startswith("usage: eas-search ")
