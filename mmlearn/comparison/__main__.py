"""Report on evaluation directories already written by evaluate.py:
`python -m mmlearn.comparison DIR [DIR ...] --reference NAME --out REPORT_DIR` (names: each dir's mode)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from mmlearn import conf_dir
from mmlearn.comparison.report import write_report

# the bootstrap settings have one home, conf/compare.yaml, shared with compare.py
BOOTSTRAP = OmegaConf.load(conf_dir() / "compare.yaml").bootstrap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--names", nargs="*", help="one per dir (default: the mode in evaluation.json)")
    parser.add_argument("--reference", help="the mode differences are taken against (default: the first)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP.samples, help="resamples")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP.seed)
    args = parser.parse_args(argv)
    names = args.names or [json.loads((d / "evaluation.json").read_text())["mode"] for d in args.dirs]
    if len(names) != len(args.dirs) or len(set(names)) != len(names):
        raise SystemExit(f"need one distinct name per directory, got {names}")
    dirs = dict(zip(names, args.dirs, strict=True))
    write_report(dirs, args.reference or names[0], args.out, args.bootstrap, args.seed)
    print(f"report written to {args.out}/report.md")


if __name__ == "__main__":
    main()
