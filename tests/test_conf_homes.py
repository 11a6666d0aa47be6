"""One home per knob in conf/: a literal key/value pair that every sibling option file repeats belongs in
their shared base (conf/model_common.yaml, conf/model_tiny_common.yaml, conf/common.yaml), and no file
sets a value its `defaults:` already give it."""

from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF


def _all(path: Path) -> bool:
    return True


def _standalone(path: Path) -> bool:
    """Not derived from a sibling (demo.yaml from csv.yaml): a derived file gets the shared keys from
    its parent, so "every sibling" would never hold and the check would prove nothing."""
    entries = [e for e in read(path).get("defaults", []) if isinstance(e, str) and e != "_self_"]
    return not any((path.parent / f"{e.split('@')[0]}.yaml").is_file() for e in entries if "/" not in e)


# name: (folder under conf/, which of its *.yaml files are siblings). A group joins once it is clean.
# Not listed: conf/modality (each file names its `_target_`) and conf/hparams_search (each file sets
# hydra.mode: MULTIRUN). conf/data's loader and input keys live in conf/data/loader/ and conf/data/inputs/.
SIBLINGS = {
    "model": ("model", lambda p: not p.stem.endswith("_tiny")),
    "model tiny presets": ("model", lambda p: p.stem.endswith("_tiny")),
    "decoding": ("decoding", _all),
    "logger": ("logger", _all),
    "peft": ("peft", _all),
    "trainer": ("trainer", _all),
    "data": ("data", _standalone),
    "train and evaluate": (".", lambda p: p.stem in ("train", "evaluate")),
}
# files whose `defaults:` name other files (not groups): none may restate what those give
DERIVED = ["model/*.yaml", "data/*.yaml", "compare.yaml"]


def leaves(node: dict, prefix: str = ""):
    """(dotted key, value) of every literal; a list or an empty mapping is one value."""
    for key, value in node.items():
        if not prefix and key == "defaults":
            continue
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", yaml.safe_dump(value)


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def repeated_in_every_file(files: list[Path]) -> dict[str, str]:
    """The key/value pairs all `files` set to the same literal (none for fewer than two files)."""
    if len(files) < 2:
        return {}
    common = set(leaves(read(files[0])))
    for path in files[1:]:
        common &= set(leaves(read(path)))
    return dict(sorted(common))


def inherited(path: Path) -> dict:
    """What a file's `defaults:` entries that name files (`qwen2vl`, `/model_common@_here_`) give it,
    merged in order; group choices (`- data: demo`) and `_self_` are skipped."""
    merged: dict = {}
    for entry in read(path).get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        name = entry.split("@")[0]
        parent = CONF / f"{name[1:]}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml"
        merged.update(dict(leaves(inherited(parent))))
        merged.update(dict(leaves(read(parent))))
    return merged


def restated(path: Path) -> dict[str, str]:
    base = inherited(path)
    return {key: value for key, value in leaves(read(path)) if base.get(key) == value}


def _sibling_files(name: str) -> list[Path]:
    folder, selected = SIBLINGS[name]
    return sorted(p for p in (CONF / folder).glob("*.yaml") if selected(p))


@pytest.mark.parametrize("name", sorted(SIBLINGS))
def test_no_literal_is_repeated_by_every_sibling(name):
    files = _sibling_files(name)
    assert len(files) >= 2, f"{name}: {files}"
    repeated = repeated_in_every_file(files)
    assert not repeated, f"{name}: every one of {[p.name for p in files]} sets {repeated}: give it one home"


def _derived_files() -> list[Path]:
    files = sorted({p for pattern in DERIVED for p in CONF.glob(pattern) if read(p).get("defaults")})
    assert len(files) >= 8  # the tiny presets and compare.yaml at least
    return files


@pytest.mark.parametrize("path", _derived_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_no_file_restates_what_its_defaults_give(path):
    assert not restated(path), f"{path.name} sets what its defaults already give: {restated(path)}"


def test_the_checks_see_a_repeated_knob(tmp_path):
    """The helpers flag a pair every sibling repeats and a value a derived file restates."""
    (tmp_path / "base.yaml").write_text("a: 1\nb: {c: x}\n")
    (tmp_path / "one.yaml").write_text("defaults: [base, _self_]\na: 2\nb: {c: x}\nd: [1]\n")
    (tmp_path / "two.yaml").write_text("a: 3\nd: [1]\n")
    assert repeated_in_every_file([tmp_path / "one.yaml", tmp_path / "two.yaml"]) == {"d": "- 1\n"}
    assert restated(tmp_path / "one.yaml") == {"b.c": "x\n...\n"}


def test_model_bases_are_no_model_option():
    """The shared bases lie outside conf/model/: `model=` cannot pick them by mistake."""
    assert {"model_common", "model_tiny_common"} <= {p.stem for p in CONF.glob("*.yaml")}
    assert not {"model_common", "model_tiny_common"} & {p.stem for p in (CONF / "model").rglob("*.yaml")}
