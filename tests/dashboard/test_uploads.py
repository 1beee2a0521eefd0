"""Defensive decoding: every bad upload is a clear UploadError; good ones convert exactly."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from dashboard import uploads
from dashboard.uploads import UploadError, load_upload


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient_rgb(w: int = 64, h: int = 64) -> Image.Image:
    r = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    g = np.tile(np.linspace(0, 255, h, dtype=np.uint8)[:, None], (1, w))
    b = np.full((h, w), 77, np.uint8)
    return Image.fromarray(np.stack([r, g, b], -1), "RGB")


def test_zero_byte_file():
    with pytest.raises(UploadError, match=r"empty \(0 bytes\)"):
        load_upload(b"", (64, 64, 3))


def test_text_file_renamed_png():
    with pytest.raises(UploadError, match="not an image Pillow can read"):
        load_upload(b"hello, I am plain text pretending to be a PNG\n" * 10, (64, 64, 3))


def test_truncated_png():
    data = encode(gradient_rgb(200, 200))
    with pytest.raises(UploadError, match="truncated or corrupt"):
        load_upload(data[: len(data) // 2], (64, 64, 3))


def test_corrupt_png_crc():
    data = bytearray(encode(gradient_rgb()))
    data[-20] ^= 0xFF  # inside the last IDAT chunk: its CRC no longer matches
    with pytest.raises(UploadError, match="truncated or corrupt"):
        load_upload(bytes(data), (64, 64, 3))


def test_oversized_bytes():
    with pytest.raises(UploadError, match=r"the limit is 1 MB"):
        load_upload(b"\x89PNG" + b"\0" * (2**20), (64, 64, 3), max_bytes=2**20)


def test_unsupported_format_is_refused():
    with pytest.raises(UploadError, match="Unsupported image format GIF"):
        load_upload(encode(gradient_rgb(), "GIF"), (64, 64, 3))


def test_forty_megapixel_image_is_refused_from_the_header():
    # 8000 x 5000 = 40 MP; a flat image compresses to a few kB, the classic bomb shape.
    data = encode(Image.new("L", (8000, 5000), 0), optimize=False)
    assert len(data) < uploads.MAX_UPLOAD_BYTES
    with pytest.raises(UploadError, match=r"8000x5000 = 40.0 megapixels; the limit is 25"):
        load_upload(data, (64, 64, 3))


def test_pillow_bomb_guard_is_an_error_not_a_warning(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600 > 1000: Pillow warns
    data = encode(gradient_rgb(40, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UploadError, match="decompression bomb"):
            load_upload(data, (64, 64, 3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # > 2x: Pillow raises
    with pytest.raises(UploadError, match="decompression bomb"):
        load_upload(data, (64, 64, 3))


def test_rgb_png_same_size_is_exact():
    img = gradient_rgb()
    c = load_upload(encode(img), (64, 64, 3))
    assert c.x.dtype == np.float32 and c.x.shape == (64, 64, 3)
    np.testing.assert_array_equal(c.x, np.asarray(img, np.float32) / 255)
    assert c.original_format == "PNG" and c.original_mode == "RGB"


def test_rgba_is_composited_onto_white():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[:32, :, 3] = 255  # top half opaque, bottom half transparent
    c = load_upload(encode(Image.fromarray(rgba, "RGBA")), (64, 64, 3))
    np.testing.assert_allclose(c.x[:32], np.broadcast_to([200 / 255, 0, 0], (32, 64, 3)), atol=1e-6)
    np.testing.assert_allclose(c.x[32:], 1.0, atol=1e-6)
    assert "alpha composited onto white" in c.steps


def test_palette_image_with_transparency():
    p = Image.new("P", (64, 64), 0)
    p.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 64, 16))  # top 16 rows: palette index 1 (red)
    data = encode(p, transparency=0)  # index 0 (blue) is transparent
    c = load_upload(data, (64, 64, 3))
    np.testing.assert_allclose(c.x[:16], np.broadcast_to([1, 0, 0], (16, 64, 3)))
    np.testing.assert_allclose(c.x[16:], 1.0)  # transparent blue -> white
    assert c.original_mode == "P"
    assert "palette with transparency -> RGBA" in c.steps


def test_palette_image_to_greyscale_and_resized():
    p = Image.new("P", (32, 32), 0)
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    p.paste(1, (0, 0, 16, 32))  # left half white
    c = load_upload(encode(p), (8, 8, 1))
    assert c.x.shape == (8, 8, 1)
    # Lanczos rings by at most a grey level next to the edge.
    np.testing.assert_allclose(c.x[:, :3, 0], 1.0, atol=1.5 / 255)
    np.testing.assert_allclose(c.x[:, 5:, 0], 0.0, atol=1.5 / 255)
    assert "mode P -> L" in c.steps and any(s.startswith("resized 32x32 -> 8x8") for s in c.steps)


def test_invert_and_value_range():
    img = Image.new("L", (8, 8), 255)
    c = load_upload(encode(img), (8, 8, 1), invert=True, value_range=(-1.0, 1.0))
    np.testing.assert_allclose(c.x, -1.0)
    assert "inverted (255 - v)" in c.steps


def test_non_square_is_centre_cropped():
    a = np.zeros((40, 120, 3), np.uint8)
    a[:, 40:80] = 255  # white centre square, black sides that must be cropped away
    c = load_upload(encode(Image.fromarray(a)), (8, 8, 3))
    np.testing.assert_allclose(c.x, 1.0, atol=1e-6)
    assert any("centre-cropped 120x40 -> 40x40" in s for s in c.steps)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_decode(fmt):
    c = load_upload(encode(gradient_rgb(), fmt, quality=95), (64, 64, 3))
    assert c.original_format == fmt and c.x.shape == (64, 64, 3)
    # Lossy, but close to the source.
    assert np.abs(c.x - np.asarray(gradient_rgb(), np.float32) / 255).mean() < 0.03


def test_sixteen_bit_png_scaled_to_full_range():
    a = np.full((8, 8), 65535, np.uint16)
    a[:4] = 0
    c = load_upload(encode(Image.fromarray(a)), (8, 8, 1))
    np.testing.assert_allclose(c.x[:4], 0.0)
    np.testing.assert_allclose(c.x[4:], 1.0)


def test_bad_model_shape_and_type():
    with pytest.raises(ValueError, match=r"\(H, W, 1\) or \(H, W, 3\), got \(30,\)"):
        uploads.to_model_input(gradient_rgb(), (30,))
    with pytest.raises(TypeError, match="expected the upload as bytes, got str"):
        load_upload("not bytes", (8, 8, 1))
