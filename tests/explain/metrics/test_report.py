"""The evaluation report: one row per method, the same numbers for the same key, masks, ranks and the files."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
from PIL import Image

from explain import specs
from explain.metrics import Curve, report
from explain.metrics.report import DEFAULT_METRICS, METRICS, Report, evaluate, rank_columns, report_card, write


@pytest.fixture(scope="module")
def digits():
    bundle = specs.resolve("digits_cnn")
    return bundle, np.asarray(bundle.dataset.test.x[:6])


@pytest.fixture(scope="module")
def digits_report(digits):
    bundle, x = digits
    metrics = ["deletion_auc", "infidelity", "pointing_game", "sparseness", "entropy", "randomisation_spearman"]
    metrics += ["randomisation_ssim"]
    return evaluate(bundle, x, methods=["vanilla_gradient", "grad_cam"], metrics=metrics, key=jax.random.key(0))


def test_the_table_has_a_row_per_method_and_leaves_out_what_needs_masks(digits_report):
    r, randomisation = digits_report, ("randomisation_spearman", "randomisation_ssim")
    assert r.methods == ("vanilla_gradient", "grad_cam") and r.model == "digits_cnn" and r.n == 6 and r.seed == 0
    assert r.metrics == ("deletion_auc", "infidelity", "sparseness", "entropy", *randomisation)
    assert r.skipped == {"pointing_game": "needs object masks (N, H, W); none were given"}
    assert r.values.shape == (2, len(r.metrics)) and np.isfinite(r.values).all()
    for i, m in enumerate(r.methods):
        for j, k in enumerate(r.metrics):
            assert r.per_sample[(m, k)].shape == (6,)
            assert r.values[i, j] == pytest.approx(np.nanmean(r.per_sample[(m, k)]))
        np.testing.assert_array_equal(r.per_sample[(m, "deletion_auc")], np.asarray(r.deletion[m].auc))
        assert r.deletion[m].kind == "deletion" and np.asarray(r.deletion[m].scores).shape == (6, 21)
        assert r.seconds[m] > 0 and 0 < r.cost[m] < math.inf
    # Adebayo et al.'s sanity check: the gradient of a fully randomised model no longer ranks pixels alike.
    assert r.values[0, r.metrics.index("randomisation_spearman")] < 0.5


def test_the_same_key_gives_the_same_numbers_whatever_else_is_asked(digits, digits_report):
    """What the dashboard relies on: a method's row depends on the key, its inputs and its own options only."""
    bundle, x = digits
    again = evaluate(
        bundle.model, x, methods=["grad_cam"], metrics=["randomisation_ssim", "sparseness", "infidelity"],
        key=jax.random.key(0),
    )  # fmt: skip
    assert again.metrics == ("infidelity", "sparseness", "randomisation_ssim")  # METRICS' order, not the caller's
    for k in again.metrics:
        np.testing.assert_array_equal(again.per_sample[("grad_cam", k)], digits_report.per_sample[("grad_cam", k)])
    np.testing.assert_array_equal(
        np.asarray(again.deletion["grad_cam"].scores), digits_report.deletion["grad_cam"].scores
    )
    other = evaluate(bundle.model, x, methods=["grad_cam"], metrics=["infidelity"], key=jax.random.key(1))
    assert not np.array_equal(
        other.per_sample[("grad_cam", "infidelity")], again.per_sample[("grad_cam", "infidelity")]
    )


def test_map_independent_draws_are_shared_by_every_method(digits, digits_report):
    """Infidelity's perturbations come from one key for every method (their forward passes run once per report):
    each row equals a standalone call on that key with the method's own maps."""
    from explain.metrics import faithfulness
    from explain.saliency import registry

    bundle, x = digits
    key = jax.random.key(0)
    shared = jax.random.fold_in(key, report.SHARED_KEYS + list(METRICS).index("infidelity"))
    for method in digits_report.methods:
        maps = registry.call(method, bundle.model, x, key=jax.random.fold_in(key, list(registry.METHODS).index(method)))
        alone = faithfulness.infidelity(bundle.model, x, maps.values, key=shared, normalize=True)
        np.testing.assert_allclose(digits_report.per_sample[(method, "infidelity")], alone, rtol=1e-5, atol=1e-7)


def test_deletion_towards_a_blur_and_against_a_random_map(digits):
    """The labelled deletion variants: the blurred baseline, and each AUC over a uniform random map's, per sample."""
    from explain.metrics import deletion

    bundle, x = digits
    key = jax.random.key(3)
    variants = ["deletion_auc", "deletion_ratio_random", "deletion_auc_blur", "deletion_blur_ratio_random"]
    r = evaluate(bundle, x, methods=["vanilla_gradient"], metrics=variants, key=key)
    got = {k: r.per_sample[("vanilla_gradient", k)] for k in variants}
    random_map = jax.random.uniform(
        jax.random.fold_in(key, report.SHARED_KEYS + list(METRICS).index("deletion_ratio_random")), x.shape
    )
    blur = report.blurred(x, report.BLUR_SIGMA)
    assert blur.shape == x.shape and not np.allclose(blur, x)
    assert np.asarray(r.deletion["vanilla_gradient"].scores).shape == (6, 21)  # the zero-baseline curve is kept
    grad = _gradient_maps(bundle, x, key)
    towards_blur = np.asarray(deletion(bundle, x, grad, baseline=blur).auc)
    np.testing.assert_allclose(got["deletion_auc_blur"], towards_blur, rtol=1e-6)
    np.testing.assert_allclose(
        got["deletion_ratio_random"], got["deletion_auc"] / np.asarray(deletion(bundle, x, random_map).auc), rtol=1e-6
    )
    np.testing.assert_allclose(
        got["deletion_blur_ratio_random"],
        towards_blur / np.asarray(deletion(bundle, x, random_map, baseline=blur).auc),
        rtol=1e-6,
    )


def _gradient_maps(bundle, x, key):
    """The maps evaluate makes for vanilla_gradient: keyed by the method's index in the registry."""
    from explain.saliency import registry

    index = list(registry.METHODS).index("vanilla_gradient")
    return registry.call("vanilla_gradient", bundle.model, x, key=jax.random.fold_in(key, index)).values


def test_localisation_against_the_shapes_masks():
    bundle = specs.resolve("shapes_cnn")
    split = bundle.dataset.test
    x, masks = np.asarray(split.x[:4]), np.asarray(split.mask[:4])
    r = evaluate(
        bundle, x, masks=masks, methods=["grad_cam"], key=jax.random.key(0),
        metrics=["relevance_mass", "relevance_mass_grown", "pointing_game", "mask_auc", "top_k_intersection"],
        metric_options={"deletion_auc": {"steps": 4}},
    )  # fmt: skip
    assert r.skipped == {} and np.asarray(r.deletion["grad_cam"].scores).shape == (4, 5)
    mass, grown = r.per_sample[("grad_cam", "relevance_mass")], r.per_sample[("grad_cam", "relevance_mass_grown")]
    assert np.all(grown >= mass - 1e-6) and np.all((mass >= 0) & (mass <= 1))  # a grown mask holds at least as much
    assert set(np.unique(r.per_sample[("grad_cam", "pointing_game")])) <= {0.0, 1.0}
    # Grad-CAM on shapes_cnn points at the object far better than the masks' ~13% area (issue 14's bar: 2x).
    assert r.values[0, r.metrics.index("relevance_mass")] > 2 * masks.mean()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(metrics=["deletion_auc", "nope"]), ValueError, r"unknown metrics \['nope'\]"),
        (dict(metrics="deletion_auc"), TypeError, "expected metrics as a sequence of names"),
        (dict(methods=["no_such_method"]), ValueError, r"unknown methods \['no_such_method'\]"),
        (
            dict(masks=np.ones((6, 8, 8), np.float32)),
            ValueError,
            r"expected masks as a bool array of shape \(6, 8, 8\)",
        ),
        (dict(masks=np.ones((5, 8, 8), bool)), ValueError, r"shape \(6, 8, 8\), got bool \(5, 8, 8\)"),
        (dict(options={"smoothgrad": {"n_samples": 2}}), ValueError, r"options names \['smoothgrad'\]"),
        (dict(options={"vanilla_gradient": {"stepz": 2}}), ValueError, r"unknown option\(s\) \['stepz'\]"),
        (dict(metric_options={"entropy": {}}), ValueError, r"metric_options names \['entropy'\]"),
        (dict(key=None), ValueError, "evaluate is random: pass an explicit key"),
    ],
)
def test_bad_arguments_are_refused_before_any_map(digits, kwargs, error, match):
    bundle, x = digits
    args = dict(methods=["vanilla_gradient"], metrics=["deletion_auc"], key=jax.random.key(0)) | kwargs
    with pytest.raises(error, match=match):
        evaluate(bundle.model, x, **args)


def test_ranks_are_per_column_best_first_with_ties_and_undefined_values():
    values = np.array([[0.1, 0.5, 3.0], [0.3, np.nan, 3.0], [0.2, 0.7, 1.0]])
    np.testing.assert_array_equal(
        rank_columns(values, [False, True, True]), [[1, 2, 1], [3, np.nan, 1], [2, 1, 3]]
    )  # fmt: skip


def _handmade() -> Report:
    curve = Curve(np.array([0.0, 0.5, 1.0]), np.array([[0.9, 0.4, 0.1], [0.8, 0.6, 0.2]]), np.array([0.45, 0.55]))
    values = np.array([[0.45, np.nan], [0.5, 0.7]])
    return Report(
        model="toy", methods=("a", "b"), metrics=("deletion_auc", "sparseness"), values=values,
        per_sample={("a", "deletion_auc"): np.array([0.4, 0.5]), ("a", "sparseness"): np.array([np.nan, np.nan]),
                    ("b", "deletion_auc"): np.array([0.5, 0.5]), ("b", "sparseness"): np.array([0.6, 0.8])},
        deletion={"a": curve, "b": curve}, seconds={"a": 0.5, "b": 2.0}, cost={"a": 1.5, "b": 6.0}, n=2, seed=7,
        skipped={"relevance_mass": "needs object masks (N, H, W); none were given"},
    )  # fmt: skip


def test_the_frame_names_each_metric_with_its_direction():
    frame = _handmade().to_frame()
    assert list(frame.columns) == ["deletion_auc (↓)", "sparseness (↑)", "seconds", "cost"]
    assert list(frame.index) == ["a", "b"] and frame.loc["b", "cost"] == 6.0
    np.testing.assert_array_equal(_handmade().ranks(), [[1, np.nan], [2, 1]])


def test_write_saves_the_table_the_json_and_the_card(tmp_path):
    paths = write(_handmade(), tmp_path / "new")
    assert {k: p.name for k, p in paths.items()} == {
        "csv": "evaluate.csv",
        "json": "evaluate.json",
        "png": "evaluate.png",
    }
    assert (
        paths["csv"].read_text(encoding="utf-8").splitlines()[0]
        == "method,deletion_auc (↓),sparseness (↑),seconds,cost"
    )
    doc = json.loads(paths["json"].read_text())  # strict JSON: the undefined values are null, not NaN
    assert doc["values"]["a"] == {"deletion_auc": 0.45, "sparseness": None} and doc["ranks"]["a"]["deletion_auc"] == 1
    assert doc["per_sample"]["a"]["sparseness"] == [None, None] and doc["seed"] == 7
    assert doc["metrics"][0]["higher_is_better"] is False and doc["skipped"] == _handmade().skipped
    assert doc["deletion"]["b"]["mean_scores"] == pytest.approx([0.85, 0.5, 0.15])
    with Image.open(paths["png"]) as png:
        assert png.format == "PNG" and png.size == report_card(_handmade()).size
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["evaluate.csv", "evaluate.json", "evaluate.png"]


def test_every_metric_has_a_sentence_a_family_and_a_way_to_compute_it():
    assert list(METRICS) == [info.name for info in METRICS.values()] and set(DEFAULT_METRICS) <= set(METRICS)
    for info in METRICS.values():
        assert info.family in report.FAMILIES and info.sentence.endswith(".")
        computed_apart = info.name == "deletion_auc" or info.name in report._DELETION_VARIANTS
        assert info.name in report._COMPUTE or computed_apart or info.family == "randomisation"
