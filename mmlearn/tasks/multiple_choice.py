"""Multiple-choice QA in the LLaVA convention (seed 002, ScienceQA): options are lettered (A) (B) ...,
the answer is the option letter, and anything that names no option of the question is a failure."""

from __future__ import annotations

import re
import string

import torch
from torchmetrics.aggregation import SumMetric

from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed, Task

LETTERS = string.ascii_uppercase
NO_CONTEXT = "N/A"  # LLaVA's context line when a question has no hint
# "B", "(B)", "B.", "B. text", "(B) text", "B) text", "B: text"
_LEADING = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[.:)]|$))(?:\s|$)")
_SENTENCE = re.compile(r"(?i:the answer is):?\s*\(?([A-Z])\b")


def parse_letter(output: str) -> str | None:
    """The option letter at the start of the output, else the letter of the last "The answer is X."."""
    text = output.strip()
    match = _LEADING.match(text)
    if match:
        return match.group(1) or match.group(2)
    found = _SENTENCE.findall(text)
    return found[-1] if found else None


class MultipleChoiceTask(Task):
    """`answer_template` formats the target from `{letter}`: "{letter}" trains the bare letter,
    "The answer is {letter}." the sentence LLaVA was trained on; the parser accepts both."""

    kind = "multiple_choice"
    headline = "accuracy"

    def __init__(self, instruction: str, answer_template: str) -> None:
        if "{letter}" not in answer_template:
            raise ValueError(f"answer_template must contain {{letter}}, got {answer_template!r}")
        self.instruction = instruction
        self.answer_template = answer_template

    @staticmethod
    def letter(index: int) -> str:
        if not 0 <= index < len(LETTERS):
            raise ValueError(f"option index {index} cannot be lettered (at most {len(LETTERS)} options)")
        return LETTERS[index]

    def prompt(self, sample: Sample) -> str:
        options = " ".join(f"({self.letter(i)}) {choice}" for i, choice in enumerate(sample.choices))
        lines = [
            sample.text or "",
            f"Context: {sample.context or NO_CONTEXT}",
            f"Options: {options}",
            self.instruction,
        ]
        return "\n".join(line for line in lines if line)

    def answer(self, sample: Sample) -> str:
        (letter,) = sample.labels
        return self.answer_template.format(letter=letter)

    def parse(self, output: str, sample: Sample) -> Parsed:
        letter = parse_letter(output)
        if letter is None or LETTERS.index(letter) >= len(sample.choices):
            return Parsed(None)
        return Parsed((letter,))

    def longest_answer(self) -> str:
        return self.answer_template.format(letter=LETTERS[-1])

    def build_metrics(self):
        return MultipleChoiceMetrics()

    def record(self, sample: Sample, output: str, parsed: Parsed) -> dict:
        return {**super().record(sample, output, parsed), "with_image": sample.image_path is not None}


class MultipleChoiceMetrics(torch.nn.Module):
    """Counts summed across processes; a group with no questions reports NaN (undefined, not 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = torch.nn.ModuleDict(
            {
                name: SumMetric()
                for name in ("correct", "total", "correct_image", "total_image", "correct_text", "failures")
            }
        )

    def update(self, parsed: list[Parsed], samples: list[Sample]) -> None:
        correct = [p.ok and p.labels == s.labels for p, s in zip(parsed, samples, strict=True)]
        image = [s.image_path is not None for s in samples]
        values = {
            "correct": sum(correct),
            "total": len(samples),
            "correct_image": sum(c for c, i in zip(correct, image, strict=True) if i),
            "total_image": sum(image),
            "correct_text": sum(c for c, i in zip(correct, image, strict=True) if not i),
            "failures": sum(not p.ok for p in parsed),
        }
        for name, value in values.items():
            self.counts[name].update(torch.tensor(float(value)))

    def compute(self) -> dict[str, float]:
        c = {name: float(metric.compute()) for name, metric in self.counts.items()}
        ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
        return {
            "accuracy": ratio(c["correct"], c["total"]),
            "accuracy_with_image": ratio(c["correct_image"], c["total_image"]),
            "accuracy_without_image": ratio(c["correct_text"], c["total"] - c["total_image"]),
            "parse_failure_rate": ratio(c["failures"], c["total"]),
        }

    def names(self) -> list[str]:
        return ["accuracy", "accuracy_with_image", "accuracy_without_image", "parse_failure_rate"]

    def reset(self) -> None:
        for metric in self.counts.values():
            metric.reset()
