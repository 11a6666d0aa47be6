"""How well the demo learns, across seeds, thread counts, CPU kernels and length grouping.

    python benchmarks/demo_quality.py --out demo_quality.json [--seeds 0 1 2 3 4] [--threads 1 2]
        [--group-by-length true false] [--capability default avx2] [--parallel 2]

Each cell is the README's main job, `python train.py experiment=demo`, run as a user runs it (its own
process, its own run directory) with `seed=<s> data.group_by_length=<g>` and `OMP_NUM_THREADS=<t>`
(and `ATEN_CPU_CAPABILITY=<c>` where given: torch's CPU kernels; `--override` adds overrides to every
run, to try another demo configuration). The figures are `test/f1_macro` per
run and its mean / min / max per grouping setting; the README's promise (>= 0.90) must hold for every
run, with room to spare.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMISE = 0.90


def run_cell(
    workdir: Path, seed: int, threads: int, grouped: bool, capability: str | None, extra: tuple[str, ...]
) -> dict:
    name = f"s{seed}-t{threads}-g{int(grouped)}" + (f"-{capability}" if capability else "")
    name += "".join(f"-{o.replace('/', '_')}" for o in extra)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("MMLEARN_CACHE_DIR", str(workdir / "cache"))
    env.setdefault("MMLEARN_DATA_DIR", str(workdir / "data"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    run_dir = workdir / "runs" / name
    if not (run_dir / "metrics.json").is_file():  # a finished cell of an earlier call is reused
        _train(run_dir, seed, grouped, env, extra)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {
        "seed": seed,
        "threads": threads,
        "group_by_length": grouped,
        "capability": capability or "machine",
        "overrides": list(extra),
        "test/f1_macro": metrics["test/f1_macro"],
        "val/f1_macro_best": metrics["val/f1_macro_best"],
    }
    print(json.dumps(row), flush=True)
    return row


def _train(run_dir: Path, seed: int, grouped: bool, env: dict, extra: tuple[str, ...]) -> None:
    command = [
        sys.executable,
        "train.py",
        "experiment=demo",
        "logger=csv",
        f"seed={seed}",
        f"data.group_by_length={str(grouped).lower()}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{run_dir.name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for grouped in sorted({r["group_by_length"] for r in rows}):
        scores = [r["test/f1_macro"] for r in rows if r["group_by_length"] == grouped]
        summary[f"group_by_length={str(grouped).lower()}"] = {
            "runs": len(scores),
            "mean": statistics.fmean(scores),
            "stdev": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "min": min(scores),
            "max": max(scores),
            "margin_over_promise": min(scores) - PROMISE,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--group-by-length", nargs="+", default=["true", "false"], choices=["true", "false"])
    parser.add_argument("--capability", nargs="+", default=[None], help="ATEN_CPU_CAPABILITY values")
    parser.add_argument(
        "--override", nargs="*", default=[], help="more overrides, e.g. trainer.max_epochs=20"
    )
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (mind the cores)")
    parser.add_argument("--workdir", type=Path, default=None, help="finished runs in it are reused")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mmlearn-demo-quality-"))
    cells = list(
        itertools.product(
            args.seeds,
            args.threads,
            [g == "true" for g in args.group_by_length],
            args.capability,
            [tuple(args.override)],
        )
    )
    # the first run builds the tiny model and the demo data; the rest reuse them
    rows = [run_cell(workdir, *cells[0])]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        rows += list(pool.map(lambda cell: run_cell(workdir, *cell), cells[1:]))
    result = {"promise": PROMISE, "runs": rows, "summary": summarize(rows)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
