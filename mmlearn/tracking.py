"""Experiment tracking: W&B online with credentials, offline (and syncable) without."""

from __future__ import annotations

import logging
import netrc
import os
import sys

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(*, offline: bool | None = None, save_dir: str, **kwargs) -> WandbLogger:
    """Lightning's WandbLogger; `offline=None` means offline unless credentials are found."""
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
    return WandbLogger(offline=offline, save_dir=save_dir, **kwargs)


def finish_wandb_run(exit_code: int) -> None:
    """Ends the job's W&B run, so that the next job of an in-process multirun starts its own run
    instead of Lightning reusing this one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)
