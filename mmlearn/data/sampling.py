"""Length-grouped training order: batches of similar token counts, so little of each batch is padding.

The sampler is a `DistributedSampler` subclass on purpose. Lightning leaves a `DistributedSampler` in
place under DDP (it replaces any other sampler with one that reshuffles indices, which would undo the
grouping) and calls its `set_epoch` every epoch. The sharding is done here, explicitly: every rank
builds the same global order from (seed, epoch), cuts it into batches and keeps every world-th batch,
so each rank trains on whole length-grouped batches and no index is seen twice except the few repeated
to give every rank the same number of batches (as `DistributedSampler` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from mmlearn.data.resumable import EpochRandomSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class LengthGroupedSampler(DistributedSampler):
    """Shuffle, cut into mega-batches of `megabatch_size` batches, sort each mega-batch by length
    (longest first), then shuffle the order of the full batches. Use with `DataLoader(batch_size=...)`
    equal to `batch_size` and `shuffle=False`: consecutive indices form one batch."""

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        batch_size: int,
        megabatch_size: int,
        seed: int,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        world, own_rank = _world()
        num_replicas = world if num_replicas is None else num_replicas
        rank = own_rank if rank is None else rank
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        if batch_size < 1 or megabatch_size < 1:
            raise ValueError("batch_size and megabatch_size must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.megabatch_size = megabatch_size
        batches = -(-len(self.lengths) // batch_size)
        self.batches_per_rank = -(-batches // num_replicas)
        self.num_samples = len(self._own_indices(self._global_batches()))

    def _global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        span = self.batch_size * self.megabatch_size
        grouped = []
        for start in range(0, len(order), span):
            grouped += sorted(order[start : start + span], key=lambda i: -self.lengths[i])
        batches = [grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return shuffled + [b for b in batches if len(b) < self.batch_size]  # a partial batch goes last

    def _own_indices(self, batches: list[list[int]]) -> list[int]:
        if self.num_replicas == 1:
            return [i for batch in batches for i in batch]
        needed = self.batches_per_rank * self.num_replicas
        if len(batches[-1]) < self.batch_size:  # top up the partial batch so every rank gets full ones
            batches[-1] = (batches[-1] + batches[0])[: self.batch_size]
        batches = (batches * needed)[:needed]
        return [i for batch in batches[self.rank :: self.num_replicas] for i in batch]

    def __iter__(self) -> Iterator[int]:
        return iter(self._own_indices(self._global_batches()))

    def __len__(self) -> int:
        return self.num_samples


def padding_fraction(batches) -> float:
    """Share of the computed token positions that are padding, over collated training batches."""
    real = total = 0
    for batch in batches:
        mask = batch["inputs"]["attention_mask"]
        real += int(mask.sum())
        total += mask.numel()
    return 1.0 - real / total if total else 0.0


class ClassBalancedSampler(EpochRandomSampler):
    """`data.class_balanced=true`: an epoch of len(dataset) draws with replacement, each sample drawn with
    probability proportional to 1 / (training samples of its class), so every class is drawn about
    equally often; seeded by (seed, epoch) like `EpochRandomSampler`. A multi-label sample counts in the
    rarest of its labels; samples without a label form a group of their own."""

    def __init__(self, data_source, labels: Sequence[tuple[str, ...]], seed: int | None = None) -> None:
        super().__init__(data_source, seed=seed)
        counts = Counter(label for row in labels for label in row)
        groups = [min(row, key=lambda label: (counts[label], label)) if row else None for row in labels]
        sizes = Counter(groups)
        self.weights = torch.tensor([1.0 / sizes[group] for group in groups], dtype=torch.double)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.weights)
        yield from torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist()
