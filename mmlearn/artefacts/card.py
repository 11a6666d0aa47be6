"""README.md of a saved adapter or model: Hugging Face model-card metadata (base model, library, task,
test metrics) and what a user needs without mmlearn: labels, the exact prompt, runnable loading code.
Everything comes from the folder's mmlearn.json description, so the two never disagree."""

from __future__ import annotations

import yaml

from mmlearn.artefacts.snippet import loading_snippet

PIPELINE_TAG = "image-text-to-text"
_WHAT = {
    "adapter": "A `peft={peft}` adapter",
    "full_model": "A fully fine-tuned model",
    "merged_model": "A `peft={peft}` adapter merged into its base weights",
}
_DECODERS = {
    "constrained": "greedy generation restricted to the valid answers through a token trie",
    "score": "the valid answers ranked by their likelihood",
}
_RELATION = {"adapter": "adapter", "full_model": "finetune", "merged_model": "finetune"}


def headline_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Whole-split test metrics (`test/f1_macro`, ...), not per-class ones (`test/f1/<label>`)."""
    return {k: v for k, v in metrics.items() if k.startswith("test/") and k.count("/") == 1}


def front_matter(d: dict) -> dict:
    meta = {}
    if d["base_model"]["id"] is not None:  # a local checkpoint has no Hub id to link to
        meta["base_model"] = d["base_model"]["id"]
        meta["base_model_relation"] = _RELATION[d["artefact"]]
    meta["library_name"] = "peft" if d["artefact"] == "adapter" else "transformers"
    meta["pipeline_tag"] = PIPELINE_TAG
    method = "full-fine-tune" if d["training"]["peft"] == "none" else d["training"]["peft"]
    tags = ["mmlearn", method, d["base_model"]["family"], d["task"]["kind"]]
    meta["tags"] = list(dict.fromkeys([*tags, d["data"]["name"], d["data"]["modality"], "vision-language"]))
    metrics = headline_metrics(d["metrics"])
    if metrics:
        meta["model-index"] = [
            {
                "name": d["run_name"],
                "results": [
                    {
                        "task": {"type": PIPELINE_TAG, "name": d["task"]["kind"]},
                        "dataset": {"name": d["data"]["name"], "type": d["data"]["name"], "split": "test"},
                        "metrics": [
                            {"type": k.split("/", 1)[1], "name": k, "value": round(float(v), 6)}
                            for k, v in metrics.items()
                        ],
                    }
                ],
            }
        ]
    return meta


def _base_section(d: dict) -> str:
    base = d["base_model"]
    if base["id"] is not None:
        revision = f" at revision `{base['revision']}`" if base["revision"] else ""
        return (
            f"Base model: [`{base['id']}`](https://huggingface.co/{base['id']}){revision} ({base['family']})."
        )
    return (
        f"Base model: a local checkpoint (`model={base['preset']}`, family {base['family']}), not a "
        "Hugging Face Hub model, so the metadata above names no `base_model`. mmlearn.json records its "
        "directory on the training machine as `base_model.path`; elsewhere, point the code below at a "
        "copy of it (mmlearn's `*_tiny` presets are random models it builds locally)."
    )


def _task_section(d: dict) -> str:
    task = d["task"]
    lines = [f"- task: {task['kind']} on `{d['data']['name']}`, modality `{d['data']['modality']}`"]
    if task["labels"]:
        lines.append("- labels, in order: " + ", ".join(f"`{label}`" for label in task["labels"]))
    lines.append(f"- answer: {task['answer']}")
    if task["answer_example"] is not None:
        lines.append(f"- example answer: `{task['answer_example']}`")
    lines.append(f"- how mmlearn reads it: {task['parse']}")
    return "\n".join(lines)


def _metrics_section(d: dict) -> str:
    rows = [f"| `{k}` | {float(v):.4f} |" for k, v in d["metrics"].items()]
    if not rows:
        return "No test metrics were recorded."
    note = (
        ""
        if d["artefact"] != "merged_model"
        else (
            "\n\nMeasured by mmlearn on the adapter over its base (in 4-bit for a QLoRA run); the merged "
            "weights give the same answers up to floating-point rounding of the merge."
        )
    )
    return (
        f"decoding `{d['decoding']['decoder']}`\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + note
    )


def _prompt_section(d: dict) -> str:
    prompt = d["prompt"]
    rendered = prompt.get("template")
    if rendered is None:
        rendered = "\n".join(repr(part) for part in prompt["segments"])
    placeholders = "\n".join(f"- `{k}`: {v}" for k, v in prompt["placeholders"].items())
    images = prompt["images_per_prompt"]
    return (
        f"Prompt format `{prompt['format']}`, {images} image(s) per prompt, processor called with "
        f"`{prompt['processor_call']}`; mmlearn.json's `prompt` has it as data (also the rendering for a "
        "row without an image, where there is one). What the processor receives:\n\n"
        f"```text\n{rendered}\n```\n\n{placeholders}"
    )


def _decoding_note(d: dict) -> str:
    dec = d["decoding"]
    note = (
        "Greedy decoding with mmlearn's `generate` arguments (mmlearn.json `decoding.generate_kwargs`) "
        f"gives mmlearn's `decoding=generate` answers, batched with left padding as mmlearn batches "
        f"them (`data.eval_batch_size` = {d['data']['eval_batch_size']}): other batch compositions can "
        "differ in floating-point rounding, which can flip a near-tie."
    )
    if not dec["plain_generate_reproduces_predictions"]:
        how = _DECODERS.get(dec["decoder"], "another decoder")
        note += (
            f" This run's predictions used `decoding={dec['decoder']}` ({how}), which plain `generate` "
            "does not do: its free answers can differ, and can fail to parse."
        )
    return note


def render_card(d: dict) -> str:
    what = _WHAT[d["artefact"]].format(peft=d["training"]["peft"])
    sections = [
        f"# {d['run_name']}\n\n{what} trained with mmlearn. Everything below is also in `mmlearn.json` "
        f"(schema version {d['schema_version']}).",
        f"## Base model\n\n{_base_section(d)}",
        f"## Task\n\n{_task_section(d)}",
        f"## Test metrics\n\n{_metrics_section(d)}",
        f"## Prompt\n\n{_prompt_section(d)}",
        "## Use it with plain transformers"
        + (" + peft" if d["artefact"] == "adapter" else "")
        + f"\n\n```python\n{loading_snippet(d)}```\n\n{_decoding_note(d)}",
    ]
    meta = yaml.safe_dump(front_matter(d), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n" + "\n\n".join(sections) + "\n"
