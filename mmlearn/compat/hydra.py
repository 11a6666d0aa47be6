"""Hydra internals: reading a command line the way Hydra's `@hydra.main` does (mmlearn/cli_errors.py)."""

from __future__ import annotations

import argparse


def command_line_overrides(argv: list[str]) -> list[str]:
    """The overrides (`key=value`, `group=option`, ...) of a command line, parsed by
    `hydra._internal.utils.get_args_parser()` (checked with hydra-core 1.3.8), the parser `@hydra.main` uses, so that
    flags taking a value (`-c job`, `-cn name`, `-i defaults`, ...) are never read as overrides.
    Fallback: the same flags as hydra-core 1.3.8 declares, parsed here."""
    try:
        from hydra._internal.utils import get_args_parser
    except ImportError:
        parser = _hydra_1_3_parser()
    else:
        parser = get_args_parser()
    args, _ = parser.parse_known_args(argv)
    return list(args.overrides or [])


def _hydra_1_3_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("overrides", nargs="*")
    switches = [("--help", "-h"), ("--hydra-help",), ("--version",), ("--resolve",), ("--run", "-r")]
    for flags in [*switches, ("--multirun", "-m"), ("--shell-completion", "-sc")]:
        parser.add_argument(*flags, action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    for flags in [("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn")]:
        parser.add_argument(*flags)
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", const="all", nargs="?")
    return parser
