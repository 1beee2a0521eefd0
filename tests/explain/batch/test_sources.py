from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import explain
from explain.batch import sources
from explain.data import DataError


@pytest.fixture(scope="module")
def digits():
    return explain.specs.resolve("digits_cnn").model


def test_folder_decodes_only_the_shard_and_records_what_fails(digits, tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"a{i}.png")
    (tmp_path / "a1.png").write_bytes(b"broken")
    (tmp_path / "readme.md").write_text("x")
    src = sources.open_source(tmp_path, digits)
    assert isinstance(src, sources.FolderSource) and src.n == 3 and src.id(2) == "a2.png"
    assert [name for name, _ in src.listed_skips()] == ["readme.md"]
    shard = src.read(1, 3)
    assert shard.x.shape == (1, 8, 8, 1) and shard.x.dtype == np.float32
    assert shard.rows.tolist() == [2]  # global row numbers, the broken file's row left out
    assert [(row, name) for row, name, _ in shard.skipped] == [(1, "a1.png")] and shard.skipped[0][2]
    np.testing.assert_allclose(shard.x, 80 / 255, atol=1e-6)


def test_a_npy_path_is_memory_mapped_and_prefetch_keeps_order(digits, tmp_path):
    x = np.random.default_rng(0).uniform(size=(7, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    src = sources.open_source(tmp_path / "x.npy", digits)
    assert isinstance(src.x, np.memmap) and src.id(3) == "x.npy[3]"
    got = list(sources.prefetch(src, [(0, 0, 3), (2, 6, 7), (1, 3, 6)]))
    assert [i for i, _ in got] == [0, 2, 1]
    np.testing.assert_array_equal(np.concatenate([s.x for _, s in got]), x[[0, 1, 2, 6, 3, 4, 5]])
    assert src.fingerprint() != sources.ArraySource(x + 1).fingerprint()


@pytest.mark.parametrize(
    "make, match", [(lambda p: None, r"it is empty"), (lambda p: (p / "a.txt").write_text(""), "a.txt")]
)
def test_a_folder_without_images_raises(digits, tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(DataError, match=match):
        sources.open_source(tmp_path, digits)


def test_a_folder_for_a_tabular_model_raises(tmp_path):
    tabular = explain.specs.resolve("breast_cancer_mlp").model
    with pytest.raises(DataError, match="needs an image model"):
        sources.folder(tmp_path, tabular)


def _resident_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = fields[-1] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


def test_a_memmap_is_read_shard_by_shard_without_keeping_its_pages(tmp_path):
    """Issue 15: a streamed file's pages are given back after each shard, so peak memory does not grow with N."""
    path = tmp_path / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(64, 128, 128, 1))  # 4 MiB, 1 MiB per shard
    x[:] = np.arange(64, dtype=np.float32)[:, None, None, None]
    del x
    src = sources.ArraySource(np.load(path, mmap_mode="r"))
    parts = [src.read(a, a + 16) for a in range(0, 64, 16)]
    assert all(not isinstance(p.x, np.memmap) for p in parts)  # copies, not views into the mapping
    np.testing.assert_array_equal(np.concatenate([p.x for p in parts])[:, 0, 0, 0], np.arange(64))
    assert _resident_kib(path) < 512  # 4 MiB were read; a view would keep every page resident
    kept = np.load(path, mmap_mode="r")
    views = [np.asarray(kept[a : a + 16]).sum() for a in range(0, 64, 16)]  # the unreleased reads, for contrast
    assert sum(views) > 0 and _resident_kib(path) >= 4096
