"""Every `.ckpt` carries the run's config, redacted as config.yaml is: wired through conf/callbacks, read
back with `torch.load(weights_only=True)`, and a credential the config pulled in appears in no file."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf

from mmlearn.callbacks import ConfigInCheckpoint
from mmlearn.redaction import redact_secrets
from mmlearn.training import prepare_run_dir
from tests.conftest import compose, run_script

SECRET = "wandb-secret-do-not-leak-0123456789"


def _run_dir(tmp_path, monkeypatch):
    """A run directory as training prepares it, from a config that resolves a credential."""
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    cfg = compose(
        [
            "+tracking_key=${oc.env:WANDB_API_KEY}",
            "paths.root_dir=/tmp/x",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    return cfg, prepare_run_dir(cfg, redact_secrets(OmegaConf.to_container(cfg, resolve=True)))


def _fit(callback, checkpoints, **trainer):
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback, ModelCheckpoint(dirpath=checkpoints, save_last=True)], **trainer,
    )  # fmt: skip
    trainer.fit(BoringModel())
    return sorted(checkpoints.glob("*.ckpt"))


def test_checkpoints_carry_the_redacted_run_config(tmp_path, monkeypatch):
    cfg, out = _run_dir(tmp_path, monkeypatch)
    callback = instantiate(cfg.callbacks.run_config)  # as conf/callbacks/default.yaml wires it
    assert isinstance(callback, ConfigInCheckpoint)
    saved = _fit(callback, out / "checkpoints")
    assert saved, "no checkpoint was written"
    for path in saved:
        assert SECRET.encode() not in path.read_bytes()
        config = torch.load(path, weights_only=True)["run_config"]
        assert config == OmegaConf.to_container(OmegaConf.load(out / "config.yaml"))
        assert config["tracking_key"] == "<WANDB_API_KEY>"
        assert config["optimizer"]["lr"] == cfg.optimizer.lr
        assert config["paths"]["output_dir"] == str(out)


def test_a_missing_config_file_is_named(tmp_path):
    callback = ConfigInCheckpoint(str(tmp_path / "nowhere" / "config.yaml"))
    with pytest.raises(FileNotFoundError, match=r"callbacks\.run_config\.config_file=.*nowhere/config\.yaml"):
        _fit(callback, tmp_path / "checkpoints")


@pytest.mark.slow
def test_a_training_run_checkpoint_holds_its_config_and_no_secret(
    tmp_path, tiny_qwen2vl, demo_dir, monkeypatch
):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # run_script's interpreter inherits the environment
    run = tmp_path / "run"
    run_script(
        "train.py",
        "logger=csv",
        "trainer.max_steps=2",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",  # the fixture's: a different one rebuilds it
        "data.batch_size=8",  # one epoch, so validation picks a best checkpoint
        "+tracking_key=${oc.env:WANDB_API_KEY}",
        f"hydra.run.dir={run}",
    )
    saved = sorted((run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in saved} >= {"last.ckpt"} and len(saved) >= 2  # the best one too
    recorded = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    for path in saved:
        assert SECRET.encode() not in path.read_bytes()
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["run_config"] == recorded
        assert checkpoint["run_config"]["tracking_key"] == "<WANDB_API_KEY>"
        assert checkpoint["run_config"]["trainer"]["max_steps"] == 2
