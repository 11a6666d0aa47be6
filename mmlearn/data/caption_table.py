"""`data.captions_file`: a CSV with columns id,text (other columns ignored), as `caption.py` writes it,
whose caption of each sample's id becomes that sample's text, for every reader. A sample whose id has
no caption, or an empty one, is a bad sample under `data.on_bad_sample`."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from mmlearn.data.conversations.sample import ConversationSample
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError, SplitReport, skip_record
from mmlearn.data.text_files import refuse_undecodable, undecodable
from mmlearn.sample import Sample

COLUMNS = ("id", "text")


def read_captions(path: Path, inputs: InputPolicy) -> dict[str, str]:
    """Id -> caption (stripped), read in `data.encoding`; an id captioned twice differently is refused."""
    if not path.is_file():
        raise FileNotFoundError(f"data.captions_file not found: {path}")
    captions: dict[str, str] = {}
    with inputs.open_text(path, newline="") as handle:
        reader = csv.DictReader(handle)
        names = list(reader.fieldnames or [])
        refuse_undecodable(",".join(names), path, inputs.encoding)
        if names and names[0].startswith("\ufeff"):  # a BOM that data.encoding did not remove
            names[0] = names[0][1:]
            reader.fieldnames = names
        if not set(COLUMNS) <= set(names):
            raise ValueError(f"{path}: needs columns id,text; found {names}")
        for row in reader:
            sample_id, text = (row["id"] or "").strip(), (row["text"] or "").strip()
            if captions.get(sample_id, text) != text:
                raise ValueError(f"{path}:{reader.line_num}: id {sample_id!r} has two different captions")
            captions[sample_id] = text
    return captions


def apply_captions(
    samples: list[Sample], report: SplitReport, captions: dict[str, str], path: Path, inputs: InputPolicy
) -> tuple[list[Sample], SplitReport]:
    """Each sample with its caption as text; one without a caption raises or is counted as skipped (in
    a copy of `report`: a reader may hand out the same report twice)."""
    report = replace(report, skipped=list(report.skipped), label_counts=dict(report.label_counts))
    kept = []
    for sample in samples:
        if isinstance(sample, ConversationSample):
            raise ValueError(
                f"data.captions_file={path} replaces each sample's text, but {sample.source} is a "
                "conversation (its turns are what is encoded): set data.captions_file=null"
            )
        text = captions.get(sample.id)
        problem = _problem(sample.id, text, path, inputs.encoding)
        if problem is None:
            kept.append(replace(sample, text=text))
            continue
        if not inputs.skip:
            raise BadSampleError(
                f"{sample.source}: {problem} (set data.on_bad_sample=skip to skip and count such rows)"
            )
        report.skipped.append(skip_record(sample.source, sample.id, "caption", problem))
        for label in sample.labels:  # counted when read: no longer a sample of the split
            count = report.label_counts.pop(label, 0)
            if count > 1:
                report.label_counts[label] = count - 1
    return kept, report


def _problem(sample_id: str, text: str | None, path: Path, encoding: str) -> str | None:
    if not text:
        return f"no caption for image {sample_id!r} in {path}"
    found = undecodable(text, encoding)
    return f"the caption of {sample_id!r} in {path}: {found}" if found else None
