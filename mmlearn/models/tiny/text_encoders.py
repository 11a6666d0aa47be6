"""Tiny random text encoders of the released checkpoints' own classes, each with a locally trained
tokenizer that frames text as the real one does ([CLS] ... [SEP] for DistilBERT and ModernBERT,
<s> ... </s></s> ... </s> for BART), saved like a hub checkpoint: DistilBERT and ModernBERT as their
masked-LM checkpoints are released, BART as an MNLI sequence classifier (contradiction, neutral,
entailment), so `head=nli` runs offline too."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BartConfig,
    BartForSequenceClassification,
    DistilBertConfig,
    DistilBertForMaskedLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PreTrainedTokenizerFast,
)

from mmlearn.models.tiny.random_checkpoint import scale_output_head
from mmlearn.models.tiny.tokenizer import _CORPUS

MAX_LENGTH = 512
BERT_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
BART_TOKENS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}  # bart-large-mnli's order
_EXTRA = """This text is about sports. This text is about weather. This text is about an offer.
a photo of a dog running on the grass; a man holding a ball; people at a beach; a sunset over the sea
happy sad angry calm beautiful ugly good bad great terrible love hate nice awful"""


def encoder_tokenizer(tokens: dict[str, str], vocab_size: int, single: str, pair: str, lowercase: bool):
    """Byte-level BPE trained on the tiny corpus, with the family's framing of one text and of a pair."""
    specials = list(dict.fromkeys(tokens.values()))
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [line for line in (_CORPUS + _EXTRA).splitlines() if line.strip()]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    ids = {t: tok.token_to_id(t) for t in specials}
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, i) for t, i in ids.items()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH, **tokens)


def _save(model, tokenizer, output_dir: Path) -> Path:
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return Path(output_dir)


def build_tiny_distilbert(
    output_dir,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vocab_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    tokenizer = encoder_tokenizer(
        BERT_TOKENS, vocab_size, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1", True
    )
    config = DistilBertConfig(
        vocab_size=max(vocab_size, len(tokenizer)),
        dim=hidden_size,
        hidden_dim=hidden_size * 2,
        n_layers=num_layers,
        n_heads=num_heads,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = DistilBertForMaskedLM(config)
    scale_output_head(model, output_logit_scale)
    return _save(model, tokenizer, Path(output_dir))


def build_tiny_modernbert(
    output_dir,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vocab_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    tokenizer = encoder_tokenizer(
        BERT_TOKENS, vocab_size, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1", False
    )
    ids = tokenizer.convert_tokens_to_ids
    config = ModernBertConfig(
        vocab_size=max(vocab_size, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=ids("[PAD]"),
        bos_token_id=ids("[CLS]"),
        eos_token_id=ids("[SEP]"),
        cls_token_id=ids("[CLS]"),
        sep_token_id=ids("[SEP]"),
        global_attn_every_n_layers=2,
        local_attention=16,
    )
    torch.manual_seed(seed)
    model = ModernBertForMaskedLM(config)
    scale_output_head(model, output_logit_scale)
    return _save(model, tokenizer, Path(output_dir))


def build_tiny_bart(
    output_dir,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vocab_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """An MNLI-shaped classifier: `output_logit_scale` scales its output layer, as the VLM presets scale
    their LM head, so that the random entailment scores are not all near-uniform."""
    tokenizer = encoder_tokenizer(BART_TOKENS, vocab_size, "<s> $A </s>", "<s> $A </s> </s> $B </s>", False)
    ids = tokenizer.convert_tokens_to_ids
    config = BartConfig(
        vocab_size=max(vocab_size, len(tokenizer)),
        d_model=hidden_size,
        encoder_layers=num_layers,
        decoder_layers=num_layers,
        encoder_attention_heads=num_heads,
        decoder_attention_heads=num_heads,
        encoder_ffn_dim=hidden_size * 2,
        decoder_ffn_dim=hidden_size * 2,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=ids("<pad>"),
        bos_token_id=ids("<s>"),
        eos_token_id=ids("</s>"),
        decoder_start_token_id=ids("</s>"),
        forced_eos_token_id=ids("</s>"),
        id2label=NLI_LABELS,
        label2id={v: k for k, v in NLI_LABELS.items()},
    )
    torch.manual_seed(seed)
    model = BartForSequenceClassification(config)
    with torch.no_grad():
        model.classification_head.out_proj.weight.mul_(output_logit_scale)
    return _save(model, tokenizer, Path(output_dir))
