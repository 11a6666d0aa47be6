"""mmlearn: Hydra + Lightning fine-tuning and evaluation of vision-language models."""

from functools import cache
from pathlib import Path

__version__ = "0.1.0"


@cache
def conf_dir() -> Path:
    """The Hydra config tree, the package `mmlearn.conf`: inside an installed wheel, or the checkout's
    conf/ through an editable install (pyproject.toml's package-dir)."""
    from importlib.metadata import PackageNotFoundError, distribution
    from importlib.util import find_spec

    spec = find_spec("mmlearn.conf")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    try:  # a checkout's mmlearn/ imported ahead of the installed wheel (`python train.py` in its folder)
        installed = Path(str(distribution("mmlearn-vlm").locate_file("mmlearn/conf")))
    except PackageNotFoundError:
        installed = None
    if installed is not None and (installed / "train.yaml").is_file():
        return installed
    raise ModuleNotFoundError(
        "mmlearn's configs (the package mmlearn.conf, conf/ in the repository) are not installed: "
        "pip install the mmlearn-vlm wheel, or `pip install -e .` in the checkout (after a change to "
        "pyproject.toml too)"
    )
