"""Retries on the record: a child whose worker process dies, or whose Ray node is lost, is
retried; the search finishes with the fault-free children (nothing lost or duplicated),
and the retry is one line in the search's log, on the child's record (journal, history,
summary.json) and in TensorBoard's ``charts/retries`` counter."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from helpers import cheap_config
from ray_local import START_TIMEOUT, import_ray
from retry_helpers import FaultOnceEvaluator
from test_parallel import _nets

from eas.envs.journal import Journal
from eas.envs.parallel import RETRY_LOG, ParallelEvaluator
from eas.search.loop import run_search

pytestmark = pytest.mark.slow
TIMEOUT = 300.0
"""Seconds one child may take before its worker counts as hung (a busy 2-core machine)."""
TESTS = str(Path(__file__).parent)
ROOT = str(Path(__file__).parent.parent)


def search_config(tmp_path: Path, name: str):
    """A data-free search: 3 rounds of 2 children, each child trained by the evaluator."""
    return cheap_config(tmp_path, **{"search.run_name": name, "search.cache": "false",
                                     "search.children_per_step": "2",
                                     "search.stage1_networks": "4",
                                     "search.stage2_networks": "2",
                                     "search.parent_control": "false"})


def fault_free_children(tmp_path: Path) -> list[tuple[int, str, float]]:
    base = FaultOnceEvaluator(str(_folder(tmp_path, "clean")), "none", after=0, delay=0.0)
    out = run_search(search_config(tmp_path, "clean"), evaluator=base, log=lambda _: None)
    return [(h["step"], h["arch"], h["accuracy"]) for h in out.state.history]


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"{name}_marks"
    folder.mkdir()
    return folder


def tensorboard_values(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def assert_retry_on_the_record(run_dir: Path, lines: list[str], expect: list, marks: Path,
                               reasons: tuple[str, ...]) -> None:
    """Exactly one child took two tries, for one of ``reasons``; the rest is the fault-free
    search."""
    summary = json.loads((run_dir / "summary.json").read_text())
    history = summary["history"]
    assert [(h["step"], h["arch"], h["accuracy"]) for h in history] == expect
    retried = [h for h in history if h["attempts"] != 1]
    assert len(retried) == 1 and retried[0]["attempts"] == 2 and not retried[0]["failed"]
    assert retried[0]["round"] == 2  # the first try to start after round 1's two children
    assert len(retried[0]["retried"]) == 1
    assert any(reason in retried[0]["retried"][0] for reason in reasons), retried[0]["retried"]
    victim = retried[0]["arch"]
    assert victim in (marks / "victim").read_text()
    assert all(h["retried"] == [] for h in history if h is not retried[0])
    assert summary["retries"] == {"children": 1, "failed_attempts": 1}
    # the log: one line, when it happened, naming the child
    told = [line for line in lines if line.startswith("retrying child")]
    assert len(told) == 1 and told[0].startswith(f"retrying child {victim} (attempt 1 failed")
    assert any(reason in told[0] for reason in reasons)
    # every child's training finished exactly once (the killed try never finished)
    done = (marks / "done").read_text().split("\n")[:-1]
    assert sorted(done) == sorted(h["arch"] for h in history)
    # TensorBoard: the counter of failed tries, per round
    assert tensorboard_values(run_dir, "charts/retries") == [0.0, 1.0, 1.0]


def test_process_worker_killed_mid_search(tmp_path: Path, caplog) -> None:
    expect = fault_free_children(tmp_path)
    marks = _folder(tmp_path, "killed")
    base = FaultOnceEvaluator(str(marks), "kill", after=2)  # in round 2
    lines: list[str] = []
    with caplog.at_level("WARNING"), ParallelEvaluator(
            base, workers=2, backend="process", device="cpu", child_timeout=TIMEOUT) as ev:
        out = run_search(search_config(tmp_path, "killed"), evaluator=ev, log=lines.append)
    assert_retry_on_the_record(out.run_dir, lines, expect, marks, ("died (SIGKILL)",))
    # during the search the line went to the search's log only, not also to the root logger
    assert not [r for r in caplog.records if r.name == "eas.envs.parallel"]
    assert RETRY_LOG.propagate and not RETRY_LOG.handlers  # as it was before the search
    # the journal keeps the attempts of a child the moment it is trained
    marks = _folder(tmp_path, "journal")
    journal = Journal(tmp_path / "journal",
                      ParallelEvaluator(FaultOnceEvaluator(str(marks), "kill", after=0),
                                        workers=1, backend="process", device="cpu",
                                        child_timeout=TIMEOUT))
    try:
        first = journal.evaluate_many(_nets()[:2])
    finally:
        journal.base.close()
    reread = Journal(tmp_path / "journal", lambda net: pytest.fail("not from the journal"))
    again = reread.evaluate_many(_nets()[:2])
    assert sorted(r.attempts for r in first) == [1, 2]
    assert [(r.attempts, r.retried) for r in again] == [(r.attempts, r.retried) for r in first]


def test_ray_node_lost_mid_search(tmp_path: Path) -> None:
    """A 3-node local Ray cluster (head without CPUs, two 1-CPU workers); a worker node is
    removed while it trains a child; that child is retried on the other node."""
    ray = import_ray()
    from ray.cluster_utils import Cluster

    expect = fault_free_children(tmp_path)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    fast_death = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                  "health_check_failure_threshold": 3}
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "_system_config": fast_death})
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes(timeout=START_TIMEOUT)
        ray.init(address=cluster.address, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS, ROOT])}})
    except Exception as exc:  # noqa: BLE001 - cannot run a Ray cluster here at all
        pytest.skip(f"a local Ray cluster cannot start here: {type(exc).__name__}: {exc}")
    marks = _folder(tmp_path, "ray")
    removed: list[str] = []

    def remove_the_victims_node() -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not (marks / "victim").is_file():
            time.sleep(0.2)
        text = (marks / "victim").read_text() if (marks / "victim").is_file() else ""
        node_id = text.split("\n", 1)[0]
        for node in nodes:
            if node.node_id == node_id:
                cluster.remove_node(node, allow_graceful=False)
                removed.append(node_id)

    killer = threading.Thread(target=remove_the_victims_node, daemon=True)
    killer.start()
    lines: list[str] = []
    try:
        base = FaultOnceEvaluator(str(marks), "node", after=2)
        with ParallelEvaluator(base, workers=2, backend="ray", device="cpu",
                               ray_address=cluster.address, child_timeout=TIMEOUT) as ev:
            out = run_search(search_config(tmp_path, "ray"), evaluator=ev, log=lines.append)
        killer.join(5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(removed) == 1  # the node was lost mid-search
    # Ray reports the lost node (or, first, the worker that died with it)
    assert_retry_on_the_record(out.run_dir, lines, expect, marks,
                               ("NodeDiedError", "WorkerCrashedError"))
