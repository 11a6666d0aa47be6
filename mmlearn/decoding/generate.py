"""Free greedy generation: today's path, the one the seeds use (batched, left-padded)."""

from __future__ import annotations

from mmlearn.decoding.base import Decoded, Decoder


class GenerateDecoder(Decoder):
    """Greedy `generate` up to the longest valid answer + end token + `extra_new_tokens`; the parser
    decides what the text means, and unparseable text counts as a parse failure."""

    name = "generate"

    def decode(self, module, batch: dict) -> list[Decoded]:
        outputs = module.generate_answers(batch["inputs"])
        return [
            Decoded(raw, module.task.parse(raw, sample))
            for raw, sample in zip(outputs, batch["samples"], strict=True)
        ]
