"""Interrupted runs continue exactly: SIGKILL mid-epoch (resume from the last periodic checkpoint) and
SIGTERM (a checkpoint written on the signal) both end with the adapter, metrics and final trainer state
of an uninterrupted run, bit for bit. The runs also carry credentials, which must appear nowhere."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from omegaconf import OmegaConf
from safetensors.torch import load_file

from mmlearn.data.resumable import EpochRandomSampler, ResumableDataLoader
from mmlearn.resume import ResumeCheckpoint
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SECRET = "wandb-key-do-not-leak-0123456789"


@pytest.fixture(scope="module")
def odd_demo(tmp_path_factory):
    from mmlearn.data.demo import build_demo

    return build_demo(
        tmp_path_factory.mktemp("data") / "demo",
        splits={"train": 16, "val": 9, "test": 9},
        image_size=56,
        seed=0,
    )


def _overrides(demo, run):
    return [
        "logger=csv",
        f"data.root={demo}",
        "data.prepare.splits={train: 16, val: 9, test: 9}",
        "data.batch_size=2",  # 8 steps an epoch
        "data.eval_batch_size=9",
        "optimizer.lr=3e-3",
        "trainer.max_steps=12",
        "+trainer.val_check_interval=4",  # validation mid-epoch too
        "callbacks.resume_checkpoint.every_n_train_steps=2",
        "+tracking_key=${oc.env:WANDB_API_KEY}",
        f"hydra.run.dir={run}",
    ]


def _env():
    return dict(os.environ, WANDB_API_KEY=SECRET, OMP_NUM_THREADS="1")


def _train(demo, run, *extra):
    out = subprocess.run(
        [sys.executable, "train.py", *_overrides(demo, run), *extra],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _refused(demo, run, *extra) -> str:
    cmd = [sys.executable, "train.py", *_overrides(demo, run), *extra]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    return out.stdout + out.stderr


def _interrupt(demo, run, sig, after_step):
    """Starts a run and sends `sig` once last.ckpt holds a step >= after_step; returns the process."""
    process = subprocess.Popen(
        [sys.executable, "train.py", *_overrides(demo, run)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["global_step"] >= after_step:
            process.send_signal(sig)
            break
        time.sleep(0.05)
    output, _ = process.communicate(timeout=300)
    assert not (run / "metrics.json").exists(), "the run finished before it could be interrupted"
    return process, output


def _step(run):
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_qwen2vl, odd_demo):
    run = tmp_path_factory.mktemp("base") / "run"
    _train(odd_demo, run)
    return run


def _assert_same_run(run, reference):
    ours, theirs = (
        load_file(run / "adapter/adapter_model.safetensors"),
        load_file(reference / "adapter/adapter_model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )
    a, b = (torch.load(r / "checkpoints/last.ckpt", weights_only=True) for r in (run, reference))
    assert a["global_step"] == b["global_step"] == 12
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert (run / "predictions/test.jsonl").read_text() == (reference / "predictions/test.jsonl").read_text()


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path, uninterrupted, odd_demo):
    run = tmp_path / "killed"
    process, _ = _interrupt(odd_demo, run, signal.SIGKILL, after_step=4)
    assert process.returncode == -signal.SIGKILL
    stopped_at = _step(run)
    assert 4 <= stopped_at < 12 and stopped_at % 8 != 0  # mid-epoch
    restart = _refused(odd_demo, run)
    assert "resume=true" in restart  # never silently started over
    changed = _refused(odd_demo, run, "resume=true", "optimizer.lr=1e-3")
    assert "differs from the run's" in changed and "optimizer.lr" in changed
    _train(odd_demo, run, "resume=true")
    _assert_same_run(run, uninterrupted)


def test_sigterm_saves_a_checkpoint_then_resume_matches(tmp_path, uninterrupted, odd_demo):
    run = tmp_path / "preempted"
    _, output = _interrupt(odd_demo, run, signal.SIGTERM, after_step=2)
    stopped_at = _step(run)
    assert f"SIGTERM: saved {run / 'checkpoints' / 'last.ckpt'} at step {stopped_at}" in output, output[
        -3000:
    ]
    # the run started before mmlearn had the `report` settings: they continue at their defaults...
    saved = OmegaConf.load(run / "config.yaml")
    report = OmegaConf.to_container(saved.report)
    del saved["report"]
    (run / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    # ...unless the resuming command sets one, which is a change like any other
    changed = _refused(odd_demo, run, "resume=true", "report.max_errors=3")
    assert "differs from the run's" in changed and "report.max_errors" in changed
    _train(odd_demo, run, "resume=true")
    _assert_same_run(run, uninterrupted)
    assert OmegaConf.to_container(OmegaConf.load(run / "config.yaml").report) == report


def test_no_credential_in_any_file_of_the_run(uninterrupted):
    leaked = [
        str(path.relative_to(uninterrupted))
        for path in uninterrupted.rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]
    assert leaked == []
    assert "<WANDB_API_KEY>" in (uninterrupted / "config.yaml").read_text()


# --- the resume checkpoint on its own: a bare Lightning fit whose LR schedule reads its length early ------
class _Recorder(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.flatten().tolist())
        return self.layer(batch.float()).sum()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        steps = self.trainer.estimated_stepping_batches  # builds the train loader before any restore
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self):
        data = torch.arange(12).view(12, 1)
        return ResumableDataLoader(data, batch_size=2, sampler=EpochRandomSampler(data, seed=0))


def _bare_fit(directory, max_steps, ckpt_path=None) -> list:
    module = _Recorder()
    trainer = Trainer(
        max_steps=max_steps,
        callbacks=[ResumeCheckpoint(dirpath=directory, every_n_train_steps=2)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return module.seen


def test_the_resume_checkpoint_hands_the_loader_its_position(tmp_path, monkeypatch):
    """Stopped at step 4 of 6 in the first epoch: the resumed run draws exactly the batches the
    uninterrupted one drew after step 4; without the hand-over the epoch would start again."""
    full = _bare_fit(tmp_path / "full", max_steps=8)
    assert len(full) == 8
    stopped = _bare_fit(tmp_path / "run", max_steps=4)
    last = tmp_path / "run" / "last.ckpt"
    assert stopped == full[:4] and torch.load(last, weights_only=False)["global_step"] == 4
    assert _bare_fit(tmp_path / "run", max_steps=8, ckpt_path=last) == full[4:]
    monkeypatch.setattr(ResumeCheckpoint, "on_train_start", lambda self, trainer, module: None)
    assert _bare_fit(tmp_path / "run", max_steps=8, ckpt_path=last) != full[4:]
