"""New data for `predict.py input=...`: a CSV or JSONL table in the layout `data=csv` reads (its rows need
no labels), or a folder of images. Rows go through the readers' shared checks and bad-row policy, so a
bad row stops the run naming its file:row, or with `data.on_bad_sample=skip` is counted and listed."""

from __future__ import annotations

import logging
from pathlib import Path

from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.data.table_reader import TableReader
from mmlearn.sample import Sample

log = logging.getLogger(__name__)

TABLES = (".csv", ".jsonl")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_input(
    path: str | Path, *, task, modality, inputs: InputPolicy, image_root: str | Path | None = None
) -> tuple[list[Sample], SplitReport]:
    """The samples of `path` in its order (a folder: its images sorted by relative path, which is each
    one's id), and the accounting of what was read and skipped. A table's relative `image_path` is under
    `image_root` (default: the table's folder)."""
    path = check_input(path)
    if path.is_dir():
        samples, report = read_folder(path, modality=modality, inputs=inputs)
    else:
        root = Path(image_root) if image_root is not None else path.parent
        reader = TableReader(
            image_root=root,
            labels=list(getattr(task, "labels", None) or []),
            task=task.kind,
            modality=modality,
            inputs=inputs,
            labelled=False,
        )
        samples, report = reader.read(path)
    if not samples:
        raise ValueError(
            f"input={path} has no usable rows ({report.read} read, {len(report.skipped)} skipped)"
        )
    return samples, report


def check_input(path: str | Path) -> Path:
    """`path` if it is something predict.py reads (checked before a model is loaded)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input={path} not found: give a .csv or .jsonl file or a folder of images")
    if not path.is_dir() and path.suffix not in TABLES:
        raise ValueError(f"input={path}: expected a .csv or .jsonl file or a folder of images")
    return path


def image_files(folder: Path) -> list[str]:
    """The images under `folder` (by suffix, hidden files and folders left out), as sorted relative paths."""
    found = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue
        if file.suffix.lower() in IMAGE_SUFFIXES:
            found.append(relative.as_posix())
    return sorted(found)


def read_folder(folder: Path, *, modality, inputs: InputPolicy) -> tuple[list[Sample], SplitReport]:
    if modality.text:
        raise ValueError(
            f"input={folder} is a folder of images, which has no text, but the run's modality is "
            f"{modality.name}: give a .csv/.jsonl with text and image_path columns, or set modality=image"
        )
    if not modality.image:
        raise ValueError(f"input={folder} is a folder of images, but the modality is {modality.name}")
    names = image_files(folder)

    def to_sample(row: dict, source: str) -> Sample:
        if not row["id"]:
            raise BadSampleError("empty image path")
        image = inputs.image_file(folder, row["id"])
        return Sample(id=row["id"], text=None, image_path=image, labels=(), source=source)

    rows = ((str(folder / name), {"id": name}) for name in names)
    return inputs.collect(rows, to_sample, file=str(folder), count_labels=False)
