"""Optional PNG heatmaps of a batch run: ``out_dir/heatmaps/{row:08d}.png``, one per usable row.

Each map ``(H, W, C)`` is drawn exactly as :func:`explain.viz.to_image` draws one map (channels reduced,
clipped at the 99th percentile, PAIR's conventions; a diverging colormap centred on zero for signed
methods) and written atomically (:func:`explain.viz.save_png`). A shard's heatmaps are rendered from the
values as they are STORED (after a float16 cast), before the shard enters the manifest, so a run killed
between the two redoes that shard with its maps, and maps rendered later from the shard file (a finished
run rerun with ``heatmaps=True``) are the same bytes. Heatmaps are therefore not a setting: a rerun with
them renders exactly the missing PNGs from the shards already on disk, without recomputing anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int

FOLDER = "heatmaps"


def path(out_dir: str | os.PathLike, row: int) -> Path:
    """``out_dir/heatmaps/{row:08d}.png``."""
    return Path(out_dir) / FOLDER / f"{int(row):08d}.png"


def check(input_shape: tuple[int, ...], target: Any) -> None:
    """Raises before any work unless each row's map is one image ``(H, W, C)``.

    Raises:
      ValueError: a model whose samples are not ``(H, W, C)`` images, or ``target="all"`` (``K`` maps a row).
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"heatmaps need an image model (samples of shape (H, W, C)), got samples of shape {tuple(input_shape)}"
        )
    if isinstance(target, str) and target == "all":
        raise ValueError("heatmaps draw one map per row; target='all' gives one per class: pick a target")


def render(
    out_dir: str | os.PathLike,
    values: Float[np.ndarray, " r h w c"],
    rows: Int[np.ndarray, " r"],
    *,
    signed: bool,
    only: Iterable[int] | None = None,
) -> int:
    """Writes the PNG of each row of ``values (R, H, W, C)`` (or only those positions ``only``); the count."""
    from explain import viz  # Pillow and matplotlib's colormap registry: only when maps are wanted

    positions = range(len(rows)) if only is None else only
    written = 0
    for k in positions:
        viz.save_png(viz.to_image(np.asarray(values[k]), signed=signed), path(out_dir, int(rows[k])))
        written += 1
    return written


def missing(out_dir: str | os.PathLike, rows: Int[np.ndarray, " r"]) -> list[int]:
    """Positions in ``rows (R,)`` whose PNG is not on disk."""
    return [k for k, r in enumerate(rows) if not path(out_dir, int(r)).exists()]


def complete(out_dir: str | os.PathLike, shard_file: str | os.PathLike, *, signed: bool) -> int:
    """Renders the missing PNGs of one intact shard file from its stored values; the count written."""
    with np.load(shard_file) as shard:
        rows = shard["row"]
        todo = missing(out_dir, rows)
        if not todo:
            return 0
        return render(out_dir, shard["values"], rows, signed=signed, only=todo)
