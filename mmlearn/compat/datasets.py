"""`datasets` internals: the identity of a `Dataset` (mmlearn/data/images.py's `ArrowImageRef`)."""

from __future__ import annotations


def dataset_fingerprint(dataset) -> str:
    """`Dataset._fingerprint` (checked with datasets 5.2.0): a hash of the dataset's origin and every transform
    applied to it, which `datasets` itself uses as the cache key; two datasets with the same
    fingerprint hold the same rows. Fallback: the Arrow files, row count and column names, or the
    object's id for an in-memory dataset (refs into equal copies then compare unequal, never equal
    refs into different rows)."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    if isinstance(fingerprint, str):
        return fingerprint
    files = tuple(c["filename"] for c in dataset.cache_files)
    if not files:
        return f"in-memory:{id(dataset)}"
    return repr((files, len(dataset), tuple(dataset.column_names)))
