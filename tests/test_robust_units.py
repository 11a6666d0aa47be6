"""Robustness pieces on their own: resumable data order, DDP evaluation without duplicates, atomic
writes under a crash, run-directory rules, credential redaction, device placement, safetensors only."""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from mmlearn.callbacks import gather_once
from mmlearn.checkpointing import AtomicCheckpointIO, save_directory_atomic
from mmlearn.data.resumable import EpochRandomSampler, ResumableDataLoader, evaluation_sampler
from mmlearn.io import write_json
from mmlearn.models.spec import rank_device
from mmlearn.redaction import redact_secrets
from mmlearn.resume import RunDirectoryInUse, check_run_dir, compare_configs
from tests.conftest import CONF, compose

# --- data order: a function of (seed, epoch), resumable mid-epoch --------------------------------


def _loader(seed=7):
    data = list(range(10))
    return ResumableDataLoader(data, batch_size=2, sampler=EpochRandomSampler(data, seed=seed))


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [b.tolist() for b in loader]


def test_shuffle_depends_only_on_seed_and_epoch():
    first = _epoch(_loader(), 1)
    torch.rand(100)  # consuming global randomness changes nothing
    assert _epoch(_loader(), 1) == first
    assert _epoch(_loader(), 2) != first
    assert sorted(i for batch in first for i in batch) == list(range(10))


def test_a_restored_loader_skips_exactly_the_batches_already_served():
    whole = _epoch(_loader(), 3)
    interrupted = _loader()
    interrupted.sampler.set_epoch(3)
    it = iter(interrupted)
    seen = [next(it).tolist(), next(it).tolist()]
    state = interrupted.state_dict()
    assert state == {"epoch": 3, "batches_served": 2}

    resumed = _loader()
    resumed.load_state_dict(state)
    assert len(resumed) == 5  # Lightning counts the full epoch and adds the restored progress itself
    assert seen + _epoch(resumed, 3) == whole
    assert _epoch(resumed, 4) == _epoch(_loader(), 4)  # the skip applies once

    other_epoch = _loader()
    other_epoch.load_state_dict(state)  # a checkpoint from the end of epoch 3, resumed in epoch 4
    assert _epoch(other_epoch, 4) == _epoch(_loader(), 4)


# --- DDP evaluation: every sample once, in order -------------------------------------------------


def _eval_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:

        class Trainer:
            world_size, global_rank = world, rank

        data = [f"s{i}" for i in range(9)]
        loader = torch.utils.data.DataLoader(
            data, batch_size=2, sampler=evaluation_sampler(data, Trainer), collate_fn=list
        )
        rows = [{"id": s} for batch in loader for s in batch]
        merged = gather_once(rows, world)
        if rank == 0:
            Path(out).write_text(json.dumps({"local": rows, "merged": merged}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_evaluate_each_sample_once_and_gather_in_dataset_order(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rows.json"
    mp.start_processes(_eval_worker, args=(2, port, str(out)), nprocs=2, join=True, start_method="fork")
    result = json.loads(out.read_text())
    assert len(result["local"]) == 5  # rank 0: 0, 2, 4, 6, 8 - no padding to 10
    assert [r["id"] for r in result["merged"]] == [f"s{i}" for i in range(9)]


def test_single_process_evaluation_keeps_the_default_sampler():
    class Trainer:
        world_size, global_rank = 1, 0

    assert evaluation_sampler(list(range(3)), Trainer) is None
    assert evaluation_sampler(list(range(3)), None) is None


# --- atomic files: a crash mid-write leaves the previous file -------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_checkpoint_write_that_crashes_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 2, "w": torch.ones(3)}, path)

    def torn_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 4, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path, weights_only=True)["global_step"] == 2
    assert _leftovers(path.parent) == []


def test_lightnings_trainer_uses_the_atomic_checkpoint_writer():
    from hydra.utils import instantiate

    cfg = compose(["trainer=cpu", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_an_adapter_save_that_crashes_leaves_the_previous_adapter(tmp_path):
    target = tmp_path / "adapter"
    save_directory_atomic(target, lambda d: (d / "adapter_model.safetensors").write_text("v1"))

    def crash(directory):
        (directory / "adapter_model.safetensors").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        save_directory_atomic(target, crash)
    assert (target / "adapter_model.safetensors").read_text() == "v1"
    save_directory_atomic(target, lambda d: (d / "adapter_model.safetensors").write_text("v2"))
    assert (target / "adapter_model.safetensors").read_text() == "v2"
    assert _leftovers(tmp_path) == []


def test_a_metrics_write_that_crashes_leaves_the_previous_metrics(tmp_path, monkeypatch):
    path = write_json(tmp_path / "metrics.json", {"test/f1_macro": 0.5})
    real_fdopen = os.fdopen

    class Torn:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[:5])
            raise OSError("killed mid-write")

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Torn(real_fdopen(*a, **k)))
    with pytest.raises(OSError):
        write_json(path, {"test/f1_macro": 0.9})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"test/f1_macro": 0.5}
    assert _leftovers(tmp_path) == []


# --- run directories and resume -------------------------------------------------------------------


def test_run_directory_rules(tmp_path):
    config = {"seed": 1, "resume": False, "optimizer": {"lr": 0.1}, "trainer": {"max_steps": 12}}
    run = tmp_path / "run"
    check_run_dir(run, config, resume=False)  # new: fine
    with pytest.raises(RunDirectoryInUse, match=r"no config\.yaml"):
        check_run_dir(run, config, resume=True)
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    with pytest.raises(RunDirectoryInUse, match="resume=true"):
        check_run_dir(run, config, resume=False)  # unfinished: only continued, never restarted over
    check_run_dir(run, dict(config, resume=True), resume=True)  # resume itself may differ
    changed = dict(config, resume=True, optimizer={"lr": 0.2}, trainer={})
    with pytest.raises(RunDirectoryInUse, match=r"in: optimizer\.lr, trainer\.max_steps$"):
        check_run_dir(run, changed, resume=True)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(RunDirectoryInUse, match="finished run"):
        check_run_dir(run, dict(config, resume=True), resume=True)


def test_settings_added_since_a_run_started_continue_at_their_defaults(tmp_path, caplog):
    """mmlearn gains settings between a run's start and its resumption; their defaults keep the old
    behaviour, so the run continues (the record gains them), unless the command line sets one."""
    saved = {"seed": 1, "resume": False, "optimizer": {"lr": 0.1}, "callbacks": [{"a": 1}]}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(saved)))
    today = dict(saved, resume=True, report={"max_errors": 50}, optimizer={"lr": 0.1, "eps": 1e-8})
    with caplog.at_level("WARNING", logger="mmlearn.resume"):
        added = check_run_dir(run, today, resume=True)
    assert added == {"report.max_errors": 50, "optimizer.eps": 1e-8}
    assert "report.max_errors=50" in caplog.text and "optimizer.eps=1e-08" in caplog.text
    with pytest.raises(RunDirectoryInUse, match=r"in: report\.max_errors$"):
        check_run_dir(run, today, resume=True, explicit={"report.max_errors", "seed"})
    # a list entry is part of a value, never a new setting
    with pytest.raises(RunDirectoryInUse, match=r"in: callbacks\.0\.b$"):
        check_run_dir(run, dict(today, callbacks=[{"a": 1, "b": 2}]), resume=True)


def test_config_differences_reach_into_lists():
    assert compare_configs({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]})[0] == ["a.1.b"]
    assert compare_configs({"a": [1]}, {"a": [1, 2]})[0] == ["a.1"]


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_never_reach_the_saved_config(tmp_path, monkeypatch):
    from mmlearn.training import prepare_run_dir

    key, token = "wandb-secret-0123456789", "hf_secret_abcdefghijkl"
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("HF_TOKEN", token)
    cfg = compose(
        [
            "+tracking_key=${oc.env:WANDB_API_KEY}",
            "+note=token ${oc.env:HF_TOKEN} inline",
            "paths.root_dir=/tmp/x",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    config = redact_secrets(OmegaConf.to_container(cfg, resolve=True))
    out = prepare_run_dir(cfg, config)
    text = (out / "config.yaml").read_text()
    assert key not in text and token not in text
    saved = OmegaConf.load(out / "config.yaml")
    assert saved.tracking_key == "<WANDB_API_KEY>" and saved.note == "token <HF_TOKEN> inline"
    assert saved.optimizer.lr == cfg.optimizer.lr  # nothing else touched


def test_short_or_unrelated_environment_values_are_left_alone():
    env = {"TOKENIZERS_PARALLELISM": "false", "MY_API_KEY": "1", "HOME": "/home/someone-long"}
    assert redact_secrets({"a": "false", "b": "1", "c": "/home/someone-long"}, env) == {
        "a": "false",
        "b": "1",
        "c": "/home/someone-long",
    }


# --- model loading: device per rank, remote code off, safetensors only ----------------------------


def test_each_rank_loads_its_quantised_model_on_its_own_gpu():
    assert rank_device({"LOCAL_RANK": "1"}, cuda_available=True) == "cuda:1"
    assert rank_device({"SLURM_LOCALID": "3"}, cuda_available=True) == "cuda:3"  # srun
    assert rank_device({"LOCAL_RANK": "2", "SLURM_LOCALID": "0"}, cuda_available=True) == "cuda:2"
    assert rank_device({}, cuda_available=True) == "cuda:0"
    assert rank_device({"LOCAL_RANK": "1"}, cuda_available=False) == "cpu"


def _spec(**overrides):
    from hydra.utils import instantiate

    cfg = compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    node = OmegaConf.merge(cfg.model, {"build": None, **overrides})
    return instantiate(node, _convert_="all")


def test_load_model_passes_rank_device_remote_code_off_and_safetensors(monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}

    class Fake:
        def gradient_checkpointing_enable(self, **kwargs):
            seen["checkpointing"] = kwargs

    def fake_from_pretrained(path, **kwargs):
        seen.update(kwargs)
        return Fake()

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    _spec(pretrained="/nowhere", gradient_checkpointing=True).load_model(quantization=object())
    assert seen["device_map"] == {"": "cuda:1"}
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    assert seen["checkpointing"] == {"gradient_checkpointing_kwargs": {"use_reentrant": False}}


def test_remote_code_is_off_in_every_model_config():
    for path in sorted((CONF / "model").glob("*.yaml")):
        cfg = compose([f"model={path.stem}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
        assert cfg.model.trust_remote_code is False, path.name
        assert cfg.model.gradient_checkpointing is False, path.name


def test_a_checkpoint_with_only_pickled_weights_is_refused(tmp_path, tiny_qwen2vl):
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_qwen2vl, pickled)
    (weights,) = pickled.glob("*.safetensors")
    torch.save(load_file(weights), pickled / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(OSError, match="safetensors"):
        _spec(pretrained=str(pickled)).load_model()
    _spec(pretrained=str(tiny_qwen2vl)).load_model()  # the same checkpoint as safetensors loads


# --- scale-out configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_without_the_package_names_it(option):
    import importlib.util

    from hydra.utils import instantiate

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    cfg = compose([f"trainer={option}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    with pytest.raises(Exception, match="pip install -U deepspeed"):
        instantiate(cfg.trainer)


def test_ddp_sim_is_two_gloo_processes_on_the_cpu():
    from hydra.utils import instantiate

    cfg = compose(["trainer=ddp_sim", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.num_devices == 2 and trainer.strategy.process_group_backend == "gloo"
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
