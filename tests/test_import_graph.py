"""`mmlearn.data` and `mmlearn.tasks` do not import each other in a circle: readers build tasks, tasks
read samples, and the `Sample` both need lives in the leaf `mmlearn.sample`. Read from the AST, so
every import counts: module level, inside a function, or under TYPE_CHECKING."""

import ast
from collections import deque
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA, TASKS = "mmlearn.data", "mmlearn.tasks"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: `from ..data import x` inside mmlearn/tasks/base.py
        anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (importing a.b.c runs a and a.b too)."""
    files = {_module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for name in _imported(node, module, path.name == "__init__.py"):
                parts = name.split(".")
                targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & files.keys()
        graph[module] = targets - {module}
    return graph


def _group(module: str) -> str:
    return next((g for g in (DATA, TASKS) if module == g or module.startswith(f"{g}.")), module)


def path_between(graph: dict[str, set[str]], start: str, end: str) -> list[str] | None:
    """The shortest import chain from any module of group `start` to one of group `end`, or None."""
    queue = deque([m] for m in sorted(graph) if _group(m) == start)
    seen = {chain[0] for chain in queue}
    while queue:
        chain = queue.popleft()
        for nxt in sorted(graph[chain[-1]] - seen):
            if _group(nxt) == end:
                return [*chain, nxt]
            seen.add(nxt)
            queue.append([*chain, nxt])
    return None


def cycle(graph: dict[str, set[str]]) -> tuple[list[str], list[str]] | None:
    there, back = path_between(graph, DATA, TASKS), path_between(graph, TASKS, DATA)
    return (there, back) if there and back else None


def test_data_and_tasks_import_no_cycle():
    graph = import_graph(Path(REPO), "mmlearn")
    assert {DATA, TASKS, "mmlearn.sample"} <= graph.keys()
    assert path_between(graph, DATA, TASKS), "the readers build tasks: the graph lost its known edge"
    found = cycle(graph)
    assert found is None, f"import cycle: {' -> '.join(found[0])}, and back: {' -> '.join(found[1])}"


def test_sample_is_a_leaf():
    graph = import_graph(Path(REPO), "mmlearn")
    assert graph["mmlearn.sample"] == set()


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


BASE = {
    "mmlearn/__init__.py": "",
    "mmlearn/sample.py": "",
    "mmlearn/metrics.py": "import torch\n",
    "mmlearn/data/__init__.py": "",
    "mmlearn/data/reader.py": "from mmlearn.tasks import Task\nfrom mmlearn.sample import Sample\n",
    "mmlearn/tasks/__init__.py": "from mmlearn.tasks.base import Task\n",
}


@pytest.mark.parametrize(
    "base",
    [
        "from mmlearn.data.reader import Sample\n",  # direct
        "def f():\n    from mmlearn.data import reader\n",  # lazy, inside a function
        "from ..data import reader\n",  # relative
        "from mmlearn import metrics\n",  # through another module, which imports data
    ],
)
def test_a_planted_cycle_is_found(tmp_path, base):
    files = {**BASE, "mmlearn/tasks/base.py": base}
    if "metrics" in base:
        files["mmlearn/metrics.py"] = "from mmlearn.data import reader\n"
    found = cycle(import_graph(_plant(tmp_path, files), "mmlearn"))
    assert found is not None
    there, back = found
    assert there[0].startswith(DATA) and back[0].startswith(TASKS) and back[-1].startswith(DATA)


def test_no_cycle_when_tasks_use_the_leaf(tmp_path):
    files = {
        **BASE,
        "mmlearn/tasks/base.py": "from mmlearn.sample import Sample\nfrom mmlearn import metrics\n",
    }
    assert cycle(import_graph(_plant(tmp_path, files), "mmlearn")) is None
