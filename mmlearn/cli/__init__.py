"""`mmlearn <sub-command> ...`, the console command (pyproject.toml's [project.scripts]). A Hydra
sub-command takes exactly the overrides and flags of the root script of its name: `mmlearn train
experiment=demo` is `python train.py experiment=demo`, from any directory (configs: `pkg://mmlearn.conf`).

Adding a sub-command: a line in COMMANDS and a module whose `command()` runs it from `sys.argv[1:]`
(a Hydra one: `main, command = hydra_command(job, "<config name>")`, see mmlearn/cli/app.py)."""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple


class Command(NamedTuple):
    module: str  # holds `command()`
    summary: str  # its line in `mmlearn --help`


COMMANDS: dict[str, Command] = {
    "train": Command("mmlearn.cli.train", "fine-tune a model"),
    "evaluate": Command("mmlearn.cli.evaluate", "evaluate a run, or a base model zero-/few-shot"),
    "compare": Command("mmlearn.cli.compare", "zero-shot, few-shot and fine-tuned in one report"),
    "export": Command("mmlearn.cli.export", "export a run: its adapter, or a merged model"),
    "serve": Command("mmlearn.cli.serve", "serve a run over HTTP (classify, OpenAI chat, a web page)"),
    "predict": Command("mmlearn.cli.predict", "answers for new rows or images from a run"),
    "caption": Command("mmlearn.cli.caption", "caption every image of a dataset into a captions CSV"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items()]
    return "\n".join(
        [
            "usage: mmlearn <sub-command> [Hydra overrides and flags: --cfg job, -m, --help, ...]",
            "",
            "sub-commands:",
            *lines,
            "",
            "`mmlearn <sub-command> --help` lists its config groups and examples.",
        ]
    )


def unknown(name: str) -> str:
    from mmlearn.cli_errors import closest

    guesses = closest(name, COMMANDS)
    fix = f" (did you mean {' or '.join(guesses)}?)" if guesses else ""
    return f"mmlearn: unknown sub-command {name!r}; choose from {', '.join(COMMANDS)}{fix}"


def main(argv: list[str] | None = None) -> None:
    """Run `mmlearn <sub-command> ...`: the sub-command sees the rest of the command line as its own."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        raise SystemExit(0 if args else 2)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(unknown(name), file=sys.stderr)
        print(usage(), file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"mmlearn {name}", *rest]
    importlib.import_module(COMMANDS[name].module).command()
