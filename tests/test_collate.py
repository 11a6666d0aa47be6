"""Loss only on answer tokens, and the training prompt is exactly the evaluation prompt."""

import dataclasses

import pytest
from transformers import AutoProcessor

from mmlearn.data.collate import IGNORE_INDEX, PromptCollator, TrainCollator
from mmlearn.sample import Sample
from mmlearn.tasks import MultiLabelTask
from tests.conftest import chat_prompt


@pytest.fixture(scope="module")
def processor(tiny_qwen2vl):
    return AutoProcessor.from_pretrained(tiny_qwen2vl)


def _items(demo_dir, n=3):
    import csv

    rows = list(csv.DictReader((demo_dir / "train.csv").open()))[:n]
    return [
        Sample(
            id=r["id"],
            text=r["text"] * (i + 1),
            image_path=demo_dir / r["image_path"],
            labels=tuple(x for x in r["labels"].split(",") if x),
        )
        for i, r in enumerate(rows)
    ]


def test_labels_cover_exactly_the_answer_and_end_token(processor, demo_dir):
    task = MultiLabelTask(["red", "blue", "urgent", "question"], "Labels: {labels}.")
    items = _items(demo_dir)
    batch = TrainCollator(processor, chat_prompt(), task)(items)["inputs"]
    tok = processor.tokenizer
    for i, item in enumerate(items):
        labels = batch["labels"][i]
        answer = labels[labels != IGNORE_INDEX].tolist()
        assert answer == tok(task.answer(item), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        # the supervised span sits right after the prompt and is followed only by padding
        positions = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        length = int(batch["attention_mask"][i].sum())
        assert positions == list(range(length - len(answer), length))
        assert (batch["input_ids"][i, length:] == tok.pad_token_id).all()


def test_training_prompt_equals_generation_prompt(processor, demo_dir):
    task = MultiLabelTask(["red", "blue", "urgent", "question"], "Labels: {labels}.")
    items = _items(demo_dir)
    train = TrainCollator(processor, chat_prompt(), task)(items)["inputs"]
    evaluation = PromptCollator(processor, chat_prompt(), task)(items)["inputs"]
    for i in range(len(items)):
        prompt = evaluation["input_ids"][i][evaluation["attention_mask"][i].bool()].tolist()
        assert train["input_ids"][i, : len(prompt)].tolist() == prompt
        assert (train["labels"][i, : len(prompt)] == IGNORE_INDEX).all()
    assert (train["pixel_values"] == evaluation["pixel_values"]).all()


def test_text_only_batches_carry_no_images(processor, demo_dir):
    task = MultiLabelTask(["red", "blue", "urgent", "question"], "Labels: {labels}.")
    items = [dataclasses.replace(item, image_path=None) for item in _items(demo_dir)]
    batch = TrainCollator(processor, chat_prompt(), task)(items)["inputs"]
    assert "pixel_values" not in batch
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") not in batch["input_ids"]
