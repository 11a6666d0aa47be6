"""Which predictions errors.html shows, and in what order.

Classification and multiple choice: the wrong answers. With per-class `scores` (decoding=score) the
most confident mistakes come first: the probability given to the wrong class (multiclass), or for
multi-label the strongest wrongly decided label (P for a false positive, 1 - P for a false negative).
Without scores, parse failures come first, then the other wrong answers, each in prediction order.
Captioning: every caption, lowest ROUGE-L against its references first."""

from __future__ import annotations

from dataclasses import dataclass

from mmlearn.reports.per_class import is_correct
from mmlearn.tasks.caption_scores import rouge_l


@dataclass(frozen=True)
class ListedError:
    record: dict
    why: str  # what puts it on the list: "parse failure", "confidence 0.93", "ROUGE-L 0.120"


@dataclass(frozen=True)
class ErrorList:
    errors: list[ListedError]  # at most `limit`, worst first
    candidates: int  # how many qualified (wrong answers; every caption)
    order: str  # the ordering, in words


def confidence_in_wrong_answer(record: dict, kind: str) -> float | None:
    scores = record.get("scores")
    if scores is None or not record.get("parse_ok") or record.get("parsed") is None:
        return None
    parsed, gold = set(record["parsed"]), set(record["gold"])
    if kind == "multilabel":
        wrong = [
            scores[k] if k in parsed else 1.0 - scores[k] for k in scores if (k in parsed) != (k in gold)
        ]
        return max(wrong, default=None)
    (answer,) = record["parsed"]
    return scores.get(answer)


def worst_errors(kind: str, records: list[dict], limit: int) -> ErrorList:
    if kind == "captioning":
        return _lowest_captions(records, limit)
    wrong = [r for r in records if not is_correct(r)]
    confidence = [confidence_in_wrong_answer(r, kind) for r in wrong]
    if wrong and all(c is not None for c in confidence):
        ranked = sorted(zip(wrong, confidence, strict=True), key=lambda pair: -pair[1])
        listed = [ListedError(r, f"confidence {c:.3f}") for r, c in ranked[:limit]]
        return ErrorList(listed, len(wrong), "wrong answers, most confident first (decoding scores)")
    failures = [ListedError(r, "parse failure") for r in wrong if not r.get("parse_ok")]
    others = [ListedError(r, "wrong answer") for r in wrong if r.get("parse_ok")]
    return ErrorList((failures + others)[:limit], len(wrong), "parse failures first, then wrong answers")


def _lowest_captions(records: list[dict], limit: int) -> ErrorList:
    def caption(r):
        return r["parsed"][0] if r.get("parse_ok") and r.get("parsed") else ""

    scored = sorted(((rouge_l(caption(r), r["gold"]), r) for r in records), key=lambda pair: pair[0])
    listed = [
        ListedError(r, f"ROUGE-L {s:.3f}" + ("" if r.get("parse_ok") else ", parse failure"))
        for s, r in scored[:limit]
    ]
    return ErrorList(listed, len(records), "every caption, lowest ROUGE-L against its references first")
