"""Small JPEG thumbnails as data URIs, so an HTML report carries its images in one file."""

from __future__ import annotations

import base64
import io

from mmlearn.data.images import ImageLoadError, load_rgb


def thumbnail_data_uri(image, max_side: int, quality: int = 70) -> str:
    """`data:image/jpeg;base64,...` of the image shrunk to fit in max_side x max_side (never enlarged).
    Raises ImageLoadError (with the path) when the image cannot be read."""
    try:
        picture = load_rgb(image)
    except ImageLoadError:
        raise
    except (OSError, ValueError) as err:  # an Arrow row without usable bytes, a vanished file, ...
        raise ImageLoadError(f"unreadable image {image}: {err}") from err
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
