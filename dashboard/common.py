"""Helpers shared by the pages: images for display, heat maps with a colour bar, download payloads, and error
texts without the server's paths."""

from __future__ import annotations

import io
import re
from pathlib import Path

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


def unit_range(x: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """``x`` mapped from the model's ``value_range`` onto [0, 1] for display (``None``: already [0, 1])."""
    if value_range is None or tuple(value_range) == (0.0, 1.0):
        return x
    lo, hi = value_range
    return (np.asarray(x, np.float32) - lo) / (hi - lo)


# A path: absolute (POSIX, home-relative or a Windows drive) up to a quote, a space or a separator
# of a message; never the slashes of a URL or of a relative path.
_PATH = re.compile(r"(?<![\w.~/:])(?:~|[A-Za-z]:)?[/\\][^\s'\"`,;:()\[\]<>]*")


def short_path(path: str, root: Path | None = None) -> str:
    """``path`` relative to ``root`` (the working directory) when inside it, else its file name only."""
    root = Path.cwd() if root is None else root
    p = Path(path).expanduser()
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return p.name or path


def redact(text: str, root: Path | None = None) -> str:
    """``text`` with every absolute path shortened by :func:`short_path`: error boxes never show the server's
    folders (a deployment's layout, a user's home) to whoever opens the page."""
    return _PATH.sub(lambda m: short_path(m.group(0), root), str(text))


def colour_range(m: np.ndarray, *, signed: bool, percentile: float) -> tuple[float, float]:
    """``(vmin, vmax)`` of a map's colour bar: the ``percentile``-th percentile ``P`` of ``|m|`` (PAIR's clipping,
    as :func:`explain.viz.normalize`), ``[-P, P]`` for signed maps so zero sits at the diverging map's centre,
    ``[0, P]`` for magnitudes; an all-zero map gets ``P = 1``."""
    mag = np.abs(np.asarray(m, np.float64))
    vmax = float(np.percentile(mag, percentile)) if mag.size else 0.0
    vmax = vmax if vmax > 0 else float(mag.max(initial=0.0)) or 1.0
    return (-vmax, vmax) if signed else (0.0, vmax)


def heatmap_png(m: np.ndarray, *, cmap: str, signed: bool, percentile: float, label: str, size: float = 3.2) -> bytes:
    """A ``(H, W)`` map drawn as a heat map with its colour bar beside it, as PNG bytes.

    Signed maps keep their sign on ``[-P, P]``; magnitudes show ``|m|`` on ``[0, P]`` (:func:`colour_range`);
    values past ``P`` take the end colour, which the bar marks with an arrow. Matplotlib's object API
    only (a ``Figure`` of its own, no pyplot): pages render concurrently and share no global figure.
    """
    from matplotlib.figure import Figure  # lazy: only pages that draw maps pay the import

    m = np.asarray(m, np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a (H, W) map, got shape {m.shape}")
    values = m if signed else np.abs(m)
    vmin, vmax = colour_range(values, signed=signed, percentile=percentile)
    fig = Figure(figsize=(size * 1.25, size), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    over = float(values.max(initial=0.0)) > vmax
    under = signed and float(values.min(initial=0.0)) < vmin
    extend = {(False, False): "neither", (True, False): "max", (False, True): "min", (True, True): "both"}[over, under]
    bar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, extend=extend)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.formatter.set_powerlimits((-2, 3))  # 1e-7-sized gradients read as ×10⁻⁷, not 0.0000001
    bar.ax.yaxis.get_offset_text().set_fontsize(7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
