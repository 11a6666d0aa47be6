"""The classification, multiple-choice and caption metrics synchronise across processes: two gloo
processes, each scoring half of the samples, compute what one process scoring all of them computes
(CIDEr-D included, whose document frequencies need the whole corpus; and the classification
collection, whose metrics share their per-class counts)."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask
from mmlearn.tasks.base import Parsed
from mmlearn.tasks.captioning import CaptionMetrics
from mmlearn.tasks.multiple_choice import MultipleChoiceMetrics

CAPTIONS = [
    ("a man throws a ball", ["a man throws a ball", "a player throws"]),
    ("", ["two boys play basketball"]),  # a failed parse
    ("a girl runs a race", ["a girl runs", "a race on a track", "the girl is running"]),
    ("un homme lance un ballon é", ["un homme lance un ballon"]),
    ("two boys play", ["two boys play basketball", "boys on a court"]),
]
CLASSES = [("cat", "cat"), ("dog", None), ("cat", "dog"), ("bird", "bird"), ("dog", "dog")]  # gold, parsed
CHOICES = [("A", "A", True), ("B", None, True), ("C", "C", False), ("A", "B", False), ("D", "D", True)]


def _batches(rank=None, world=1):
    keep = [i for i in range(len(CAPTIONS)) if rank is None or i % world == rank]
    cap = (
        [Parsed((CAPTIONS[i][0],)) if CAPTIONS[i][0] else Parsed(None) for i in keep],
        [Sample(str(i), None, None, tuple(CAPTIONS[i][1])) for i in keep],
    )
    mc = (
        [Parsed((CHOICES[i][1],)) if CHOICES[i][1] else Parsed(None) for i in keep],
        [
            Sample(
                str(i), "q", Path("x.png") if CHOICES[i][2] else None, (CHOICES[i][0],), choices=tuple("ABCD")
            )
            for i in keep
        ],
    )
    cls = (
        [Parsed((CLASSES[i][1],)) if CLASSES[i][1] else Parsed(None) for i in keep],
        [Sample(str(i), "t", None, (CLASSES[i][0],)) for i in keep],
    )
    return cap, mc, cls


def _scores(rank=None, world=1):
    (cap, mc, cls), caption_metrics, choice_metrics = (
        _batches(rank, world),
        CaptionMetrics(),
        MultipleChoiceMetrics(),
    )
    class_metrics = MultiClassTask(["cat", "dog", "bird", "fish"], "{labels}").build_metrics()
    caption_metrics.update(*cap)
    choice_metrics.update(*mc)
    class_metrics.update(*cls)
    return {
        **caption_metrics.compute(),
        **{f"mc/{k}": v for k, v in choice_metrics.compute().items()},
        **{f"cls/{k}": v for k, v in class_metrics.compute().items()},
    }


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        scores = _scores(rank, world)
        if rank == 0:
            Path(out).write_text(json.dumps(scores))
    finally:
        dist.destroy_process_group()


def test_two_processes_compute_the_single_process_metrics(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.set_num_threads(1)
    out = tmp_path / "scores.json"
    # fork: the workers inherit the imported modules instead of importing torch again
    mp.start_processes(_worker, args=(2, port, str(out)), nprocs=2, join=True, start_method="fork")
    together, alone = json.loads(out.read_text()), _scores()
    assert together == pytest.approx(alone, abs=1e-6)
    half = _scores(0, 2)
    assert not math.isclose(half["cider"], alone["cider"])  # the sync is what makes them equal
    assert not math.isclose(half["cls/f1_macro"], alone["cls/f1_macro"])
    assert not math.isclose(half["cls/parse_failure_rate"], alone["cls/parse_failure_rate"])
