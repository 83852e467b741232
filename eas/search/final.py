"""Finishing a search: the final training of the best networks and the no-search control.

* :func:`final_training` trains the top ``search.final_top_k`` architectures
  once more and measures their test accuracy. With ``search.final_patience``
  set it trains them until validation accuracy stops improving
  (:func:`eas.plateau.train_to_plateau`: cosine cycles of ``final_epochs``,
  then ``final_growth`` times longer each, the best cycle's weights kept),
  within ``final_max_epochs`` and ``final_budget_share`` x the search's
  seconds; without it, one fixed run of ``final_epochs`` (the paper's "further
  train", on train + validation with ``final_full_data``).
* :func:`no_search_control` (``search.no_search_control``) asks the question
  every NAS user asks first: would plain training have done better? It trains
  the start architecture from scratch with the start's recipe (one cosine run)
  for the run's whole wall-clock so far (start, search and final training;
  ``search.control_seconds`` overrides it) and reports its validation and test
  accuracy beside the final network's. The budget is turned into epochs by the
  epoch-equivalent rule (:func:`eas.plateau.epochs_for_seconds`) at the rate
  measured on a throwaway copy just before (:func:`measure_epoch_seconds`:
  the difference of a 40- and an 80-batch run, so the validation pass each
  training call ends with is not counted as training; its cost is taken from
  the budget).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from eas.checkpoint import network_from_record, save_network
from eas.data import Data, input_contract
from eas.network import build_network
from eas.plateau import epochs_for_seconds, train_to_plateau
from eas.recipe import TrainConfig
from eas.search.callbacks import SearchCallback
from eas.search.recipes import final_recipe
from eas.search.state import SearchRun, pct, save_progress
from eas.training import final_train, train_child

__all__ = ["final_training", "format_control", "measure_epoch_seconds", "no_search_control"]

_TIMED_BATCHES = 40
"""Batches timed (after a short warm-up) to measure an architecture's seconds per epoch."""


def final_training(run: SearchRun, callbacks: SearchCallback) -> None:
    """Train the top ``final_top_k`` networks (plateau rule or ``final_epochs``); test them.

    They start from their searched weights (``final_init = "weights"``, the
    paper's "further train") or from scratch. Networks already done (resumed
    run) are skipped. ``state.search_seconds`` records the run's seconds before
    the first final training (the base of ``final_budget_share``).
    """
    cfg, s, state, seed = run.cfg, run.cfg.search, run.state, int(run.cfg.search.seed)
    if s.final_top_k <= 0 or s.final_epochs <= 0:
        return
    if state.search_seconds is None:
        state.search_seconds, state.search_cpu_seconds = run.elapsed(), run.cpu_elapsed()
    done_archs = {f["arch"] for f in state.final}
    final_cfg = final_recipe(cfg, run.agent, run.log)
    for k, rec in enumerate(state.best[: s.final_top_k], 1):
        if rec["arch"] in done_archs:
            continue
        if s.final_init == "scratch":
            net = build_network(rec["arch"], run.input_shape, dropout=cfg.start.dropout,
                                seed=seed)
        else:
            net = network_from_record(rec["network"])
        wall, cpu = time.time(), time.process_time()
        data = run.get_data(full=s.final_full_data)
        entry: dict[str, Any] = {"rank": k, "arch": rec["arch"], "val_accuracy": rec["accuracy"],
                                 "init": s.final_init}
        if s.final_patience is None:
            run.log(f"final training of #{k} ({final_cfg.epochs} epochs, {s.final_init}): "
                    f"{rec['arch']}")
            res = final_train(net, data, final_cfg,
                              device=run.device, seed=seed, progress=s.progress)
            entry.update(test_accuracy=res.test_accuracy, failed=res.failed, reason=res.reason,
                         epochs=final_cfg.epochs, train_time=res.train_time)
        else:
            cpu_clock = s.control_clock == "cpu"
            base = state.search_cpu_seconds if cpu_clock else state.search_seconds
            limit = (None if s.final_budget_share is None
                     else float(s.final_budget_share) * float(base))
            run.log(f"final training of #{k} until validation accuracy plateaus (cycles of "
                    f"{s.final_epochs} epochs x{s.final_growth:g}, patience {s.final_patience}"
                    f"{'' if limit is None else f', at most {limit:.0f} {_unit(cpu_clock)}'}, "
                    f"{s.final_init}): "
                    f"{rec['arch']}")
            plat = train_to_plateau(
                net, data, final_cfg,
                first_epochs=s.final_epochs, growth=float(s.final_growth),
                patience=int(s.final_patience), min_delta=float(s.final_min_delta),
                max_epochs=s.final_max_epochs, max_seconds=limit, device=run.device, seed=seed,
                progress=s.progress, log=run.log,
                clock=time.process_time if cpu_clock else None)
            entry.update(test_accuracy=plat.test_accuracy, failed=plat.failed,
                         reason=plat.reason, epochs=plat.epochs, train_time=plat.train_time,
                         trained_val_accuracy=plat.val_accuracy, best_epochs=plat.best_epochs,
                         stopped_by=plat.stopped_by, cycles=plat.cycles)
        net.cpu()
        entry["seconds"], entry["cpu_seconds"] = time.time() - wall, time.process_time() - cpu
        state.final.append(entry)
        save_network(net, run.run_dir / f"final_{k}.pt", input=_contract(data), **{
            key: v for key, v in entry.items() if key != "cycles"})
        test_error = None if entry["test_accuracy"] is None else 1 - entry["test_accuracy"]
        run.log(f"  final training failed: {entry['reason']}" if entry["failed"] else
                f"  test accuracy {pct(entry['test_accuracy'])} (test error {pct(test_error)}) "
                f"after {entry['epochs']} epochs, {entry['seconds']:.0f}s")
        save_progress(run)
        callbacks.on_final_network(run, entry)


def measure_epoch_seconds(net: Any, data: Data, recipe: TrainConfig, *, device: Any = None,
                          seed: int = 0, batches: int = _TIMED_BATCHES,
                          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds (of ``clock``) one full epoch of ``recipe`` takes for ``net`` (on a throwaway copy).

    A few warm-up batches first (first-call costs), then two timed runs of
    ``batches`` and ``2 * batches`` batches: their difference is the cost of
    ``batches`` batches without the per-call costs (setup and the validation
    pass that every :func:`eas.training.train_child` call ends with), scaled to
    the epoch's number of batches. ``clock=time.process_time`` counts this
    process's CPU seconds instead of wall-clock ones.
    """
    steps = max(1, len(data.train_y) // min(recipe.batch_size, max(1, len(data.train_y))))
    batches = max(1, min(batches, steps // 2))
    probe = copy.deepcopy(net)
    warm = dataclasses.replace(recipe, epochs=1, max_batches_per_epoch=min(3, steps))
    train_child(probe, data, warm, device=device, seed=seed)
    took = []
    for n in (batches, 2 * batches):
        t0 = clock()
        train_child(probe, data, dataclasses.replace(recipe, epochs=1, max_batches_per_epoch=n),
                    device=device, seed=seed)
        took.append(clock() - t0)
    per_batch = (took[1] - took[0]) / batches
    if per_batch <= 0:  # a noisy clock: fall back to the longer run, per-call costs included
        per_batch = took[1] / (2 * batches)
    return max(per_batch, 1e-9) * steps


def no_search_control(run: SearchRun, callbacks: SearchCallback) -> None:
    """The start architecture trained from scratch for the run's seconds (``search.no_search_control``).

    Stores ``state.no_search_control`` (budget, epochs, val/test accuracy,
    seconds) and tells ``callbacks.on_no_search_control``. Done once per run.
    """
    cfg, s, state, seed = run.cfg, run.cfg.search, run.state, int(run.cfg.search.seed)
    if not s.no_search_control or state.no_search_control is not None or not state.starts:
        return
    cpu_clock = s.control_clock == "cpu"
    clock = time.process_time if cpu_clock else time.time
    budget = (float(s.control_seconds) if s.control_seconds is not None
              else run.cpu_elapsed() if cpu_clock else run.elapsed())
    arch = state.starts[0]["arch"]
    data = run.get_data(full=s.final_full_data)
    wall, cpu, began = time.time(), time.process_time(), clock()
    net = build_network(arch, run.input_shape, dropout=cfg.start.dropout, seed=seed)
    recipe = cfg.start.recipe(cfg.child, 1)
    epoch_s = measure_epoch_seconds(net, data, recipe, device=run.device, seed=seed, clock=clock)
    epochs = epochs_for_seconds(budget - (clock() - began), epoch_s)
    run.log(f"no-search control: the start architecture from scratch for {budget:.0f} "
            f"{_unit(cpu_clock)} "
            f"(~{epoch_s:.2f} per epoch -> {epochs} epochs, start recipe): {arch}")
    res = train_child(net, data, dataclasses.replace(recipe, epochs=epochs), device=run.device,
                      seed=seed, progress=s.progress, eval_on="test")
    net.cpu()
    entry = {"arch": arch, "budget_seconds": budget, "epoch_seconds": epoch_s, "epochs": epochs,
             "val_accuracy": None if res.failed else res.val_accuracy,
             "test_accuracy": None if res.failed else res.test_accuracy,
             "clock": s.control_clock, "train_time": res.train_time,
             "seconds": time.time() - wall, "cpu_seconds": time.process_time() - cpu,
             "failed": res.failed, "reason": res.reason}
    state.no_search_control = entry
    save_network(net, run.run_dir / "no_search_control.pt", input=_contract(data), **entry)
    run.log(f"  no-search control: val acc {pct(entry['val_accuracy'])}, test acc "
            f"{pct(entry['test_accuracy'])} in {entry['seconds']:.0f}s")
    save_progress(run)
    callbacks.on_no_search_control(run, entry)


def format_control(final: list[dict[str, Any]], control: dict[str, Any] | None,
                   search_seconds: float | None, search_cpu_seconds: float | None = None) -> str:
    """The final network(s) beside the no-search control: accuracies, epochs, wall and CPU seconds.

    A final network's seconds are the search's plus its own final training.
    """
    if control is None and not final:
        return ""
    lines = ["                     val acc %  test acc %  epochs  seconds  CPU seconds",
             "-" * 71]

    def total(base: float | None, own: Any) -> str:
        return "-" if base is None or own is None else f"{base + float(own):.0f}"

    for f in final:
        lines.append(f"final network #{f['rank']:<5} {_p(f.get('trained_val_accuracy')):>9}  "
                     f"{_p(f.get('test_accuracy')):>10}  {f.get('epochs', '-'):>6}  "
                     f"{total(search_seconds, f.get('seconds')):>7}  "
                     f"{total(search_cpu_seconds, f.get('cpu_seconds')):>11}  "
                     "(search + final training)")
    if control is not None:
        lines.append(f"no-search control     {_p(control.get('val_accuracy')):>9}  "
                     f"{_p(control.get('test_accuracy')):>10}  {control['epochs']:>6}  "
                     f"{control['seconds']:>7.0f}  {control.get('cpu_seconds', 0):>11.0f}  "
                     f"(start architecture from scratch, equal {control.get('clock', 'wall')} "
                     "time)")
    return "\n".join(lines)


def _contract(data: Any) -> dict[str, Any] | None:
    """What the saved network expects as input (:func:`eas.data.input_contract`), if known."""
    return input_contract(data) if isinstance(data, Data) else None


def _unit(cpu_clock: bool) -> str:
    """How a budget in seconds of ``search.control_clock`` is printed."""
    return "CPU seconds" if cpu_clock else "s"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"
