"""``python -m explain attribute`` on a folder of digits images: shards, index, skipped files, exit codes."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from explain.__main__ import main
from explain.batch import INDEX, MANIFEST
from explain.batch import run as run_lib
from explain.batch.index import read


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(5):
        sub = root / str(i % 2)
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(sub / f"img{i}.png")
    (root / "1" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("hello")
    return root


def _argv(photos, out, *extra):
    return ["attribute", "--model", "digits_cnn", "--input", str(photos), "--method", "vanilla_gradient",
            "--out", str(out), "--batch-size", "4", *extra]  # fmt: skip


def test_folder_run_writes_shards_index_and_lists_the_corrupt_image(photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(photos, out, "--heatmaps")) == 0
    tab = read(out).to_pylist()
    ok = [r for r in tab if r["status"] == "ok"]
    bad = {r["id"]: r["reason"] for r in tab if r["status"] == "skipped"}
    assert sorted(r["id"] for r in ok) == ["0/img0.png", "0/img2.png", "0/img4.png", "1/img1.png", "1/img3.png"]
    assert set(bad) == {"1/broken.png", "notes.txt"} and "not an image" in bad["notes.txt"]
    assert bad["1/broken.png"]  # the decoder's reason, not an empty string
    row = ok[0]
    assert 0 <= row["prediction"] < 10 and 0 < row["probability"] <= 1 and row["target"] == row["prediction"]
    assert row["max_abs"] > 0 and row["l1"] >= row["max_abs"] and row["convergence_delta"] is None
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["spec"] == "digits_cnn" and manifest["engine"]["name"] == "local"
    assert manifest["settings"]["method"] == "vanilla_gradient" and len(manifest["settings"]["params_sha256"]) == 64
    assert len(list((out / "heatmaps").glob("*.png"))) == 5
    assert INDEX in {p.name for p in out.iterdir()}


def test_rerun_after_a_deleted_and_a_corrupt_shard_recomputes_them(photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(photos, out)) == 0
    first = {p.name: p.read_bytes() for p in out.glob("shard-*.npz")}
    (out / "shard-00000.npz").unlink()
    (out / "shard-00001.npz").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(_argv(photos, out)) == 0
    assert "2 computed, 0 reused" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.npz")} == first


def test_other_settings_in_the_folder_exit_1(photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(photos, out)) == 0
    capsys.readouterr()
    assert main(_argv(photos, out, "--option", "absolute=true")) == 1
    assert "changed: ['options']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, match",
    [
        (("--option", "stepz=3"), r"unknown option\(s\) \['stepz'\]"),
        (("--target", "eleven"), r"expected --target to be a class index"),
        (("--address", "127.0.0.1:1"), r"--address and --workers go with --engine ray"),
    ],
)
def test_bad_input_exits_1_with_one_line(photos, tmp_path, capsys, extra, match):
    assert main(_argv(photos, tmp_path / "run", *extra)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m explain attribute: error:") and "\n" not in err
    assert re.search(match, err)


def test_float16_compressed_run_then_heatmaps_added_from_its_shards(photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(photos, out, "--float16", "--compress")) == 0
    settings = json.loads((out / MANIFEST).read_text())["settings"]
    assert (settings["values_dtype"], settings["compress"]) == ("float16", True)
    with np.load(out / "shard-00000.npz") as shard:
        assert shard["values"].dtype == np.float16
    capsys.readouterr()
    assert main(_argv(photos, out, "--float16", "--compress", "--heatmaps")) == 0
    assert "0 computed, 2 reused" in capsys.readouterr().err  # the maps come from the shards on disk
    assert len(list((out / "heatmaps").glob("*.png"))) == 5
    assert main(_argv(photos, out)) == 1
    assert "changed: ['compress', 'values_dtype']" in capsys.readouterr().err


def test_empty_folder_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(_argv(tmp_path / "empty", tmp_path / "run")) == 1
    assert "it is empty" in capsys.readouterr().err


def test_ctrl_c_exits_2(photos, tmp_path, capsys, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_lib, "attribute_shard", interrupt)
    assert main(_argv(photos, tmp_path / "run")) == 2
    assert "rerun the same command to resume" in capsys.readouterr().err


HELP = """
import sys
from explain.__main__ import main
try:
    main(["attribute", "--help"])
except SystemExit as e:
    assert e.code == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "jax")))
"""


def test_help_names_the_engines_and_imports_neither_ray_nor_jax():
    import subprocess
    import sys
    from pathlib import Path

    import explain

    root = Path(explain.__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", HELP], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--engine {local,ray}" in done.stdout and "pip install flax-explain[ray]" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_csv_missing_feature_columns_exits_1_naming_them(tmp_path, capsys):
    csv = tmp_path / "rows.csv"
    csv.write_text("x0,x1,x2\n0.1,0.2,0.3\n")  # friedman1_mlp reads 10 named features
    argv = ["attribute", "--model", "friedman1_mlp", "--input", str(csv), "--method", "vanilla_gradient",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m explain attribute: error:") and "missing" in err
    assert not (tmp_path / "run").exists()


def test_an_output_folder_that_cannot_be_created_exits_1(photos, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, where permission bits do not stop a write
    with pytest.raises(SystemExit) as exited:  # refused while parsing, before any work
        main(_argv(photos, blocker / "run"))
    assert exited.value.code == 1  # not argparse's 2: for this command 2 means "interrupted, rerun to resume"
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: python -m explain attribute")
    assert err[-1].startswith("python -m explain attribute: error: argument --out:") and "a-file" in err[-1]
