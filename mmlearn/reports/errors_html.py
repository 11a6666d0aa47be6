"""errors.html: one self-contained page (thumbnails embedded as JPEG data URIs) listing the errors
chosen by `worst_errors`, with each sample's image, input text, gold answer, raw output, parsed answer
and, with decoding=score, the per-class scores. Every piece of text is HTML-escaped."""

from __future__ import annotations

from html import escape

from mmlearn.data.images import ImageLoadError
from mmlearn.reports.thumbnails import thumbnail_data_uri
from mmlearn.reports.worst_errors import ErrorList, ListedError
from mmlearn.tasks.multiple_choice import LETTERS

SCORES_SHOWN = 10  # highest scores listed per row (gold classes are always added)

STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; font-size: 13px; }
th { background: #f0f0f0; }
pre { white-space: pre-wrap; margin: 0; max-width: 30em; }
.missing { width: 8em; color: #a00; font-size: 11px; word-break: break-all; border: 1px dashed #a00; padding: 4px; }
.none { color: #888; font-size: 11px; }
.scores td { border: none; padding: 0 4px; font-size: 11px; }
.gold { font-weight: bold; }
"""


def _text(value) -> str:
    if value is None:
        return '<span class="none">(none)</span>'
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="none">(none)</span>'
        return "<br>".join(escape(str(v)) for v in value)
    return f"<pre>{escape(str(value))}</pre>"


def image_cell(sample, max_side: int) -> str:
    if sample is None:
        return '<div class="none">(sample not found)</div>'
    if sample.image_path is None:
        return '<div class="none">(no image)</div>'
    try:
        uri = thumbnail_data_uri(sample.image_path, max_side)
    except ImageLoadError as err:
        return (
            f'<div class="missing">image could not be opened:<br>{escape(str(sample.image_path))}'
            f"<br>{escape(str(err))}</div>"
        )
    return f'<img src="{uri}" alt="{escape(str(sample.id))}">'


def input_text(sample) -> str:
    if sample is None:
        return _text(None)
    parts = [sample.text or ""]
    if sample.context:
        parts.append(f"Context: {sample.context}")
    if sample.choices:
        parts.append("Options: " + " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices)))
    return _text("\n".join(p for p in parts if p) or None)


def scores_cell(record: dict) -> str:
    scores = record.get("scores")
    if not scores:
        return ""
    gold = set(record.get("gold") or [])
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    shown = ranked[:SCORES_SHOWN] + [(k, v) for k, v in ranked[SCORES_SHOWN:] if k in gold]
    mark = {True: ' class="gold"', False: ""}
    rows = "".join(f"<tr{mark[k in gold]}><td>{escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in shown)
    more = f"<tr><td>… {len(scores) - len(shown)} more</td></tr>" if len(shown) < len(scores) else ""
    return f'<table class="scores">{rows}{more}</table>'


def _row(rank: int, error: ListedError, sample, max_side: int) -> str:
    r = error.record
    cells = [
        str(rank),
        image_cell(sample, max_side),
        escape(str(r.get("id"))),
        input_text(sample),
        _text(r.get("gold")),
        _text(r.get("output")),
        _text(r.get("parsed")) if r.get("parse_ok") else '<span class="none">(unparsed)</span>',
        escape(error.why),
        scores_cell(r),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_errors_html(errors: ErrorList, samples_by_id: dict, title: str, thumbnail_px: int) -> str:
    header = ["#", "image", "id", "input", "gold", "output", "parsed", "why listed", "scores"]
    rows = "\n".join(
        _row(i, e, samples_by_id.get(e.record.get("id")), thumbnail_px)
        for i, e in enumerate(errors.errors, start=1)
    )
    summary = (
        f"{len(errors.errors)} of {errors.candidates} shown; order: {errors.order}."
        if errors.candidates
        else "No wrong answers."
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{escape(summary)}</p>\n"
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>\n"
        f"{rows}\n</table>\n</body></html>\n"
    )
