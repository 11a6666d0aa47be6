"""Where a row's relative path may point: inside its root, judged lexically.

`..` that climbs out of the root is refused (a table must not reach files beside the dataset); an
absolute path is the user's explicit choice and kept, and a symlinked folder inside the root is
followed, because nothing here resolves links.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmlearn.data.sample import BadSampleError


def under_root(root: Path, relative: str | Path, what: str = "image path") -> Path:
    path = Path(relative)
    if path.is_absolute():
        return path
    base = os.path.normpath(root)
    joined = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, joined]) != base:
        raise BadSampleError(f"{what} {str(relative)!r} climbs out of its root {root}")
    return Path(root) / path
