"""Does the default search beat plain training? The preset's final network against its no-search control, over seeds.

Runs ``python -m eas.train_controller`` (the default preset, or ``--config``)
once per seed with the same overrides, one run after the other, and reads
each run's ``summary.json``: the final network's validation and test
accuracy beside the no-search control's (the start architecture from scratch
for the run's whole time, ``search.control_clock``), the final network's
epochs and the run's wall-clock and CPU seconds. Reports per seed and the
mean +- std of the paired difference (final - control) with the one-sided
paired sign-flip permutation p-value of "the final network is better" (exact
enumeration for up to 16 seeds). Runs that exist under ``--out`` are read, not
run again, so a study can be extended seed by seed.

    python bench/bench_no_search.py [--seeds 1,2,3,4,5] [--threads 2]
        [--out runs/bench_no_search] [--set search.final_full_data=true ...]
        [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from eas.reports.stats import sign_flip_p  # noqa: E402


def run_seed(seed: int, out: Path, overrides: list[str], config: str | None,
             threads: int) -> dict[str, Any]:
    """One run of the preset (or reuse of a finished one); its summary.json."""
    name = f"seed{seed}"
    summary = out / name / "summary.json"
    if not summary.is_file():
        cmd = [sys.executable, "-m", "eas.train_controller", "--search.seed", str(seed),
               "--search.runs_dir", str(out), "--search.run_name", name,
               "--search.progress", "false"]
        cmd += ["--config", config] if config else []
        for item in overrides:
            key, _, value = item.partition("=")
            cmd += [f"--{key}", value]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        t0 = time.time()
        with open(out / f"{name}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


def row(seed: int, s: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run: final network and control, accuracies in %."""
    f, c = s["final"][0], s["no_search_control"]
    return {"seed": seed, "arch": f["arch"], "final_val": 100 * f["trained_val_accuracy"],
            "final_test": 100 * f["test_accuracy"], "final_epochs": f["epochs"],
            "control_val": 100 * c["val_accuracy"], "control_test": 100 * c["test_accuracy"],
            "control_epochs": c["epochs"], "wall": s["elapsed_seconds"], "cpu": s["cpu_seconds"]}


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_no_search"))
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(v) for v in args.seeds.split(",")]
    rows = [row(seed, run_seed(seed, args.out, args.set, args.config, args.threads))
            for seed in seeds]
    lines = [f"machine: {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads per run; "
             f"overrides: {' '.join(args.set) or 'none'}", "",
             "| seed | final val % | final test % | final epochs | control val % "
             "| control test % | control epochs | run (wall s / CPU s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['final_val']:.2f} | {r['final_test']:.2f} | "
                     f"{r['final_epochs']} | {r['control_val']:.2f} | {r['control_test']:.2f} | "
                     f"{r['control_epochs']} | {r['wall']:.0f} / {r['cpu']:.0f} |")
    for split in ("val", "test"):
        d = [r[f"final_{split}"] - r[f"control_{split}"] for r in rows]
        f = [r[f"final_{split}"] for r in rows]
        c = [r[f"control_{split}"] for r in rows]
        lines.append(f"\n{split}: final {np.mean(f):.2f} +- {np.std(f, ddof=min(1, len(f) - 1)):.2f}"
                     f", control {np.mean(c):.2f} +- {np.std(c, ddof=min(1, len(c) - 1)):.2f}, "
                     f"difference {np.mean(d):+.2f} +- {np.std(d, ddof=min(1, len(d) - 1)):.2f} "
                     f"points, one-sided paired sign-flip p = {sign_flip_p(d):.3f} "
                     f"({len(d)} seeds)")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
