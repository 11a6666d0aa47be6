"""Exporting a finished training run: the adapter merged into its base model (a plain model directory
that `from_pretrained` loads), or the adapter alone with the processor; either with the run's
mmlearn.json and a model card saying what it was exported from."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from mmlearn.artefacts import describe_export, read_description, write_description
from mmlearn.checkpointing import save_directory_atomic
from mmlearn.evaluation import load_run_config
from mmlearn.models.adapters import load_adapter

log = logging.getLogger(__name__)


def merge_adapter(spec, adapter_dir: Path):
    """Base (unquantised, in the spec's dtype) + adapter, folded into plain weights."""
    base = spec.load_model(quantization=None)
    return load_adapter(base, adapter_dir).merge_and_unload()


def export(cfg: DictConfig) -> Path:
    run_dir = Path(cfg.run_dir)
    out = Path(cfg.output_dir)
    adapter_dir = run_dir / "adapter"
    if not adapter_dir.is_dir():
        raise FileNotFoundError(
            f"{adapter_dir} not found: only adapter runs can be exported (a full fine-tune's model/ "
            "directory already loads with from_pretrained)"
        )
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another output_dir")
    run_cfg = load_run_config(run_dir)
    spec = instantiate(run_cfg.model, _convert_="all")
    description = read_description(adapter_dir)
    if description is None:
        log.warning(
            "%s has no mmlearn.json (trained before mmlearn wrote it): the export has none", adapter_dir
        )

    def save(staging: Path) -> None:
        if cfg.merge:
            merge_adapter(spec, adapter_dir).save_pretrained(staging)
        else:
            shutil.copytree(adapter_dir, staging, dirs_exist_ok=True)
        spec.load_processor().save_pretrained(staging)
        if description is not None:
            write_description(staging, describe_export(description, run_dir, cfg.merge))

    save_directory_atomic(out, save)
    log.info("exported to %s", out)
    return out
