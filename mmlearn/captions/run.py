"""`caption.py model=<VLM> data=<dataset> output=<captions.csv>` (or `run_dir=<a captioning run>`): every
image of every split captioned in batches of `data.eval_batch_size`, streamed to a part file that a
killed run continues (mmlearn/prediction/partfile.py), then written atomically as `id,text` with a
sidecar `<output>.json` recording model, prompt, decoding, counts and time."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mmlearn.captions.task import ImageDescription
from mmlearn.data.collate import PromptCollator
from mmlearn.decoding import DecodingContext, generate_answers, generate_kwargs
from mmlearn.evaluation.command_line import hydra_command_line, read_command_line
from mmlearn.evaluation.config import load_run_config
from mmlearn.inference import load_predictor
from mmlearn.io import write_atomic, write_json, write_jsonl
from mmlearn.prediction.partfile import PartFile
from mmlearn.prediction.run import autocast, place
from mmlearn.tasks.captioning import clean_caption

log = logging.getLogger(__name__)


def caption(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict:
    """Writes `cfg.output` and its sidecar; returns the sidecar. `overrides`: the command line applied
    over a run's config (None: the running Hydra app's)."""
    output = Path(cfg.output)
    if output.suffix != ".csv":
        raise ValueError(f"output={output}: captions are written as a CSV (id,text); name a .csv file")
    command = hydra_command_line() if overrides is None else list(overrides)
    named = read_command_line(command, cfg).under("decoding")
    if named:
        raise ValueError(
            f"caption.py generates greedily up to max_new_tokens={cfg.max_new_tokens} tokens; "
            f"{', '.join(named)} does not apply (set max_new_tokens=...)"
        )
    predictor = load_predictor(cfg, command)
    config = predictor.config
    if not predictor.modality.image:
        raise ValueError(f"caption.py describes images: modality={predictor.modality.name} has none")
    instruction = prompt(cfg)
    task = ImageDescription(instruction)
    module, datamodule = predictor.module, predictor.datamodule
    datamodule.setup()  # every split the dataset has
    samples = unique_images(datamodule)
    context = DecodingContext(module.model, module.processor, module.spec.prompt, task)
    collate = PromptCollator(module.processor, module.spec.prompt, task, inputs=datamodule.inputs)
    device = place(predictor, config.trainer)
    key = {
        "data": OmegaConf.to_container(config.data, resolve=True),
        "model": config.model.name,
        "run_dir": None if not cfg.run_dir else str(Path(cfg.run_dir).resolve()),
        "prompt": instruction,
        "generate_kwargs": generate_kwargs(context, cfg.max_new_tokens),
    }
    part = PartFile(output, json.loads(json.dumps(key, default=str)), bool(cfg.resume))
    resumed, started = len(part.records), time.perf_counter()
    done = {r["id"] for r in part.records}
    todo = [s for s in samples if s.id not in done]
    lost: list[dict] = []
    size = datamodule.eval_batch_size
    progress = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="image", desc="caption",
                    disable=not config.trainer.enable_progress_bar)  # fmt: skip
    try:
        with progress, autocast(device, str(config.trainer.precision)):
            for start in range(0, len(todo), size):
                batch = collate(todo[start : start + size])
                failed = [record for _, record in batch.pop("skipped", ())]  # images unreadable now
                lost += failed
                batch["inputs"] = {k: v.to(device) for k, v in batch["inputs"].items()}
                outputs = generate_answers(context, batch["inputs"], max_new_tokens=cfg.max_new_tokens)
                part.append(
                    [
                        {"id": s.id, "text": clean_caption(raw), "raw": raw}
                        for s, raw in zip(batch["samples"], outputs, strict=True)
                    ]
                )
                progress.update(len(batch["samples"]) + len(failed))
    finally:
        part.close()
    order = {s.id: i for i, s in enumerate(samples)}
    records = sorted(part.records, key=lambda r: order.get(r["id"], len(order)))
    write_atomic(output, to_csv(records))
    part.discard()
    skipped = [*datamodule.skipped(), *lost]
    sidecar = {
        "output": str(output),
        "model": config.model.name,
        "pretrained": config.model.pretrained,
        "run_dir": key["run_dir"],
        "data": config.data.name,
        "modality": predictor.modality.name,
        "prompt": instruction,
        "generate_kwargs": key["generate_kwargs"],
        "images": len(samples),
        "captions": len(records),
        "empty_captions": sum(not r["text"] for r in records),
        "captioned_before_restart": resumed,
        "skipped": len(skipped),
        "seconds": time.perf_counter() - started,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(output.with_name(output.name + ".json"), sidecar)
    if skipped:
        write_jsonl(Path(cfg.paths.output_dir) / "skipped_samples.jsonl", skipped)
        log.warning(
            "%d images skipped (data.on_bad_sample=skip); listed in skipped_samples.jsonl", len(skipped)
        )
    log.info("%d captions written to %s (%d from an earlier run's part file)", len(records), output, resumed)
    return sidecar


def prompt(cfg: DictConfig) -> str:
    """`prompt=` if given; else a captioning run's own instruction (run_dir), else `default_prompt`."""
    if cfg.prompt is not None:
        return str(cfg.prompt)
    if not cfg.run_dir:
        return str(cfg.default_prompt)
    trained = load_run_config(Path(cfg.run_dir)).data
    task = instantiate(trained, _convert_="all").task  # the run's data as it trained (its files needed)
    if task.kind != "captioning":
        raise ValueError(
            f"run_dir={cfg.run_dir} was trained on data={trained.name}, a {task.kind} task: give the "
            "caption instruction with prompt=..."
        )
    return task.instruction


def unique_images(datamodule) -> list:
    """Every split's samples, each image id once (first split first: train, val, test, ...)."""
    seen, out = set(), []
    for split in datamodule.splits:
        for sample in datamodule.splits[split]:
            if sample.id not in seen:
                seen.add(sample.id)
                out.append(sample)
    return out


def to_csv(records: list[dict]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["id", "text"])
    writer.writerows([r["id"], r["text"]] for r in records)
    return buffer.getvalue()
