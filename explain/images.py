"""Defensive decoding of untrusted image files into a model's input.

Used by the dashboard's uploads (``dashboard.uploads`` re-exports this module) and by
:func:`explain.data.load` for folders of images. An image is untrusted bytes. Every
check runs before the pixels are decoded where it can (size in bytes, read from the
file system before the file is read; format; pixel count read from the header), so a
decompression bomb is refused without allocating its pixels. What survives is
converted to the model's input: mode (RGB or greyscale, transparency flattened onto
white), size (resampled to the model's ``H x W``) and range (``uint8 / 255`` mapped
onto the declared value range). Each conversion step is recorded so a page can show it.

All failures raise :class:`UploadError` (a ``ValueError``) with a message meant for
the user; Pillow's own decompression-bomb wording never reaches it (our limits do).

Thread safety: the header is parsed under a lock, because promoting Pillow's
``DecompressionBombWarning`` to an error changes the process-wide warning filters
(``warnings.catch_warnings`` is not thread-safe before Python 3.14); the pixels are
decoded outside it, so a thread pool still decodes in parallel (Pillow releases the GIL).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # matches server.maxUploadSize in .streamlit/config.toml
MAX_PIXELS = 25_000_000  # 25 megapixels: ~75 MB decoded as RGB, well inside memory
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
# The background that transparent pixels are composited onto.
BACKGROUND = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112


class UploadError(ValueError):
    """An upload that cannot be used; the message is shown to the user as is."""


@dataclasses.dataclass(frozen=True)
class Converted:
    """An uploaded image converted to one model input.

    Attributes:
      x: ``(H, W, C)`` float32 in ``value_range``, ready for ``x[None]``.
      original_format: ``"PNG"``, ``"JPEG"`` or ``"WEBP"``.
      original_mode: Pillow mode before conversion, e.g. ``"RGBA"`` or ``"P"``.
      original_size: ``(width, height)`` before resizing.
      steps: human-readable conversion steps, in order.
    """

    x: np.ndarray
    original_format: str
    original_mode: str
    original_size: tuple[int, int]
    steps: tuple[str, ...]


def _mb(n: int) -> str:
    """``n`` bytes in MB (``2**20`` bytes), at most two decimals, no trailing zeros: ``10``, ``1.5``, ``0.00095``."""
    v = n / 2**20
    return f"{v:.2f}".rstrip("0").rstrip(".") if v >= 0.01 else f"{v:.2g}"


def _megapixels(n: float) -> str:
    """``n`` pixels in megapixels, three significant digits: ``25``, ``89.5``, ``0.001``."""
    return f"{n / 1e6:.3g}"


def check_size(size: int, *, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """Refuses an empty file or one over ``max_bytes``; the message gives both sizes in MB.

    Runs on the byte count alone, so a file on disk is checked from ``os.stat`` before it is read.
    """
    if size == 0:
        raise UploadError("The file is empty (0 bytes). Upload a PNG, JPEG or WebP image.")
    if size > max_bytes:
        raise UploadError(f"The file is {_mb(size)} MB ({size:,} bytes); the limit is {_mb(max_bytes)} MB.")


def _bomb(max_pixels: int) -> UploadError:
    """Our message for Pillow's ``DecompressionBombError``/``Warning``: Pillow's own wording never reaches the user.

    Pillow's guard fires above ``Image.MAX_IMAGE_PIXELS`` (warning; an error above twice that), so the
    limit that applied is the smaller of it and ``max_pixels``.
    """
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    return UploadError(
        "Refused: the image header declares more pixels than can be decoded safely (a possible decompression "
        f"bomb); the limit is {_megapixels(limit)} megapixels. Downscale it before uploading."
    )


# Serialises the header parse, where the process-wide warning filters are changed (see the module doc).
_OPEN_LOCK = threading.Lock()


def _open_checked(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Opens ``data`` lazily and runs every check that does not need the pixels."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected the upload as bytes, got {type(data).__name__}")
    check_size(len(data), max_bytes=max_bytes)
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: an error here, so the bomb is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UploadError("This file is not an image Pillow can read. Upload a PNG, JPEG or WebP image.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(max_pixels) from None
    if img.format not in ACCEPTED_FORMATS:
        raise UploadError(f"Unsupported image format {img.format}; expected one of {', '.join(ACCEPTED_FORMATS)}.")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise UploadError(f"The image header declares an empty size {w}x{h}.")
    if w * h > max_pixels:
        raise UploadError(
            f"The image is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is {_megapixels(max_pixels)} "
            "megapixels. Downscale it before uploading."
        )
    return img


def decode(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decodes untrusted image bytes into a fully loaded Pillow image.

    Checks, in order: byte size, that Pillow recognises the format and it is
    PNG/JPEG/WebP, the pixel count declared in the header (``max_pixels``, and
    Pillow's own ``Image.MAX_IMAGE_PIXELS`` bomb guard promoted from a warning
    to an error, reported in our words), ``Image.verify()`` (structure, PNG chunk
    CRCs), then the full decode (truncated data).

    Args:
      data: the uploaded file's bytes.
      max_bytes: refuse larger files.
      max_pixels: refuse images whose header declares more pixels.

    Returns:
      the loaded image in its original mode (first frame of an animation).

    Raises:
      UploadError: with a message for the user.
    """
    try:
        # verify() leaves the image unusable, so the pixels are decoded from a second handle.
        _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels).verify()
        img = _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
        img.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise UploadError(f"The image data is truncated or corrupt ({e}).") from None
    return img


def to_model_input(
    img: Image.Image,
    shape: tuple[int, int, int],
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    invert: bool = False,
) -> Converted:
    """Converts a decoded image to one model input of shape ``(H, W, C)``.

    Mode: transparency (RGBA, LA, palette with a transparent index) is
    composited onto white, then converted to RGB (``C == 3``) or greyscale
    ``L`` (``C == 1``, ITU-R 601 luma). Orientation: EXIF rotation applied.
    Size: centre-cropped to the model's aspect ratio, then resampled to ``W x H`` with a
    Lanczos filter (area-averaging when shrinking a lot). Range: ``v / 255``
    mapped linearly onto ``value_range``.

    Args:
      img: a loaded Pillow image.
      shape: the model's per-sample ``(H, W, C)``, ``C`` in ``{1, 3}``.
      value_range: the model's declared input range; ``None`` means ``[0, 1]``.
      invert: ``255 - v`` after the mode conversion (dark ink on light paper
        for a model trained on light ink on a dark background).

    Raises:
      ValueError: a shape that is not ``(H, W, 1)`` or ``(H, W, 3)``.
    """
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ValueError(f"expected an image model input of shape (H, W, 1) or (H, W, 3), got {shape}")
    h, w, c = shape
    fmt, mode, size = img.format or "?", img.mode, img.size
    steps: list[str] = [f"decoded {fmt} {size[0]}x{size[1]} mode {mode}"]
    if getattr(img, "n_frames", 1) > 1:
        steps.append(f"kept the first of {img.n_frames} frames")

    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
        steps.append(f"applied EXIF orientation {orientation}")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.round(np.clip(a / top, 0, 1) * 255).astype(np.uint8), "L")
        steps.append(f"{mode} high bit depth -> 8-bit L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        steps.append("palette with transparency -> RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        flat.alpha_composite(rgba)
        img = flat.convert("RGB")
        steps.append("alpha composited onto white")
    target_mode = "RGB" if c == 3 else "L"
    if img.mode != target_mode:
        steps.append(f"mode {img.mode} -> {target_mode}")
        img = img.convert(target_mode)
    if invert:
        img = Image.eval(img, lambda v: 255 - v)
        steps.append("inverted (255 - v)")
    iw, ih = img.size
    if iw * h != ih * w:
        # Centre-crop to the model's aspect ratio rather than squash the object.
        cw, ch = (min(iw, ih * w // h), min(ih, iw * h // w))
        left, top = (iw - cw) // 2, (ih - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
        steps.append(f"centre-cropped {iw}x{ih} -> {cw}x{ch} (aspect ratio {w}:{h})")
    if img.size != (w, h):
        steps.append(f"resized {img.size[0]}x{img.size[1]} -> {w}x{h} (Lanczos)")
        img = img.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)

    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    arr = arr.reshape(h, w, c)
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    if (lo, hi) != (0.0, 1.0):
        arr = np.float32(lo) + arr * np.float32(hi - lo)
    steps.append(f"uint8 / 255 -> [{lo:g}, {hi:g}], float32 {tuple(arr.shape)}")
    return Converted(x=arr, original_format=fmt, original_mode=mode, original_size=size, steps=tuple(steps))


def load_upload(
    data: bytes,
    shape: tuple[int, int, int],
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    invert: bool = False,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Converted:
    """:func:`decode` then :func:`to_model_input`; every failure is an :class:`UploadError`."""
    img = decode(data, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        return to_model_input(img, shape, value_range=value_range, invert=invert)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(max_pixels) from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:  # e.g. corrupt EXIF, read lazily
        raise UploadError(f"could not convert the image: {e}") from None


def load_file(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    invert: bool = False,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Converted:
    """:func:`load_upload` for a file on disk; its size is checked from ``os.stat`` before a byte is read.

    Raises:
      UploadError: with a message for the user (``OSError`` reading the file included).
    """
    try:
        check_size(os.stat(path).st_size, max_bytes=max_bytes)
        with open(path, "rb") as f:
            # One byte past the limit: a file that grew after the stat is still refused, never read whole.
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise UploadError(f"The file cannot be read ({e.strerror or e}).") from None
    return load_upload(data, shape, value_range=value_range, invert=invert, max_bytes=max_bytes, max_pixels=max_pixels)
