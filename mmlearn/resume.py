"""Resuming a run exactly where it stopped: the run directory's checks, the resume checkpoint, and
per-step seeding so that a resumed run draws the same random numbers as an uninterrupted one."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# differs between a run and its continuation by definition
RESUME_KEYS = ("resume",)


class RunDirectoryInUse(RuntimeError):
    pass


def _flatten(node, prefix="", in_list=False):
    """(dotted key, value, whether the key passes through a list) for every leaf."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.", in_list)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _flatten(value, f"{prefix}{i}.", True)
    else:
        yield prefix.rstrip("."), node, in_list


def compare_configs(saved: dict, new: dict) -> tuple[list[str], dict[str, object]]:
    """(keys whose value differs between the run's saved config and this one, resume aside: changed
    values, settings the run had that this config lacks, list entries on either side only;
    settings that did not exist when the run started, i.e. keys outside any list that only this
    config has, with their values here)."""
    old = {k: v for k, v, _ in _flatten(saved)}
    now = {k: (v, in_list) for k, v, in_list in _flatten(new)}
    added = {k: v for k, (v, in_list) in now.items() if k not in old and not in_list and k not in RESUME_KEYS}
    differing = {k for k in old.keys() | now.keys() if old.get(k, "<absent>") != now.get(k, ("<absent>",))[0]}
    return sorted(k for k in differing - added.keys() if k not in RESUME_KEYS), added


def command_line_keys() -> set[str]:
    """The dotted keys this run's command line sets (`a.b=1`, `+a.b=1`, `++a.b=1`); a config group
    choice (`model=qwen2vl`) selects a file and names no setting. Empty outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}


def check_run_dir(out: Path, config: dict, resume: bool, explicit: set[str] = frozenset()) -> dict:
    """A finished run is never touched; an unfinished one only continued, with the same config.
    Settings added to mmlearn since the run started continue at their defaults (returned, and logged);
    setting one of them on the command line (`explicit`) is a change like any other."""
    if (out / "metrics.json").exists():
        raise RunDirectoryInUse(
            f"{out} already holds a finished run (metrics.json); choose another hydra.run.dir"
        )
    saved = out / "config.yaml"
    if not resume:
        if saved.exists():
            raise RunDirectoryInUse(
                f"{out} holds an unfinished run (config.yaml, no metrics.json): pass resume=true to "
                "continue it, or choose another hydra.run.dir"
            )
        return {}
    if not saved.exists():
        raise RunDirectoryInUse(f"resume=true, but {out} holds no run (no config.yaml) to continue")
    differing, added = compare_configs(OmegaConf.to_container(OmegaConf.load(saved)), config)
    differing += sorted(k for k in added if k in explicit)
    if differing:
        raise RunDirectoryInUse(
            f"resume=true, but the config differs from the run's {saved} in: {', '.join(differing)}"
        )
    if added:
        log.warning(
            "resume: settings added since this run started continue at their defaults: %s",
            ", ".join(f"{k}={v!r}" for k, v in added.items()),
        )
    return added


def resume_checkpoint_path(trainer) -> str | None:
    """`last.ckpt` of the checkpoint callback that keeps one; None (start over) if the run never saved."""
    keeper = next((c for c in trainer.checkpoint_callbacks if c.save_last), None)
    if keeper is None or keeper.dirpath is None:
        raise ValueError("resume=true needs a ModelCheckpoint with save_last (callbacks.resume_checkpoint)")
    path = Path(keeper.dirpath) / f"{keeper.CHECKPOINT_NAME_LAST}{keeper.FILE_EXTENSION}"
    if not path.is_file():
        log.warning(
            "resume=true: %s does not exist (stopped before the first checkpoint); starting over", path
        )
        return None
    log.info("resuming from %s", path)
    return str(path)


class ResumeCheckpoint(ModelCheckpoint):
    """Keeps `last.ckpt` for resume=true: every `every_n_train_steps`, after every validation during fit,
    and when SIGTERM (preemption, `scancel`, a spot-instance notice) stops the run.

    Never between a training step and the validation that follows it: Lightning resumes such a
    checkpoint past that validation, and the run would choose its best checkpoint among fewer scores.
    Lightning turns SIGTERM into a `SIGTERMException` at the next batch boundary, on every rank at once;
    the state there is consistent. A SIGTERM during validation keeps the previous checkpoint: the
    half-run validation's metric states are not in a checkpoint, so its scores could not be reproduced.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        # Lightning hands the checkpoint's loader state to the train loader when it builds the loader
        # after restoring; `estimated_stepping_batches` (the LR schedule's length) builds it before, and
        # the state would be dropped. The loader's iterator starts at the first batch, so not too late.
        trainer.fit_loop._load_combined_loader_states()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        fetcher = trainer.fit_loop._data_fetcher
        if fetcher is not None and trainer.fit_loop.epoch_loop._should_check_val_fx(fetcher):
            return  # saved in on_validation_end instead
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if not trainer.training:
            log.warning("SIGTERM during %s: keeping the previous checkpoint", trainer.state.stage)
            return
        # the signal may land right after this step's own save: then last.ckpt already holds this step
        if self._last_global_step_saved != trainer.global_step:
            if self._should_skip_saving_checkpoint(trainer):
                return
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        log.warning(
            "SIGTERM: saved %s at step %d; continue with resume=true",
            self.last_model_path,
            trainer.global_step,
        )


class StepSeed(Callback):
    """Seeds torch, numpy and random from (seed, epoch, batch) before every training batch, so dropout
    depends on where training is, not on how much randomness ran before (data loading, validation, a
    restart). Lightning does not keep the RNG state in checkpoints; this makes keeping it unnecessary."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, batch_idx]).generate_state(2)
        torch.manual_seed(int(state[0]))  # all CUDA devices too
        np.random.seed(int(state[1]))
        random.seed(int(state[0]))
