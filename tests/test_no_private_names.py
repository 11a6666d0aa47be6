"""No module of `mmlearn/` outside `mmlearn/compat/` touches a private name of another library.

Read from the AST: `from lib._x import y`, `import lib._x`, `from lib import _y`; `obj._y` and
`getattr(obj, "_y")` unless mmlearn itself defines `_y` there (on `self`/`cls` or `super()`: in the
class or one of its mmlearn bases; on any other object: in a class of the same module or one the
module imports from mmlearn); and the few undocumented public-looking internals in INTERNAL_NAMES.
Dunder names and Hydra's `_target_`-style keys are public."""

from __future__ import annotations

import ast

from tests.conftest import REPO

PACKAGE = REPO / "mmlearn"
EXEMPT = PACKAGE / "compat"
# not `_`-prefixed, but undocumented internals of their library
INTERNAL_NAMES = {"MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL"}
ATTRIBUTE_CALLS = {"getattr", "hasattr", "setattr", "delattr"}


def _private(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    hydra_key = name.startswith("_") and name.endswith("_") and len(name) > 2
    return name.startswith("_") and name != "_" and not dunder and not hydra_key


def _members(cls: ast.ClassDef) -> set[str]:
    """Names a class defines: in its body, and as `self.x = ...` / `cls.x = ...` in its methods."""
    names = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        is_own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if is_own and isinstance(node.ctx, ast.Store) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return names


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases]


class _Scan(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, classes: dict[str, set[str]], bases: dict[str, list[str]]):
        self.classes, self.bases, self.found = classes, bases, []
        self.stack: list[str] = []
        local = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        imported = {
            alias.asname or alias.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("mmlearn"))
            for alias in n.names
        }
        self.known = set().union(*(self._own(c) for c in local | imported))

    def _own(self, cls: str | None, seen=()) -> set[str]:
        if cls is None or cls in seen:
            return set()
        names = set(self.classes.get(cls, set()))
        for base in self.bases.get(cls, []):
            names |= self._own(base, (*seen, cls))
        return names

    def _check(self, node: ast.AST, base: ast.AST, name: str) -> None:
        if name in INTERNAL_NAMES:
            self.found.append((node.lineno, name))
        if not _private(name):
            return
        on_self = isinstance(base, ast.Name) and base.id in ("self", "cls")
        on_super = isinstance(base, ast.Call) and getattr(base.func, "id", None) == "super"
        cls = self.stack[-1] if self.stack else None
        allowed = self._own(cls) if on_self or on_super else self.known
        if on_super:
            allowed = set().union(*(self._own(b) for b in self.bases.get(cls, [])))
        if name not in allowed:
            self.found.append((node.lineno, name))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if getattr(node.func, "id", None) in ATTRIBUTE_CALLS and len(node.args) > 1:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                self._check(node, node.args[0], name.value)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not alias.name.startswith("mmlearn") and any(map(_private, alias.name.split("."))):
                self.found.append((node.lineno, alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module.startswith("mmlearn"):
            return
        if any(map(_private, module.split("."))):
            self.found.append((node.lineno, module))
        for alias in node.names:
            if _private(alias.name) or alias.name in INTERNAL_NAMES:
                self.found.append((node.lineno, f"{module}.{alias.name}"))


def offenders(sources: dict[str, str]) -> list[str]:
    """`file:line:name` for every private name of another library used in `sources` (path -> code)."""
    trees = {path: ast.parse(code, filename=path) for path, code in sources.items()}
    classes, bases = {}, {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, set()).update(_members(node))
                bases.setdefault(node.name, []).extend(_base_names(node))
    found = []
    for path, tree in trees.items():
        scan = _Scan(tree, classes, bases)
        scan.visit(tree)
        found += [f"{path}:{line}:{name}" for line, name in scan.found]
    return sorted(found)


def _package_sources() -> dict[str, str]:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if EXEMPT not in p.parents]
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in files}


def test_no_module_outside_compat_uses_a_private_name_of_another_library():
    sources = _package_sources()
    assert len(sources) > 50  # the walk found the package
    found = offenders(sources)
    assert found == [], "private names of other libraries outside mmlearn/compat/:\n" + "\n".join(found)


PLANTED = """
import torch
from hydra._internal.utils import get_args_parser
from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL
from datasets import _private_helper
import lightning._vendor

class Loader(torch.utils.data.DataLoader):
    _mine = 0

    def __init__(self):
        self._also_mine = 1

    @property
    def _index_sampler(self):
        return super()._index_sampler

    def step(self, trainer, model):
        self._mine, self._also_mine, self.__dict__, cfg = 1, 2, {}, {"_target_": 1}
        trainer.fit_loop._data_fetcher
        getattr(model.config, "_attn_implementation")
        return self._save_last_checkpoint(trainer)

class Child(Loader):
    def more(self):
        return self._mine + super()._also_mine
"""


def test_a_planted_offender_is_listed_by_file_line_and_name():
    assert offenders({"planted.py": PLANTED}) == sorted(
        [
            "planted.py:3:hydra._internal.utils",
            "planted.py:4:transformers.generation.utils.MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL",
            "planted.py:5:datasets._private_helper",
            "planted.py:6:lightning._vendor",
            "planted.py:16:_index_sampler",
            "planted.py:20:_data_fetcher",
            "planted.py:21:_attn_implementation",
            "planted.py:22:_save_last_checkpoint",
        ]
    )
    # another module's class with the same private name does not make a library's name mmlearn's
    other = "class Mine:\n    def f(self):\n        self._fingerprint = 1\n"
    dataset = "def key(ref):\n    return ref.dataset._fingerprint\n"
    assert offenders({"a.py": other, "b.py": dataset}) == ["b.py:2:_fingerprint"]
