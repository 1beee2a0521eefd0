"""``python -m explain saliency`` writes a labelled grid PNG."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image
from saliency_testlib import shapes

from explain.__main__ import main


def test_writes_grid_png(tmp_path, capsys):
    shapes()  # skips while the checkpoint is unavailable
    out = tmp_path / "grid.png"
    argv = ["saliency", "--model", "shapes_cnn", "--n", "2", "--methods", "vanilla_gradient", "grad_cam"]
    assert main([*argv, "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.height > 2 * 64 * 2 and img.width > 3 * 64 * 2
    assert "wrote" in capsys.readouterr().out and not list(tmp_path.glob(".*tmp"))


def test_unknown_method_fails_before_loading(capsys):
    with pytest.raises(SystemExit) as info:  # argparse: usage, one error line listing the methods, status 2
        main(["saliency", "--methods", "nope"])
    assert info.value.code == 2 and "argument --methods: invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--overlay", "1.5"], "argument --overlay: expected a number in [0, 1], got 1.5"),
        (["--overlay", "-0.1"], "argument --overlay: expected a number in [0, 1], got -0.1"),
        (["--scale", "0"], "argument --scale: expected a whole number >= 1, got 0"),
        (["--n", "0"], "argument --n: expected a whole number >= 1, got 0"),
    ],
)
def test_bad_arguments_fail_before_loading(monkeypatch, capsys, argv, match):
    from explain import specs

    monkeypatch.setattr(specs, "resolve", lambda spec: pytest.fail("resolved the model before validating"))
    with pytest.raises(SystemExit) as info:
        main(["saliency", *argv])
    assert info.value.code == 2 and capsys.readouterr().err.endswith(f"python -m explain saliency: error: {match}\n")


def test_n_beyond_the_test_set_and_per_method_keys(tmp_path, monkeypatch, capsys):
    bundle = shapes()
    total = len(bundle.dataset.test.x)
    with pytest.raises(SystemExit) as info:  # --n beyond the test set explains all of it; references need more
        main(["saliency", "--n", str(total), "--methods", "vanilla_gradient", "expected_gradients"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "['expected_gradients'] take their reference set from the inputs after" in err

    from explain.saliency import registry
    from explain.saliency.attribution import Attribution

    seen = {}

    def fake_call(name, model, x, *, key, show_progress, **kw):
        assert show_progress is True  # the command line shows progress bars
        seen.setdefault(name, []).append(jax.random.key_data(key).tolist())
        return Attribution(np.ones_like(x), name, "t")

    monkeypatch.setattr(registry, "call", fake_call)
    out = str(tmp_path / "g.png")
    main(["saliency", "--n", "1", "--methods", "vanilla_gradient", "smoothgrad", "--out", out])
    main(["saliency", "--n", "1", "--methods", "smoothgrad", "--out", out])
    assert seen["smoothgrad"][0] == seen["smoothgrad"][1] and seen["vanilla_gradient"][0] != seen["smoothgrad"][0]
