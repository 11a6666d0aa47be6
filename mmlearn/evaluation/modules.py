"""The model side of an evaluation: a run's base model + saved adapter, or a base model as released;
the in-context examples; and the check that a run's adapter is evaluated on the label set it learned."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmlearn.building import build_module
from mmlearn.fewshot import ShotSelector, check_few_shot
from mmlearn.models.towers import TOWERS, TowerPlan
from mmlearn.module import VLMFineTuner

log = logging.getLogger(__name__)


def build_run_module(run_dir: Path, run_cfg: DictConfig, task, decoder) -> VLMFineTuner:
    run_dir = Path(run_dir)
    if (run_dir / "adapter").is_dir():
        return build_module(run_cfg, task, adapter_dir=run_dir / "adapter", decoder=decoder)
    if (run_dir / "model").is_dir():
        full = OmegaConf.merge(run_cfg, {"model": {"pretrained": str(run_dir / "model"), "build": None}})
        return build_module(full, task, decoder=decoder)
    raise FileNotFoundError(f"{run_dir} holds neither adapter/ nor model/: did its training finish?")


def build_base_module(cfg: DictConfig, task, decoder) -> VLMFineTuner:
    """The base checkpoint as released: no adapter, nothing trainable; loaded in 4 bit with peft=qlora
    (the base a QLoRA run trains on). `head=nli`: the NLI checkpoint as released."""
    from mmlearn.heads import build_head_module, head_kind
    from mmlearn.heads.building import GENERATE, refuse_generation

    spec = instantiate(cfg.model, _convert_="all")
    if head_kind(cfg) != GENERATE:
        return build_head_module(cfg, task, spec=spec, zero_shot=True)
    refuse_generation(spec)
    return VLMFineTuner(
        spec=spec,
        task=task,
        adapter=None,
        quantization=instantiate(cfg.peft.quantization, _convert_="all"),
        towers=TowerPlan(modes=dict.fromkeys(TOWERS, "frozen"), lr=dict.fromkeys(TOWERS)),
        optimizer=None,
        scheduler=None,
        decoder=decoder,
    )


def shot_selector(cfg: DictConfig, datamodule, module) -> ShotSelector | None:
    """In-context examples from the train split, which is read only here (and only when shots are asked)."""
    if not cfg.shots and not cfg.shots_per_class:
        return None
    selector = ShotSelector(
        datamodule.examples("train"),
        datamodule.task.labels,
        shots=cfg.shots,
        shots_per_class=cfg.shots_per_class,
        seed=cfg.shot_seed,
        resample=cfg.resample,
    )
    check_few_shot(module.spec, module.spec.prompt, selector.count, int(datamodule.modality.image))
    return selector


def _answers(task) -> tuple[str, list[str] | None]:
    return task.kind, list(getattr(task, "labels", None) or []) or None


def check_label_set(run_dir: Path, task) -> None:
    """Evaluating an adapter on other data needs the answers it learned: the same label set, in the same
    order (a multi-label answer lists them in label-set order), for the same kind of task. The learned
    set is read from the run's data config; when that data is gone, the check is skipped, with a warning."""
    run_cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    try:
        learned = instantiate(run_cfg.data, _convert_="all").task
    except Exception as err:  # any reason the run's data config cannot be read
        log.warning("label set of %s not checked: its data config cannot be read (%s)", run_dir, err)
        return
    if learned.kind == "generation":  # free-form replies (data=conversations): any task's answers are text
        return
    if _answers(learned) != _answers(task):
        raise ValueError(
            f"the run was trained on data={run_cfg.data.name} with the label set {_answers(learned)[1]} "
            f"({learned.kind}), but the evaluated data has {_answers(task)[1]} ({task.kind}): an adapter "
            "answers only with the labels it learned"
        )
    if getattr(learned, "instruction", None) != getattr(task, "instruction", None):
        log.warning("the evaluated data's prompt instruction differs from the one the run trained with")
