"""Every Pillow mode reaches the processor as 8-bit RGB that means what the file means: pixel values
checked per mode, after a round trip through a file as a dataset holds it."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from mmlearn.data.images import ImageRules, load_rgb

BACKGROUND = (0, 128, 255)
RULES = ImageRules(max_pixels=40_000_000, background=BACKGROUND)


def _saved(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return load_rgb(path, RULES)


def test_16bit_grayscale_is_scaled_by_its_depth_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)  # mode I;16
    assert img.mode == "I;16"
    out = _saved(img, tmp_path / "scan.png")
    assert np.asarray(out)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.asarray(out)[0].tolist() == [[v] * 3 for v in (0, 1, 128, 255)]


def test_32bit_integer_grayscale_is_scaled_by_its_range(tmp_path):
    img = Image.fromarray(np.array([[-1000, 0, 1000, 3000]], dtype=np.int32))  # mode I
    assert img.mode == "I"
    out = _saved(img, tmp_path / "depth.tif")
    assert np.asarray(out)[0, :, 1].tolist() == [0, 64, 128, 255]


def test_float_grayscale_is_scaled_by_its_range(tmp_path):
    img = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32))  # mode F
    assert img.mode == "F"
    out = _saved(img, tmp_path / "map.tif")
    assert np.asarray(out)[0, :, 2].tolist() == [0, 64, 128, 255]


def test_transparency_is_composited_on_the_configured_background(tmp_path):
    pixels = np.array([[[10, 20, 30, 0], [200, 100, 50, 255], [200, 0, 0, 128]]], dtype=np.uint8)
    out = np.asarray(_saved(Image.fromarray(pixels, "RGBA"), tmp_path / "a.png")).astype(int)
    assert out[0, 0].tolist() == list(BACKGROUND)  # fully transparent: the background, not the hidden colour
    assert out[0, 1].tolist() == [200, 100, 50]
    expected = [round(200 * 128 / 255), round(128 * 127 / 255), round(255 * 127 / 255)]
    assert np.abs(out[0, 2] - expected).max() <= 1


def test_grayscale_with_alpha_and_a_transparent_palette_use_the_background(tmp_path):
    la = Image.fromarray(np.array([[[77, 0], [77, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(_saved(la, tmp_path / "la.png"))[0].tolist() == [list(BACKGROUND), [77, 77, 77]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([9, 9, 9, 250, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    out = _saved(palette, tmp_path / "p.png", transparency=0)
    assert np.asarray(out)[0].tolist() == [list(BACKGROUND), [250, 0, 0]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red top-left, stored unrotated
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100, subsampling=0)
    out = np.asarray(load_rgb(tmp_path / "r.jpg", RULES)).astype(int)
    assert out.shape == (3, 2, 3)
    assert out[0, 1, 0] > 200 and out[0, 1, 1:].max() < 60  # red is now top-right
    assert out[0, 0].max() < 60


def test_cmyk_without_a_profile_uses_pillows_conversion(tmp_path):
    img = Image.new("CMYK", (1, 1), (255, 0, 0, 0))
    assert _saved(img, tmp_path / "c.tif").getpixel((0, 0)) == (0, 255, 255)


def _grey_ramp_cmyk_profile() -> bytes:
    """An ICC v2 CMYK output profile whose A2B0 maps ink to lightness L* = 25 * (c+m+y+k), neutral:
    deliberately unlike naive CMYK (no ink = black here), so only a conversion through the profile
    gives its values."""

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    clut = b""
    for corner in range(16):
        inks = bin(corner).count("1")
        clut += struct.pack(">HHH", round(0xFF00 * inks / 4), 0x8000, 0x8000)
    identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ramp = struct.pack(">HH", 0, 0xFFFF)
    a2b0 = b"mft2" + bytes(4) + bytes([4, 3, 2, 0]) + identity + struct.pack(">HH", 2, 2)
    a2b0 += ramp * 4 + clut + ramp * 3
    desc = (
        b"desc" + bytes(4) + struct.pack(">I", 5) + b"ramp\x00" + bytes(4) + bytes(4) + bytes(3) + bytes(67)
    )
    wtpt = b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"A2B0", a2b0)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + bytes(12) + b"acsp"
    )
    header += bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_cmyk_with_an_icc_profile_is_converted_through_it(tmp_path, suffix):
    inks = [(0, 0, 0, 0), (255, 0, 0, 0), (255, 255, 0, 0), (255, 255, 255, 255)]
    img = Image.new("CMYK", (4, 1))
    for x, ink in enumerate(inks):
        img.putpixel((x, 0), ink)
    out = np.asarray(_saved(img, tmp_path / f"c{suffix}", icc_profile=_grey_ramp_cmyk_profile(), quality=100))
    grey = out[0].astype(int)
    assert (grey.max(axis=1) - grey.min(axis=1)).max() <= 3  # neutral, as the profile says
    # L* 0, 25, 50, 100 in sRGB: 0, 59, 119, 255 (naive CMYK would give white, cyan, blue, black)
    assert np.abs(grey[:, 1] - [0, 59, 119, 255]).max() <= 6


def test_an_unreadable_profile_is_an_image_error_not_a_silent_fallback(tmp_path):
    from mmlearn.data.images import ImageLoadError, check_image

    path = tmp_path / "c.tif"
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(path, icc_profile=b"not a profile" * 20)
    with pytest.raises(ImageLoadError, match=r"c\.tif"):
        check_image(path, RULES)
    with pytest.raises(ImageLoadError, match=r"c\.tif"):
        load_rgb(path, RULES)


def test_eight_bit_modes_keep_their_values(tmp_path):
    assert _saved(Image.new("L", (1, 1), 77), tmp_path / "l.png").getpixel((0, 0)) == (77, 77, 77)
    assert _saved(Image.new("1", (1, 1), 1), tmp_path / "b.png").getpixel((0, 0)) == (255, 255, 255)
    assert _saved(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "c.png").getpixel((0, 0)) == (1, 2, 3)
    rgb = io.BytesIO()
    Image.new("RGB", (1, 1), (1, 2, 3)).save(rgb, "PNG")
    assert load_rgb(tmp_path / "c.png").getpixel((0, 0)) == (1, 2, 3)  # without rules: outside a run
