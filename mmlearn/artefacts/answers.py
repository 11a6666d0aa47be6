"""What a run's answers look like and how mmlearn reads them, per kind of task: mmlearn.json's `task`."""

from __future__ import annotations

MATCHING = "matched to the label set ignoring case, surrounding spaces and underscores"

_FORMATS = {
    "multilabel": (
        "json_array",
        "a JSON array of the labels that apply, in label-set order; [] when none applies",
        f"the first JSON array in the output; its strings {MATCHING}, unknown ones dropped; "
        "no array (or a non-string item) is a parse failure",
    ),
    "multiclass": (
        "label",
        "exactly one label, as written in the label set",
        f"the whole output without surrounding spaces, dots and quotes, {MATCHING}; "
        "anything else is a parse failure",
    ),
    "multiple_choice": (
        "option_letter",
        "the letter of the right option, in answer_template",
        'the letter at the start of the output ("B", "(B)", "B.", "B) ..."), else the last '
        '"The answer is X"; a letter naming no option is a parse failure',
    ),
    "captioning": (
        "caption",
        "one caption",
        "the first non-empty line, whitespace collapsed and surrounding quotes removed",
    ),
    "generation": (
        "free_text",
        "the reply, as the training conversations answer",
        "the whole reply, whitespace collapsed; with data.parser=answer_is the letter of the last "
        '"The answer is X" (none is a parse failure)',
    ),
}


def _example(task) -> str | None:
    labels = getattr(task, "labels", None)
    if task.kind == "multilabel":
        return task.target(labels[: min(2, len(labels))])
    if task.kind == "multiclass":
        return labels[0]
    if task.kind == "multiple_choice":
        return task.answer_template.format(letter="B")
    return None


def task_description(task) -> dict:
    if task.kind not in _FORMATS:
        raise ValueError(f"no answer description for task kind {task.kind!r}")
    answer_format, answer, parse = _FORMATS[task.kind]
    described = {
        "kind": task.kind,
        "instruction": task.instruction,
        "labels": list(getattr(task, "labels", [])) or None,
        "answer_format": answer_format,
        "answer": answer,
        "answer_example": _example(task),
        "parse": parse,
    }
    if task.kind == "multiple_choice":
        described["answer_template"] = task.answer_template
    return described
