"""One line of predictions/<split>.jsonl: the task's record plus what decoding and prompting add."""

from __future__ import annotations


def prediction_record(task, batch: dict, index: int, decoded, labelled: bool = True) -> dict:
    row = task.record(batch["samples"][index], decoded.output, decoded.parsed)
    if not labelled:
        del row["gold"]
    if batch.get("prompt_ids") is not None:
        row["prompt_id"] = batch["prompt_ids"][index]
    if batch.get("shot_ids") is not None:
        row["shot_ids"] = batch["shot_ids"][index]
    if decoded.scores is not None:
        row["scores"] = decoded.scores
    return row | decoded.record_fields()
