"""Tests for models.datasets (fast: never generates the shapes train split)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_friedman1

from models.datasets import (
    DATASETS,
    Dataset,
    Split,
    generate_shapes,
    load_dataset,
    split_hash,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def shapes() -> Dataset:
    return load_dataset("shapes", seed=0)


@pytest.fixture(scope="module")
def shapes_test(shapes: Dataset) -> Split:
    return shapes.test


# --------------------------------------------------------------------------- API


def test_known_datasets() -> None:
    assert DATASETS == ("shapes", "digits", "breast_cancer", "friedman1")


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "mnist" in msg
    for name in DATASETS:
        assert name in msg


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed) -> None:
    with pytest.raises(ValueError, match="seed"):
        load_dataset("digits", seed=seed)


def test_load_is_cached_per_name_and_seed() -> None:
    assert load_dataset("digits") is load_dataset("digits", seed=0)
    assert load_dataset("digits", seed=1) is not load_dataset("digits", seed=0)


def test_unknown_split_name() -> None:
    with pytest.raises(ValueError, match="train"):
        load_dataset("digits").split("validation")  # type: ignore[arg-type]


def test_split_accessor_matches_properties() -> None:
    ds = load_dataset("digits")
    for name in ("train", "val", "test"):
        assert ds.split(name) is getattr(ds, name)


def test_split_validation() -> None:
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="same length"):
        Split(x, np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="float32"):
        Split(x.astype(np.float64), np.zeros(3, np.int32))
    assert len(Split(x, np.zeros(3, np.int32))) == 3


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "friedman1"])
def test_arrays_are_read_only(name: str) -> None:
    split = load_dataset(name).train
    with pytest.raises(ValueError):
        split.x[0] = 0
    with pytest.raises(ValueError):
        split.y[0] = 0


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "friedman1"])
def test_preprocessing_is_json_and_a_copy(name: str) -> None:
    ds = load_dataset(name)
    pre = ds.preprocessing
    json.dumps(pre)
    pre["tampered"] = 1
    assert "tampered" not in ds.preprocessing


# ------------------------------------------------------------------------ shapes


def test_shapes_metadata(shapes: Dataset) -> None:
    assert shapes.kind == "classification"
    assert shapes.input_shape == (64, 64, 3)
    assert shapes.value_range == (0.0, 1.0)
    assert shapes.class_names == ("circle", "square", "triangle", "star")
    assert shapes.feature_names is None
    json.dumps(shapes.preprocessing)


def test_shapes_test_split_is_lazy() -> None:
    # Loading .test must not generate .train. A fresh, uncached instance: the cached one may have had
    # .train built by another test in this worker.
    from models import datasets

    fresh = datasets._LOADERS["shapes"](0)
    assert len(fresh.test) > 0
    assert "test" in vars(fresh)
    assert "train" not in vars(fresh)


def test_shapes_arrays(shapes_test: Split) -> None:
    s = shapes_test
    assert len(s) == 1000
    assert s.x.shape == (1000, 64, 64, 3) and s.x.dtype == np.float32
    assert s.y.shape == (1000,) and s.y.dtype == np.int32
    assert s.mask is not None
    assert s.mask.shape == (1000, 64, 64) and s.mask.dtype == np.bool_
    assert s.x.min() >= 0.0 and s.x.max() <= 1.0
    assert np.isfinite(s.x).all()


def test_shapes_class_balance(shapes_test: Split) -> None:
    assert np.bincount(shapes_test.y, minlength=4).tolist() == [250] * 4


def test_shapes_mask_coverage(shapes_test: Split) -> None:
    frac = shapes_test.mask.mean(axis=(1, 2))
    assert frac.min() >= 0.02
    assert frac.max() <= 0.40
    # Mask fully inside the image: no object pixels on the border.
    m = shapes_test.mask
    assert not m[:, 0].any() and not m[:, -1].any()
    assert not m[:, :, 0].any() and not m[:, :, -1].any()


def test_shapes_mask_size_tracks_class(shapes_test: Split) -> None:
    # Circles have the largest area for a given radius, stars the smallest.
    frac = shapes_test.mask.mean(axis=(1, 2))
    by_class = [frac[shapes_test.y == k].mean() for k in range(4)]
    assert by_class[0] > by_class[1] > by_class[2]
    assert by_class[0] > by_class[3]


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[:, :, 1:] |= out[:, :, :-1]
        grown[:, :, :-1] |= out[:, :, 1:]
        out = grown
    return out


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    return ~_dilate(~mask, steps)


def test_shapes_object_differs_from_background(shapes_test: Split) -> None:
    x, m = shapes_test.x, shapes_test.mask
    inner = _erode(m, 1)  # avoid anti-aliased edge pixels
    ring = _dilate(m, 4) & ~_dilate(m, 1)  # local background around the object
    dist = []
    for i in range(len(x)):
        obj = np.median(x[i][inner[i]], axis=0)
        bg = np.median(x[i][ring[i]], axis=0)
        dist.append(np.linalg.norm(obj - bg))
    dist = np.asarray(dist)
    assert np.median(dist) > 0.4
    assert (dist > 0.2).mean() > 0.95


def test_shapes_backgrounds_are_cluttered(shapes_test: Split) -> None:
    x, m = shapes_test.x, shapes_test.mask
    # Background pixels vary (gradients, blotches, noise, strokes), not flat.
    bg_std = np.array([x[i][~m[i]].std(axis=0).mean() for i in range(100)])
    assert (bg_std > 0.02).all()


def test_shapes_deterministic_per_seed() -> None:
    a = generate_shapes(32, np.random.default_rng(7))
    b = generate_shapes(32, np.random.default_rng(7))
    c = generate_shapes(32, np.random.default_rng(8))
    assert split_hash(a) == split_hash(b)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert split_hash(a) != split_hash(c)
    assert not np.array_equal(a.x, c.x)


def test_shapes_generate_requires_balanced_n() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        generate_shapes(10, np.random.default_rng(0))


def test_shapes_seed_changes_split(shapes_test: Split) -> None:
    other = load_dataset("shapes", seed=1).test
    assert split_hash(other) != split_hash(shapes_test)


# ------------------------------------------------------------------------ hashes


def test_split_hash_is_hex_and_content_based(shapes_test: Split) -> None:
    h = split_hash(shapes_test)
    assert HEX64.match(h)
    copy = Split(shapes_test.x.copy(), shapes_test.y.copy(), shapes_test.mask.copy())
    assert split_hash(copy) == h
    x = shapes_test.x.copy()
    x[0, 0, 0, 0] = np.nextafter(x[0, 0, 0, 0], np.float32(2))
    assert split_hash(Split(x, shapes_test.y, shapes_test.mask)) != h
    assert split_hash(Split(shapes_test.x, shapes_test.y)) != h  # mask matters


def test_split_hash_includes_dtype() -> None:
    x = np.zeros((4, 2), np.float32)
    a = Split(x, np.zeros(4, np.int32))
    b = Split(x, np.zeros(4, np.float32))
    assert split_hash(a) != split_hash(b)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "friedman1"])
def test_split_hashes(name: str) -> None:
    hashes = load_dataset(name).split_hashes()
    assert set(hashes) == {"train", "val", "test"}
    assert all(HEX64.match(h) for h in hashes.values())
    assert len(set(hashes.values())) == 3
    assert load_dataset(name).split_hashes() == hashes


def test_digits_hash_is_pinned() -> None:
    # Guards against silent changes to the split or scaling across runs/machines.
    assert split_hash(load_dataset("digits").test) == DIGITS_TEST_HASH


DIGITS_TEST_HASH = "79e04e9df447c3c846e5b205d99b55bba23869f22d76ee2a77c38c7d524ec190"


# ------------------------------------------------------------------------ digits


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.kind == "classification"
    assert ds.input_shape == (8, 8, 1)
    assert ds.value_range == (0.0, 1.0)
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.preprocessing == {"scale": 1 / 16}
    sizes = {k: len(ds.split(k)) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["train"] / 1797 - 0.70) < 0.01
    assert abs(sizes["val"] / 1797 - 0.15) < 0.01
    for k in ("train", "val", "test"):
        s = ds.split(k)
        assert s.x.shape == (sizes[k], 8, 8, 1) and s.x.dtype == np.float32
        assert s.y.dtype == np.int32 and s.mask is None
        assert s.x.min() >= 0.0 and s.x.max() <= 1.0
        # Stratified: each class share within 2 points of 10%.
        share = np.bincount(s.y, minlength=10) / len(s)
        assert np.abs(share - 0.1).max() < 0.02
    assert ds.train.x.max() == 1.0


def test_digits_seed_changes_split() -> None:
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert split_hash(a.test) != split_hash(b.test)


# ----------------------------------------------------------------- breast cancer


def test_breast_cancer() -> None:
    ds = load_dataset("breast_cancer")
    raw = load_breast_cancer()
    assert ds.kind == "classification"
    assert ds.input_shape == (30,)
    assert ds.value_range is None
    assert ds.class_names == ("malignant", "benign")
    assert ds.feature_names == tuple(raw.feature_names)
    assert sum(len(ds.split(k)) for k in ("train", "val", "test")) == 569
    for k in ("train", "val", "test"):
        s = ds.split(k)
        assert s.x.shape[1:] == (30,) and s.x.dtype == np.float32
        assert s.y.dtype == np.int32
        assert abs(s.y.mean() - raw.target.mean()) < 0.03  # stratified


def test_breast_cancer_standardised_on_train_only() -> None:
    ds = load_dataset("breast_cancer")
    raw = load_breast_cancer().data
    mean = np.asarray(ds.preprocessing["mean"])
    std = np.asarray(ds.preprocessing["std"])
    assert mean.shape == std.shape == (30,)
    np.testing.assert_allclose(ds.train.x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.std(axis=0), 1.0, atol=1e-4)
    # Undoing the standardisation recovers raw rows, and the stats are the
    # train rows' stats, not the stats of the full table.
    restored = ds.train.x.astype(np.float64) * std + mean
    np.testing.assert_allclose(restored.mean(axis=0), mean, rtol=1e-5)
    assert not np.allclose(mean, raw.mean(axis=0), rtol=1e-6)
    dists = np.abs(restored[:, None, :] - raw[None, :, :]).max(axis=2).min(axis=1)
    assert dists.max() < 1e-3 * np.abs(raw).max()
    assert not np.allclose(ds.val.x.mean(axis=0), 0.0, atol=1e-5)


# --------------------------------------------------------------------- friedman1


def test_friedman1() -> None:
    ds = load_dataset("friedman1")
    assert ds.kind == "regression"
    assert ds.input_shape == (10,)
    assert ds.value_range == (0.0, 1.0)
    assert ds.class_names is None
    assert ds.feature_names == tuple(f"x{i}" for i in range(10))
    assert {k: len(ds.split(k)) for k in ("train", "val", "test")} == {
        "train": 4000,
        "val": 1000,
        "test": 1000,
    }
    for k in ("train", "val", "test"):
        s = ds.split(k)
        assert s.x.dtype == np.float32 and s.y.dtype == np.float32
        assert s.x.min() >= 0.0 and s.x.max() <= 1.0
        assert s.mask is None


def test_friedman1_target_standardised_on_train() -> None:
    ds = load_dataset("friedman1", seed=3)
    pre = ds.preprocessing
    _, y = make_friedman1(n_samples=6000, n_features=10, noise=0.5, random_state=3)
    assert pre["y_mean"] == pytest.approx(y[:4000].mean())
    assert pre["y_std"] == pytest.approx(y[:4000].std())
    assert abs(float(ds.train.y.mean())) < 1e-5
    assert float(ds.train.y.std()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(ds.test.y * pre["y_std"] + pre["y_mean"], y[5000:], rtol=1e-5, atol=1e-5)
