"""In-context examples drawn from the training split: seeded, optionally class-balanced, the same for
every query unless `resample=true` (then each query gets its own draw, seeded by its id so the choice
does not depend on batching)."""

from __future__ import annotations

import inspect
import random

from mmlearn.sample import Sample


class ShotSelector:
    def __init__(
        self,
        pool: list[Sample],
        labels: list[str],
        *,
        shots: int,
        shots_per_class: int | None,
        seed: int,
        resample: bool,
    ) -> None:
        if shots and shots_per_class:
            raise ValueError("set either shots=k (any examples) or shots_per_class=k (balanced), not both")
        if shots < 0 or (shots_per_class is not None and shots_per_class < 1):
            raise ValueError(f"shots must be >= 0 and shots_per_class >= 1, got {shots}, {shots_per_class}")
        self.pool = list(pool)
        self.labels = list(labels)
        self.shots = shots
        self.shots_per_class = shots_per_class
        self.seed = seed
        self.resample = resample
        self.fixed = None if resample else self._draw(random.Random(seed))

    @property
    def count(self) -> int:
        return self.shots or self.shots_per_class * len(self.labels)

    def __call__(self, query: Sample) -> list[Sample]:
        if self.fixed is not None:
            return self.fixed
        return self._draw(random.Random(f"{self.seed}:{query.id}"))

    def _draw(self, rng: random.Random) -> list[Sample]:
        if self.shots_per_class is None:
            if self.shots > len(self.pool):
                raise ValueError(f"shots={self.shots} but the training split has {len(self.pool)} samples")
            return rng.sample(self.pool, self.shots)
        chosen: list[Sample] = []
        for label in self.labels:
            having = [s for s in self.pool if label in s.labels and s not in chosen]
            if len(having) < self.shots_per_class:
                raise ValueError(
                    f"shots_per_class={self.shots_per_class}: the training split has only {len(having)} "
                    f"unused samples labelled {label!r}"
                )
            chosen += rng.sample(having, self.shots_per_class)
        rng.shuffle(chosen)  # classes interleaved, not in label order
        return chosen


def check_few_shot(spec, prompt_format, shots: int, images_per_sample: int) -> None:
    """Fail before any batch when the family cannot take the examples."""
    if "shots" not in inspect.signature(prompt_format.encode).parameters:
        raise ValueError(
            f"the {type(prompt_format).__name__} prompt format of model family {spec.family!r} "
            "cannot render in-context examples"
        )
    needed = (shots + 1) * images_per_sample
    limit = getattr(prompt_format, "max_images", None)
    if limit is not None and needed > limit:
        raise ValueError(
            f"model family {spec.family!r} takes at most {limit} images per prompt, but {shots} shots "
            f"+ the query need {needed}; lower shots or use a family without that limit"
        )
