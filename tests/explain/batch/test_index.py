import numpy as np

from explain.batch import index


def test_stats_are_max_abs_l1_argmax_and_softmax():
    values = np.asarray([[[1.0, -3.0]], [[0.5, 0.5]]], np.float32)  # (2, 1, 2)
    outputs = np.asarray([[0.0, np.log(3.0)], [2.0, 0.0]], np.float32)
    s = index.stats(values, outputs, np.asarray([1, 0]), classification=True)
    np.testing.assert_allclose(s["max_abs"], [3.0, 0.5])
    np.testing.assert_allclose(s["l1"], [4.0, 1.0])
    assert s["prediction"].tolist() == [1, 0] and s["target"].tolist() == [1, 0]
    np.testing.assert_allclose(s["probability"], [0.75, np.exp(2) / (np.exp(2) + 1)], rtol=1e-6)
    r = index.stats(values, outputs, None, classification=False)
    assert (
        r["prediction"].tolist() == [-1, -1] and np.isnan(r["probability"]).all() and r["target"].tolist() == [-1, -1]
    )


def test_table_has_one_row_per_example_and_per_skipped_file_and_round_trips(tmp_path):
    arrays = {**index.stats(np.ones((2, 3)), np.zeros((2, 2)), None, classification=True)}
    arrays |= {"row": np.asarray([4, 6]), "convergence_delta": np.asarray([0.1, -0.2])}
    tab = index.table(
        [(2, arrays)], lambda r: f"img{r}", [(2, 5, "img5", "cannot decode"), (None, None, "a.txt", "no")]
    )
    index.write(tmp_path, tab)
    rows = index.read(tmp_path).to_pylist()
    assert [(r["id"], r["row"], r["shard"], r["status"]) for r in rows] == [
        ("img4", 4, 2, "ok"), ("img6", 6, 2, "ok"), ("img5", 5, 2, "skipped"), ("a.txt", None, None, "skipped"),
    ]  # fmt: skip
    assert rows[0]["l1"] == 3.0 and abs(rows[1]["convergence_delta"] + 0.2) < 1e-6
    assert rows[2]["reason"] == "cannot decode" and rows[2]["l1"] is None
    assert [p.name for p in tmp_path.iterdir()] == [index.INDEX]  # atomic: no temporary file left
