"""The one loop every dataset reader uses: turn raw rows into samples, raising on a bad row by default
or, with `data.on_bad_sample=skip`, skipping it and recording where and why."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mmlearn.data.images import ImageLoadError
from mmlearn.data.sample import BadSampleError, SplitReport, skip_record
from mmlearn.data.text_files import undecodable
from mmlearn.sample import Sample

ON_BAD_SAMPLE = ("error", "skip")


def check_on_bad_sample(value: str) -> str:
    if value not in ON_BAD_SAMPLE:
        raise ValueError(f"data.on_bad_sample must be one of {ON_BAD_SAMPLE}, got {value!r}")
    return value


def collect_samples(
    rows: Iterable[tuple[str, dict]],
    to_sample: Callable[[dict, str], Sample | None],
    *,
    file: str,
    on_bad_sample: str,
    count_labels: bool = True,
    encoding: str,
) -> tuple[list[Sample], SplitReport]:
    """`rows` yields (source, row) with source as "file:row"; `to_sample` raises BadSampleError or
    ImageLoadError for a bad row and returns None for a row the dataset deliberately folds into another
    (e.g. a second image of a text-only tweet), which is counted as merged, not skipped. A row or sample
    holding bytes that did not decode in `encoding` (see text_files) is a bad row."""
    check_on_bad_sample(on_bad_sample)
    report = SplitReport(file=file)
    samples: list[Sample] = []
    seen: set[str] = set()
    for source, row in rows:
        report.read += 1
        try:
            if "__error__" in row:
                raise BadSampleError(row["__error__"])
            _refuse_undecodable(row, encoding)
            sample = to_sample(row, source)
            _refuse_undecodable(sample, encoding)
            if sample is not None and sample.id in seen:
                raise BadSampleError(f"duplicate id {sample.id!r}")
        except (BadSampleError, ImageLoadError) as err:
            kind = "image" if isinstance(err, ImageLoadError) else "row"
            if on_bad_sample == "error":
                raise BadSampleError(
                    f"{source}: {err} (set data.on_bad_sample=skip to skip and count such rows)"
                ) from err
            report.skipped.append(skip_record(source, row.get("id"), kind, str(err)))
            continue
        if sample is None:
            report.merged += 1
            continue
        seen.add(sample.id)
        samples.append(sample)
        for label in sample.labels if count_labels else ():
            report.label_counts[label] = report.label_counts.get(label, 0) + 1
    return samples, report


def _refuse_undecodable(item: dict | Sample | None, encoding: str) -> None:
    if isinstance(item, Sample):
        item = [item.id, item.text, item.context, item.labels, item.choices]
    found = undecodable(item, encoding)
    if found:
        raise BadSampleError(f"{found}; set data.encoding to the file's encoding")
