"""torch internals: the batch sampler a `DataLoader` iterator draws from (mmlearn/data/resumable.py)."""

from __future__ import annotations

import itertools
import logging

import torch
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)


class IndexSamplerHook(DataLoader):
    """A DataLoader whose iterators draw their batches of indices from `self.index_batches(batches)`.

    Wraps the property `DataLoader._index_sampler` (checked with torch 2.14.1), which every iterator
    (single- and multi-process, and a persistent-worker iterator at each epoch) reads to build its
    index stream: the only place to leave batches out without loading them, since `batch_sampler`
    cannot be replaced after construction. Fallback, checked at each `__iter__`: if the iterator did
    not read the hook (torch moved it), the batches to leave out are loaded and dropped instead, with
    a warning once; the batches that follow are the same."""

    def index_batches(self, batches):
        """The batches of indices for this iterator; `batches` is the loader's own. Default: unchanged."""
        return batches

    def batches_to_drop(self) -> int:
        """After the hook was not read: how many leading batches `index_batches` meant to leave out."""
        return 0

    @property
    def _index_sampler(self):
        self._hook_read = True
        return self.index_batches(super()._index_sampler)

    def hooked_iter(self):
        """`super().__iter__()`, with the fallback above applied."""
        self._hook_read = False
        drop = self.batches_to_drop()
        iterator = super().__iter__()
        if drop and not self._hook_read:
            _warn_fallback()
            return itertools.islice(iterator, drop, None)
        return iterator


_warned = []


def _warn_fallback() -> None:
    if not _warned:
        _warned.append(True)
        log.warning(
            "torch %s no longer reads DataLoader._index_sampler: a resumed epoch loads the batches it "
            "skips (same batches after them, slower start)",
            torch.__version__,
        )
