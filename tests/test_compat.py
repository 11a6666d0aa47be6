"""mmlearn/compat/: each wrapped internal is still where it was checked (a failure names the library and
its installed version), does what mmlearn relies on, and each documented fallback works when it is gone."""

from __future__ import annotations

import logging
import sys
import types

import datasets
import hydra
import lightning
import pytest
import torch
import transformers
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader
from transformers import GenerationMixin, PretrainedConfig

from mmlearn.compat import datasets as compat_datasets
from mmlearn.compat import hydra as compat_hydra
from mmlearn.compat import lightning as compat_lightning
from mmlearn.compat import transformers as compat_transformers
from mmlearn.compat.torch import IndexSamplerHook

TRANSFORMERS = f"transformers {transformers.__version__}"
LIGHTNING = f"lightning {lightning.__version__}"


# --- transformers: packed scoring's generation hooks ----------------------------------------------------
class _Generating(GenerationMixin):
    pass


@pytest.mark.parametrize("hook", compat_transformers.HOOKS)
def test_the_generation_hooks_are_where_packed_scoring_calls_them(hook):
    assert callable(getattr(GenerationMixin, hook, None)), f"{TRANSFORMERS} moved GenerationMixin.{hook}"


def test_position_ids_and_next_step_inputs_are_generates():
    model = _Generating()
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    positions = compat_transformers.prepare_position_ids(
        model, torch.ones(2, 3).long(), {"attention_mask": mask}
    )
    assert positions.tolist() == [[0, 0, 1], [0, 1, 2]], f"{TRANSFORMERS}: left-padded prompt positions"
    outputs = transformers.modeling_outputs.CausalLMOutputWithPast(logits=torch.zeros(2, 3, 5))
    kwargs = {"attention_mask": mask, "position_ids": positions, "token_type_ids": torch.zeros(2, 3).long()}
    updated = compat_transformers.update_model_kwargs(model, outputs, dict(kwargs), num_new_tokens=2)
    assert updated["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], TRANSFORMERS
    assert updated["position_ids"].tolist() == [[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]], TRANSFORMERS
    assert updated["token_type_ids"].shape == (2, 5), TRANSFORMERS


def test_the_prefill_only_inputs_are_listed():
    from transformers.generation import utils

    assert hasattr(utils, "MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL"), (
        f"{TRANSFORMERS} moved transformers.generation.utils.MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL"
    )
    assert "pixel_values" in compat_transformers.prefill_only_inputs(), TRANSFORMERS


def test_the_attention_implementation_is_read_from_the_config():
    config = PretrainedConfig(attn_implementation="eager")
    assert hasattr(config, "_attn_implementation"), (
        f"{TRANSFORMERS} moved PretrainedConfig._attn_implementation"
    )
    assert compat_transformers.attn_implementation(config) == "eager", TRANSFORMERS


@pytest.mark.parametrize("hook", compat_transformers.HOOKS)
def test_packed_scoring_without_a_hook_stops_naming_share_prompt_false(hook, monkeypatch):
    from mmlearn.decoding.shared_prompt import score_with_shared_prompt

    monkeypatch.delattr(GenerationMixin, hook)
    with pytest.raises(
        compat_transformers.PackedScoringUnavailable, match=r"decoding\.share_prompt=false"
    ) as error:
        score_with_shared_prompt(
            _Generating(), {}, None, tokens_per_pass=1, segment_tokens=None, device="cpu"
        )
    assert transformers.__version__ in str(error.value) and hook in str(error.value)
    with pytest.raises(compat_transformers.PackedScoringUnavailable, match=hook):
        if hook == "_prepare_position_ids_for_generation":
            compat_transformers.prepare_position_ids(_Generating(), None, {})
        else:
            compat_transformers.update_model_kwargs(_Generating(), None, {}, 1)


def test_packed_scoring_without_the_prefill_list_stops_naming_share_prompt_false(monkeypatch):
    from transformers.generation import utils

    monkeypatch.delattr(utils, "MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL")
    with pytest.raises(compat_transformers.PackedScoringUnavailable, match=r"decoding\.share_prompt=false"):
        compat_transformers.require_generation_hooks(_Generating())


def test_without_the_attention_implementation_packed_scoring_refuses_by_name():
    from mmlearn.decoding.shared_prompt import _mask_kind

    assert compat_transformers.attn_implementation(object()) is None
    model = types.SimpleNamespace(config=types.SimpleNamespace(get_text_config=lambda: object()))
    with pytest.raises(ValueError, match=r"decoding\.share_prompt=false"):
        _mask_kind(model)


# --- lightning: where the fit loop validates, its console handler --------------------------------------
class _Tiny(LightningModule):
    def __init__(self, seen: list) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen = seen

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", self.global_step))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.seen.append((batch_idx, compat_lightning.validation_follows(self.trainer)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(torch.ones(6, 2), batch_size=1)

    def val_dataloader(self):
        return DataLoader(torch.ones(1, 2), batch_size=1)


def _fit(**trainer_args) -> list:
    seen = []
    trainer = Trainer(
        max_epochs=1,
        val_check_interval=3,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(_Tiny(seen))
    return seen


def test_validation_follows_is_the_fit_loops_own_decision():
    loop = Trainer(logger=False, enable_checkpointing=False).fit_loop
    assert hasattr(loop, "_data_fetcher"), f"{LIGHTNING} moved FitLoop._data_fetcher"
    assert callable(getattr(loop.epoch_loop, "_should_check_val_fx", None)), (
        f"{LIGHTNING} moved _TrainingEpochLoop._should_check_val_fx"
    )
    seen = _fit()
    # validation after batches 2 and 5, announced at exactly those batch ends
    assert seen == [
        (0, False), (1, False), (2, True), ("val", 3), (3, False), (4, False), (5, True), ("val", 6)
    ], LIGHTNING  # fmt: skip


def test_without_the_loop_internals_every_batch_counts_as_followed_by_validation(monkeypatch, caplog):
    """A Lightning whose loops lack both names (its own loop would use others): a stand-in trainer."""
    moved = types.SimpleNamespace(fit_loop=types.SimpleNamespace(epoch_loop=types.SimpleNamespace()))
    monkeypatch.setattr(compat_lightning, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="mmlearn.compat.lightning"):
        assert compat_lightning.validation_follows(moved) is True
        assert compat_lightning.validation_follows(moved) is True
    assert caplog.text.count("every_n_train_steps is not applied") == 1  # warned once
    assert lightning.__version__ in caplog.text


def test_the_console_handler_is_lightnings(monkeypatch):
    assert isinstance(getattr(lightning, "_console", None), logging.Handler), (
        f"{LIGHTNING} moved lightning._console"
    )
    assert compat_lightning.console_handler() is lightning._console
    monkeypatch.delattr(lightning, "_console")
    assert compat_lightning.console_handler() is None  # nothing removed


# --- datasets: a dataset's identity ---------------------------------------------------------------------
def test_the_dataset_fingerprint_identifies_its_rows():
    data = datasets.Dataset.from_dict({"a": [1, 2, 3]})
    assert isinstance(getattr(data, "_fingerprint", None), str), (
        f"datasets {datasets.__version__} moved Dataset._fingerprint"
    )
    assert compat_datasets.dataset_fingerprint(data) == data._fingerprint
    assert compat_datasets.dataset_fingerprint(data.select([0, 1])) != compat_datasets.dataset_fingerprint(
        data
    )


def test_without_a_fingerprint_files_rows_and_columns_identify_it():
    class Stored:
        def __init__(self):
            self.cache_files, self.column_names = [{"filename": "/x/data.arrow"}], ["image"]

        def __len__(self):
            return 3

    stored, in_memory = Stored(), types.SimpleNamespace(cache_files=[])
    assert compat_datasets.dataset_fingerprint(stored) == compat_datasets.dataset_fingerprint(Stored())
    assert "/x/data.arrow" in compat_datasets.dataset_fingerprint(stored)
    other = types.SimpleNamespace(cache_files=[])
    assert compat_datasets.dataset_fingerprint(in_memory) != compat_datasets.dataset_fingerprint(other)


# --- hydra: the command line as @hydra.main reads it ----------------------------------------------------
ARGV = ["-c", "job", "-cn", "train", "-i", "defaults", "-m", "a=1", "b=2", "+c.d=3"]


def test_overrides_are_read_by_hydras_own_parser():
    from hydra._internal import utils

    assert callable(getattr(utils, "get_args_parser", None)), (
        f"hydra-core {hydra.__version__} moved hydra._internal.utils.get_args_parser"
    )
    assert compat_hydra.command_line_overrides(ARGV) == ["a=1", "b=2", "+c.d=3"]


def test_the_fallback_parser_knows_every_flag_of_hydras(monkeypatch):
    from hydra._internal.utils import get_args_parser

    def flags(parser):
        return {(s, a.nargs, a.const) for a in parser._actions for s in a.option_strings} - {("-h", 0, None)}

    assert flags(compat_hydra._hydra_1_3_parser()) >= flags(get_args_parser()) - {("--version", 0, None)}, (
        f"hydra-core {hydra.__version__} changed its command-line flags: update mmlearn/compat/hydra.py"
    )
    monkeypatch.setitem(sys.modules, "hydra._internal.utils", None)  # the import fails
    assert compat_hydra.command_line_overrides(ARGV) == ["a=1", "b=2", "+c.d=3"]


# --- torch: the batches a DataLoader iterator draws -----------------------------------------------------
class _SkipTwo(IndexSamplerHook):
    skip = 2

    def index_batches(self, batches):
        return list(batches)[self.skip :]

    def batches_to_drop(self):
        return self.skip

    def __iter__(self):
        return self.hooked_iter()


def test_the_index_sampler_is_what_iterators_read():
    assert isinstance(DataLoader.__dict__.get("_index_sampler"), property), (
        f"torch {torch.__version__} moved DataLoader._index_sampler"
    )
    loader = _SkipTwo(list(range(10)), batch_size=3)
    assert [b.tolist() for b in loader] == [[6, 7, 8], [9]], f"torch {torch.__version__}"
    assert loader._hook_read


def test_when_the_hook_is_not_read_the_skipped_batches_are_loaded_and_dropped(monkeypatch, caplog):
    from mmlearn.compat import torch as compat_torch

    monkeypatch.setattr(IndexSamplerHook, "_index_sampler", DataLoader._index_sampler)
    monkeypatch.setattr(compat_torch, "_warned", [])
    with caplog.at_level(logging.WARNING, logger="mmlearn.compat.torch"):
        batches = [b.tolist() for b in _SkipTwo(list(range(10)), batch_size=3)]
    assert batches == [[6, 7, 8], [9]]
    assert "no longer reads DataLoader._index_sampler" in caplog.text
