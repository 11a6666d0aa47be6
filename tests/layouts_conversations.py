"""Small conversation files in the three layouts (the same conversations in each), bad rows, and a copy of
seed 002's layout: problems.json + images + LLaVA's six training files, written as LLaVA's
scripts/convert_sqa_to_llava.py writes them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.layouts_qa_captions import PID_SPLITS, tiny_image, write_scienceqa

# (id, system, [(user parts, reply)], images); a None part is an image slot
CONVERSATIONS = [
    (
        "two",
        None,
        [((None, "Compare", None, "which is red?"), "the first"), (("And the second?",), "blue")],
        ["a.png", "b.png"],
    ),
    ("sys", "Answer in one word.", [(("Name a colour.",), "red")], []),
    (
        "text",
        None,
        [(("What is 2 + 2?",), "4"), (("And 3 + 3?",), "6"), (("Thanks",), "You are welcome.")],
        [],
    ),
    ("one", None, [((None, "What colour is this?"), "red")], ["a.png"]),
]


def _value(parts) -> str:
    return "\n".join("<image>" if p is None else p for p in parts)


def llava_row(cid, system, turns, images) -> dict:
    row = {"id": cid}
    if images:
        row["image"] = images[0] if len(images) == 1 else images
    row["conversations"] = ([{"from": "system", "value": system}] if system else []) + [
        m
        for user, reply in turns
        for m in ({"from": "human", "value": _value(user)}, {"from": "gpt", "value": reply})
    ]
    return row


def sharegpt_row(cid, system, turns, images) -> dict:
    row = {"id": cid, "messages": [], "images": images}
    if system:
        row["system"] = system
    for user, reply in turns:
        row["messages"] += [
            {"role": "user", "content": _value(user)},
            {"role": "assistant", "content": reply},
        ]
    return row


def openai_row(cid, system, turns, images) -> dict:
    queue = iter(images)
    messages = [{"role": "system", "content": system}] if system else []
    for user, reply in turns:
        content = [
            {"type": "image_url", "image_url": {"url": next(queue)}}
            if p is None
            else {"type": "text", "text": p}
            for p in user
        ]
        messages += [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": reply}]},
        ]
    return {"id": cid, "messages": messages}


WRITERS = {"llava": (llava_row, "json"), "sharegpt": (sharegpt_row, "jsonl"), "openai": (openai_row, "jsonl")}


def write_file(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_conversations(root: Path) -> dict[str, Path]:
    """root/a.png, root/b.png and one file per layout holding CONVERSATIONS."""
    root = Path(root)
    tiny_image(root / "a.png", (220, 30, 30))
    tiny_image(root / "b.png", (30, 30, 220))
    files = {}
    for fmt, (row, ext) in WRITERS.items():
        files[fmt] = write_file(root / f"{fmt}.{ext}", [row(*c) for c in CONVERSATIONS])
    return files


BAD_ROWS = {  # row -> the words its error names
    "placeholders": (
        {
            "id": "p",
            "image": ["a.png", "b.png"],
            "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}],
        },
        "1 <image> placeholder(s) but 2 image(s)",
    ),
    "role": (
        {"id": "r", "conversations": [{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "x"}]},
        "role 'robot'",
    ),
    "ends_with_user": (
        {"id": "u", "conversations": [{"from": "human", "value": "hi"}]},
        "ending with an assistant reply",
    ),
    "missing_image": (
        {
            "id": "m",
            "image": "nope.png",
            "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}],
        },
        "nope.png",
    ),
}


# --- seed 002 ------------------------------------------------------------------------------------------
LLAVA_FILES = {  # file -> (pid list, output format)
    "llava_train_QCM-LEA.json": ("train", "LEA"),
    "llava_train_short.json": ("train", "A"),
    "llava_train_realigned_v4.json": ("train", "realign"),
    "llava_minitrain_QCM-LEA.json": ("minitrain", "LEA"),
    "llava_minitrain_short.json": ("minitrain", "A"),
    "llava_minitrain_realigned_2.json": ("minitrain", "realign"),
}


def llava_qcm(problem: dict) -> str:
    """LLaVA's QCM input: "Question: ...\\nContext: ...\\nOptions: (A) ...", spaces collapsed, "Question: " cut."""
    choices = " ".join(f"({'ABCDE'[i]}) {c}" for i, c in enumerate(problem["choices"]))
    context = " ".join([problem["hint"], ""]).strip() or "N/A"
    text = f"Question: {problem['question']}\nContext: {context}\nOptions: {choices}\n"
    return text.replace("  ", " ").strip().removeprefix("Question: ")


def llava_output(problem: dict, fmt: str) -> str:
    letter = "ABCDE"[problem["answer"]]
    if fmt == "LEA":
        # long answers: the lecture and solution repeated so the reply runs to hundreds of characters
        text = f"Answer: {problem['lecture'] * 8} {problem['solution'] * 8} The answer is {letter}."
    elif fmt == "A":
        text = f"Answer: The answer is {letter}."
    else:
        text = f"Answer: Let us look again. {problem['solution']} So, the answer is {letter}."
    return text.replace("  ", " ").strip().removeprefix("Answer: ")


def write_seed002(root: Path) -> Path:
    """write_scienceqa's problems.json, pid_splits.json and images, plus the six training files."""
    root = write_scienceqa(root)
    problems = json.loads((root / "problems.json").read_text())
    for name, (pid_list, fmt) in LLAVA_FILES.items():
        rows = []
        for pid in PID_SPLITS[pid_list]:
            problem = problems[pid]
            human = llava_qcm(problem)
            row = {"id": pid}
            if problem["image"]:
                row["image"] = f"{pid}/{problem['image']}"
                human += "\n<image>"
            row["conversations"] = [
                {"from": "human", "value": human},
                {"from": "gpt", "value": llava_output(problem, fmt)},
            ]
            rows.append(row)
        (root / name).write_text(json.dumps(rows, indent=2))
    return root
