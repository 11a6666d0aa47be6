"""Resuming a run exactly where it stopped: the run directory's checks, the resume checkpoint, and
per-step seeding so that a resumed run draws the same random numbers as an uninterrupted one."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from mmlearn.compat.lightning import validation_follows

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
        raise ValueError(
            "resume=true needs a checkpoint callback with save_last (callbacks.resume_checkpoint)"
        )
    path = Path(keeper.dirpath) / f"{keeper.CHECKPOINT_NAME_LAST}{keeper.FILE_EXTENSION}"
    if not path.is_file():
        log.warning(
            "resume=true: %s does not exist (stopped before the first checkpoint); starting over", path
        )
        return None
    log.info("resuming from %s", path)
    return str(path)


class ResumeCheckpoint(Checkpoint):
    """Keeps `last.ckpt` for resume=true: every `every_n_train_steps`, after every validation during fit,
    and when SIGTERM (preemption, `scancel`, a spot-instance notice) stops the run.

    Never between a training step and the validation that follows it: Lightning resumes such a
    checkpoint past that validation, and the run would choose its best checkpoint among fewer scores.
    Lightning turns SIGTERM into a `SIGTERMException` at the next batch boundary, on every rank at once;
    the state there is consistent. A SIGTERM during validation keeps the previous checkpoint: the
    half-run validation's metric states are not in a checkpoint, so its scores could not be reproduced.

    Its state carries the train loaders' positions, handed back to them when training starts: the LR
    schedule's length (`estimated_stepping_batches`) builds the train loader before the checkpoint is
    restored, and Lightning then never gives the loader its saved state. `save_last` and `save_top_k`
    are accepted for ModelCheckpoint-style configs and must be true and 0: this callback keeps only
    last.ckpt (the best checkpoint is `callbacks.model_checkpoint`'s)."""

    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"

    def __init__(
        self,
        dirpath: str | Path | None = None,
        every_n_train_steps: int | None = None,
        save_last: bool = True,
        save_top_k: int = 0,
    ) -> None:
        if save_last is not True or save_top_k != 0:
            raise ValueError(
                "callbacks.resume_checkpoint keeps last.ckpt only: it needs save_last=true and save_top_k=0 "
                f"(got save_last={save_last!r}, save_top_k={save_top_k!r}); the best checkpoint is "
                "callbacks.model_checkpoint's"
            )
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise ValueError(
                f"callbacks.resume_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}"
            )
        self.dirpath = None if dirpath is None else str(dirpath)
        self.every_n_train_steps = every_n_train_steps or 0
        self.save_last = True
        self.last_model_path = ""
        self.saved_step: int | None = None  # global step of the last save
        self.loader_states: list[dict] | None = None  # restored train-loader positions, not yet handed back
        self._trainer = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer  # whose train loaders `state_dict` reads
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def skip(self, trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self.saved_step == trainer.global_step
        )

    def save(self, trainer) -> None:
        self.last_model_path = str(self.path)  # before saving: it is part of the saved state
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resume needs it
        self.saved_step = trainer.global_step

    def state_dict(self) -> dict:
        return {
            "last_model_path": self.last_model_path,
            "saved_step": self.saved_step,
            "train_loaders": [loader.state_dict() for loader in self.stateful_loaders],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_model_path = state_dict.get("last_model_path", "")
        self.saved_step = state_dict.get("saved_step")
        self.loader_states = state_dict.get("train_loaders")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.loader_states is None:  # written before this callback kept them: Lightning's own copy
            loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
            self.loader_states = loop.get("combined_loader")

    def on_train_start(self, trainer, pl_module) -> None:
        states, self.loader_states = self.loader_states, None
        if not states:
            return
        loaders = self.stateful_loaders
        if len(loaders) != len(states):
            raise RuntimeError(
                f"resume=true: the checkpoint holds {len(states)} train-loader positions, but this run has "
                f"{len(loaders)} stateful train loaders; resume with the data config the run started with"
            )
        # the iterators start at the first batch, so the positions are in time
        for loader, state in zip(loaders, states, strict=True):
            loader.load_state_dict(state)

    @property
    def stateful_loaders(self) -> list:
        trainer = self._trainer
        return _stateful(trainer.train_dataloader if trainer is not None else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0
        if due and not self.skip(trainer) and not validation_follows(trainer):  # else on_validation_end
            self.save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.skip(trainer):
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if not trainer.training:
            log.warning("SIGTERM during %s: keeping the previous checkpoint", trainer.state.stage)
            return
        # the signal may land right after this step's own save: then last.ckpt already holds this step
        if self.saved_step != trainer.global_step:
            if self.skip(trainer):
                return
            self.save(trainer)
        log.warning(
            "SIGTERM: saved %s at step %d; continue with resume=true",
            self.last_model_path,
            trainer.global_step,
        )


def _stateful(loaders) -> list:
    """The loaders with a state, in Lightning's order (a single loader, or a list/dict of them)."""
    if isinstance(loaders, Mapping):
        return [x for value in loaders.values() for x in _stateful(value)]
    if isinstance(loaders, list | tuple):
        return [x for value in loaders for x in _stateful(value)]
    has_state = callable(getattr(loaders, "state_dict", None)) and callable(
        getattr(loaders, "load_state_dict", None)
    )
    return [loaders] if has_state else []


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
