"""evaluation.json: what was evaluated and how, which a comparison report needs to line modes up."""

from __future__ import annotations

from omegaconf import OmegaConf


def mode_name(run_dir, shots) -> str:
    mode = "fine-tuned" if run_dir else "zero-shot"
    if shots is not None:
        mode = f"{mode}, {shots.count}-shot" if run_dir else f"{shots.count}-shot"
    return mode


def describe(config, datamodule, decoder_name, shots, rows, seconds, thresholds) -> dict:
    task = datamodule.task
    return {
        "mode": mode_name(config.run_dir, shots),
        "run_dir": config.run_dir,
        "model": OmegaConf.select(config, "backend.model") or config.model.name,  # an endpoint's own
        "endpoint": OmegaConf.select(config, "backend.base_url"),
        "data": config.data.name,
        "split": config.split,
        "decoding": decoder_name,
        "task_kind": task.kind,
        "labels": list(getattr(task, "labels", [])),
        "headline": task.headline,
        "shots": {
            "shots": config.shots,
            "shots_per_class": config.shots_per_class,
            "shot_seed": config.shot_seed,
            "resample": config.resample,
            "ids": None if shots is None or shots.fixed is None else [s.id for s in shots.fixed],
        },
        "prompt_ids": sorted({row.get("prompt_id") for row in rows} - {None}),
        "samples": len(rows),
        "seconds": seconds,
        "thresholds": thresholds,
    }
