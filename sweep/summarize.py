"""Summarise a Hydra multirun: `python sweep/summarize.py runs/train/multirun/<time> [--metric M --x K --y K]`.

Writes summary.csv, summary.md and heatmap.png into the multirun directory (logic: mmlearn/sweeps.py)."""

import argparse
from pathlib import Path

from mmlearn.sweeps import summarize


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument(
        "--metric", help="heatmap metric (default: <optimized_metric>_best, else test/<monitor>)"
    )
    parser.add_argument("--x", help="swept key on the x axis (default: the first swept key)")
    parser.add_argument("--y", help="swept key on the y axis (default: the second swept key)")
    args = parser.parse_args(argv)
    summarize(args.multirun_dir, metric=args.metric, x=args.x, y=args.y)
    print((args.multirun_dir / "summary.md").read_text(), end="")
    for name in ("summary.csv", "summary.md", "heatmap.png"):
        if (args.multirun_dir / name).exists():
            print(f"wrote {args.multirun_dir / name}")


if __name__ == "__main__":
    main()
