"""The one home of how every reader treats its inputs: the bad-sample policy, the text encoding and the
image rules, built once by the datamodule from its config and handed to whatever reads a split (the
table reader, the hf reader, the seed readers) and to the collators that load images mid-run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mmlearn.data import text_files
from mmlearn.data.images import ArrowImageRef, ImageRules, check_image, load_rgb
from mmlearn.data.paths import under_root
from mmlearn.data.reading import check_on_bad_sample, collect_samples
from mmlearn.data.sample import SplitReport
from mmlearn.sample import Sample


@dataclass(frozen=True)
class InputPolicy:
    on_bad_sample: str
    encoding: str
    images: ImageRules

    def __post_init__(self) -> None:
        check_on_bad_sample(self.on_bad_sample)
        text_files.check_encoding(self.encoding)

    @classmethod
    def from_config(cls, *, on_bad_sample, encoding, max_image_pixels, image_background) -> InputPolicy:
        return cls(on_bad_sample, encoding, ImageRules(max_image_pixels, tuple(image_background)))

    @property
    def skip(self) -> bool:
        return self.on_bad_sample == "skip"

    def open_text(self, path: Path, newline: str | None = None) -> IO[str]:
        return text_files.open_text(path, self.encoding, newline)

    def read_text(self, path: Path) -> str:
        return text_files.read_text(path, self.encoding)

    def image_file(self, root: Path, relative: str | Path) -> Path:
        """A row's image: inside `root` unless absolute, and decodable within the limits."""
        path = under_root(Path(root), relative)
        check_image(path, self.images)
        return path

    def check_image(self, image: Path | ArrowImageRef) -> None:
        check_image(image, self.images)

    def load_rgb(self, image: Path | ArrowImageRef):
        return load_rgb(image, self.images)

    def collect(
        self,
        rows: Iterable[tuple[str, dict]],
        to_sample: Callable[[dict, str], Sample | None],
        *,
        file: str,
        count_labels: bool = True,
    ) -> tuple[list[Sample], SplitReport]:
        return collect_samples(
            rows,
            to_sample,
            file=file,
            on_bad_sample=self.on_bad_sample,
            count_labels=count_labels,
            encoding=self.encoding,
        )
