"""Attribution arrays -> Pillow images: channel reduction, percentile clipping, colormaps, overlays, grids.

Conventions follow PAIR saliency (``saliency/core/visualization.py``): absolute
maps are clipped at their 99th percentile and drawn with a sequential
colormap; signed maps are scaled by the 99th percentile of their magnitude and
drawn with a diverging colormap whose centre is exactly zero. Colormaps come
from matplotlib's registry (imported lazily, only ``matplotlib.colormaps``).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explain.io import atomic_write_bytes

Reduce = Literal["sum", "abs_sum", "abs_max", "l2"]
REDUCTIONS: tuple[str, ...] = ("sum", "abs_sum", "abs_max", "l2")
SEQUENTIAL_CMAP = "inferno"
DIVERGING_CMAP = "RdBu_r"  # red positive, blue negative, white at zero


# ----------------------------------------------------------------------------- arrays


def _as_numpy(a: Any) -> np.ndarray:
    return np.asarray(getattr(a, "values", a), dtype=np.float64)


def reduce_channels(attribution: Any, how: Reduce = "sum") -> np.ndarray:
    """``(H, W, C)`` -> ``(H, W)``: ``"sum"`` Σ_c a_c (signed), ``"abs_sum"`` Σ_c |a_c| (PAIR's grayscale),
    ``"abs_max"`` max_c |a_c|, ``"l2"`` (Σ_c a_c²)^½. A ``(H, W)`` map is returned unchanged."""
    if how not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; expected one of {list(REDUCTIONS)}")
    a = _as_numpy(attribution)
    if a.ndim == 2:
        return a
    if a.ndim != 3:
        raise ValueError(f"expected an attribution of shape (H, W) or (H, W, C), got {a.shape}")
    if how == "sum":
        return a.sum(-1)
    if how == "abs_sum":
        return np.abs(a).sum(-1)
    if how == "abs_max":
        return np.abs(a).max(-1)
    return np.sqrt((a**2).sum(-1))


def normalize(m: np.ndarray, *, signed: bool = False, percentile: float = 99.0) -> np.ndarray:
    """Scales a ``(H, W)`` map for display.

    Absolute: ``|m| / P_p(|m|)`` clipped to [0, 1]. Signed: ``m / P_p(|m|)`` clipped
    to [-1, 1] and mapped to [0, 1] so that zero lands on 0.5, the centre of a
    diverging colormap. ``P_p`` is the ``percentile``-th percentile (PAIR: 99).

    Raises:
      ValueError: a NaN or inf in ``m`` (it has no colour; every drawing path normalises first).
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"expected 0 < percentile <= 100, got {percentile}")
    m = np.asarray(m, np.float64)
    if not np.isfinite(m).all():
        # a NaN would become an out-of-range colour index; a diverged attribution must not look like an image
        bad = int((~np.isfinite(m)).sum())
        raise ValueError(f"expected a finite attribution map, got {bad} NaN/inf value(s) of {m.size}")
    mag = np.abs(m)
    vmax = float(np.percentile(mag, percentile))
    vmax = vmax if vmax > 0 else float(mag.max()) or 1.0  # all-zero or very sparse maps stay finite
    if signed:
        return (np.clip(m / vmax, -1.0, 1.0) + 1.0) / 2.0
    return np.clip(mag / vmax, 0.0, 1.0)


@functools.cache
def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps  # lazy: only the registry, never pyplot

    if name not in colormaps:
        raise ValueError(
            f"unknown colormap {name!r}; expected a matplotlib colormap name such as 'inferno' or 'RdBu_r'"
        )
    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)  # (256, 3)


def colorize(m: np.ndarray, cmap: str) -> np.ndarray:
    """``(H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8 through a 256-entry lookup table; NaN/inf raise ``ValueError``."""
    m = np.asarray(m, np.float64)
    if not np.isfinite(m).all():
        raise ValueError(f"expected a finite map to colour, got {int((~np.isfinite(m)).sum())} NaN/inf value(s)")
    return _lut(cmap)[np.clip(np.round(m * 255), 0, 255).astype(np.intp)]


def _map2d(attribution: Any, reduce: Reduce | None, signed: bool) -> np.ndarray:
    return reduce_channels(attribution, reduce or ("sum" if signed else "abs_sum"))


# ----------------------------------------------------------------------------- images


def to_image(
    attribution: Any,
    *,
    cmap: str | None = None,
    percentile: float = 99.0,
    signed: bool = False,
    reduce: Reduce | None = None,
    size: tuple[int, int] | None = None,
) -> Image.Image:
    """An attribution map ``(H, W[, C])`` as an RGB image.

    Args:
      attribution: ``(H, W)`` or ``(H, W, C)`` (an array, or one sample's values).
      cmap: matplotlib colormap name; default ``"inferno"`` (absolute) or ``"RdBu_r"`` (signed).
      percentile: clipping percentile (default 99, as PAIR).
      signed: keep the sign (diverging colormap centred on zero) or show magnitude.
      reduce: channel reduction (:func:`reduce_channels`); default ``"sum"`` when signed,
        ``"abs_sum"`` otherwise.
      size: optional ``(width, height)`` to resize to (nearest, so pixels stay visible).
    """
    m = normalize(_map2d(attribution, reduce, signed), signed=signed, percentile=percentile)
    img = Image.fromarray(colorize(m, cmap or (DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)))
    return img.resize(size, Image.Resampling.NEAREST) if size else img


def _image_rgb(image: Any) -> np.ndarray:
    a = np.asarray(image, np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1) or (H, W, 3) in [0, 1], got {a.shape}")
    return np.clip(a, 0.0, 1.0)


def overlay(
    image: Any,
    attribution: Any,
    *,
    cmap: str | None = None,
    alpha: float = 0.5,
    percentile: float = 99.0,
    signed: bool = False,
    reduce: Reduce | None = None,
) -> Image.Image:
    """The attribution's heat map blended over the input image.

    Each pixel is ``(1 - a) · image + a · heat`` with ``a = alpha · |m|``, ``m`` the
    normalised map (:func:`normalize`; for signed maps its distance from zero), so
    unattributed regions show the input and ``alpha`` sets the strongest opacity.

    Args:
      image: ``(H, W, C)`` (C = 1 or 3) or ``(H, W)`` in [0, 1].
      attribution: ``(H, W)`` or ``(H, W, C)``; resized (bilinear) if its ``H, W`` differ.
      alpha: opacity in [0, 1] of the most attributed pixels (default 0.5).
      (others as :func:`to_image`)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"expected 0 <= alpha <= 1, got {alpha}")
    img = _image_rgb(image)
    m2 = _map2d(attribution, reduce, signed)
    if m2.shape != img.shape[:2]:
        m2 = np.asarray(Image.fromarray(m2.astype(np.float32)).resize(img.shape[1::-1], Image.Resampling.BILINEAR))
    m = normalize(m2, signed=signed, percentile=percentile)
    heat = colorize(m, cmap or (DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)) / 255.0
    a = alpha * (np.abs(2.0 * m - 1.0) if signed else m)[..., None]
    return Image.fromarray(np.round(((1.0 - a) * img + a * heat) * 255).astype(np.uint8))


@functools.cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def grid(
    images: Any,
    maps: Mapping[str, Any],
    *,
    signed: Sequence[str] | Mapping[str, bool] = (),
    row_labels: Sequence[str] | None = None,
    scale: int = 2,
    alpha: float | None = None,
    percentile: float = 99.0,
    reduce: Reduce | None = None,
    pad: int = 4,
) -> Image.Image:
    """A labelled grid: one row per image, the input first, then one column per method.

    Args:
      images: ``(N, H, W, C)`` in [0, 1].
      maps: method label -> ``(N, H, W[, C])`` values (or an :class:`Attribution`).
      signed: labels drawn signed (diverging colormap); the others show magnitude.
      row_labels: ``N`` labels drawn left of each row (e.g. class names).
      scale: integer upscaling of every cell (nearest).
      alpha: ``None`` draws heat maps alone; a number overlays them on the input.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {imgs.shape}")
    n, h, w = imgs.shape[:3]
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"expected {n} row labels, got {len(row_labels)}")
    is_signed = dict(signed) if isinstance(signed, Mapping) else {k: True for k in signed}
    cols: list[tuple[str, list[Image.Image]]] = [
        ("input", [Image.fromarray(np.round(_image_rgb(i) * 255).astype(np.uint8)) for i in imgs])
    ]
    for label, vals in maps.items():
        v = _as_numpy(vals)
        if v.shape[0] != n or v.shape[1:3] != (h, w):
            raise ValueError(f"expected {label!r} maps of shape ({n}, {h}, {w}[, C]), got {v.shape}")
        s = is_signed.get(label, False)
        if alpha is None:
            cells = [to_image(v[i], signed=s, percentile=percentile, reduce=reduce) for i in range(n)]
        else:
            cells = [
                overlay(imgs[i], v[i], alpha=alpha, signed=s, percentile=percentile, reduce=reduce) for i in range(n)
            ]
        cols.append((label, cells))
    cw, ch = w * scale, h * scale
    font = _font(max(10, 6 * scale))
    label_h = 8 * scale + 6
    left = 0 if row_labels is None else max(int(font.getlength(str(t))) for t in row_labels) + 2 * pad
    col_w = max(cw, *(int(font.getlength(c)) + pad for c, _ in cols))
    canvas = Image.new("RGB", (left + len(cols) * (col_w + pad) + pad, label_h + n * (ch + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, (label, cells) in enumerate(cols):
        x0 = left + pad + j * (col_w + pad)
        draw.text((x0 + col_w // 2, label_h // 2), label, fill="black", font=font, anchor="mm")
        for i, cell in enumerate(cells):
            canvas.paste(
                cell.resize((cw, ch), Image.Resampling.NEAREST), (x0 + (col_w - cw) // 2, label_h + i * (ch + pad))
            )
    for i, t in enumerate(row_labels or ()):
        draw.text((pad, label_h + i * (ch + pad) + ch // 2), str(t), fill="black", font=font, anchor="lm")
    return canvas


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Writes a PNG atomically (:func:`explain.io.atomic_write_bytes`): encoded in memory, then renamed into place."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
