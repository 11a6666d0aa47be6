"""Decoders: the trie allows exactly the valid answers, constrained generation never fails to parse,
batched scoring equals row-by-row scoring, score probabilities are distributions, tuned thresholds."""

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmlearn.building import build_datamodule, build_module
from mmlearn.data.collate import PromptCollator
from mmlearn.decoding import ConstrainedDecoder, DecodingContext, ScoreDecoder, generate_answers
from mmlearn.decoding.prefix_plan import gather_scores, plan_prefixes, tree_mask, write_edges
from mmlearn.decoding.score import score_candidates
from mmlearn.decoding.thresholds import f1_at, tune_thresholds
from mmlearn.decoding.trie import TokenTrie, answer_trie
from mmlearn.tasks import MultiClassTask, MultiLabelTask
from tests.conftest import compose
from tests.layouts_more import SPORTS100


@pytest.fixture(scope="module")
def setup(tiny_qwen2vl, demo_dir):
    """The tiny random Qwen2-VL with a fresh LoRA adapter (a PeftModel), and the small demo test split."""
    cfg = compose(
        [
            "paths.root_dir=/tmp/mmlearn-decoding",
            f"data.root={demo_dir}",
            "data.prepare.splits={train: 16, val: 8, test: 8}",
        ]
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.task).eval()
    return cfg, datamodule, module


def _batch(module, task, samples, shots=None):
    return PromptCollator(module.processor, module.spec.prompt, task, shots=shots)(samples)


def _sequences(tokenizer, answers):
    return {
        tuple(tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]) for a in answers
    }


@pytest.mark.parametrize(
    "task",
    [
        MultiClassTask(["not", "not_informative", "informative"], "x"),
        MultiLabelTask(["red", "blue", "urgent"], "x"),
    ],
    ids=["multiclass", "multilabel"],
)
def test_trie_allows_exactly_the_valid_answers(setup, task):
    tokenizer = setup[2].processor.tokenizer
    answers = [answer for answer, _ in task.candidates(limit=64)]
    assert len(answers) == (3 if task.kind == "multiclass" else 8)
    valid = _sequences(tokenizer, answers)
    trie = answer_trie(setup[2].spec.prompt, tokenizer, answers)
    assert set(trie.sequences()) == valid
    for seq in valid:  # at every step, exactly the continuations some valid answer takes
        for i in range(len(seq) + 1):
            expected = {s[i] for s in valid if s[:i] == seq[:i] and len(s) > i}
            assert set(trie.next_tokens(list(seq[:i]))) == expected
    assert trie.next_tokens([tokenizer.pad_token_id, 5]) == []


def test_multilabel_candidates_are_every_ordered_subset():
    task = MultiLabelTask(["a", "b", "c"], "x")
    answers = dict(task.candidates(limit=8))
    assert answers['["a", "c"]'] == ("a", "c") and answers["[]"] == () and len(answers) == 8
    assert all(task.parse(answer).labels == labels for answer, labels in answers.items())
    with pytest.raises(ValueError, match=r"8 possible answers.*limit of 4"):
        task.candidates(limit=4)


def test_constrained_generation_never_fails_to_parse(setup):
    """The untrained model's free generation is gibberish; constrained, through PeftModel.generate, it
    is always one of the valid answers."""
    _, datamodule, module = setup
    assert type(module.model).__name__.startswith("Peft")
    samples = datamodule.splits["test"]
    batch = _batch(module, datamodule.task, samples)
    free = module.decoder.decode(module.decoding_context, batch)
    assert sum(not d.parsed.ok for d in free) > 0  # otherwise this test would prove nothing
    constrained = ConstrainedDecoder(max_candidates=4096).decode(module.decoding_context, batch)
    valid = {answer for answer, _ in datamodule.task.candidates(limit=4096)}
    assert all(d.parsed.ok and d.output in valid for d in constrained)


def test_batched_scoring_equals_row_by_row(setup):
    """Rows scored 64 at a time and one at a time run other shapes (padding, batch size), so other
    reduction orders and, across CPUs, other kernels: in float32 that alone moves a log-likelihood
    summed over an answer's tokens by ~1e-5. The comparison runs in float64, where it moves by ~1e-13
    (eps 2.2e-16 times accumulation lengths of a few hundred at magnitudes of ~10); 1e-9 leaves a 1000x
    margin, while scoring a row against another row's prompt or padding moves it by ~1e-1."""
    cfg, datamodule, _ = setup
    module = build_module(OmegaConf.merge(cfg, {"model": {"torch_dtype": "float64"}}), datamodule.task).eval()
    samples = datamodule.splits["test"][:3]
    batch = _batch(module, datamodule.task, samples)
    answers = [answer for answer, _ in datamodule.task.candidates(limit=64)]
    kwargs = {"normalize": "sum", "device": module.device}
    with torch.no_grad():
        batched = score_candidates(
            module.model, module.processor, module.spec.prompt, batch, answers, rows_per_batch=64, **kwargs
        )
        single = score_candidates(
            module.model, module.processor, module.spec.prompt, batch, answers, rows_per_batch=1, **kwargs
        )
    assert batched.shape == (3, len(answers)) and batched.dtype == torch.float64
    torch.testing.assert_close(batched, single, atol=1e-9, rtol=0)
    assert torch.isfinite(batched).all() and (batched < 0).all()


def _score_decoder(**overrides):
    return instantiate(compose(["decoding=score", "paths.root_dir=/tmp/x"]).decoding, **overrides)


@pytest.mark.parametrize("likelihood", ["full", "constrained"])
def test_multiclass_scores_are_a_distribution_and_pick_the_argmax(setup, likelihood):
    cfg, datamodule, _ = setup
    task = MultiClassTask(["red", "blue", "none"], "Which colour? {labels}")
    module = build_module(cfg, task).eval()
    decoded = _score_decoder(likelihood=likelihood).decode(
        module.decoding_context, _batch(module, task, datamodule.splits["test"][:4])
    )
    for d in decoded:
        assert sum(d.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert d.parsed.labels == (max(d.scores, key=d.scores.get),) and d.output == d.parsed.labels[0]


def test_multilabel_scores_are_marginals_and_thresholds_decide(setup):
    _, datamodule, module = setup
    batch = _batch(module, datamodule.task, datamodule.splits["test"][:4])
    labels = datamodule.task.labels
    context = module.decoding_context
    for d in _score_decoder(threshold=0.0).decode(context, batch):
        assert all(0.0 <= p <= 1.0 for p in d.scores.values())
        assert d.parsed.labels == tuple(labels)  # every marginal >= 0
    low = {label: 0.0 if label == "blue" else 1.1 for label in labels}
    assert all(d.parsed.labels == ("blue",) for d in _score_decoder(thresholds=low).decode(context, batch))


def test_tuned_thresholds_never_lose_to_the_default_on_val():
    rng = np.random.default_rng(0)
    gold = rng.random((60, 4)) < 0.4
    scores = np.clip(0.3 * gold + rng.random((60, 4)) * 0.45, 0, 1)  # informative but all below ~0.75
    tuned = tune_thresholds(scores, gold, default=0.5)
    for k in range(4):
        assert f1_at(scores[:, k], gold[:, k], tuned[k]) >= f1_at(scores[:, k], gold[:, k], 0.5)
    assert sum(f1_at(scores[:, k], gold[:, k], tuned[k]) for k in range(4)) > sum(
        f1_at(scores[:, k], gold[:, k], 0.5) for k in range(4)
    )


def test_open_ended_tasks_get_a_clear_error_for_closed_set_decoders():
    class Captioning:  # a task without a closed answer set
        labels = ()

    for decoder in (ConstrainedDecoder(max_candidates=8), _score_decoder()):
        with pytest.raises(ValueError, match="supports only decoding=generate"):
            decoder.check(Captioning())
    with pytest.raises(InstantiationException, match=r"likelihood=constrained needs decoding\.normalize=sum"):
        _score_decoder(likelihood="constrained", normalize="mean")
    with pytest.raises(ValueError, match="normalize"):
        ScoreDecoder(
            normalize="max",
            likelihood="full",
            rows_per_batch=1,
            tokens_per_pass=1,
            segment_tokens=None,
            max_candidates=1,
            threshold=0.5,
            thresholds=None,
            share_prompt=True,
        )


def test_trie_knows_when_the_answer_is_determined():
    trie = TokenTrie([(1, 2, 3, 9), (1, 4, 9), (5, 6, 7, 9)])
    assert trie.determined([]) is None  # 1 or 5
    assert trie.determined([5]) == ([5], [6, 7, 9])
    assert trie.determined([1]) is None  # 2 or 4
    assert trie.determined([1, 4, 0, 0]) == ([1, 4], [9])  # what follows a determined answer is ignored
    assert trie.determined([1, 2, 3, 9]) == ([1, 2], [3, 9])
    assert trie.determined([8]) is None  # left the trie


def test_constrained_rows_stop_once_the_answer_is_determined(setup):
    """100 Sports names: greedy generation restricted to the trie picks the forced tokens anyway, so
    stopping a row once one path is left and appending that path gives the same answers in fewer steps."""
    _, datamodule, module = setup
    task = MultiClassTask(SPORTS100[:40], "Which sport? {labels}")
    samples = datamodule.splits["test"]
    batch = _batch(module, task, samples)
    tokenizer = module.processor.tokenizer
    trie = answer_trie(module.spec.prompt, tokenizer, SPORTS100[:40])
    start = batch["inputs"]["input_ids"].shape[1]
    context = DecodingContext(module.model, module.processor, module.spec.prompt, task)
    full = generate_answers(
        context,
        batch["inputs"],
        max_new_tokens=trie.depth,
        prefix_allowed_tokens_fn=lambda _, ids: (
            trie.next_tokens(ids[start:].tolist()) or [tokenizer.pad_token_id]
        ),
    )
    steps = []
    try:
        generate = module.model.generate

        def counting(**kwargs):
            out = generate(**kwargs)
            steps.append(out.shape[1] - start)
            return out

        module.model.generate = counting
        decoded = ConstrainedDecoder(max_candidates=64).decode(context, batch)
    finally:
        del module.model.generate
    assert [d.output for d in decoded] == full
    assert all(d.parsed.ok for d in decoded)
    assert steps[0] < trie.depth  # stopped early: the longest name alone has trie.depth tokens


def _packed_reads(plan) -> list[tuple[tuple[int, ...], int]]:
    """(prefix, node) for every packed position the plan reads: the row's tokens up to that position."""
    tokens, depths = plan.tokens.tolist(), plan.depths.tolist()
    return [
        (tuple(tokens[p - depths[p] : p + 1]), node)
        for p, node in zip(plan.read_at.tolist(), plan.read_nodes.tolist(), strict=True)
    ]


def test_prefix_plan_reads_each_distribution_once_and_stops_where_answers_are_determined():
    answers = [(1, 2, 3, 9), (1, 2, 4, 9), (5, 9)]
    full = plan_prefixes(answers, "full")
    assert full.rows == [(1, 2, 3), (1, 2, 4), (5,)]  # every answer but its last token
    assert full.tokens.tolist() == [1, 2, 3, 1, 2, 4, 5] and full.depths.tolist() == [0, 1, 2, 0, 1, 2, 0]
    read = [prefix for prefix, _ in _packed_reads(full)]
    assert sorted(read) == sorted({(1,), (1, 2), (1, 2, 3), (1, 2, 4), (5,)})  # each once
    # a packed token sees exactly the tokens of its own row up to itself
    starts = [p - d for p, d in enumerate(full.depths.tolist())]
    expected_mask = [[starts[q] <= k <= q for k in range(7)] for q in range(7)]
    assert tree_mask(full.depths).tolist() == expected_mask
    # segments: whole rows, at most `width` tokens unless one row is longer; every read kept once
    for width, expected in [(1, [3, 3, 1]), (3, [3, 3, 1]), (4, [3, 4]), (7, [7])]:
        segments = full.segments(width)
        assert [s.tokens.numel() for s in segments] == expected
        assert torch.cat([s.tokens for s in segments]).tolist() == full.tokens.tolist()
        offsets = [sum(expected[:k]) for k in range(len(expected))]
        reads = [
            (o + p, node)
            for s, o in zip(segments, offsets, strict=True)
            for p, node in zip(s.read_at.tolist(), s.read_nodes.tolist(), strict=True)
        ]
        assert reads == list(zip(full.read_at.tolist(), full.read_nodes.tolist(), strict=True))
    constrained = plan_prefixes(answers, "constrained")
    # only the branching prefixes () and (1, 2) are read; (1,) has one valid continuation (log 1)
    assert constrained.rows == [(1, 2)] and _packed_reads(constrained) == [((1, 2), 1)]
    assert constrained.num_edges == 4 and constrained.edge_candidates.tolist() == [0, 0, 1, 1, 2]

    # scores from arbitrary next-token logits equal the token-by-token sums they stand for
    generator = torch.Generator().manual_seed(0)
    prefixes = {ids[:d] for ids in answers for d in range(len(ids))}
    logits = {prefix: torch.randn(2, 12, generator=generator) for prefix in prefixes}  # 2 samples
    trie = TokenTrie(answers)
    for plan in (full, constrained):
        table = torch.zeros(2, plan.num_edges)
        reads = [((), plan.root), *_packed_reads(plan)]
        for prefix, node in reads:
            for sample in range(2):
                write_edges(
                    table,
                    torch.tensor([sample]),
                    torch.tensor([node]),
                    plan,
                    logits[prefix][sample : sample + 1],
                )
        expected = torch.zeros(2, len(answers))
        for j, ids in enumerate(answers):
            for d in range(len(ids)):
                row = logits[ids[:d]]
                allowed = trie.next_tokens(ids[:d]) if plan.restricted else list(range(12))
                expected[:, j] += row[:, ids[d]] - row[:, allowed].logsumexp(dim=1)
        torch.testing.assert_close(gather_scores(table, plan), expected)
    assert torch.allclose(gather_scores(table, constrained).exp().sum(dim=1), torch.ones(2))
