"""What every task provides: one prompt for training and evaluation, a target, a parser and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from mmlearn.sample import Sample


@dataclass(frozen=True)
class Parsed:
    """What the parser made of one generated answer; `labels` is None when nothing valid was found."""

    labels: tuple[str, ...] | None

    @property
    def ok(self) -> bool:
        return self.labels is not None


class Task:
    """A kind of problem. `headline` names the metric shown on the progress bar and used by default to
    choose the best checkpoint (`optimized_metric`)."""

    kind: str = ""
    headline: str = ""

    def prompt(self, sample: Sample) -> str:
        """The one prompt used for training, validation, testing and `evaluate.py` alike."""
        raise NotImplementedError

    def answer(self, sample: Sample) -> str:
        """The training target for a sample."""
        raise NotImplementedError

    def parse(self, output: str, sample: Sample) -> Parsed:
        raise NotImplementedError

    def longest_answer(self) -> str:
        """The longest valid answer: sets the generation budget."""
        raise NotImplementedError

    def build_metrics(self):
        """A torch module with `update(parsed, samples)`, `compute() -> dict`, `names()` and `reset()`."""
        raise NotImplementedError

    def metric_names(self) -> list[str]:
        """Names of the metrics `build_metrics().compute()` returns."""
        return sorted(self.build_metrics().names())

    def record(self, sample: Sample, output: str, parsed: Parsed) -> dict:
        """One line of predictions/<split>.jsonl."""
        return {
            "id": sample.id,
            "output": output,
            "parsed": None if parsed.labels is None else list(parsed.labels),
            "parse_ok": parsed.ok,
            "gold": list(sample.labels),
        }
