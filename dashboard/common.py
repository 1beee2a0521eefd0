"""Image helpers shared by the pages: upscaling for display, array -> image, download payloads."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DISPLAY = 256  # on-screen size of every image, pixels (nearest upscaling keeps pixels visible)


def enlarge(img: Image.Image, size: int = DISPLAY) -> Image.Image:
    """``img`` upscaled by the largest integer factor that keeps it within ``size`` pixels (nearest neighbour)."""
    w, h = img.size
    s = max(1, size // max(w, h))
    return img.resize((w * s, h * s), Image.Resampling.NEAREST)


def as_pil(x: np.ndarray) -> Image.Image:
    """``(H, W, C)`` in [0, 1] -> an RGB/L Pillow image."""
    a = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()
