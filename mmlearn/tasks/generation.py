"""Open-ended answers (task=generation, data=conversations): the reply is the target, scored as text
(exact match, ROUGE-L, BLEU-4) and, with a `parser`, as the label or option the answer names (e.g.
the last "The answer is X." of a long ScienceQA answer), parse failures counted."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchmetrics.aggregation import MeanMetric
from torchmetrics.text import BLEUScore, ROUGEScore

from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed, Task

TEXT_METRICS = ("exact_match", "rouge_l", "bleu4")
_ANSWER_IS = re.compile(r"(?i:the answer is):?\s*\(?([A-Z])\b")


def last_answer_is(text: str) -> str | None:
    """The letter of the last "The answer is X." (LLaVA's ScienceQA answers end so), else None."""
    found = _ANSWER_IS.findall(text)
    return found[-1] if found else None


PARSERS: dict[str, Callable[[str], str | None]] = {"answer_is": last_answer_is}


def normalise_text(text: str) -> str:
    """What exact match compares: case and runs of whitespace ignored."""
    return " ".join(text.split()).lower()


@dataclass(frozen=True)
class ParsedText(Parsed):
    """A parsed generation: `labels` holds what the parser read (or the cleaned text without a parser),
    `text` the whole answer, which the text metrics score."""

    text: str = ""


class GenerationTask(Task):
    """Targets are free-form replies (`sample.labels[0]`; further labels are extra references).
    `metrics` picks among exact_match, rouge_l, bleu4; `parser` (a name of PARSERS) adds `accuracy`
    of the parsed answer against the parsed reference. `max_new_tokens` is the generation budget
    (long answers need hundreds of tokens), read by the decoding context instead of the longest answer."""

    kind = "generation"

    def __init__(
        self, instruction: str | None, metrics: list[str], parser: str | None, max_new_tokens: int
    ) -> None:
        unknown = sorted(set(metrics) - set(TEXT_METRICS))
        if unknown or not metrics:
            raise ValueError(
                f"data.metrics must be a non-empty list among {TEXT_METRICS}, got {list(metrics)}"
            )
        if parser is not None and parser not in PARSERS:
            raise ValueError(f"data.parser must be null or one of {sorted(PARSERS)}, got {parser!r}")
        if max_new_tokens < 1:
            raise ValueError(f"data.max_new_tokens must be >= 1, got {max_new_tokens}")
        self.instruction = instruction or None
        self.metrics = list(metrics)
        self.parser = parser
        self.max_new_tokens = max_new_tokens
        self.headline = "accuracy" if parser else self.metrics[0]

    def prompt(self, sample: Sample) -> str:
        text = sample.text or ""
        return f"{self.instruction}\n{text}" if self.instruction else text

    def answer(self, sample: Sample) -> str:
        return sample.labels[0]

    def read_answer(self, text: str) -> str | None:
        return PARSERS[self.parser](text) if self.parser else (" ".join(text.split()) or None)

    def answer_problem(self, reply: str) -> str | None:
        """Why a reference cannot be scored (the parser reads nothing in it), or None: such a row would
        score every answer wrong, so readers refuse it as a bad row."""
        if self.parser and self.read_answer(reply) is None:
            return f"data.parser={self.parser} finds no answer in the reply {reply[-80:]!r}"
        return None

    def parse(self, output: str, sample: Sample) -> ParsedText:
        label = self.read_answer(output)
        return ParsedText(None if label is None else (label,), text=output.strip())

    def longest_answer(self) -> str:
        raise NotImplementedError("task=generation has no longest answer: its budget is data.max_new_tokens")

    def build_metrics(self):
        return GenerationMetrics(self)

    def record(self, sample: Sample, output: str, parsed: Parsed) -> dict:
        return {**super().record(sample, output, parsed), "with_image": sample.image_path is not None}


class GenerationMetrics(torch.nn.Module):
    """Text metrics on the whole answer against all references (torchmetrics' ROUGE-L F-measure, best
    reference; corpus BLEU-4), exact match after `normalise_text`, and with a parser the accuracy of
    the parsed answer; a parse failure is wrong and counted in parse_failure_rate."""

    def __init__(self, task: GenerationTask) -> None:
        super().__init__()
        self.task = task
        self.exact_match = MeanMetric()
        self.rouge = ROUGEScore(rouge_keys="rougeL", accumulate="best")
        self.bleu4 = BLEUScore(n_gram=4)
        self.accuracy = MeanMetric()
        self.parse_failure_rate = MeanMetric()

    def update(self, parsed: list[Parsed], samples: list[Sample]) -> None:
        texts = [getattr(p, "text", "") for p in parsed]
        references = [list(s.labels) for s in samples]
        matches = [
            any(normalise_text(t) == normalise_text(r) for r in refs)
            for t, refs in zip(texts, references, strict=True)
        ]
        self.exact_match.update(torch.tensor(matches, dtype=torch.float32))
        self.rouge.update(texts, references)
        self.bleu4.update(texts, references)
        correct = [
            p.ok and p.labels[0] == self.task.read_answer(s.labels[0])
            for p, s in zip(parsed, samples, strict=True)
        ]
        self.accuracy.update(torch.tensor(correct, dtype=torch.float32))
        self.parse_failure_rate.update(torch.tensor([float(not p.ok) for p in parsed]))

    def compute(self) -> dict[str, float]:
        values = {
            "exact_match": lambda: float(self.exact_match.compute()),
            "rouge_l": lambda: float(self.rouge.compute()["rougeL_fmeasure"]),
            "bleu4": lambda: float(self.bleu4.compute()),
            "accuracy": lambda: float(self.accuracy.compute()),
        }
        out = {name: values[name]() for name in self.names() if name in values}
        out["parse_failure_rate"] = float(self.parse_failure_rate.compute())
        return out

    def names(self) -> list[str]:
        return [*self.task.metrics, *(["accuracy"] if self.task.parser else []), "parse_failure_rate"]

    def reset(self) -> None:
        for metric in (self.exact_match, self.rouge, self.bleu4, self.accuracy, self.parse_failure_rate):
            metric.reset()
