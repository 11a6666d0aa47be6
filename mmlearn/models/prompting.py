"""How a family turns (prompt, images, answer) into model inputs: the one place where families differ
in prompt format. Training and generation batches start from the same rendered prompt, so the model is
asked exactly the same question in training and in evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100
Shot = tuple[str, list, str]  # (prompt, images, answer) of one in-context example


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _user(prompt: str, n_images: int) -> dict:
    return {"role": "user", "content": [{"type": "image"}] * n_images + [_text(prompt)]}


class ChatTemplatePrompt:
    """Families with a chat template (Qwen2-VL, Qwen2.5-VL, SmolVLM, Mllama, LLaVA-HF): images first,
    then text, in one user turn; the answer is the assistant's reply followed by the end token."""

    def __init__(self, system: str | None, max_images: int | None, nested_images: bool) -> None:
        """The values come from the family's conf/model/<family>.yaml (`prompt:`), their only home."""
        self.system = system
        self.max_images = max_images
        self.nested_images = nested_images  # processors that take one image list per prompt

    def render(self, processor, prompt: str, n_images: int, shots: Sequence[Shot] = ()) -> str:
        """Few-shot examples become earlier user/assistant turns, each with its own images."""
        messages = [{"role": "system", "content": [_text(self.system)]}] if self.system else []
        for shot_prompt, shot_images, answer in shots:
            messages.append(_user(shot_prompt, len(shot_images)))
            messages.append({"role": "assistant", "content": [_text(answer)]})
        messages.append(_user(prompt, n_images))
        return self.apply_template(processor, messages)

    def apply_template(self, processor, messages: list[dict]) -> str:
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def processor_call_kwargs(self) -> dict:
        """Extra arguments for the processor call (e.g. no special tokens when the template has them)."""
        return {}

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        """The supervised tokens of one answer: the reply as the template renders it, then the end token."""
        return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def check_images(self, images: list[list]) -> None:
        most = max((len(group) for group in images), default=0)
        if self.max_images is not None and most > self.max_images:
            raise ValueError(
                f"a prompt has {most} images but this model family takes at most {self.max_images}"
            )

    def _processor_images(self, images: list[list]):
        if not any(images):
            return None
        if self.nested_images:
            return images
        return [image for group in images for image in group]

    def encode_prompts(
        self, processor, prompts: list[str], images: list[list], padding_side: str, shots=None
    ):
        shots = shots or [()] * len(prompts)
        texts = [
            self.render(processor, p, len(group), row_shots)
            for p, group, row_shots in zip(prompts, images, shots, strict=True)
        ]
        # shot images come first, in the order their turns appear
        images = [
            [image for _, shot_images, _ in row_shots for image in shot_images] + list(group)
            for group, row_shots in zip(images, shots, strict=True)
        ]
        self.check_images(images)
        return processor(
            text=texts,
            images=self._processor_images(images),
            padding=True,
            padding_side=padding_side,
            return_tensors="pt",
            **self.processor_call_kwargs(),
        )

    def encode(
        self,
        processor,
        prompts: list[str],
        images: list[list],
        answers: list[str] | None = None,
        shots: list[Sequence[Shot]] | None = None,
    ):
        """Left-padded prompts for `generate`, or (with answers) a training batch whose labels cover
        only the answer and end tokens. `shots` (one list per prompt) are rendered as prior turns."""
        batch = self.encode_prompts(processor, prompts, images, padding_side="left", shots=shots)
        if answers is None:
            return dict(batch)
        tokenizer = processor.tokenizer
        answer_ids = [self.answer_ids(tokenizer, answer) for answer in answers]
        return append_answers(batch, answer_ids, tokenizer.pad_token_id)


def append_answers(prompts, answer_ids: list[list[int]], pad_token_id: int) -> dict:
    """Prompt tokens (padding removed) + answer tokens, right-padded; labels mask all but the answer.
    Every other per-token tensor (Mllama's cross-attention mask, IDEFICS's image attention mask, token
    types, ...) is extended over the answer with the prompt's last value, as `generate` extends it for
    the tokens it produces: an answer token attends to the images exactly as in generation. Padding
    positions get zeros."""
    prompt_ids = prompts["input_ids"]
    keep = prompts["attention_mask"].bool()
    n, seq = prompt_ids.shape
    per_token = [
        k
        for k, v in prompts.items()
        if torch.is_tensor(v) and v.dim() >= 2 and tuple(v.shape[:2]) == (n, seq)
    ]
    rows = [prompt_ids[i][keep[i]].tolist() + answer_ids[i] for i in range(n)]
    width = max(len(row) for row in rows)
    batch = {k: v for k, v in prompts.items() if k not in per_token}
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    extra = {
        k: torch.zeros((n, width, *prompts[k].shape[2:]), dtype=prompts[k].dtype)
        for k in per_token
        if k not in ("input_ids", "attention_mask")
    }
    for i, row in enumerate(rows):
        n_prompt = int(keep[i].sum())
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        labels[i, n_prompt : len(row)] = torch.tensor(answer_ids[i])
        for k, tensor in extra.items():
            prompt_values = prompts[k][i][keep[i]]
            tensor[i, :n_prompt] = prompt_values
            tensor[i, n_prompt : len(row)] = prompt_values[-1]
    batch.update(extra, input_ids=input_ids, attention_mask=attention, labels=labels)
    return batch


# --- conversations (data=conversations): several turns, images where their slots are -------------------
Conversation = Sequence[tuple[str, Sequence[str | None]]]  # (role, parts); a None part is an image slot
TRAIN_ON = ("all", "last")


def _message(role: str, parts) -> dict:
    if role == "assistant":  # one reply text, as a single-turn answer is rendered
        return {"role": role, "content": [_text("\n".join(p for p in parts if p is not None))]}
    return {"role": role, "content": [{"type": "image"} if p is None else _text(p) for p in parts]}


def _reply_text(message: dict) -> str:
    return "\n".join(item["text"] for item in message["content"] if item["type"] == "text")


def conversation_messages(prompt_format, turns: Conversation) -> list[dict]:
    """The chat-template messages of a conversation; the family's configured system prompt opens it
    unless the conversation has its own system turn."""
    messages = [_message(role, parts) for role, parts in turns]
    if prompt_format.system and (not turns or turns[0][0] != "system"):
        messages.insert(0, {"role": "system", "content": [_text(prompt_format.system)]})
    return messages


def conversation_pieces(prompt_format, processor, messages: list[dict]) -> list[tuple[str, str, int]]:
    """The conversation as the chat template renders it, cut into ("context", text, images) and
    ("reply", text, 0) pieces. Each context ends with the template's generation prompt, so every reply
    follows exactly the prompt a single-turn sample gets; a reply is trained as that family's answer
    (reply + end token, `answer_ids`), and the template's own end-of-turn text is not repeated after it.
    A template that renders earlier turns differently once later ones follow cannot be cut: refused."""
    eos = getattr(processor, "tokenizer", processor).eos_token or ""
    pieces, done, start_message = [], "", 0
    for k in [i for i, m in enumerate(messages) if m["role"] == "assistant"]:
        prompt = prompt_format.apply_template(processor, messages[:k])
        full = processor.apply_chat_template(messages[: k + 1], tokenize=False, add_generation_prompt=False)
        reply = _reply_text(messages[k])
        at = full.find(reply, len(prompt)) if full.startswith(prompt) else -1
        if not prompt.startswith(done) or at < 0 or full[len(prompt) : at].strip():
            raise ValueError(
                f"the chat template of {type(processor).__name__} renders turn {k} so that the conversation "
                "cannot be cut into prompt and reply pieces (earlier turns change, or the reply is rewritten)"
            )
        images = sum(item["type"] == "image" for m in messages[start_message:k] for item in m["content"])
        pieces += [("context", prompt[len(done) :], images), ("reply", reply, 0)]
        end, tail = at + len(reply), full[at + len(reply) :]
        done = (
            full[: end + len(eos)]
            if eos and tail.startswith(eos)
            else full[:end] + tail[: len(tail) - len(tail.lstrip())]
        )
        start_message = k + 1
    return pieces


def _encode_context(prompt_format, processor, text: str, images: list, first: bool) -> dict:
    if images and prompt_format.nested_images:
        raise ValueError(
            f"{type(prompt_format).__name__} with nested image lists cannot encode conversations with images "
            "(data=conversations supports images for families with one flat image list: qwen2vl, qwen2_5vl, llava)"
        )
    kwargs = (
        prompt_format.processor_call_kwargs()
        if first
        else {
            **prompt_format.processor_call_kwargs(),
            "add_special_tokens": False,
        }
    )
    out = processor(text=[text], images=images or None, return_tensors="pt", **kwargs)
    return dict(out)


def _conversation_row(prompt_format, processor, turns, images, train_on: str, with_replies: bool):
    """(token ids, labels, per-token extras, other tensors) of one conversation."""
    pieces = conversation_pieces(prompt_format, processor, conversation_messages(prompt_format, turns))
    pieces = pieces if with_replies else pieces[:-1]
    last_reply = max(i for i, (kind, _, _) in enumerate(pieces) if kind == "reply") if with_replies else -1
    tokenizer = getattr(processor, "tokenizer", processor)
    ids, labels, extras, tensors = [], [], {}, []
    queue = list(images)
    for index, (kind, text, n_images) in enumerate(pieces):
        if kind == "reply":
            answer = prompt_format.answer_ids(tokenizer, text)
            trained = train_on == "all" or index == last_reply
            ids += answer
            labels += answer if trained else [IGNORE_INDEX] * len(answer)
            for values in extras.values():
                values += [values[-1]] * len(answer)
            continue
        piece_images, queue = queue[:n_images], queue[n_images:]
        out = _encode_context(prompt_format, processor, text, piece_images, first=index == 0)
        piece_ids = out.pop("input_ids")[0]
        out.pop("attention_mask", None)
        for key in [
            k
            for k, v in out.items()
            if torch.is_tensor(v) and v.dim() >= 2 and v.shape[:2] == (1, len(piece_ids))
        ]:
            extras.setdefault(key, [0] * len(ids))
            extras[key] += out.pop(key)[0].tolist()
        ids += piece_ids.tolist()
        labels += [IGNORE_INDEX] * len(piece_ids)
        for values in extras.values():
            values += [0] * (len(ids) - len(values))
        tensors.append(out)
    if queue:
        raise ValueError(f"{len(queue)} image(s) left over after the conversation's image slots")
    return ids, labels, extras, tensors


def encode_conversations(
    prompt_format,
    processor,
    conversations: Sequence[Conversation],
    images: Sequence[list],
    *,
    train_on: str = "all",
    with_replies: bool = True,
) -> dict:
    """A batch of conversations (each ending with an assistant reply; images in slot order).
    `with_replies`: a training batch, right-padded, whose labels cover the replies `train_on` picks
    (`all` assistant turns or the `last`) and nothing else; without: the prompt of the last reply (every
    earlier turn included), left-padded for `generate`. A single-turn conversation encodes exactly as
    `encode` encodes (prompt, images, answer)."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"data.train_on must be one of {TRAIN_ON}, got {train_on!r}")
    prompt_format.check_images([list(group) for group in images])
    rows = [
        _conversation_row(prompt_format, processor, turns, list(group), train_on, with_replies)
        for turns, group in zip(conversations, images, strict=True)
    ]
    tokenizer = getattr(processor, "tokenizer", processor)
    return _pad_rows(rows, tokenizer.pad_token_id, left=not with_replies, with_labels=with_replies)


def _pad_rows(rows, pad_token_id: int, left: bool, with_labels: bool) -> dict:
    width = max(len(ids) for ids, _, _, _ in rows)
    keys = sorted({key for _, _, extras, _ in rows for key in extras})
    n = len(rows)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    extra = {key: torch.zeros((n, width), dtype=torch.long) for key in keys}
    for i, (ids, row_labels, extras, _) in enumerate(rows):
        span = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[i, span] = torch.tensor(ids)
        labels[i, span] = torch.tensor(row_labels)
        attention[i, span] = 1
        for key in keys:
            extra[key][i, span] = torch.tensor(extras.get(key, [0] * len(ids)))
    batch = {"input_ids": input_ids, "attention_mask": attention, **extra}
    tensors = [t for _, _, _, row_tensors in rows for t in row_tensors]
    for key in sorted({k for t in tensors for k, v in t.items() if torch.is_tensor(v)}):
        batch[key] = torch.cat([t[key] for t in tensors if key in t])
    if with_labels:
        batch["labels"] = labels
    return batch
