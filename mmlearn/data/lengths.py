"""How many tokens each training sample occupies, known before batching and without decoding images.

length = (prompt + answer + end token, encoded text-only) + (what one image adds at its size)

The text part goes through the family's own `prompt_format.encode` with no images (tokenizer only,
in chunks). What an image adds (its image tokens and the wrappers around them) depends only on its size:
it is measured once per distinct size by encoding a probe prompt with and without a blank image of that
size, so every family's own expansion rule is used and image tokens are counted, never truncated.
Families that cannot encode a prompt without an image (PaliGemma) are measured per sample with blank
images of the sample's size instead: exact, slower.
"""

from __future__ import annotations

from PIL import Image

from mmlearn.data.images import _source
from mmlearn.sample import Sample

CHUNK = 256
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def image_size(image) -> tuple[int, int]:
    """(width, height) as the loader will see it (after EXIF rotation), from the header only."""
    with Image.open(_source(image)) as img:
        width, height = img.size
        if img.getexif().get(0x0112) in _ROTATED:
            width, height = height, width
    return width, height


class TokenCounter:
    def __init__(self, processor, prompt_format, task) -> None:
        self.processor = processor
        self.prompt_format = prompt_format
        self.task = task
        self._per_size: dict[tuple[int, int], int] = {}

    def _lengths(self, prompts: list[str], images: list[list], answers: list[str]) -> list[int]:
        batch = self.prompt_format.encode(self.processor, prompts, images, answers=answers)
        return batch["attention_mask"].sum(dim=1).tolist()

    def image_cost(self, size: tuple[int, int]) -> int:
        if size not in self._per_size:
            (with_image,) = self._lengths(["probe"], [[_blank(size)]], ["probe"])
            (without,) = self._lengths(["probe"], [[]], ["probe"])
            self._per_size[size] = with_image - without
        return self._per_size[size]

    def _chunk(self, samples: list[Sample], sizes: list) -> list[int]:
        prompts = [self.task.prompt(s) for s in samples]
        answers = [self.task.answer(s) for s in samples]
        try:
            text = self._lengths(prompts, [[] for _ in samples], answers)
        except ValueError:  # the family needs an image in every prompt: measure each sample whole
            return [
                self._lengths([p], [[_blank(size)] if size else []], [a])[0]
                for p, a, size in zip(prompts, answers, sizes, strict=True)
            ]
        return [n + (self.image_cost(size) if size else 0) for n, size in zip(text, sizes, strict=True)]

    def __call__(self, samples: list[Sample]) -> list[int]:
        sizes = [image_size(s.image_path) if s.image_path is not None else None for s in samples]
        out: list[int] = []
        for start in range(0, len(samples), CHUNK):
            out += self._chunk(samples[start : start + CHUNK], sizes[start : start + CHUNK])
        return out


def _blank(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (128, 128, 128))


def check_lengths(samples: list[Sample], lengths: list[int], max_length: int | None):
    """Samples over `max_length` tokens: (kept samples, kept lengths, [(sample, length) too long])."""
    if max_length is None:
        return samples, lengths, []
    kept = [(s, n) for s, n in zip(samples, lengths, strict=True) if n <= max_length]
    too_long = [(s, n) for s, n in zip(samples, lengths, strict=True) if n > max_length]
    return [s for s, _ in kept], [n for _, n in kept], too_long
