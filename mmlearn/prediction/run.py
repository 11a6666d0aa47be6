"""`predict.py run_dir=<run> input=<table or folder> output=<file>`: every row of new data answered by a
run (or a base model zero-shot) with `evaluate.py split=predict`'s prompt, collator and decoder, in
batches of `data.eval_batch_size`, streamed to a part file that a killed run continues."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mmlearn.inference import Predictor, load_predictor
from mmlearn.io import write_atomic, write_json, write_jsonl
from mmlearn.prediction.inputs import check_input, read_input
from mmlearn.prediction.outputs import check_output, write_output
from mmlearn.prediction.partfile import PartFile, input_digest
from mmlearn.redaction import redact_secrets
from mmlearn.sample import Sample

log = logging.getLogger(__name__)

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # Lightning's mixed precisions


def predict(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict:
    """Answers `cfg.input` into `cfg.output`; returns the summary written to prediction.json.
    `overrides`: the command line applied over a run's config (None: the running Hydra app's)."""
    refuse_evaluation_only(cfg)
    output = Path(cfg.output)
    check_output(output)
    check_input(cfg.input)
    out = Path(cfg.paths.output_dir)
    predictor = load_predictor(cfg, overrides)
    if predictor.task.kind == "multiple_choice":
        raise ValueError(
            "predict.py reads text and image columns only; a multiple-choice run needs its options: "
            "use evaluate.py split=predict predict_file=<a file of the run's layout>"
        )
    resolved = redact_secrets(OmegaConf.to_container(predictor.config, resolve=True))
    write_atomic(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    device = place(predictor, predictor.config.trainer)
    inputs = predictor.datamodule.inputs
    samples, report = read_input(
        cfg.input, task=predictor.task, modality=predictor.modality, inputs=inputs, image_root=cfg.image_root
    )
    part = PartFile(output, resume_key(cfg, predictor), bool(cfg.resume))
    resumed = len(part.records)
    started = time.perf_counter()
    try:
        with autocast(device, str(predictor.config.trainer.precision)):
            lost = answer_rows(
                predictor, samples, part, progress=predictor.config.trainer.enable_progress_bar
            )
    finally:
        part.close()
    labels = list(getattr(predictor.task, "labels", None) or [])
    records = in_input_order(part.records, samples, part.path)
    write_output(output, records, labels)
    part.discard()
    skipped = [*report.skipped, *lost]
    summary = describe(cfg, predictor, report, records, skipped, resumed, time.perf_counter() - started)
    write_reports(out, summary, skipped)
    log.info(
        "%d answers written to %s (%d from the part file of an earlier run)", len(records), output, resumed
    )
    return summary


def refuse_evaluation_only(cfg: DictConfig) -> None:
    """evaluate.yaml's settings that predict.py does not apply are refused, not ignored."""
    used = [k for k in ("shots", "shots_per_class", "tune_thresholds") if cfg.get(k)]
    if used:
        raise ValueError(
            f"predict.py answers without {', '.join(used)}: use evaluate.py split=predict for that"
        )


def place(predictor: Predictor, trainer: DictConfig) -> torch.device:
    """The model on the GPU when the trainer config asks for one (`trainer.accelerator`), as evaluate.py's
    Trainer puts it; a model already placed (4-bit, device_map) stays where it is."""
    accelerator = str(trainer.accelerator)
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if wants_gpu and not torch.cuda.is_available():
        raise RuntimeError(
            f"trainer.accelerator={accelerator} but no CUDA device is visible: use trainer=cpu"
        )
    if wants_gpu and predictor.context.device.type == "cpu":
        predictor.module.to("cuda")
    return predictor.context.device


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST.get(precision)
    if dtype is None or device.type == "cpu":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def resume_key(cfg: DictConfig, predictor: Predictor) -> dict:
    """What a part file answers: a part file with another key is never continued."""
    config = predictor.config
    key = {
        "input": str(Path(cfg.input).resolve()),
        "input_sha256": input_digest(Path(cfg.input)),
        "image_root": None if cfg.image_root is None else str(Path(cfg.image_root).resolve()),
        "run": predictor.describe(),
        "run_dir": None if not cfg.run_dir else str(Path(cfg.run_dir).resolve()),
        "decoding": OmegaConf.to_container(config.decoding, resolve=True),
        "instruction": getattr(predictor.task, "instruction", None),
    }
    return json.loads(json.dumps(key, default=str))


def answer_rows(
    predictor: Predictor, samples: list[Sample], part: PartFile, progress: bool = True
) -> list[dict]:
    """Answers the samples the part file lacks, a batch per decoder call, each batch appended durably;
    returns the skip records of images that failed to load now (data.on_bad_sample=skip)."""
    done = {record["id"] for record in part.records}
    todo = [s for s in samples if s.id not in done]
    size = predictor.datamodule.eval_batch_size
    lost: list[dict] = []
    bar = tqdm(
        total=len(samples), initial=len(samples) - len(todo), unit="row", desc="predict", disable=not progress
    )
    with bar:
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            records, skipped = predictor.answer_batch(chunk)
            part.append(records)
            lost.extend(skipped)
            bar.update(len(chunk))
    return lost


def in_input_order(records: list[dict], samples: list[Sample], part: Path) -> list[dict]:
    order = {s.id: i for i, s in enumerate(samples)}
    strangers = [r["id"] for r in records if r["id"] not in order]
    if strangers:
        raise ValueError(
            f"{part} answers ids the input does not have ({strangers[:5]}): resume=false starts over"
        )
    return sorted(records, key=lambda r: order[r["id"]])


def describe(cfg, predictor: Predictor, report, records, skipped, resumed: int, seconds: float) -> dict:
    reasons: dict[str, int] = {}
    for item in skipped:
        reasons[item["reason_kind"]] = reasons.get(item["reason_kind"], 0) + 1
    return {
        "input": str(cfg.input),
        "output": str(cfg.output),
        "run": predictor.describe(),
        "rows_read": report.read,
        "answered": len(records),
        "answered_before_restart": resumed,
        "skipped": len(skipped),
        "skipped_by_reason": reasons,
        "parse_failure_rate": sum(not r["parse_ok"] for r in records) / max(len(records), 1),
        "seconds": seconds,
    }


def write_reports(out: Path, summary: dict, skipped: list[dict]) -> None:
    write_json(out / "prediction.json", summary)
    if skipped:
        write_jsonl(out / "skipped_samples.jsonl", skipped)
        listed = out / "skipped_samples.jsonl"
        log.warning("%d rows skipped (data.on_bad_sample=skip); listed in %s", len(skipped), listed)
