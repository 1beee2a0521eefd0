"""explain.data.load: every form of --data read into the model's inputs, every mistake a one-line DataError."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from explain import data, images, specs
from explain.data import DataError
from explain.model import InputSpec

CLASSES = ("circle", "square", "triangle", "star")
FRIEDMAN = tuple(f"x{i}" for i in range(10))


@pytest.fixture(scope="module")
def cnn():
    return specs.resolve("shapes_cnn")


@pytest.fixture(scope="module")
def mlp():
    return specs.resolve("friedman1_mlp")


def solid(color, size=(64, 64), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def save(img: Image.Image, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return path


def image_folder(root: Path) -> Path:
    """circle/ (PNG + a nested folder), square/ (JPEG, a corrupt PNG, a text file), star/ (WebP), hidden files."""
    save(solid((255, 0, 0)), root / "circle" / "a.png", "PNG")
    save(solid(0, (32, 32), "L"), root / "circle" / "nested" / "b.png", "PNG")
    save(solid((0, 0, 255), (96, 64)), root / "square" / "c.jpg", "JPEG")
    whole = save(noise(64, 64), root / "square" / "corrupt.png", "PNG").read_bytes()
    (root / "square" / "corrupt.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (root / "square" / "notes.txt").write_text("not an image")
    save(solid((0, 255, 0)), root / "star" / "d.webp", "WEBP")
    (root / ".cache").mkdir()
    save(solid((1, 2, 3)), root / ".cache" / "hidden.png", "PNG")
    (root / "star" / ".DS_Store").write_bytes(b"\0\0")
    return root


# --- folders of images -------------------------------------------------------------------------------------------


def test_image_folder_with_class_subfolders(tmp_path, cnn):
    root = image_folder(tmp_path / "imgs")
    d = data.load(root, cnn)
    assert d.ids == ("circle/a.png", "circle/nested/b.png", "square/c.jpg", "star/d.webp")
    assert d.x.shape == (4, 64, 64, 3) and d.x.dtype == np.float32
    assert d.labels.dtype == np.int64 and d.labels.tolist() == [0, 0, 1, 3]
    assert d.class_names == CLASSES and d.source == str(root) and len(d) == 4
    # Each row is the dashboard's conversion of that file, bit for bit.
    for i, rel in enumerate(d.ids):
        expected = images.load_upload((root / rel).read_bytes(), (64, 64, 3), value_range=(0.0, 1.0)).x
        np.testing.assert_array_equal(d.x[i], expected)
    np.testing.assert_array_equal(d.x[0], np.broadcast_to([1.0, 0.0, 0.0], (64, 64, 3)))
    np.testing.assert_array_equal(d.x[1], 0.0)  # greyscale L -> RGB
    assert np.abs(d.x[2] - np.array([0, 0, 1.0])).max() < 0.02  # JPEG, centre-cropped 96x64 -> 64x64
    skipped = dict(d.skipped)
    assert set(skipped) == {"square/corrupt.png", "square/notes.txt"}  # hidden files are not mentioned
    assert "truncated or corrupt" in skipped["square/corrupt.png"]
    assert "not an image: suffix '.txt'" in skipped["square/notes.txt"]


def test_folder_labels_need_the_whole_layout_to_match(tmp_path, cnn):
    save(solid((9, 9, 9)), tmp_path / "loose" / "top.png", "PNG")  # at the root: no layout
    save(solid((9, 9, 9)), tmp_path / "loose" / "circle" / "a.png", "PNG")
    assert data.load(tmp_path / "loose", cnn).labels is None
    save(solid((9, 9, 9)), tmp_path / "other" / "circle" / "a.png", "PNG")
    save(solid((9, 9, 9)), tmp_path / "other" / "hexagon" / "b.png", "PNG")  # not a class of the model
    d = data.load(tmp_path / "other", cnn)
    assert d.labels is None and d.class_names is None
    save(solid((9, 9, 9)), tmp_path / "ints" / "3" / "a.png", "PNG")
    save(solid((9, 9, 9)), tmp_path / "ints" / "1" / "b.png", "PNG")
    assert data.load(tmp_path / "ints", cnn).labels.tolist() == [1, 3]  # sorted paths: 1/b.png, 3/a.png
    save(solid((9, 9, 9)), tmp_path / "ints" / "4" / "c.png", "PNG")  # 4 >= K = 4
    assert data.load(tmp_path / "ints", cnn).labels is None


def test_folder_limit_replaces_a_failed_file_by_the_next(tmp_path, cnn):
    root = tmp_path / "imgs"
    (root / "circle").mkdir(parents=True)
    (root / "circle" / "0.png").write_bytes(b"broken")
    for i in (1, 2, 3):
        save(solid((i, i, i)), root / "circle" / f"{i}.png", "PNG")
    d = data.load(root, cnn, limit=2)
    assert d.ids == ("circle/1.png", "circle/2.png") and d.labels.tolist() == [0, 0]
    assert [p for p, _ in d.skipped] == ["circle/0.png"]
    np.testing.assert_allclose(d.x[:, 0, 0], [[1 / 255] * 3, [2 / 255] * 3], rtol=1e-6)


def test_one_image_file(tmp_path, cnn):
    path = save(solid((0, 255, 0)), tmp_path / "one.webp", "WEBP")
    d = data.load(path, cnn)
    assert d.x.shape == (1, 64, 64, 3) and d.ids == ("one.webp",) and d.labels is None
    (tmp_path / "bad.jpg").write_bytes(b"plain text")
    with pytest.raises(DataError, match=r"^data '.*bad.jpg': This file is not an image Pillow can read"):
        data.load(tmp_path / "bad.jpg", cnn)


def test_folder_errors(tmp_path, cnn, mlp):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"no \.png, \.jpg, \.jpeg, \.webp images .* 1 other file\(s\), e\.g\. \['a\.txt'\]"
    ):
        data.load(tmp_path / "text", cnn)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"\(it is empty\)"):
        data.load(tmp_path / "empty", cnn)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"none of the 1 image\(s\) could be used; a\.png: This file is not an image"):
        data.load(tmp_path / "broken", cnn)
    save(solid(0), tmp_path / "ok" / "a.png", "PNG")
    with pytest.raises(DataError, match=r"a folder of images needs an image model .* 'friedman1_mlp' takes \(N, 10\)"):
        data.load(tmp_path / "ok", mlp)
    with pytest.raises(DataError, match=r"label_column='y' applies to a \.csv or \.parquet table"):
        data.load(tmp_path / "ok", cnn, label_column="y")


def test_folder_limits_are_checked_before_decoding(tmp_path, cnn):
    save(noise(100, 100), tmp_path / "big" / "a.png", "PNG")  # ~30 kB: noise does not compress
    with pytest.raises(DataError, match=r"100x100 = 0\.0 megapixels; the limit is 0\.005 megapixels"):
        data.load(tmp_path / "big", cnn, max_pixels=5_000)
    with pytest.raises(DataError, match=r"The file is 0\.03 MB \(30,\d{3} bytes\); the limit is 0\.00019 MB"):
        data.load(tmp_path / "big", cnn, max_bytes=200)


# --- arrays ------------------------------------------------------------------------------------------------------


def test_npy_is_memory_mapped(tmp_path, cnn):
    x = np.random.default_rng(0).random((5, 64, 64, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    d = data.load(tmp_path / "x.npy", cnn, limit=3)
    assert isinstance(d.x, np.memmap) and d.x.dtype == np.float32
    np.testing.assert_array_equal(d.x, x[:3])
    assert d.ids == ("x.npy[0]", "x.npy[1]", "x.npy[2]") and d.labels is None and d.skipped == ()


def test_npy_dtypes(tmp_path, cnn):
    x = np.random.default_rng(1).random((2, 64, 64, 3))
    np.save(tmp_path / "f64.npy", x)
    d = data.load(tmp_path / "f64.npy", cnn)
    assert d.x.dtype == np.float32
    np.testing.assert_array_equal(d.x, x.astype(np.float32))
    np.save(tmp_path / "u8.npy", np.full((2, 64, 64, 3), 200, np.uint8))
    with pytest.raises(
        DataError, match=r"integer dtype uint8, but model 'shapes_cnn' takes floats in \[0, 1\]; .* / 255"
    ):
        data.load(tmp_path / "u8.npy", cnn)
    raw = dataclasses.replace(cnn.model, input_spec=InputSpec((64, 64, 3), (0.0, 255.0)))
    d = data.load(tmp_path / "u8.npy", raw)  # a model that takes 0..255 gets them as they are
    assert d.x.dtype == np.float32 and float(d.x.max()) == 200.0
    np.save(tmp_path / "b.npy", np.zeros((2, 64, 64, 3), bool))
    with pytest.raises(DataError, match="expected a floating .* dtype, got bool"):
        data.load(tmp_path / "b.npy", cnn)
    np.save(tmp_path / "o.npy", np.array([object()] * 2), allow_pickle=True)
    with pytest.raises(DataError, match="can be read without pickle"):
        data.load(tmp_path / "o.npy", cnn)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((100, 28, 28), r", got \(100, 28, 28\)$"),
        ((64, 64, 3), r"got \(64, 64, 3\) \(one sample without its batch axis: save x\[None\]\)"),
        ((2, 3, 64, 64), r"got \(2, 3, 64, 64\) \(the same axes in another order"),
        ((0, 64, 64, 3), r"with N >= 1, got no samples"),
    ],
)
def test_npy_wrong_shape(tmp_path, cnn, shape, message):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(DataError, match=r"^data '.*x\.npy': expected shape \(N, 64, 64, 3\).*" + message):
        data.load(tmp_path / "x.npy", cnn)


def test_npz_uncompressed_is_memory_mapped_compressed_is_read(tmp_path, cnn):
    rng = np.random.default_rng(2)
    x = rng.random((4, 64, 64, 3), dtype=np.float32)
    np.savez(tmp_path / "a.npz", junk=np.arange(7), x=x, y=np.array(["star", "circle", "star", "square"]))
    d = data.load(tmp_path / "a.npz", cnn)
    assert isinstance(d.x, np.memmap)
    np.testing.assert_array_equal(d.x, x)
    assert d.labels.tolist() == [3, 0, 3, 1] and d.labels.dtype == np.int64 and d.class_names == CLASSES
    assert d.ids[-1] == "a.npz[3]"
    fortran = np.asfortranarray(x)
    np.savez(tmp_path / "f.npz", images=fortran, labels=np.arange(4))
    f = data.load(tmp_path / "f.npz", cnn, limit=2)
    np.testing.assert_array_equal(f.x, x[:2])
    assert f.labels.tolist() == [0, 1]
    np.savez_compressed(tmp_path / "c.npz", inputs=x.astype(np.float64), labels=np.array([1, 1, 2, 0]))
    c = data.load(tmp_path / "c.npz", cnn)
    assert not isinstance(c.x, np.memmap) and c.x.dtype == np.float32
    np.testing.assert_array_equal(c.x, x)
    assert c.labels.tolist() == [1, 1, 2, 0]


def test_npz_errors(tmp_path, cnn):
    x = np.zeros((3, 64, 64, 3), np.float32)
    np.savez(tmp_path / "nox.npz", data=x)
    with pytest.raises(DataError, match=r"no inputs array: expected one named 'x' or 'X' .*found \['data'\]"):
        data.load(tmp_path / "nox.npz", cnn)
    np.savez_compressed(tmp_path / "shape.npz", x=np.zeros((3, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"expected shape \(N, 64, 64, 3\), got \(3, 28, 28\)"):
        data.load(tmp_path / "shape.npz", cnn)
    np.savez(tmp_path / "n.npz", x=x, y=np.arange(2))
    with pytest.raises(DataError, match=r"labels: expected 3 labels \(one per sample\), got shape \(2,\)"):
        data.load(tmp_path / "n.npz", cnn)
    np.savez(tmp_path / "k.npz", x=x, y=np.array([0, 4, 1]))
    with pytest.raises(DataError, match=r"expected class indices in 0\.\.3, got 4 at row 1"):
        data.load(tmp_path / "k.npz", cnn)
    np.savez(tmp_path / "s.npz", x=x, y=np.array(["circle", "hexagon", "circle"]))
    with pytest.raises(DataError, match=r"\['hexagon'\] are not class names of model 'shapes_cnn'"):
        data.load(tmp_path / "s.npz", cnn)
    np.savez(tmp_path / "cn.npz", x=x, class_names=np.array(["a", "b", "c", "d"]))
    with pytest.raises(DataError, match=r"its class_names \['a', 'b', 'c', 'd'\] differ from model's"):
        data.load(tmp_path / "cn.npz", cnn)
    (tmp_path / "z.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a NumPy \.npz archive"):
        data.load(tmp_path / "z.npz", cnn)


def test_npz_class_names_serve_a_model_without_them(tmp_path, cnn):
    bare = dataclasses.replace(cnn.model, class_names=None)
    x = np.zeros((2, 64, 64, 3), np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.array(["q", "p"]), class_names=np.array(["p", "q", "r", "s"]))
    d = data.load(tmp_path / "a.npz", bare)
    assert d.labels.tolist() == [1, 0] and d.class_names == ("p", "q", "r", "s")


# --- tables ------------------------------------------------------------------------------------------------------


def friedman_frame(n: int = 6) -> tuple[np.ndarray, pd.DataFrame]:
    x = np.random.default_rng(3).random((n, 10)).astype(np.float32)
    frame = pd.DataFrame(x, columns=FRIEDMAN)[["x7", "x2", "x9", "x0", "x5", "x1", "x8", "x3", "x6", "x4"]]
    return x, frame.assign(note="extra", target=np.arange(n) / 10)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_columns_matched_by_header(tmp_path, mlp, suffix):
    x, frame = friedman_frame()
    path = tmp_path / f"rows{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    d = data.load(path, mlp, label_column="target")
    np.testing.assert_allclose(d.x, x, rtol=1e-6)  # the CSV round trip keeps float32 to 1e-7
    assert d.x.dtype == np.float32 and d.labels.dtype == np.float32
    np.testing.assert_allclose(d.labels, np.arange(6) / 10, rtol=1e-6)
    assert d.ids[:2] == ("row 0", "row 1") and d.class_names is None
    short = data.load(path, mlp, limit=2)
    assert short.x.shape == (2, 10) and short.labels is None


def test_table_class_names_become_indices(tmp_path):
    bc = specs.resolve("breast_cancer_mlp")
    names = bc.model.input_spec.feature_names
    frame = pd.DataFrame(np.ones((3, 30)), columns=names).assign(diagnosis=["benign", "malignant", "benign"])
    frame.to_csv(tmp_path / "bc.csv", index=False)
    d = data.load(tmp_path / "bc.csv", bc, label_column="diagnosis")
    assert d.labels.tolist() == [1, 0, 1] and d.class_names == ("malignant", "benign")
    frame.assign(diagnosis=["benign", "unsure", "benign"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"label column 'diagnosis': \['unsure'\] are not class names"):
        data.load(tmp_path / "bad.csv", bc, label_column="diagnosis")


def test_table_errors(tmp_path, mlp, cnn):
    x, frame = friedman_frame()
    frame.drop(columns=["x3", "x8"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(DataError, match=r"^data '.*missing\.csv': missing \['x3', 'x8'\]: expected the model's 10"):
        data.load(tmp_path / "missing.csv", mlp)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(DataError, match=r"label column 'y' not in the file; its columns are \['x7', "):
        data.load(tmp_path / "rows.csv", mlp, label_column="y")
    with pytest.raises(DataError, match=r"a table needs a tabular model .* 'shapes_cnn' takes \(N, 64, 64, 3\)"):
        data.load(tmp_path / "rows.csv", cnn)
    frame.assign(x4="a").to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"feature column\(s\) \['x4'\] are not numeric"):
        data.load(tmp_path / "text.csv", mlp)
    holes = frame.copy()
    holes.loc[[1, 4], "x0"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(DataError, match=r"non-finite values in 2 row\(s\), first at row 1 \(rows \[1, 4\]\)"):
        data.load(tmp_path / "holes.csv", mlp)
    (tmp_path / "header.csv").write_text(",".join(FRIEDMAN) + "\n")
    with pytest.raises(DataError, match="no rows"):
        data.load(tmp_path / "header.csv", mlp)


def test_table_for_a_model_without_feature_names(tmp_path, mlp):
    bare = dataclasses.replace(mlp.model, input_spec=InputSpec((10,), (0.0, 1.0)))
    x, frame = friedman_frame()
    frame.drop(columns="note").to_csv(tmp_path / "rows.csv", index=False)
    d = data.load(tmp_path / "rows.csv", bare, label_column="target")
    np.testing.assert_allclose(d.x, frame[frame.columns[:10]].to_numpy(), rtol=1e-6)  # file order
    with pytest.raises(DataError, match=r"declares no feature names, so expected exactly 10 feature columns .* got 11"):
        data.load(tmp_path / "rows.csv", bare)


def test_paths_that_are_no_data(tmp_path, cnn):
    with pytest.raises(DataError, match=r"^data '.*nothere': no such file or folder; expected a folder of"):
        data.load(tmp_path / "nothere", cnn)
    (tmp_path / "m.py").write_text("")
    with pytest.raises(DataError, match=r"unknown suffix '\.py'; expected"):
        data.load(tmp_path / "m.py", cnn)
    np.save(tmp_path / "x.npy", np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(DataError, match="label_column='y' applies to a .csv"):
        data.load(tmp_path / "x.npy", cnn, label_column="y")
    with pytest.raises(ValueError, match="expected limit >= 1, got 0"):
        data.load(tmp_path / "x.npy", cnn, limit=0)
    with pytest.raises(TypeError, match="expected an explain.Model"):
        data.load(tmp_path / "x.npy", object())


def test_a_decompression_bomb_in_a_folder_is_skipped_in_our_words(tmp_path, cnn, monkeypatch):
    save(noise(40, 40), tmp_path / "imgs" / "bomb.png", "PNG")
    save(noise(20, 20), tmp_path / "imgs" / "fine.png", "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600 trips Pillow's guard, 20x20 does not
    d = data.load(tmp_path / "imgs", cnn)
    assert d.ids == ("fine.png",)
    ((path, reason),) = d.skipped
    assert path == "bomb.png"
    assert "possible decompression bomb); the limit is 0.001 megapixels" in reason
    assert "exceeds limit" not in reason and "DOS" not in reason
