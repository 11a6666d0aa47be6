"""Turning the two common training failures into messages that say what happened and what to change.

- A NaN or infinite loss stops the run before the backward pass (the weights, and so the last
  checkpoint, stay good), naming the step and the batch's sample ids.
- Out of GPU memory: the error gains an estimate of where the memory goes for this model and batch,
  and the knobs that shrink each part.
"""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.callbacks import Callback

from mmlearn.memory import GIB, checkpoint_dtype_bytes, estimate_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    pass


def oom_advice(pl_module, batch: dict, trainer) -> str:
    input_ids = batch["inputs"]["input_ids"]
    batch_size, length = input_ids.shape
    # what transformers' is_activation_checkpointing reads (its older name warns in 5.x, gone in 6)
    checkpointing = any(
        getattr(m, "gradient_checkpointing", False) is True for m in pl_module.model.modules()
    )
    estimate = estimate_model(
        pl_module.model,
        dtype_bytes=checkpoint_dtype_bytes(pl_module),
        tokens=length,
        batch=batch_size,
        precision=str(trainer.precision),
        gradient_checkpointing=checkpointing,
    )
    lines = [f"  {name}: {size / GIB:.2f} GiB" for name, size in estimate.parts().items()]
    return "\n".join(
        [
            f"Out of GPU memory on a batch of {batch_size} x {length} tokens (image tokens included); "
            f"estimated need {estimate.total / GIB:.2f} GiB (mmlearn/memory.py):",
            *lines,
            "Knobs, largest effect first:",
            f"  data.batch_size={max(1, batch_size // 2)} with trainer.accumulate_grad_batches="
            f"{2 * trainer.accumulate_grad_batches} (same global batch)",
            "  model.processor_kwargs.max_pixels=<smaller> (Qwen2-VL, Qwen2.5-VL) or "
            "model.processor_kwargs.size.longest_edge=<smaller> (SmolVLM): fewer image tokens per image",
            "  model.gradient_checkpointing=true" + (" (already on)" if checkpointing else ""),
            "  peft=qlora (4-bit base weights)",
            f"  trainer.precision=bf16-mixed (now {trainer.precision})",
        ]
    )


class FaultReport(Callback):
    """Stops on a non-finite loss and explains out-of-memory errors (see the module docstring)."""

    def __init__(self) -> None:
        self._batch: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch = batch

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        bad = not torch.isfinite(loss.detach()).all()
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):  # any rank: all stop together
            return
        ids = self._batch["ids"] if self._batch is not None and bad else "(on another rank)"
        last = next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), "")
        raise NonFiniteLossError(
            f"loss is {loss.item() if bad else 'non-finite'} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}) on the batch of samples {ids}. The weights were not updated; the last "
            f"good checkpoint is {last or 'none yet'}. Lower optimizer.lr, keep trainer.gradient_clip_val, "
            "or use trainer.precision=bf16-mixed instead of 16-mixed."
        )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, torch.cuda.OutOfMemoryError) or self._batch is None:
            return
        advice = oom_advice(pl_module, self._batch, trainer)
        log.error(advice)
        if hasattr(exception, "add_note"):  # Python 3.11+: shown under the traceback
            exception.add_note(advice)
