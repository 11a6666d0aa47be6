"""Data loading that resumes exactly mid-epoch and evaluates every sample once under DDP.

Exact resume needs three things Lightning leaves to the loader:
- the shuffle order depends only on (seed, epoch), never on how much global RNG a run has consumed
  (`EpochRandomSampler`; under DDP Lightning swaps in its `DistributedSampler`, which has the same
  property);
- the loader has `state_dict()` / `load_state_dict()`: its position goes into every checkpoint and is
  handed back before the first batch of the resumed epoch (by Lightning, and by
  `mmlearn.resume.ResumeCheckpoint`, whose own state carries it too);
- the resumed epoch skips the batches already trained on by index, without loading them (through
  `mmlearn.compat.torch.IndexSamplerHook`).
"""

from __future__ import annotations

import itertools
import os

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import RandomSampler

from mmlearn.compat.torch import IndexSamplerHook


class EpochRandomSampler(RandomSampler):
    """A random permutation seeded by (seed, epoch), like `DistributedSampler`; the seed defaults to the
    one `seed_everything` published, which is also the one Lightning gives its `DistributedSampler`."""

    def __init__(self, data_source, seed: int | None = None) -> None:
        super().__init__(data_source)
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class _SkipFirst:
    """The batch sampler with its first `skip` batches left out, once (a persistent-worker iterator keeps
    this object for later epochs); its length stays the full epoch's, which is what Lightning expects (it
    adds the restored batch count to what its fetcher has seen)."""

    def __init__(self, batches, skip: int) -> None:
        self.batches = batches
        self.skip = skip

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.batches), skip, None)

    def __len__(self) -> int:
        return len(self.batches)


class ResumableDataLoader(IndexSamplerHook):
    """A DataLoader whose state is (epoch, batches served in it)."""

    _position: tuple[int, int] = (0, 0)  # (epoch, batches served) of the epoch being iterated
    _resume_at: tuple[int, int] | None = None
    _skip = 0

    def _epoch(self) -> int:
        sampler = getattr(self.batch_sampler, "sampler", None) or self.sampler
        return int(getattr(sampler, "epoch", 0))

    def index_batches(self, batches):
        return _SkipFirst(batches, self._skip) if self._skip else batches

    def batches_to_drop(self) -> int:
        return self._skip

    def __iter__(self):
        # runs at the first batch, after Lightning has called set_epoch for this epoch
        epoch = self._epoch()
        resume, self._resume_at = self._resume_at, None
        self._skip = resume[1] if resume is not None and resume[0] == epoch else 0
        iterator = self.hooked_iter()
        served, self._skip = self._skip, 0
        self._position = (epoch, served)
        for batch in iterator:
            served += 1
            self._position = (epoch, served)
            yield batch

    def state_dict(self) -> dict:
        epoch, served = self._position
        return {"epoch": epoch, "batches_served": served}

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches_served"]))


def evaluation_sampler(dataset, trainer) -> UnrepeatedDistributedSampler | None:
    """Under DDP each rank scores a disjoint slice and every sample exactly once: `DistributedSampler`
    would pad the last batch with repeated samples, which the metrics would then count twice."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
