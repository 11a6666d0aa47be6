"""A byte-level BPE tokenizer trained locally, so tiny models need no hub download."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Enough English, JSON and prompt vocabulary for short merges; byte-level BPE encodes anything else.
_CORPUS = """
You are a helpful assistant. Classify the post. Allowed labels: Answer with a JSON array of labels.
Answer with exactly one label. Return JSON only. The answer is the label. Question: What is in this image?
Text: Context: Options: (A) (B) (C) (D) (E) The answer is A. B. C. D. E.
["red", "green", "blue", "circle", "square", "urgent", "question", "offer", "sports", "weather"]
[] ["a"] ["a", "b"] true false null 0 1 2 3 4 5 6 7 8 9 10 100 , . : ; ! ? ' " - _ ( ) [ ] { }
the a an and or not of to in on for with is are was be this that it we you they he she my your our
please help today tomorrow now meeting team project report news game match score weather storm
sale discount price buy free deal offer win prize urgent important asap immediately deadline
why how what when where who which can could would should will do does did question ask
informative not_informative hate not_hate racist sexist homophobe religion otherhate positive negative neutral
"""


def train_bpe_tokenizer(
    special_tokens: list[str],
    *,
    vocab_size: int,
    image_token: str,
    bos_token: str | None,
    eos_token: str,
    pad_token: str,
    chat_template: str | None = None,
    extra_corpus: list[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Train a tiny byte-level BPE that carries every special token of a model family."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [line for line in _CORPUS.splitlines() if line.strip()] + list(extra_corpus or [])
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens={"image_token": image_token},
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast
