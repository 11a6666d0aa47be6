"""Image captioning (seed 004): one prompt, a reference caption as the target, and corpus-level
BLEU-4, ROUGE-L and CIDEr-D of the generated caption against all references of its image."""

from __future__ import annotations

import json

import torch
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.text import BLEUScore
from torchmetrics.utilities import dim_zero_cat

from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed, Task
from mmlearn.tasks.caption_scores import cider_d, rouge_l, words


def clean_caption(output: str) -> str:
    """The first non-empty line, whitespace collapsed and surrounding quotes removed."""
    for line in output.strip().splitlines():
        line = " ".join(line.split()).strip("\"'").strip()
        if line:
            return line
    return ""


class CaptioningTask(Task):
    """Trains on `sample.labels[0]` (the reader decides which reference that is) and scores against all
    of `sample.labels`. `longest_caption` is the longest reference of the dataset: generation may run to
    its length plus `decoding.extra_new_tokens`."""

    kind = "captioning"
    headline = "cider"

    def __init__(self, instruction: str, longest_caption: str) -> None:
        if not longest_caption.strip():
            raise ValueError("longest_caption must be a non-empty caption")
        self.instruction = instruction
        self.longest_caption = longest_caption

    def prompt(self, sample: Sample) -> str:
        return self.instruction

    def answer(self, sample: Sample) -> str:
        return sample.labels[0]

    def parse(self, output: str, sample: Sample) -> Parsed:
        caption = clean_caption(output)
        return Parsed((caption,)) if caption else Parsed(None)

    def longest_answer(self) -> str:
        return self.longest_caption

    def build_metrics(self):
        return CaptionMetrics()


class CaptionCorpus(Metric):
    """Every (candidate, references) pair, kept as UTF-8 JSON lines in a byte tensor so that the whole
    corpus gathers across processes: CIDEr-D's document frequencies need all of it."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("lines", default=[], dist_reduce_fx="cat")

    def update(self, candidates: list[str], references: list[tuple[str, ...]]) -> None:
        text = "".join(json.dumps([c, list(r)]) + "\n" for c, r in zip(candidates, references, strict=True))
        if text:
            data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
            self.lines.append(data.to(self.device))

    def compute(self) -> float:
        # a list of byte tensors, or one tensor once synchronised across processes
        empty = isinstance(self.lines, list) and not self.lines
        data = torch.zeros(0, dtype=torch.uint8) if empty else dim_zero_cat(self.lines)
        pairs = [json.loads(line) for line in bytes(data.cpu().tolist()).decode("utf-8").splitlines()]
        return cider_d([c for c, _ in pairs], [r for _, r in pairs])


class CaptionMetrics(torch.nn.Module):
    """A failed parse (empty caption) is scored as the empty caption: it matches nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bleu4 = BLEUScore(n_gram=4)
        self.rouge_l = MeanMetric()
        self.cider = CaptionCorpus()
        self.parse_failure_rate = MeanMetric()

    def update(self, parsed: list[Parsed], samples: list[Sample]) -> None:
        candidates = [p.labels[0] if p.ok else "" for p in parsed]
        references = [s.labels for s in samples]
        # shortest first: on a tie for the closest reference length the brevity penalty takes the
        # shorter one, as the COCO caption evaluation does (torchmetrics takes the first)
        self.bleu4.update(
            [" ".join(words(c)) for c in candidates],
            [sorted((" ".join(words(r)) for r in refs), key=lambda r: len(r.split())) for refs in references],
        )
        scores = [rouge_l(c, refs) for c, refs in zip(candidates, references, strict=True)]
        self.rouge_l.update(torch.tensor(scores, dtype=torch.float32))
        self.cider.update(candidates, references)
        self.parse_failure_rate.update(torch.tensor([float(not p.ok) for p in parsed]))

    def compute(self) -> dict[str, float]:
        return {
            "bleu4": float(self.bleu4.compute()),
            "rouge_l": float(self.rouge_l.compute()),
            "cider": float(self.cider.compute()),
            "parse_failure_rate": float(self.parse_failure_rate.compute()),
        }

    def names(self) -> list[str]:
        return ["bleu4", "rouge_l", "cider", "parse_failure_rate"]

    def reset(self) -> None:
        for metric in (self.bleu4, self.rouge_l, self.cider, self.parse_failure_rate):
            metric.reset()
