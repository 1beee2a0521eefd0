"""Instances from JSON lists, base64 images and base64 .npy; every mistake named by its field."""

from __future__ import annotations

import base64
import io
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from explain import images
from explain.model import InputSpec
from explain.serve import payloads
from explain.serve.errors import ServeError

IMAGE = SimpleNamespace(input_spec=InputSpec((8, 8, 1), (0.0, 1.0)), name="img")
TABLE = SimpleNamespace(input_spec=InputSpec((3,)), name="tab")


def decode(instances, model=IMAGE, **kw):
    return payloads.decode_instances(instances, model, **{"max_instances": 4, "max_image_bytes": 2**20, **kw})


def png_b64(size=(16, 16), mode="RGB") -> str:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 100, 50) if mode == "RGB" else 128).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def npy_b64(a) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return base64.b64encode(buf.getvalue()).decode()


def test_lists_npy_and_images_decode_to_the_same_float32_batch():
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(decode(x.tolist()), x)
    np.testing.assert_array_equal(decode({"npy_b64": npy_b64(x)}), x)
    img = decode([{"b64": png_b64()}, x[1].tolist()])
    expected = images.load_upload(base64.b64decode(png_b64()), (8, 8, 1), value_range=(0.0, 1.0)).x
    np.testing.assert_array_equal(img[0], expected)  # the dashboard's conversion, exactly
    np.testing.assert_array_equal(img[1], x[1])
    assert decode([[1, 2, 3]], TABLE).dtype == np.float32


def test_outputs_round_trip_as_json_lists_and_npy():
    a = np.random.default_rng(1).random((2, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(payloads.encode(a, "json"), np.float32), a)
    back = payloads.npy_load(payloads.encode(a, "npy")["npy_b64"], "f")
    assert back.dtype == np.float32 and np.array_equal(back, a)


@pytest.mark.parametrize(
    "instances, field, message",
    [
        ([[1, 2]], "instances[0]", r"expected an instance of shape \(3,\), got \(2,\)"),
        ([[1, 2, 3], [1, [2], 3]], "instances[1]", "nested list of numbers"),
        ([[1, 2, 3], ["a", 2, 3]], "instances[1]", "nested list of numbers"),
        ([[1, 2, 3], [1, float("nan"), 3]], "instances[1]", "NaN or inf"),
        ([[1, 2, 3], [1, None, 3]], "instances[1]", "NaN or inf"),
        ([], "instances", "at least one instance"),
        ([[1, 2, 3]] * 5, "instances", "at most 4 instances"),
        ({"npy_b64": "not base64!"}, "instances.npy_b64", "invalid base64"),
        ({"npy_b64": base64.b64encode(b"hello").decode()}, "instances.npy_b64", "expected a base64 .npy"),
        ({"other": 1}, "instances", "npy_b64"),
        ("text", "instances", "got str"),
        ([{"b64": "aGVsbG8="}], "instances[0]", "not images"),
    ],
)
def test_bad_instances_name_their_field(instances, field, message):
    with pytest.raises(ServeError, match=message) as info:
        decode(instances, TABLE)
    assert info.value.status == 422 and info.value.field == field


def test_pickled_npy_is_refused_never_unpickled():
    evil = np.array([pickle.dumps("x")], dtype=object)
    with pytest.raises(ServeError, match="no pickled objects") as info:
        decode({"npy_b64": npy_b64(evil)})
    assert info.value.field == "instances.npy_b64"


@pytest.mark.parametrize(
    "item, message",
    [
        ({"b64": base64.b64encode(b"not an image").decode()}, "not an image Pillow can read"),
        ({"b64": "%%%"}, "invalid base64"),
        ({"b64": png_b64(size=(2000, 2000))}, "the limit is"),
    ],
)
def test_bad_images_are_refused_with_the_dashboards_messages(item, message):
    with pytest.raises(ServeError, match=message) as info:
        decode([item], max_image_bytes=2000)
    assert info.value.field == "instances[0].b64"
