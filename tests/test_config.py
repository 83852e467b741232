"""Configuration: presets, overrides, --help, and one-line errors for invalid values."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from eas.arch import resolve_start_arch
from eas.cli.search import main
from eas.config.engine import CONFIG_DIR, dump_toml, load_config, parse_command
from eas.config.field_types import field_docs
from eas.config.sections import ConfigError, SearchConfig, schedule_tuple
from eas.datasets import dataset_facts, dataset_key

REPO = Path(__file__).resolve().parent.parent
PRESETS = ["default.toml", "cifar10.toml", "densenet.toml", "svhn.toml"]


def run_main(argv: list[str]) -> int:
    """``main(argv)``'s exit code, whether it returns it or raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_validate(name: str) -> None:
    cfg = load_config(CONFIG_DIR / name)
    assert isinstance(cfg, SearchConfig)


def test_paper_presets_follow_the_paper() -> None:
    c10 = load_config(CONFIG_DIR / "cifar10.toml")
    assert c10.data.name == "cifar10" and c10.data.val_size == 5000
    assert c10.search.children_per_step == 10
    assert (c10.search.stage1_networks, c10.search.stage2_networks) == (300, 150)
    assert (c10.child.epochs, c10.search.stage1_best_epochs, c10.search.final_epochs) == (20, 100,
                                                                                           300)
    assert schedule_tuple(c10.search.schedule) == ("wider",) * 4 + ("deeper",) * 5
    assert str(resolve_start_arch(c10.start.arch, (3, 32, 32), 10)).startswith("C(16,3,1)")
    svhn = load_config(CONFIG_DIR / "svhn.toml")
    assert svhn.data.name == "svhn" and svhn.start.dropout == pytest.approx(0.2)
    dense = load_config(CONFIG_DIR / "densenet.toml")
    arch = resolve_start_arch(dense.start.arch, (3, 32, 32), 10)
    assert arch.is_densenet
    assert tuple(dense.space.growth_rates) == (40, 44, 48, 52, 56, 60, 64)


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR / "default.toml", {"search.max_rounds": "3",
                                                    "data.root": "none"})
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path) == cfg


def test_dump_escapes_strings_and_leaves_none_out(tmp_path: Path) -> None:
    odd = 'a "quoted"\\ path\nwith a newline = [x]'
    cfg = load_config(None, {"data.root": odd, "search.final_lr": "none",
                             "search.run_name": "none"}, check=False)
    text = dump_toml(cfg)
    assert "final_lr" not in text and "run_name" not in text  # None: left out, reads back None
    assert '"none"' not in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    back = load_config(path, check=False)
    assert back == cfg and back.data.root == odd and back.search.final_lr is None


def test_overrides_are_typed() -> None:
    cfg = load_config(None, {
        "child.epochs": "3", "child.lr": "0.1", "child.nesterov": "false",
        "child.max_batches_per_epoch": "none", "space.filters": "16,32,64",
        "search.schedule": "free", "data.train_subset": "1000", "search.agent": "random",
        "random.wider_prob": "0.25",
    })
    assert cfg.child.epochs == 3 and cfg.child.lr == 0.1 and cfg.child.nesterov is False
    assert cfg.child.max_batches_per_epoch is None
    assert cfg.space.filters == (16, 32, 64)
    assert schedule_tuple(cfg.search.schedule) is None
    assert cfg.data.train_subset == 1000
    assert cfg.agent_config().wider_prob == 0.25


def test_command_line_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "x.toml"
    toml.write_text('[child]\nepochs = 7\nlr = 0.5\n[search]\nagent = "random"\n')
    cmd = parse_command(["--config", str(toml), "--child.epochs", "2", "--agent", "reinforce"])
    cfg = load_config(cmd.config, cmd.overrides)
    assert cfg.child.epochs == 2  # the command line beats the file
    assert cfg.child.lr == 0.5  # the file beats the defaults
    assert cfg.search.agent == "reinforce"


def test_help_lists_every_field_with_doc_and_default(capsys: pytest.CaptureFixture) -> None:
    assert run_main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    cfg = SearchConfig()
    for section_name, section in cfg.sections().items():
        docs = field_docs(type(section))
        for f in dataclasses.fields(section):
            assert f"--{section_name}.{f.name}" in out, f"{section_name}.{f.name} missing"
            doc = docs.get(f.name)
            assert doc, f"{section_name}.{f.name} has no doc"
            assert " ".join(doc.split())[:30] in out
    assert "(default: 20)" in out  # child.epochs


@pytest.mark.parametrize(
    ("argv", "field", "allowed"),
    [
        (["--data.name", "imagenet"], "data.name", "fashion-mnist"),
        (["--child.epochs", "-1"], "child.epochs", ">= 0"),
        (["--start.epochs", "-3"], "start.epochs", ">= 0"),
        (["--start.lr", "-0.5"], "start.lr", "positive learning rate"),
        (["--agent", "no_such_agent"], "search.agent", "reinforce"),
        (["--search.schedule", "wider,sideways"], "search.schedule", "deeper"),
        (["--start.arch", "C(16,3,1), P(2,2"], "start.arch", "densenet_bc(L,k)"),
        (["--child.lr", "fast"], "child.lr", "a number"),
        (["--child.epochs", "2.5"], "child.epochs", "an integer"),
        (["--child.nesterov", "maybe"], "child.nesterov", "true or false"),
        (["--search.final_init", "magic"], "search.final_init", "scratch"),
        (["--search.backend", "mpi"], "search.backend", "process"),
        (["--data.device", "tpu"], "data.device", "cuda"),
        (["--search.no_such_field", "1"], "search.no_such_field", "children_per_step"),
        (["--nosection.x", "1"], "nosection", "search"),
    ],
)
def test_invalid_values_fail_with_one_line(argv: list[str], field: str, allowed: str,
                                           capsys: pytest.CaptureFixture) -> None:
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert field in err and allowed in err, err
    assert "Traceback" not in err


def test_wrong_type_in_toml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('[child]\nepochs = "many"\n')
    assert run_main(["--config", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "child.epochs" in err and "integer" in err
    toml.write_text("[childs]\nepochs = 1\n")
    assert run_main(["--config", str(toml)]) == 2
    assert "allowed sections" in capsys.readouterr().err


def test_config_error_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"search.stage2_networks": "-5"})
    assert info.value.field == "search.stage2_networks"


def test_cli_subprocess_exit_code_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "eas.train_controller", "--data.name", "nope"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.name" in lines[0] and "cifar10" in lines[0]


def test_custom_agent_gets_an_agent_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "my_agents.py").write_text(
        "from dataclasses import dataclass\n"
        "from eas.agents.random_search import RandomSearchAgent\n\n\n"
        "class Mine(RandomSearchAgent):\n"
        '    name = "mine"\n\n'
        "    @dataclass\n"
        "    class Config:\n"
        '        """Knobs of my agent."""\n\n'
        "        wider_prob: float = 0.5\n"
        '        """Probability of widening a layer."""\n'
        "        temperature: float = 1.0\n"
        '        """A made-up knob."""\n'
        "        clip: float | None = 0.5\n"
        '        """Optional, but not None by default."""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cmd = parse_command(["--agent", "my_agents:Mine", "--agent.temperature", "2",
                         "--agent.clip", "none"])
    cfg = load_config(None, cmd.overrides)
    assert cfg.agent_config().temperature == 2.0 and cfg.agent_config().clip is None
    saved = tmp_path / "config.toml"
    saved.write_text(dump_toml(cfg))
    assert 'clip = "none"' in saved.read_text()  # its default is not None: written out
    resumed = load_config(saved).agent_config()  # what --resume reads
    assert resumed.temperature == 2.0 and resumed.clip is None
    assert run_main(["--agent", "my_agents:Mine", "--help"]) == 0
    assert "--agent.temperature" in capsys.readouterr().out


def test_missing_dataset_stops_before_a_run_folder(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    # a --data.root that does not exist is named (and not created)
    code = run_main(["--data.name", "cifar10", "--data.root", str(tmp_path / "nothing"),
                     "--data.download", "false", "--search.runs_dir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing" in err and "Traceback" not in err
    assert not (tmp_path / "nothing").exists()
    # a root without the dataset's files: where it looked and how to get it
    (tmp_path / "empty").mkdir()
    code = run_main(["--data.name", "cifar10", "--data.root", str(tmp_path / "empty"),
                     "--data.download", "false", "--search.runs_dir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar10" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs the Debian Fashion-MNIST package")
def test_sizes_that_do_not_fit_the_dataset(capsys: pytest.CaptureFixture) -> None:
    assert run_main(["--data.train_subset", "10000000"]) == 2
    err = capsys.readouterr().err
    assert "data.train_subset" in err and "Traceback" not in err


@pytest.mark.parametrize("spelling", ["fashionmnist", "Fashion_MNIST", "fashion-mnist"])
def test_every_spelling_of_a_dataset_is_taken_the_same_everywhere(spelling: str) -> None:
    cfg = load_config(None, {"data.name": spelling})  # the config accepts what loading does
    assert dataset_key(cfg.data.name) == "fashion-mnist"
    assert dataset_facts(spelling) == dataset_facts("fashion-mnist") == ((1, 28, 28), 10)


def test_a_check_is_blamed_on_the_field_that_fails_it_not_on_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message names another field (and no field at all): the culprit is found by trying."""
    (tmp_path / "odd_agents.py").write_text(
        "from dataclasses import dataclass\n"
        "from eas.agents.random_search import RandomSearchAgent\n\n\n"
        "class Odd(RandomSearchAgent):\n"
        "    @dataclass\n"
        "    class Config:\n"
        "        wider_prob: float = 0.5\n"
        "        knob: float = 1.0\n\n"
        "        def __post_init__(self) -> None:\n"
        "            if self.knob < 0:\n"
        "                raise ValueError('wider_prob is fine; something is negative')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(None, {"search.agent": "odd_agents:Odd", "agent.wider_prob": "0.3",
                           "agent.knob": "-1"})
    assert info.value.field == "agent.knob"
    assert "something is negative" in str(info.value)
