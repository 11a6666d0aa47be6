"""Mistakes fail with the fix in the message. Hydra's own message stays; the entry points add to it: the
option or key that was probably meant (`model=qwen2-vl` -> `qwen2vl`, `optimizer.learning_rate` ->
`optimizer.lr`), every `???` value at once before anything heavy is imported, and, for a dataset or a
checkpoint that is not there, the setting that points at it."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from mmlearn import conf_dir

CONF = conf_dir()
FILE_KEYS = re.compile(r"(_file|_files|_dir)$")
_job_started = False  # Hydra composed the config and ran the job: its own error says what failed


class MissingValues(ValueError):
    """Config values left `???` (mandatory, no default), all named."""


def closest(word: str, choices: Iterable[str]) -> list[str]:
    """What `word` probably meant: the same once `-`/`_` are dropped, its initials (`learning_rate` ->
    `lr`), or a close spelling."""
    choices = sorted(set(choices))

    def squash(text: str) -> str:
        return re.sub(r"[-_]", "", text.lower())

    def initials(text: str) -> str:
        return "".join(part[0] for part in re.split(r"[-_]", text.lower()) if part)

    same = [c for c in choices if squash(c) == squash(word) or initials(word) == c or initials(c) == word]
    near = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return list(dict.fromkeys(same + near))[:3]


def group_options(group: str) -> list[str]:
    folder = CONF / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def _parsed(argv: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mmlearn.compat.hydra import command_line_overrides

    return OverridesParser.create().parse_overrides(command_line_overrides(argv))


def _values(override) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name, overrides=overrides)


# keys that moved to another home: old name -> new name (a user's muscle memory, or an old script)
MOVED = {"extra_new_tokens": "decoding.extra_new_tokens"}


def _key_hint(cfg: DictConfig, key: str) -> str | None:
    """For a key the config lacks: where it moved, or the deepest part that exists and what its next
    part may have meant."""
    if key in MOVED:
        return f"{key} moved: it is {MOVED[key]} now"
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            where = ".".join(parts[:depth])
            keys = list(node.keys()) if isinstance(node, DictConfig) else []
            prefix = f"{where}." if where else ""
            guesses = [f"{prefix}{g}" for g in closest(part, keys)]
            if guesses:
                return f"{key} is not a config key: did you mean {' or '.join(guesses)}?"
            return f"{key} is not a config key; {where or 'the config'} has: {', '.join(map(str, keys))}"
        node = OmegaConf.select(node, part, throw_on_missing=False, throw_on_resolution_failure=False)
        node = node if isinstance(node, DictConfig | ListConfig) else None
    return None


def command_line_hints(config_name: str, argv: list[str]) -> list[str]:
    """What each override that Hydra refused probably meant, and every value left `???`."""
    try:
        overrides = _parsed(argv)
    except Exception:  # Hydra has reported the syntax error itself
        return []
    hints, choices, keys = [], [], []
    for override in overrides:
        name = override.key_or_group
        if name.startswith("hydra") or override.is_add() or override.is_force_add():
            continue
        if (CONF / name).is_dir():
            options = group_options(name)
            unknown = [v for v in _values(override) if v not in options and v != "null"]
            for value in unknown:
                guesses = closest(value, options)
                fix = f"did you mean {' or '.join(f'{name}={g}' for g in guesses)}?" if guesses else ""
                hints.append(f"{name}={value} is not an option; {fix or 'options: ' + ', '.join(options)}")
            if not unknown and not override.is_delete():
                choices.append(f"{name}={_values(override)[0]}")
        else:
            keys.append(name)
    try:
        cfg = _compose(config_name, choices)
    except Exception:
        return hints
    hints += [hint for key in keys if (hint := _key_hint(cfg, key))]
    missing = missing_keys(cfg, skip=("modes",) if config_name == "compare" else ())
    if missing:
        hints.append(str(_missing_error(missing)))
    return hints


def run_with_hints(main: Callable[[], object], config_name: str) -> None:
    """Run a `@hydra.main` entry point; when it fails, print what each refused setting probably meant
    below Hydra's own message."""
    try:
        main()
    except (SystemExit, Exception) as failure:  # Hydra exits 1 after its message, or raises (hydra.run.dir)
        if getattr(failure, "code", 1) and not _job_started:
            for hint in command_line_hints(config_name, sys.argv[1:]):
                print(f"mmlearn: {hint}", file=sys.stderr)
        raise


def missing_keys(cfg: DictConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """Every key whose value is `???`, in config order (`skip`: top-level keys checked elsewhere)."""
    found: list[str] = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif node == "???":
            found.append(where)

    container = OmegaConf.to_container(cfg, resolve=False)
    walk({k: v for k, v in container.items() if k not in skip}, "")
    return found


def _missing_error(keys: list[str]) -> MissingValues:
    example = " ".join(f"{k}=<value>" for k in keys[:3])
    return MissingValues(f"{', '.join(keys)} must be set (no default): add e.g. {example}")


def check_missing(cfg: DictConfig, skip: tuple[str, ...] = ()) -> None:
    keys = missing_keys(cfg, skip)
    if keys:
        raise _missing_error(keys)


def _select(cfg: DictConfig, key: str):
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:  # an interpolation that cannot resolve here: no hint from it
        return None


def _paths(value) -> str:
    if isinstance(value, DictConfig | dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def dataset_hint(cfg: DictConfig, error: OSError) -> str | None:
    """A file the data config points at is missing: which setting points there and what it reads."""
    data = _select(cfg, "data")
    if not isinstance(data, DictConfig) or data.get("root", "") is None:
        return None
    text = f"{error} {getattr(error, 'filename', '') or ''}"
    root = _select(cfg, "data.root")
    if root and str(root) in text:
        expected = [f"{k}={_paths(_select(cfg, f'data.{k}'))}" for k in data if FILE_KEYS.search(str(k))]
        expected = [e.replace(f"{root}/", "") for e in expected if not e.endswith("=None")]
        where = f"MMLEARN_DATA_DIR={os.environ['MMLEARN_DATA_DIR']}" if "MMLEARN_DATA_DIR" in os.environ else (
            f"paths.data_dir={_select(cfg, 'paths.data_dir')}; MMLEARN_DATA_DIR is not set"
        )  # fmt: skip
        reads = f"; data={data.get('name')} reads {', '.join(expected)} there" if expected else ""
        return (
            f"data.root={root} ({where}) does not hold the dataset: set data.root=<its download folder>"
            f" or MMLEARN_DATA_DIR=<the folder holding {Path(str(root)).name}/>{reads}"
        )
    named = [
        k for k in data if FILE_KEYS.search(str(k)) and (v := _select(cfg, f"data.{k}")) and str(v) in text
    ]
    if named:
        return f"set {' / '.join(f'data.{k}' for k in named)} to an existing path"
    return None


def checkpoint_hint(cfg: DictConfig, error: OSError) -> str | None:
    """A hub checkpoint that could not be fetched (offline, not in the cache): how to point at one."""
    pretrained = _select(cfg, "model.pretrained")
    if not pretrained or Path(str(pretrained)).is_dir():
        return None
    text = str(error)
    if str(pretrained) not in text and "huggingface.co" not in text and "offline" not in text.lower():
        return None
    offline = "HF_HUB_OFFLINE=1, " if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
    return (
        f"model.pretrained={pretrained} could not be loaded ({offline}not in the Hugging Face cache): "
        f"download it once with network (`hf download {pretrained}`), or set model.pretrained=<local dir> "
        "(a saved checkpoint directory with config.json)"
    )


@contextmanager
def explained(cfg: DictConfig, skip: tuple[str, ...] = ()) -> Iterator[None]:
    """Inside an entry point: every `???` named before the work starts; a missing dataset or checkpoint
    gets the setting that points at it added to the error. Library notices that do not concern the run
    are dropped first (mmlearn.logging_setup)."""
    global _job_started
    _job_started = True
    check_missing(cfg, skip)
    from mmlearn.logging_setup import quiet_libraries

    quiet_libraries(cfg)
    try:
        yield
    except OSError as error:
        hint = dataset_hint(cfg, error) or checkpoint_hint(cfg, error)
        if hint:
            _add_note(error, hint)
        raise


def _add_note(error: BaseException, hint: str) -> None:
    if hasattr(error, "add_note"):  # Python 3.11+: printed under the message
        error.add_note(f"mmlearn: {hint}")
    else:
        print(f"mmlearn: {hint}", file=sys.stderr)
