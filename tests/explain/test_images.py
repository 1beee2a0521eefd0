"""explain.images: limits said in our words (MB, megapixels), checked before reading or decoding, thread-safe."""

from __future__ import annotations

import concurrent.futures
import io
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from explain import images
from explain.images import UploadError


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def assert_our_bomb_message(e: pytest.ExceptionInfo, megapixels: str) -> None:
    message = str(e.value)
    assert f"possible decompression bomb); the limit is {megapixels} megapixels" in message
    # Pillow's own wording ("Image size (...) exceeds limit of ... could be decompression bomb DOS attack") never leaks.
    assert "exceeds limit" not in message and "DOS" not in message and "pixels," not in message


def test_pillow_bomb_guard_in_our_words(monkeypatch):
    data = png(40, 40)  # 1600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns between 1x and 2x
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes either
        with pytest.raises(UploadError) as e:
            images.load_upload(data, (8, 8, 3))
    assert_our_bomb_message(e, "0.001")  # the limit that applied: Pillow's, below ours
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # above 2x Pillow raises DecompressionBombError
    with pytest.raises(UploadError) as e:
        images.load_upload(data, (8, 8, 3), max_pixels=400)
    assert_our_bomb_message(e, "0.0004")  # ours, below Pillow's
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_our_pixel_limit_comes_first_and_says_megapixels():
    with pytest.raises(UploadError, match=r"40x40 = 0\.0 megapixels; the limit is 0\.0015 megapixels"):
        images.load_upload(png(40, 40), (8, 8, 3), max_pixels=1500)


@pytest.mark.parametrize(
    ("max_bytes", "limit"), [(2**20, "1"), (3 * 2**19, "1.5"), (10 * 2**20, "10"), (1000, "0.00095")]
)
def test_over_size_message_gives_the_limit_in_mb(max_bytes, limit):
    data = b"\x89PNG" + b"\0" * max_bytes  # one past the limit (and more)
    with pytest.raises(UploadError, match=f"; the limit is {re.escape(limit)} MB\\.$"):
        images.load_upload(data, (8, 8, 3), max_bytes=max_bytes)
    with pytest.raises(UploadError, match=rf"\({len(data):,} bytes\)"):
        images.check_size(len(data), max_bytes=max_bytes)


def test_load_file_checks_the_size_before_opening_the_file(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(png(64, 64))
    opened = []

    def spy_open(*args, **kwargs):
        opened.append(args)
        return open(*args, **kwargs)  # noqa: SIM115 - returned to the caller's with-block

    monkeypatch.setattr(images, "open", spy_open, raising=False)
    with pytest.raises(UploadError, match=r"the limit is 0\.00095 MB"):
        images.load_file(path, (8, 8, 3), max_bytes=1000)
    assert opened == []
    c = images.load_file(path, (64, 64, 3))
    assert len(opened) == 1 and c.x.shape == (64, 64, 3)
    np.testing.assert_array_equal(c.x, images.load_upload(png(64, 64), (64, 64, 3)).x)
    with pytest.raises(UploadError, match="The file cannot be read"):
        images.load_file(tmp_path / "missing.png", (8, 8, 3))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UploadError, match=r"empty \(0 bytes\)"):
        images.load_file(tmp_path / "empty.png", (8, 8, 3))


def test_bomb_guard_holds_under_threads_and_leaves_the_warning_filters_alone(monkeypatch):
    bomb, fine = png(40, 40), png(20, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 warns (refused), 20x20 passes
    before = list(warnings.filters)

    def one(i: int) -> str:
        try:
            images.load_upload(bomb if i % 2 else fine, (8, 8, 3))
        except UploadError as e:
            return str(e)
        return "ok"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(64)))
    assert results[0::2] == ["ok"] * 32
    assert all("possible decompression bomb" in r for r in results[1::2])
    assert warnings.filters == before
