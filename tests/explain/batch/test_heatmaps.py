"""PNG heatmaps of a batch run: one per usable row, as explain.viz draws one map, redone exactly when missing."""

import numpy as np
import pytest
from PIL import Image

from explain import viz
from explain.batch import attribute_dataset
from explain.batch import heatmaps as heatmaps_lib
from explain.batch import run as run_lib

N, BATCH = 10, 4  # three shards


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.0, 1.0, (N, 8, 8, 3)).astype(np.float32)


def _pngs(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "heatmaps").glob("*.png"))}


def test_one_png_per_row_drawn_as_viz_draws_one_map(linen_cnn, x, tmp_path):
    run = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH, heatmaps=True)
    pngs = _pngs(tmp_path)
    assert list(pngs) == [f"{r:08d}.png" for r in range(N)]
    values = run.load()
    for r in (0, N - 1):
        drawn = np.asarray(Image.open(heatmaps_lib.path(tmp_path, r)))
        np.testing.assert_array_equal(drawn, np.asarray(viz.to_image(values[r], signed=True)))  # gradients: signed


def test_maps_added_to_a_finished_run_are_rendered_from_its_shards(linen_cnn, x, tmp_path, monkeypatch):
    kw = dict(method="vanilla_gradient", batch_size=BATCH, values_dtype="float16")
    whole = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "whole", heatmaps=True, **kw)
    later = tmp_path / "later"
    attribute_dataset(linen_cnn, x, out_dir=later, **kw)
    assert not (later / "heatmaps").exists()
    run = attribute_dataset(linen_cnn, x, out_dir=later, heatmaps=True, **kw)  # not a setting: nothing refused
    assert (run.completed, run.skipped) == ((), (0, 1, 2))  # nothing recomputed
    assert _pngs(later) == _pngs(tmp_path / "whole")  # drawn from the stored (float16) values either way
    assert whole.load().dtype == np.float16

    (later / "heatmaps" / "00000005.png").unlink()
    drawn = []
    real = heatmaps_lib.render
    monkeypatch.setattr(heatmaps_lib, "render", lambda *a, **k: drawn.append(list(k["only"])) or real(*a, **k))
    attribute_dataset(linen_cnn, x, out_dir=later, heatmaps=True, **kw)
    assert drawn == [[1]]  # row 5 is position 1 of shard 1: exactly the missing map
    assert _pngs(later) == _pngs(tmp_path / "whole")


def test_a_crash_keeps_whole_shards_with_their_maps_and_the_resume_draws_the_rest(linen_cnn, x, tmp_path, monkeypatch):
    real = run_lib.attribute_shard
    calls = []

    def crash_on_third(*args):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(run_lib, "attribute_shard", crash_on_third)
    kw = dict(method="vanilla_gradient", batch_size=BATCH, heatmaps=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        attribute_dataset(linen_cnn, x, out_dir=tmp_path, **kw)
    assert list(_pngs(tmp_path)) == [f"{r:08d}.png" for r in range(8)]  # shards 0 and 1 and their maps
    monkeypatch.setattr(run_lib, "attribute_shard", real)
    run = attribute_dataset(linen_cnn, x, out_dir=tmp_path, **kw)
    assert run.completed == (2,) and len(_pngs(tmp_path)) == N


def test_heatmaps_need_one_image_map_per_row(linen_cnn, nnx_mlp, x, tmp_path):
    with pytest.raises(ValueError, match=r"heatmaps need an image model .* got samples of shape \(5,\)"):
        attribute_dataset(nnx_mlp, np.zeros((4, 5), np.float32), method="vanilla_gradient", out_dir=tmp_path / "a",
                          heatmaps=True)  # fmt: skip
    with pytest.raises(ValueError, match="target='all' gives one per class"):
        attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "b", target="all", heatmaps=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
