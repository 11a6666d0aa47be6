"""data=conversations: the three layouts read into the same conversations, bad rows named or counted, the
label mask exactly the assistant turns (token by token against the chat template), single-turn rows
encoded as every other dataset's, and a training step of the tiny LLaVA and Qwen2-VL on each layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

from mmlearn.data.conversations import Turn
from mmlearn.data.sample import BadSampleError
from mmlearn.models.prompting import IGNORE_INDEX, conversation_messages, encode_conversations
from tests import layouts_conversations as lc
from tests.conftest import REPO, compose

PATHS = ["paths.root_dir=/tmp/mmlearn-conversations"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return lc.write_conversations(tmp_path_factory.mktemp("conversations"))


@pytest.fixture(scope="module")
def tiny_llava(offline_env) -> Path:
    from mmlearn.models.tiny import build_preset

    path = Path(os.environ["MMLEARN_CACHE_DIR"]) / "models" / "llava_tiny"
    if not (path / "config.json").is_file():
        build_preset("llava_tiny", path)
    return path


@pytest.fixture(scope="module")
def families(tiny_qwen2vl, tiny_llava) -> dict:
    """model -> (processor, prompt format), as the run loads them; LLaVA taking two images a prompt."""
    from transformers import AutoProcessor

    out = {}
    for model, path in (("qwen2vl_tiny", tiny_qwen2vl), ("llava_tiny", tiny_llava)):
        cfg = compose([f"model={model}", *PATHS])
        changes = {"max_images": 2} if model == "llava_tiny" else {}
        out[model] = (AutoProcessor.from_pretrained(path), instantiate(cfg.model.prompt, **changes))
    return out


def read(path: Path, *overrides: str, model: str = "qwen2vl_tiny"):
    cfg = compose(
        [
            "data=conversations",
            f"model={model}",
            f"data.train_file={path}",
            f"data.val_file={path}",
            f"data.test_file={path}",
            f"data.image_root={path.parent}",
            *PATHS,
            *overrides,
        ]
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    return datamodule


def test_the_three_layouts_read_into_the_same_conversations(files):
    seen = {}
    for fmt, path in files.items():
        samples = read(path).splits["train"]
        seen[fmt] = [(s.id, s.turns, tuple(p.name for p in s.images), s.text, s.labels) for s in samples]
        assert seen[fmt] == [
            (s.id, s.turns, tuple(p.name for p in s.images), s.text, s.labels)
            for s in read(path, f"data.format={fmt}").splits["train"]
        ]
    assert seen["llava"] == seen["sharegpt"] == seen["openai"]
    two, system, text, one = seen["llava"]
    assert two[1][0] == Turn("user", (None, "Compare", None, "which is red?")) and two[2] == (
        "a.png",
        "b.png",
    )
    assert two[3] == "And the second?" and two[4] == ("blue",)  # the last user turn and the last reply
    assert [t.role for t in system[1]] == ["system", "user", "assistant"] and system[1][0].parts == (
        "Answer in one word.",
    )
    assert len(text[1]) == 6 and text[2] == () and one[2] == ("a.png",)


def test_role_and_content_keys_under_conversations_read_too(files, tmp_path):
    row = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = lc.write_file(tmp_path / "mixed.jsonl", [row, lc.openai_row(*lc.CONVERSATIONS[1])])
    (first, second) = read(path).splits["train"]
    assert first.id == "1" and first.turns == (Turn("user", ("hi",)), Turn("assistant", ("hello",)))
    assert second.id == "sys" and second.labels == ("red",)


def test_a_text_modality_drops_the_image_slots(files):
    samples = read(files["openai"], "modality=text").splits["train"]
    assert all(s.images == () and s.image_path is None for s in samples)
    assert samples[0].turns[0] == Turn("user", ("Compare", "which is red?"))


def test_settings_are_checked_by_key(files):
    for override, words in [
        ("data.format=alpaca", "data.format must be one of"),
        ("data.train_on=first", "data.train_on must be one of"),
        ("modality=image", "modality=image would send no turn"),
    ]:
        with pytest.raises(InstantiationException, match=words):
            read(files["llava"], override)


def test_a_layout_given_that_the_rows_do_not_have_is_an_error_naming_the_row(files):
    with pytest.raises(BadSampleError, match=rf"{files['openai']}:1: .*'conversations'"):
        read(files["openai"], "data.format=llava")


@pytest.fixture(scope="module")
def bad_file(files) -> Path:
    good = lc.llava_row(*lc.CONVERSATIONS[3])
    rows = [good, *[row for row, _ in lc.BAD_ROWS.values()]]
    path = lc.write_file(files["llava"].parent / "bad.json", rows)
    lines = path.with_suffix(".jsonl")
    lines.write_text(json.dumps(good) + "\n{not json\n" + json.dumps([1, 2]) + "\n")
    return path


@pytest.mark.parametrize("number", range(2, 2 + len(lc.BAD_ROWS)))
def test_a_bad_row_stops_the_run_naming_file_and_row(bad_file, number):
    row, words = list(lc.BAD_ROWS.values())[number - 2]
    path = bad_file.parent / f"bad-{number}.json"
    lc.write_file(path, [lc.llava_row(*lc.CONVERSATIONS[3]), row])
    with pytest.raises(BadSampleError) as error:
        read(path)
    assert f"{path}:2: " in str(error.value) and words in str(error.value)
    assert "data.on_bad_sample=skip" in str(error.value)


def test_bad_rows_are_skipped_and_counted_with_on_bad_sample_skip(bad_file):
    datamodule = read(bad_file, "data.on_bad_sample=skip")
    assert [s.id for s in datamodule.splits["train"]] == ["one"]
    skipped = datamodule.skipped()
    assert [r["source"] for r in skipped if r["split"] == "train"] == [
        f"{bad_file}:{n}" for n in (2, 3, 4, 5)
    ]
    assert datamodule.summary()["train"]["samples_skipped"] == 4
    jsonl = read(bad_file.with_suffix(".jsonl"), "data.on_bad_sample=skip")
    reasons = [r["reason"] for r in jsonl.skipped() if r["split"] == "train"]
    assert (
        len(jsonl.splits["train"]) == 1
        and "malformed JSON line" in reasons[0]
        and "not a JSON object" in reasons[1]
    )


def _images(sample) -> list:
    return [Image.open(p).convert("RGB") for p in sample.images]


def _runs(labels: torch.Tensor) -> list[list[int]]:
    """The contiguous spans of supervised tokens."""
    runs, current = [], []
    for value in [*labels.tolist(), IGNORE_INDEX]:
        if value != IGNORE_INDEX:
            current.append(value)
        elif current:
            runs, current = [*runs, current], []
    return runs


def _encode(families, model, sample, train_on="all"):
    processor, prompt = families[model]
    turns = [(t.role, t.parts) for t in sample.turns]
    batch = encode_conversations(prompt, processor, [turns], [_images(sample)], train_on=train_on)
    return processor, prompt, batch


@pytest.mark.parametrize("model", ["qwen2vl_tiny", "llava_tiny"])
@pytest.mark.parametrize("train_on", ["all", "last"])
def test_the_labels_cover_exactly_the_assistant_turns(files, families, model, train_on):
    for sample in read(files["sharegpt"]).splits["train"]:
        processor, prompt, batch = _encode(families, model, sample, train_on)
        replies = [t.text for t in sample.turns if t.role == "assistant"]
        expected = [prompt.answer_ids(processor.tokenizer, r) for r in replies]
        labels, ids = batch["labels"][0], batch["input_ids"][0]
        assert _runs(labels) == (expected if train_on == "all" else expected[-1:]), sample.id
        supervised = labels != IGNORE_INDEX
        assert torch.equal(labels[supervised], ids[supervised])


def test_qwen2vl_tokens_are_the_chat_templates_own(files, families):
    """Qwen2-VL's template ends every reply with <|im_end|>, the end token trained after it: the whole
    sequence is the tokenised template output (its trailing newline after the last reply aside)."""
    processor, prompt = families["qwen2vl_tiny"]
    for sample in read(files["llava"]).splits["train"]:
        _, _, batch = _encode(families, "qwen2vl_tiny", sample)
        messages = conversation_messages(prompt, [(t.role, t.parts) for t in sample.turns])
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        whole = processor(text=[text], images=_images(sample) or None, return_tensors="pt")
        template, ours = whole["input_ids"][0], batch["input_ids"][0]
        assert torch.equal(template[: len(ours)], ours), sample.id
        assert processor.tokenizer.decode(template[len(ours) :]) == "\n"
        if sample.images:
            assert torch.equal(batch["pixel_values"], whole["pixel_values"])
            assert torch.equal(batch["image_grid_thw"], whole["image_grid_thw"])


REAL_LLAVA = REPO.parent / "shared" / "real_processors" / "llava"


@pytest.mark.skipif(
    not REAL_LLAVA.is_dir(), reason=f"the real LLaVA processor files are not here ({REAL_LLAVA})"
)
def test_llava_replies_are_the_real_templates_generation_spans(files):
    """LLaVA-1.5's real template marks each reply as {% generation %}: the spans it marks, under the real
    tokenizer, are exactly the replies mmlearn trains on (mmlearn adds the end token after each, as
    LLaVA's own training does, where the HF template writes a space)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(REAL_LLAVA)
    prompt = instantiate(compose(["model=llava", *PATHS]).model.prompt)
    tokenizer = processor.tokenizer
    for sample in read(files["openai"], "modality=text").splits["train"]:
        turns = [(t.role, t.parts) for t in sample.turns]
        batch = encode_conversations(prompt, processor, [turns], [[]])
        out = processor.apply_chat_template(
            conversation_messages(prompt, turns),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        mask, ids = torch.tensor(out["assistant_masks"]).flatten(), torch.tensor(out["input_ids"]).flatten()
        marked = [tokenizer.decode(run).strip() for run in _runs(torch.where(mask.bool(), ids, IGNORE_INDEX))]
        ours = _runs(batch["labels"][0])
        replies = [t.text for t in sample.turns if t.role == "assistant"]
        assert [tokenizer.decode(run[:-1]) for run in ours] == replies
        # the template marks characters, so a marked span may end in a token shared with what follows
        # ("the first " + "USER" -> "... first", "US"): each marked span starts with its reply
        assert len(marked) == len(replies) and all(
            m.startswith(r) for m, r in zip(marked, replies, strict=True)
        )
        assert all(run[-1] == tokenizer.eos_token_id for run in ours)
        for run in ours:  # the reply tokens are the template's own, in the conversation's context
            assert any(ids[i : i + len(run) - 1].tolist() == run[:-1] for i in range(len(ids)))


@pytest.mark.parametrize("model", ["qwen2vl_tiny", "llava_tiny"])
def test_a_single_turn_conversation_encodes_as_every_dataset_does(files, families, model):
    processor, prompt = families[model]
    image = Image.open(files["llava"].parent / "a.png").convert("RGB")
    turns = [("user", (None, "What colour is this?")), ("assistant", ("red",))]
    for with_replies in (True, False):
        ours = encode_conversations(
            prompt,
            processor,
            [turns, [*turns[:1], ("assistant", ("blue",))]],
            [[image], [image]],
            with_replies=with_replies,
        )
        answers = ["red", "blue"] if with_replies else None
        theirs = prompt.encode(processor, ["What colour is this?"] * 2, [[image], [image]], answers=answers)
        assert set(ours) == set(theirs)
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key


def test_more_images_than_the_family_takes_is_a_bad_row(files, families):
    datamodule = read(files["llava"], model="llava_tiny")
    processor = families["llava_tiny"][0]
    prompt = instantiate(compose(["model=llava_tiny", *PATHS]).model.prompt)  # at most one image
    with pytest.raises(BadSampleError, match=rf"{files['llava']}:1: a prompt has 2 images .* at most 1"):
        datamodule.connect(processor, prompt)
    skipping = read(files["llava"], "data.on_bad_sample=skip", model="llava_tiny")
    skipping.connect(processor, prompt)
    assert [s.id for s in skipping.splits["train"]] == ["sys", "text", "one"]
    assert [r["reason_kind"] for r in skipping.skipped()] == ["model"]


def test_token_counts_are_the_encoded_lengths(files, families):
    datamodule = read(files["openai"])
    processor, prompt = families["qwen2vl_tiny"]
    datamodule.connect(processor, prompt)
    for sample, n in zip(datamodule.splits["train"], datamodule.lengths["train"], strict=True):
        assert n == int(_encode(families, "qwen2vl_tiny", sample)[2]["attention_mask"].sum())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["llava", "sharegpt", "openai"])
@pytest.mark.parametrize("model", ["qwen2vl_tiny", "llava_tiny"])
def test_a_training_step_on_each_layout(files, tiny_qwen2vl, tiny_llava, tmp_path, fmt, model):
    from mmlearn.training import train

    path = files[fmt]
    cfg = compose(
        [
            "data=conversations",
            f"model={model}",
            "model.prompt.max_images=2",  # the two-image conversation (LLaVA-1.5 was trained on one)
            f"data.train_file={path}",
            f"data.val_file={path}",
            f"data.test_file={path}",
            f"data.image_root={path.parent}",
            "data.batch_size=2",
            "data.max_new_tokens=6",
            "trainer.max_steps=1",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            *PATHS,
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    metrics = train(cfg)
    assert set(metrics) >= {"test/rouge_l", "test/exact_match", "test/bleu4", "test/parse_failure_rate"}
    records = [
        json.loads(line) for line in (tmp_path / "run/predictions/test.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in records] == ["two", "sys", "text", "one"]
    assert [r["gold"] for r in records] == [["blue"], ["red"], ["You are welcome."], ["red"]]
