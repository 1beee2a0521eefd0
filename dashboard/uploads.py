"""Defensive decoding of uploaded images: a re-export of :mod:`explain.images`.

The code lives in ``explain`` so that ``explain.data.load`` converts a folder of
images exactly as the dashboard converts an upload (``explain`` never imports
``dashboard``). Every public name the pages and tests use stays importable here.
"""

from __future__ import annotations

from explain.images import (
    ACCEPTED_EXTENSIONS,
    ACCEPTED_FORMATS,
    BACKGROUND,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    Converted,
    UploadError,
    check_size,
    decode,
    load_file,
    load_upload,
    to_model_input,
)

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ACCEPTED_FORMATS",
    "BACKGROUND",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "Converted",
    "UploadError",
    "check_size",
    "decode",
    "load_file",
    "load_upload",
    "to_model_input",
]
