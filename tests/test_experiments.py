"""The experiment files: every one composes, carries the seed papers' values, and runs on a small copy."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests import layouts, layouts_conversations, layouts_more, layouts_qa_captions
from tests.conftest import CONF, REPO, compose

EXPERIMENTS = sorted(
    p.relative_to(CONF / "experiment").with_suffix("").as_posix()
    for p in (CONF / "experiment").rglob("*.yaml")
    if p.parent.name != "crisismmd_api"  # evaluate.py's experiments: tests/test_backend_experiments.py
)
SEED_EXPERIMENTS = [e for e in EXPERIMENTS if e != "demo"]
PATHS = ["paths.root_dir=/tmp/mmlearn-experiments", "paths.output_dir=/tmp/mmlearn-experiments/out"]
IDEFICS_QKV = r"model\.(layers\.\d+\.self_attn|gated_cross_attn_layers\.\d+\.cross_attn)\.(q|k|v)_proj"

# experiment: (model, data, modality, peft, rank, alpha, lr, batch size, accumulation, epochs)
SEEDS = {
    # seed 000 (000_*.txt), README table "Hyper-parameters for Informative and Humanitarian Tasks (LLaMA 3.2
    # 11B)": rank, batch size, learning rate, epoch; alpha not given (mmlearn's default 32)
    "crisismmd/informative_text": ("mllama", "crisismmd_informative", "text", "lora", 16, 32, 5e-4, 16, 1, 3),
    "crisismmd/informative_image": ("mllama", "crisismmd_informative", "image", "lora", 8, 32, 1e-4, 1, 1, 3),
    "crisismmd/informative_text_image": (
        *("mllama", "crisismmd_informative", "text_image", "lora"),
        *(16, 32, 1e-3, 16, 1, 2),
    ),
    "crisismmd/humanitarian_text": (
        "mllama",
        "crisismmd_humanitarian",
        "text",
        "lora",
        24,
        32,
        5e-4,
        16,
        1,
        3,
    ),
    "crisismmd/humanitarian_image": (
        "mllama",
        "crisismmd_humanitarian",
        "image",
        "lora",
        8,
        32,
        1e-4,
        1,
        1,
        3,
    ),
    "crisismmd/humanitarian_text_image": (
        *("mllama", "crisismmd_humanitarian", "text_image", "lora"),
        *(24, 32, 1e-3, 16, 1, 3),
    ),
    # seed 001 (001_*.txt; its configs/qwen2vl.yaml and the runs' adapter_config.json): r 4, alpha 32,
    # dropout 0.05, lr 2e-4, batch 4 x accumulation 2, 1 epoch, union label rule
    "mmhs150k/qwen2vl_qlora": ("qwen2vl", "mmhs150k", "text_image", "qlora", 4, 32, 2e-4, 4, 2, 1),
    "mmhs150k/paligemma2_qlora": ("paligemma2", "mmhs150k", "text_image", "qlora", 4, 32, 2e-4, 4, 2, 1),
    # seed 004 (004_*.txt): QLoRA rank 16, alpha 32, q/k/v, 10 per sport, one epoch; lr and 4 x 8 from the brief
    "sports100/idefics_qlora": ("idefics", "sports100", "image", "qlora", 16, 32, 2e-4, 4, 8, 1),
    "sports_captions/idefics_qlora": ("idefics", "sports_captions", "image", "qlora", 16, 32, 2e-4, 4, 8, 1),
    # seed 002 (002_*.txt): LLaVA full fine-tune (no adapter); no hyper-parameters given: defaults
    "scienceqa/llava_full": ("llava", "scienceqa", "text_image", "none", None, None, 2e-4, 8, 1, 3),
    "scienceqa/llava_mini": ("llava", "scienceqa", "text_image", "none", None, None, 2e-4, 8, 1, 3),
    # seed 002 on LLaVA's own training files (issue 22): finetune_sqa.sh's lr 2e-5, 8 x 4 accumulation (x 8 GPUs),
    # 12 epochs; tiny_origin is mini_origin's data for a laptop
    **{
        f"scienceqa/{size}_{kind}": (
            "llava",
            "scienceqa_llava",
            "text_image",
            "none",
            None,
            None,
            2e-5,
            8,
            4,
            12,
        )
        for size in ("full", "mini")
        for kind in ("origin", "short", "realign")
    },
    "scienceqa/tiny_origin": (
        "llava_tiny",
        "scienceqa_llava",
        "text_image",
        "none",
        None,
        None,
        1e-3,
        2,
        1,
        1,
    ),
    # seed 003 (003_*.txt, the README's example config): QLoRA, learning_rate 1e-5, batch_size 8, epochs 100
    "perceptsent/p3_mllama_qlora": ("mllama", "perceptsent", "text", "qlora", 16, 32, 1e-5, 8, 1, 100),
    "perceptsent/p5_mllama_qlora": ("mllama", "perceptsent", "text", "qlora", 16, 32, 1e-5, 8, 1, 100),
    # seed 003's routes (issue 21): lr 1e-5, batch 8, 100 epochs; the LLaMA QLoRA run r 32, alpha 8, lr 2e-4;
    # the direct VLM route takes the seed's training values with mmlearn's LoRA defaults
    **{
        f"perceptsent/{p}_{route}": row
        for p in ("p3", "p5")
        for route, row in {
            "caption_modernbert_full": (
                "modernbert",
                "perceptsent",
                "text",
                "none",
                None,
                None,
                1e-5,
                8,
                1,
                100,
            ),
            "caption_bart_head": ("bart", "perceptsent", "text", "none", None, None, 1e-5, 8, 1, 100),
            "caption_llama_qlora": ("mllama", "perceptsent", "text", "qlora", 32, 8, 2e-4, 8, 1, 100),
            "direct_qwen2vl_qlora": ("qwen2vl", "perceptsent", "image", "qlora", 16, 32, 1e-5, 8, 1, 100),
        }.items()
    },
}


def test_experiments_found():
    assert len(EXPERIMENTS) > 10 and set(SEEDS) == set(SEED_EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment):
    cfg = compose([f"experiment={experiment}", *PATHS])
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", SEED_EXPERIMENTS)
def test_experiment_carries_the_seed_values(experiment):
    cfg = compose([f"experiment={experiment}", *PATHS])
    model, data, modality, peft, rank, alpha, lr, batch, accumulate, epochs = SEEDS[experiment]
    adapter = cfg.peft.adapter
    got = (cfg.model.name, cfg.data.name, cfg.modality.name, cfg.peft.name)
    assert got == (model, data, modality, peft)
    assert (adapter.r, adapter.lora_alpha) == (rank, alpha) if adapter else rank is None
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches) == (batch, accumulate)
    assert cfg.trainer.max_epochs == epochs


def test_specific_seed_settings():
    def cfg(experiment):
        return compose([f"experiment={experiment}", *PATHS])

    for family in ("qwen2vl", "paligemma2"):
        mmhs = cfg(f"mmhs150k/{family}_qlora")
        assert mmhs.peft.adapter.lora_dropout == 0.05 and mmhs.data.label_rule == "union"
        assert mmhs.peft.quantization.bnb_4bit_quant_type == "nf4"
        assert mmhs.peft.adapter.target_modules is None  # the language regex: q/k/v/o and gate/up/down
        assert all(p in mmhs.model.lora_target_modules.language for p in ("(q|k|v|o)_proj", "(gate|up|down)"))
    for experiment in ("sports100/idefics_qlora", "sports_captions/idefics_qlora"):
        assert cfg(experiment).peft.adapter.target_modules == IDEFICS_QKV
    assert cfg("sports100/idefics_qlora").data.max_per_class == 10
    assert cfg("scienceqa/llava_mini").data.splits.train == "minitrain"
    assert [cfg(f"perceptsent/{p}_mllama_qlora").data.problem for p in ("p3", "p5")] == ["P3", "P5"]


def test_idefics_qkv_regex_reaches_only_language_qkv():
    import re

    names = {
        "model.layers.0.self_attn.q_proj": True,
        "model.layers.3.self_attn.v_proj": True,
        "model.gated_cross_attn_layers.1.cross_attn.k_proj": True,
        "model.layers.0.self_attn.o_proj": False,
        "model.layers.0.mlp.up_proj": False,
        "model.vision_model.encoder.layers.0.self_attn.q_proj": False,
        "model.perceiver_resampler.blocks.0.0.q_proj": False,
    }
    assert {name: re.fullmatch(IDEFICS_QKV, name) is not None for name in names} == names


# --- small copies of each dataset ------------------------------------------------------------------------
def _layout(data: str, root: Path) -> Path:
    if data.startswith("crisismmd"):
        return layouts.write_crisismmd(root)
    if data == "mmhs150k":
        return layouts.write_mmhs150k(root)
    if data == "perceptsent":
        layouts_more.write_perceptsent(root)
        layouts_more.write_perceptsent_captions(root)  # captions.csv, where the experiments expect it
        return root
    if data == "sports100":
        return layouts_more.write_sports(root)
    if data == "scienceqa":
        return layouts_qa_captions.write_scienceqa(root)
    if data == "scienceqa_llava":
        return layouts_conversations.write_seed002(root)
    if data == "sports_captions":
        return layouts_qa_captions.write_sports_captions(root)
    raise AssertionError(f"no small layout for {data}")


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    cache: dict[str, Path] = {}

    def copy(data: str) -> Path:
        key = "crisismmd" if data.startswith("crisismmd") else data
        if key not in cache:
            cache[key] = Path(_layout(data, tmp_path_factory.mktemp(key)))
        return cache[key]

    return copy


def _tiny(experiment: str, root: Path, *overrides: str):
    model = SEEDS[experiment][0].removesuffix("_tiny")
    return compose(
        [f"experiment={experiment}", f"model={model}_tiny", f"data.root={root}", *PATHS, *overrides]
    )


@pytest.mark.parametrize("experiment", SEED_EXPERIMENTS)
def test_experiment_datamodule_builds_on_a_small_copy(experiment, copies):
    root = copies(SEEDS[experiment][1])
    datamodule = instantiate(_tiny(experiment, root).data)
    datamodule.setup()
    assert datamodule.splits["train"] and datamodule.modality.name == SEEDS[experiment][2]


# one experiment per dataset through train.py for one step
RUNS = [
    "crisismmd/informative_text_image",
    "mmhs150k/qwen2vl_qlora",
    "sports100/idefics_qlora",
    "sports_captions/idefics_qlora",
    "scienceqa/llava_mini",
    "perceptsent/p3_mllama_qlora",
]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", RUNS)
def test_experiment_runs_one_step(experiment, copies, tmp_path):
    model, data = SEEDS[experiment][:2]
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"experiment={experiment}",
            f"model={model}_tiny",
            "trainer.max_steps=1",
            "trainer.max_epochs=1",
            "logger=csv",
            f"data.root={copies(data)}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()


# --- data.max_per_class (seed 004 trains on 10 images per sport) -------------------------------------------
def _sports(root: Path, *overrides: str):
    datamodule = instantiate(
        compose(["data=sports100", "modality=image", f"data.root={root}", *PATHS, *overrides]).data
    )
    datamodule.setup()
    return datamodule


def test_max_per_class_caps_train_only_seeded_and_accounted(copies):
    root = copies("sports100")
    train_files = layouts_more.SPORTS_FILES["train"]
    full = _sports(root)
    capped = _sports(root, "data.max_per_class=2")
    assert capped.reports["train"].label_counts == {label: min(n, 2) for label, n in train_files.items()}
    skipped = capped.reports["train"].skipped
    assert len(skipped) == sum(train_files.values()) - len(capped.splits["train"]) == 1
    assert {item["reason_kind"] for item in skipped} == {"max_per_class"}
    assert {s.id for s in capped.splits["train"]} | {item["id"] for item in skipped} == {
        s.id for s in full.splits["train"]
    }
    assert [len(capped.splits[s]) for s in ("val", "test")] == [len(full.splits[s]) for s in ("val", "test")]
    assert capped.summary()["settings"] == {"max_per_class": 2}
    # seeded: the same seed keeps the same images; the seeds do not all keep the same ones
    ids = [
        frozenset(s.id for s in _sports(root, "data.max_per_class=1", f"seed={seed}").splits["train"])
        for seed in range(6)
    ]
    assert ids[0] == frozenset(s.id for s in _sports(root, "data.max_per_class=1", "seed=0").splits["train"])
    assert len(set(ids)) > 1


def test_max_per_class_must_be_positive(copies):
    with pytest.raises(InstantiationException, match="max_per_class"):
        _sports(copies("sports100"), "data.max_per_class=0")
