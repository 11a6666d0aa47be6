"""Evaluation throughput on CPU: mmlearn's batched decoders vs the seeds' one-sample-at-a-time
`generate` (seed 001: `model.generate(**inputs, max_new_tokens=64)` per sample), in one process, on the
tiny Qwen2-VL and demo data. `python -m benchmarks.eval_speed --out eval_speed.json` from the checkout
(its inputs come from the tests' helpers). Each batched decoder runs `--repeats` times, interleaved, and
keeps its fastest run. The label-set rows add `head=linear` (one forward pass, logits read by the
HeadDecoder) on the same tiny model, against decoding=score and decoding=constrained."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_MAX_NEW_TOKENS = 64  # seed 001's inference example and its VLM_MAX_NEW_TOKENS default
LABEL_SETS = (5, 20, 100)
# decoder name in the figures -> its overrides; score is the default (likelihood=constrained),
# score_full the model's likelihood over its whole vocabulary
DECODINGS = {
    "generate": ["decoding=generate"],
    "constrained": ["decoding=constrained"],
    "score": ["decoding=score"],
    "score_full": ["decoding=score", "decoding.likelihood=full"],
}


def build_decoders() -> dict:
    from hydra.utils import instantiate

    from tests.conftest import compose

    return {name: instantiate(compose(overrides, "train").decoding) for name, overrides in DECODINGS.items()}


def best_of_runs(module, datamodule, cfg, decoders: dict, repeats: int, out: Path, others=None) -> dict:
    """Each decoder's evaluation of the test split `repeats` times, interleaved (every decoder once,
    then again), so a slow phase of the machine hits all of them; each keeps its fastest run, and lists
    every run's samples/s. One process can run the same decoder ~1.4x slower or faster than another
    (allocation layout), so a single run per decoder is not a comparison. `others`: {name: module} run
    in the same rotation with their own decoder (head=linear)."""
    from mmlearn.evaluation import run_split

    entries = {name: (module, decoder) for name, decoder in decoders.items()}
    entries |= {name: (other, other.decoder) for name, other in (others or {}).items()}
    runs: dict[str, list[dict]] = {name: [] for name in entries}
    for _ in range(repeats):
        for name, (runner, decoder) in entries.items():
            runner.decoder = decoder
            metrics, seconds = run_split(runner, datamodule, cfg, "test", out / name, None)
            runs[name].append(
                {
                    "samples_per_second": metrics["test/samples_per_second"],
                    "seconds": seconds,
                    "parse_failure_rate": metrics["test/parse_failure_rate"],
                    "f1_macro": metrics["test/f1_macro"],
                }
            )
    out = {}
    for name, measured in runs.items():
        best = max(measured, key=lambda m: m["samples_per_second"])
        out[name] = {**best, "samples_per_second_runs": [m["samples_per_second"] for m in measured]}
    return out


def per_sample_generation(module, samples, max_new_tokens: int) -> dict:
    """The seeds' loop: encode one prompt, move it to the model's device, generate, decode, parse; no
    batching, no early budget."""
    from mmlearn.data.collate import PromptCollator

    collate = PromptCollator(module.processor, module.spec.prompt, module.task)
    tokenizer = module.processor.tokenizer
    failures = 0
    start = time.perf_counter()
    for sample in samples:
        inputs = {k: v.to(module.model.device) for k, v in collate([sample])["inputs"].items()}
        out = module.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        failures += not module.task.parse(text, sample).ok
    seconds = time.perf_counter() - start
    return {
        "samples_per_second": len(samples) / seconds,
        "seconds": seconds,
        "parse_failure_rate": failures / len(samples),
    }


HEAD = ["head=linear", "peft=none", *(f"peft.towers.{t}=frozen" for t in ("vision", "projector", "language"))]


def label_set_config(work: Path, k: int, root: Path, eval_batch_size: int, num_workers: int, extra=()):
    from tests.conftest import compose

    return compose(
        [
            f"paths.root_dir={work}",
            f"paths.output_dir={work}/sports{k}-out",
            f"paths.cache_dir={os.environ['MMLEARN_CACHE_DIR']}",
            "data=sports100",
            f"data.root={root}",
            "data.split_dirs.val=null",
            "modality=image",
            f"data.eval_batch_size={eval_batch_size}",
            f"data.num_workers={num_workers}",
            "trainer=cpu",
            *extra,
        ],
        config_name="train",
    )


def head_module(cfg_head, task):
    """head=linear on the same tiny model (its backbone as released, an untrained head: the speed does
    not depend on the head's weights), read through the HeadDecoder."""
    from mmlearn.building import build_module

    return build_module(cfg_head, task).eval()


def label_set_speeds(
    work: Path, sizes, samples: int, eval_batch_size: int, num_workers: int, repeats: int
) -> dict:
    """Multi-class tasks of K sport names (a 100 Sports copy, one image per test sample, the base
    tiny model zero-shot): samples/s of each decoding and of head=linear, and of constrained, score and
    head relative to batched generate (and head relative to score and constrained) in the same process."""

    from mmlearn.building import build_datamodule
    from mmlearn.evaluation import build_base_module
    from tests.layouts_more import SPORTS100, write_sports

    out = {}
    for k in sizes:
        classes = SPORTS100[:k]
        tests = {name: 0 for name in classes}
        for i in range(samples):
            tests[classes[i % k]] += 1
        root = write_sports(work / f"sports{k}", {"train": dict.fromkeys(classes, 1), "test": tests})
        cfg = label_set_config(work, k, root, eval_batch_size, num_workers)
        datamodule = build_datamodule(cfg)
        decoders = build_decoders()
        module = build_base_module(cfg, datamodule.task, decoders["generate"]).eval()
        datamodule.connect(module.processor, module.spec.prompt)
        head = head_module(
            label_set_config(work, k, root, eval_batch_size, num_workers, HEAD), datamodule.task
        )
        row = best_of_runs(
            module, datamodule, cfg, decoders, repeats, work / f"sports{k}-runs", others={"head": head}
        )
        for name in [*DECODINGS, "head"]:
            if name == "generate":
                continue
            row[f"{name}_vs_generate"] = (
                row[name]["samples_per_second"] / row["generate"]["samples_per_second"]
            )
        for name in ("score", "constrained"):
            row[f"head_vs_{name}"] = row["head"]["samples_per_second"] / row[name]["samples_per_second"]
        out[str(k)] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=128, help="test samples")
    parser.add_argument("--train-samples", type=int, default=16, help="train split size (the run's data)")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=1,
        help="data.num_workers: image preprocessing in a loader process, overlapping the model (0: inline)",
    )
    parser.add_argument("--seed-max-new-tokens", type=int, default=SEED_MAX_NEW_TOKENS)
    parser.add_argument("--run-dir", type=Path, help="a trained demo run (default: the untrained tiny model)")
    parser.add_argument(
        "--label-sets",
        type=int,
        nargs="*",
        default=list(LABEL_SETS),
        help="class counts of the multi-class comparison (100 Sports names, image only, zero-shot)",
    )
    parser.add_argument(
        "--label-set-samples",
        type=int,
        default=128,
        help="test samples per label set (4 batches: the loader start-up is amortised)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each batched decoder, interleaved; the fastest is kept",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="eval_speed."))
    os.environ.setdefault("MMLEARN_CACHE_DIR", str(REPO / ".cache" / "mmlearn"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from mmlearn.building import build_datamodule
    from mmlearn.evaluation import build_base_module, build_run_module, load_run_config
    from tests.conftest import compose

    torch.manual_seed(0)
    cfg = compose(
        [
            f"paths.root_dir={work}",
            f"paths.output_dir={work}/out",
            f"paths.cache_dir={os.environ['MMLEARN_CACHE_DIR']}",
            f"data.root={work}/demo",
            f"data.prepare.splits={{train: {args.train_samples}, val: 16, test: {args.samples}}}",
            f"data.eval_batch_size={args.eval_batch_size}",
            f"data.num_workers={args.num_workers}",
            "trainer=cpu",
        ],
        config_name="train",
    )
    datamodule = build_datamodule(cfg)
    decoders = build_decoders()
    if args.run_dir:
        module = build_run_module(
            args.run_dir, load_run_config(args.run_dir), datamodule.task, decoders["generate"]
        )
    else:
        module = build_base_module(cfg, datamodule.task, decoders["generate"])
    module.eval()
    datamodule.connect(module.processor, module.spec.prompt)
    result = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "model": cfg.model.name,
        "trained": str(args.run_dir) if args.run_dir else None,
        "samples": args.samples,
        "eval_batch_size": args.eval_batch_size,
        "num_workers": args.num_workers,
        "mmlearn_max_new_tokens": decoders["generate"].max_new_tokens(module.decoding_context),
        "per_sample_max_new_tokens": args.seed_max_new_tokens,
        "repeats": args.repeats,
    }
    result["batched"] = best_of_runs(module, datamodule, cfg, decoders, args.repeats, work / "runs")
    with torch.no_grad():
        result["per_sample"] = per_sample_generation(
            module, datamodule.splits["test"], args.seed_max_new_tokens
        )
        # how much of the gap is batching alone: the same loop with mmlearn's answer-sized budget
        result["per_sample_mmlearn_budget"] = per_sample_generation(
            module, datamodule.splits["test"], decoders["generate"].max_new_tokens(module.decoding_context)
        )
    result["label_sets"] = label_set_speeds(
        work, args.label_sets, args.label_set_samples, args.eval_batch_size, args.num_workers, args.repeats
    )
    base = result["per_sample"]["samples_per_second"]
    result["speedup_vs_per_sample"] = result["batched"]["generate"]["samples_per_second"] / base
    result["speedup_from_batching_alone"] = (
        result["batched"]["generate"]["samples_per_second"]
        / result["per_sample_mmlearn_budget"]["samples_per_second"]
    )
    result["speedup_vs_per_sample_by_decoding"] = {
        name: row["samples_per_second"] / base for name, row in result["batched"].items()
    }
    result["parse_failure_rate"] = {
        name: row["parse_failure_rate"] for name, row in result["batched"].items()
    }
    result["parse_failure_rate"]["per_sample"] = result["per_sample"]["parse_failure_rate"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
