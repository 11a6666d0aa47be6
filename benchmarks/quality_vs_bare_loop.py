"""Learning parity: mmlearn's test score against a plain PyTorch loop training the same tiny model.

    python benchmarks/quality_vs_bare_loop.py --out parity.json [--seeds 0 1 2] [--tasks demo digits]

Two tasks: the built-in demo (multi-label, text + image) and scikit-learn's handwritten digits (real
8x8 scans shipped inside scikit-learn, upscaled to 56x56; multiclass, image only). For each seed both
sides train the tiny Qwen2-VL with the same LoRA settings, learning rate, warmup, cosine schedule,
gradient clipping, batch size and epochs, on the same rows, prompts and answers, read from the
composed mmlearn config (`experiment=demo`, the digits as `data=csv`). mmlearn runs as a user runs
it (`train.py`, its own process); the bare loop (`bare_loop` below, plain transformers + peft +
torch) builds its own inputs from the processor's chat template, masks everything but the answer and
end token, and tests its final weights by greedy generation. Figures: test F1 (macro) per seed and
side, their means, and `mmlearn_minus_bare` (mean difference) with the seeds' spread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_SPLITS = {"train": 600, "val": 100, "test": 300}
DIGITS_INSTRUCTION = "Which digit is written in the image? Answer with one of: {labels}."


# --- the data --------------------------------------------------------------------------------------
def write_digits(root: Path) -> Path:
    """scikit-learn's digits (1797 real 8x8 scans, 16 grey levels) as the csv layout, 56x56 RGB PNGs."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    (root / "images").mkdir(parents=True, exist_ok=True)
    start = 0
    for split, count in DIGIT_SPLITS.items():
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text", "image_path", "labels"])
            writer.writeheader()
            for index in order[start : start + count]:
                pixels = (digits.images[index] * (255 / 16)).astype("uint8")
                name = f"images/{index:04d}.png"
                Image.fromarray(pixels).resize((56, 56), Image.NEAREST).convert("RGB").save(root / name)
                label = DIGITS[digits.target[index]]
                writer.writerow({"id": str(index), "text": "", "image_path": name, "labels": label})
        start += count
    (root / "labels.txt").write_text("\n".join(DIGITS) + "\n")
    return root


def task_overrides(task: str, data_root: Path) -> list[str]:
    if task == "demo":
        return ["experiment=demo"]
    return [
        "experiment=demo",
        "data=csv",
        *(f"data.{split}_file={data_root / f'{split}.csv'}" for split in DIGIT_SPLITS),
        f"data.image_root={data_root}",
        f"data.labels_file={data_root / 'labels.txt'}",
        "data.task=multiclass",
        f"data.instruction='{DIGITS_INSTRUCTION}'",
        "modality=image",
    ]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return hydra_compose("train", overrides=[*overrides, f"paths.root_dir={REPO}"])


def read_rows(path: Path, image_root: Path) -> list[dict]:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    return [
        dict(row, image=image_root / row["image_path"], labels=[x for x in row["labels"].split(",") if x])
        for row in rows
    ]


# --- the bare loop -----------------------------------------------------------------------------------
def bare_loop(settings: dict, seed: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from sklearn.metrics import f1_score
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(settings["model"])
    tok = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(settings["model"], dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(**settings["lora"], target_modules=settings["target_modules"]))
    labels, multilabel, text_in = settings["labels"], settings["multilabel"], settings["text"]

    def prompt(row):
        question = settings["instruction"].format(labels=", ".join(labels))
        question += f"\nText: {row['text']}" if text_in else ""
        content = [{"type": "image"}, {"type": "text", "text": question}]
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def answer(row):
        chosen = [label for label in labels if label in row["labels"]]
        return json.dumps(chosen) if multilabel else chosen[0]

    def encode(rows, side):
        return processor(
            text=[prompt(r) for r in rows],
            images=[Image.open(r["image"]).convert("RGB") for r in rows],
            padding=True,
            padding_side=side,
            return_tensors="pt",
        )

    def train_batch(rows):
        enc = encode(rows, "left")
        keep = enc["attention_mask"].bool()
        seqs = [
            ids[k].tolist() + tok(answer(r), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            for ids, k, r in zip(enc["input_ids"], keep, rows, strict=True)
        ]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        target = torch.full((len(seqs), width), -100)
        types = torch.zeros((len(seqs), width), dtype=torch.long)  # M-RoPE: image tokens are type 1
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, seq in enumerate(seqs):
            n_prompt = int(keep[i].sum())
            ids[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
            target[i, n_prompt : len(seq)] = ids[i, n_prompt : len(seq)]
            types[i, :n_prompt] = enc["mm_token_type_ids"][i][keep[i]]
        pixels = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        return dict(pixels, input_ids=ids, attention_mask=mask, mm_token_type_ids=types), target

    train, batch = settings["train"], settings["batch_size"]
    steps = settings["epochs"] * -(-len(train) // batch)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings["lr"], weight_decay=settings["wd"]
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, settings["warmup"], steps)
    model.train()
    for _ in range(settings["epochs"]):
        order = torch.randperm(len(train)).tolist()
        for start in range(0, len(train), batch):
            inputs, target = train_batch([train[i] for i in order[start : start + batch]])
            logits = model(**inputs).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip"])
            optimizer.step(), schedule.step(), optimizer.zero_grad()

    model.eval()
    gold, pred, test = [], [], settings["test"]
    budget = len(tok(json.dumps(labels) if multilabel else max(labels, key=len))["input_ids"]) + 5
    for start in range(0, len(test), 32):
        rows = test[start : start + 32]
        enc = encode(rows, "left")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=budget, do_sample=False, pad_token_id=tok.pad_token_id)
        for row, text in zip(rows, tok.batch_decode(out[:, enc["input_ids"].shape[1] :], True), strict=True):
            gold.append([int(label in row["labels"]) for label in labels])
            pred.append(parse(text, labels, multilabel, gold[-1]))
    return float(f1_score(gold, pred, average="macro", zero_division=0))


def parse(text: str, labels: list[str], multilabel: bool, gold: list[int]) -> list[int]:
    """mmlearn's documented rule, written out: an unparseable multi-label answer is wrong on every
    label; a multiclass answer that is no label predicts none."""
    norm = {label.lower().replace("_", "").replace(" ", ""): label for label in labels}
    if not multilabel:
        label = norm.get(text.strip().strip(".").strip('"').strip().lower().replace("_", "").replace(" ", ""))
        return [int(label == x) for x in labels]
    match = re.search(r"\[[^\[\]]*\]", text)
    try:
        items = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return [1 - g for g in gold]
    chosen = {norm.get(i.lower().replace("_", "").replace(" ", "")) for i in items}
    return [int(label in chosen) for label in labels]


# --- both sides ----------------------------------------------------------------------------------------
def settings_for(cfg, task: str) -> dict:
    from hydra.utils import instantiate

    data, model = cfg.data, cfg.model
    assert dict(cfg.peft.towers) == {"vision": "frozen", "projector": "frozen", "language": "lora"}
    if data.get("prepare"):
        instantiate(data.prepare)()
    image_root = Path(data.image_root)
    return {
        "model": model.pretrained,
        "lora": {k: cfg.peft.adapter[k] for k in ("r", "lora_alpha", "lora_dropout")},
        "target_modules": model.lora_target_modules.language,
        "lr": cfg.optimizer.lr,
        "wd": cfg.optimizer.weight_decay,
        "warmup": cfg.scheduler.num_warmup_steps,
        "clip": cfg.trainer.gradient_clip_val,
        "epochs": cfg.trainer.max_epochs,
        "batch_size": data.batch_size,
        "instruction": data.instruction,
        "text": cfg.modality.name != "image",
        "multilabel": data.task == "multilabel",
        "labels": [x for x in Path(data.labels_file).read_text().splitlines() if x],
        "train": [dict(r, image=str(r["image"])) for r in read_rows(Path(data.train_file), image_root)],
        "test": [dict(r, image=str(r["image"])) for r in read_rows(Path(data.test_file), image_root)],
    }


def run_mmlearn(overrides: list[str], seed: int, run_dir: Path) -> float:
    if not (run_dir / "metrics.json").is_file():
        command = [
            sys.executable,
            "train.py",
            *overrides,
            "logger=csv",
            f"seed={seed}",
            f"hydra.run.dir={run_dir}",
        ]
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{run_dir} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text())["test/f1_macro"]


def run_bare(settings_file: Path, seed: int) -> float:
    done = settings_file.with_name(f"{settings_file.stem}-bare-{seed}.json")
    if done.is_file():  # a finished run of an earlier call with the same settings
        return json.loads(done.read_text())["test/f1_macro"]
    out = subprocess.run(
        [sys.executable, __file__, "--bare", str(settings_file), "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bare loop failed:\n{out.stderr[-3000:]}")
    done.write_text(out.stdout.strip().splitlines()[-1])
    return json.loads(done.read_text())["test/f1_macro"]


def compare(task: str, seeds: list[int], workdir: Path) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    overrides = task_overrides(task, workdir / "digits")
    settings = json.dumps(settings_for(compose(overrides), task))
    settings_file = workdir / f"{task}_settings.json"
    if not settings_file.is_file() or settings_file.read_text() != settings:
        for stale in workdir.glob(f"{task}_settings-bare-*.json"):
            stale.unlink()
        settings_file.write_text(settings)
    with ThreadPoolExecutor(max_workers=2) as pool:  # one mmlearn and one bare run at a time
        ours = [pool.submit(run_mmlearn, overrides, s, workdir / "runs" / f"{task}-{s}") for s in seeds]
        bare = [pool.submit(run_bare, settings_file, s) for s in seeds]
        ours, bare = [f.result() for f in ours], [f.result() for f in bare]
    diffs = [a - b for a, b in zip(ours, bare, strict=True)]
    result = {
        "seeds": seeds,
        "mmlearn": ours,
        "bare_loop": bare,
        "mmlearn_mean": statistics.fmean(ours),
        "bare_loop_mean": statistics.fmean(bare),
        "mmlearn_minus_bare": statistics.fmean(diffs),
        "stdev_of_difference": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
    }
    print(task, json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=["demo", "digits"], choices=["demo", "digits"])
    parser.add_argument("--workdir", type=Path, default=None, help="finished runs in it are reused")
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)  # internal: one bare-loop run
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps({"test/f1_macro": bare_loop(json.loads(args.bare.read_text()), args.seed)}))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mmlearn-parity-"))
    os.environ.setdefault("MMLEARN_CACHE_DIR", str(workdir / "cache"))
    os.environ.setdefault("MMLEARN_DATA_DIR", str(workdir / "data"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "digits" in args.tasks:
        write_digits(workdir / "digits")
    results = {task: compare(task, args.seeds, workdir) for task in args.tasks}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
