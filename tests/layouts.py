"""Small copies of the seed datasets in their original on-disk formats: same file names, columns, keys,
delimiters and quirks, a handful of rows per split and tiny real JPEG/PNG images.

The row tables below are what the tests' hand-computed expectations refer to.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# --- MMHS150K ------------------------------------------------------------------------------------------
# (tweet id, tweet text, the three annotator label ids); 0 NotHate 1 Racist 2 Sexist 3 Homophobe
# 4 Religion 5 OtherHate
MMHS_LABEL_NAMES = ["NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate"]
MMHS_SPLITS = {
    "train": [
        ("1114679353714016256", '@FriskDontMiss just a "normal" day https://t.co/cAsaLWEpue', [0, 0, 0]),
        ("1063020048816660480", "RT @user: you people again \U0001f602 https://t.co/aaaa", [1, 1, 0]),
        ("1108927368075374593", "@someone 'she' said what?? https://t.co/bbbb", [2, 3, 0]),
        ("1114558534635618305", "the usual nonsense #monday https://t.co/cccc", [5, 0, 0]),
        ("1035252480215592966", "@another they pray wrong https://t.co/dddd", [4, 4, 4]),
    ],
    "val": [
        ("1108960032745541633", "@x go back, both of you https://t.co/eeee", [1, 2, 1]),
        ("1106627244315623424", "lol that outfit https://t.co/ffff", [0, 0, 3]),
        ("1110348766536675328", "good morning everyone https://t.co/gggg", [0, 0, 0]),
    ],
    "test": [
        ("1047939437478432768", "@y women & trash https://t.co/hhhh", [2, 2, 5]),
        ("1114398475925303296", "@z that's so gay https://t.co/iiii", [3, 0, 3]),
        ("1059489532425736192", "nice weather https://t.co/jjjj", [0, 1, 0]),
    ],
}
MMHS_EXTRA = ("1060000000000000001", "in the GT json but in no split", [0, 0, 0])
# OCR for about 40% of the images: img_txt/<id>.json
MMHS_OCR = {
    "1063020048816660480": "GO HOME",
    "1106627244315623424": "WHEN YOU SEE IT",
    "1047939437478432768": "make me a sandwich",
    "1035252480215592966": "",
}


def _image(path: Path, colour: tuple[int, int, int], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (56, 56), colour)
    img.putpixel((3, 5), (255 - colour[0], 0, 0))
    img.save(path, format=fmt)


def _colour(key: str) -> tuple[int, int, int]:
    value = sum(map(ord, key))
    return (value * 37 % 256, value * 91 % 256, value * 53 % 256)


def write_mmhs150k(root: Path, splits=MMHS_SPLITS, ocr=MMHS_OCR, extra=(MMHS_EXTRA,)) -> Path:
    root = Path(root)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "img_txt").mkdir(exist_ok=True)
    records = {}
    for tweet_id, text, labels in [row for rows in splits.values() for row in rows] + list(extra):
        records[tweet_id] = {
            "img_url": f"http://pbs.twimg.com/media/{tweet_id}.jpg",
            "labels": labels,
            "tweet_url": f"https://twitter.com/user/status/{tweet_id}",
            "tweet_text": text,
            "labels_str": [MMHS_LABEL_NAMES[i] for i in labels],
        }
        _image(root / "img_resized" / f"{tweet_id}.jpg", _colour(tweet_id), "JPEG")
    (root / "MMHS150K_GT.json").write_text(json.dumps(records), encoding="utf-8")
    for split, rows in splits.items():
        (root / "splits" / f"{split}_ids.txt").write_text("".join(f"{r[0]}\n" for r in rows))
    for tweet_id, text in ocr.items():
        (root / "img_txt" / f"{tweet_id}.json").write_text(json.dumps({"img_text": text}))
    return root


# --- CrisisMMD v2.0 ------------------------------------------------------------------------------------
CRISIS_COLUMNS = [
    "event_name",
    "tweet_id",
    "image_id",
    "tweet_text",
    "image",
    "label",
    "label_text",
    "label_image",
    "label_text_image",
]
# (event, tweet id, number of images, tweet text, label); one row per image, as in the real files
CRISIS_INFORMATIVE = {
    "train": [
        (
            "hurricane_harvey",
            "905952332923338752",
            2,
            'RT @KHOU: "Water is rising fast" #Harvey https://t.co/a1',
            "informative",
        ),
        (
            "hurricane_harvey",
            "901646074527535105",
            1,
            "Can't sleep, it's so loud out there",
            "not_informative",
        ),
        (
            "california_wildfires",
            "917791291823591425",
            1,
            "Wildfires raging through Northern California https://t.co/b2",
            "informative",
        ),
        ("mexico_earthquake", "909565624883224577", 1, "my cat says hi", "not_informative"),
    ],
    "dev": [
        (
            "hurricane_irma",
            "906133591475400704",
            1,
            "Irma's eye is now over Barbuda https://t.co/c3",
            "informative",
        ),
        ("hurricane_irma", "907258931163201536", 2, "lol 'Irma' party tonight", "not_informative"),
    ],
    "test": [
        (
            "srilanka_floods",
            "869480389236277248",
            1,
            "Death toll rises to 91 in Sri Lanka floods https://t.co/d4",
            "informative",
        ),
        ("iraq_iran_earthquake", "930155880541409280", 1, "Good morning world", "not_informative"),
    ],
}
CRISIS_HUMANITARIAN = {
    "train": [
        (
            "hurricane_harvey",
            "905952332923338752",
            2,
            'RT @KHOU: "Two dead" in #Harvey flooding',
            "injured_or_dead_people",
        ),
        (
            "hurricane_harvey",
            "902178306418987009",
            1,
            "Cars under water on I-45 https://t.co/e5",
            "vehicle_damage",
        ),
        (
            "hurricane_maria",
            "914225165113225216",
            1,
            "Donate now to help Puerto Rico https://t.co/f6",
            "rescue_volunteering_or_donation_effort",
        ),
        ("hurricane_irma", "906974862442377216", 1, "Happy birthday to my sister!", "not_humanitarian"),
        (
            "mexico_earthquake",
            "908865853386469376",
            1,
            "Still looking for my brother, last seen in Juchitan",
            "missing_or_found_people",
        ),
        (
            "mexico_earthquake",
            "909082938349654016",
            1,
            "Thousands left homeless after the quake",
            "affected_individuals",
        ),
    ],
    "dev": [
        (
            "california_wildfires",
            "918012345678901248",
            1,
            "Evacuation map for Sonoma county",
            "other_relevant_information",
        ),
        ("california_wildfires", "918098765432109056", 1, "Wine tasting this weekend", "not_humanitarian"),
        (
            "hurricane_harvey",
            "903111111111111111",
            1,
            "Bridge collapsed near Houston",
            "infrastructure_and_utility_damage",
        ),
    ],
    "test": [
        (
            "hurricane_maria",
            "915555555555555555",
            1,
            "Volunteers handing out water",
            "rescue_volunteering_or_donation_effort",
        ),
        ("hurricane_irma", "906666666666666666", 1, "new shoes!!", "not_humanitarian"),
        (
            "srilanka_floods",
            "869777777777777777",
            2,
            "Roads to Ratnapura closed, 'stay home'",
            "other_relevant_information",
        ),
    ],
}
CRISIS_SPLIT_DIR = "crisismmd_datasplit_agreed_label"


def crisis_rows(table: dict) -> dict[str, list[dict]]:
    """One dict per TSV row (one per image); image paths relative to the dataset root."""
    out: dict[str, list[dict]] = {}
    for split, tweets in table.items():
        rows = out.setdefault(split, [])
        for event, tweet_id, n_images, text, label in tweets:
            for index in range(n_images):
                image_id = f"{tweet_id}_{index}"
                rows.append(
                    {
                        "event_name": event,
                        "tweet_id": tweet_id,
                        "image_id": image_id,
                        "tweet_text": text,
                        "image": f"data_image/{event}/8_9_2017/{image_id}.jpg",
                        "label": label,
                        "label_text": label,
                        "label_image": label,
                        "label_text_image": "Positive",
                    }
                )
    return out


def tsv_text(rows: list[dict]) -> str:
    lines = ["\t".join(CRISIS_COLUMNS)] + ["\t".join(row[c] for c in CRISIS_COLUMNS) for row in rows]
    return "\n".join(lines) + "\n"


def write_crisismmd(root: Path, tasks=None) -> Path:
    """Both tasks' agreed-label TSVs under crisismmd_datasplit_agreed_label/ and the images they name."""
    root = Path(root)
    tasks = tasks or {"informative": CRISIS_INFORMATIVE, "humanitarian": CRISIS_HUMANITARIAN}
    (root / CRISIS_SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    for task, table in tasks.items():
        for split, rows in crisis_rows(table).items():
            name = f"task_{task}_text_img_agreed_lab_{split}.tsv"
            (root / CRISIS_SPLIT_DIR / name).write_text(tsv_text(rows), encoding="utf-8")
            for row in rows:
                if not (root / row["image"]).is_file():
                    _image(root / row["image"], _colour(row["image_id"]), "JPEG")
    return root


# --- Hateful Memes -------------------------------------------------------------------------------------
# (id, text, label); ids are ints in the files, images are zero-padded to five digits
MEMES = {
    "train.jsonl": [
        (42953, "its their character not their color that matters", 0),
        (23058, "don't be afraid to love again everyone is not like your ex", 0),
        (1765, "putting bows on your pet", 1),
        (13894, 'when "they" move in next door', 1),
    ],
    "dev_seen.jsonl": [
        (8291, "white people is this a shooting range", 1),
        (46971, "bravery at its finest", 0),
    ],
    "test_seen.jsonl": [
        (16395, "handjobs sold seperately", 1),
        (37405, "introducing fidget spinner for women", 0),
    ],
    "test_unseen.jsonl": [
        (10487, "this is what i call a real man", None),
        (4587, "look at this good boy", None),
    ],
}


def meme_line(meme_id: int, text: str, label: int | None) -> str:
    row = {"id": meme_id, "img": f"img/{meme_id:05d}.png"}
    if label is not None:
        row["label"] = label
    row["text"] = text
    # the released files escape slashes ("img\/42953.png") and keep the key order above
    return json.dumps(row, separators=(",", ":")).replace("/", "\\/")


def write_hateful_memes(root: Path, files=MEMES) -> Path:
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (root / name).write_text("".join(meme_line(*row) + "\n" for row in rows), encoding="utf-8")
        for meme_id, _, _ in rows:
            _image(root / "img" / f"{meme_id:05d}.png", _colour(str(meme_id)), "PNG")
    return root
