"""Experiment tracking: W&B online with credentials, offline (and syncable) without."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def sweep_group(save_dir: str, sweep_dir: str | None) -> str | None:
    """The jobs of one multirun (runs saved inside its directory) share a group named after it."""
    if sweep_dir and Path(save_dir).resolve().is_relative_to(Path(sweep_dir).resolve()):
        return Path(sweep_dir).name
    return None


def wandb_logger(
    *,
    offline: bool | None = None,
    save_dir: str,
    group: str | None = None,
    sweep_dir: str | None = None,
    **kwargs,
) -> WandbLogger:
    """Lightning's WandbLogger; `offline=None` means offline unless credentials are found, `group=None`
    means the multirun's group inside a multirun (see `sweep_group`) and no group for a single run."""
    if group is None:
        group = sweep_group(save_dir, sweep_dir)
    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not has_wandb_credentials()
    if offline:
        log.warning(
            "W&B: no credentials found, logging offline under %s; upload later with "
            "`wandb sync %s/wandb/offline-run-*`",
            save_dir,
            save_dir,
        )
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(offline=offline, save_dir=save_dir, group=group, **kwargs)


def finish_wandb_run(exit_code: int) -> None:
    """Ends the job's W&B run, so that the next job of an in-process multirun starts its own run
    instead of Lightning reusing this one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)
