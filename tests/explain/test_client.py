"""The service client: the wire format pinned against a mock server (httpx.MockTransport), then the real app."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from explain import client

ROOT = Path(__file__).resolve().parents[2]
URL = "http://service.test"


def npy(a: np.ndarray) -> dict[str, str]:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return {"npy_b64": base64.b64encode(buf.getvalue()).decode()}


def from_npy(value: dict[str, str]) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(value["npy_b64"])), allow_pickle=False)


def instances(body: dict) -> np.ndarray:
    x = body["instances"]
    return from_npy(x) if isinstance(x, dict) else np.asarray(x, np.float32)


class Server:
    """A mock service: records each request and answers ``explain`` with attribution = 2·x (row by row)."""

    def __init__(self, answers: list[httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.answers = list(answers or [])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        body = json.loads(request.content)
        x = instances(body)
        out = body["parameters"].get("output", "json")
        rows = [{"attribution": npy(2 * r) if out == "npy" else (2 * r).tolist(), "convergence_delta": 0.5} for r in x]
        return httpx.Response(200, json={"predictions": np.ones((len(x), 3)).tolist(), "explanations": rows})

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def error(status: int, message: str, field: str | None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message, "field": field}}, headers=headers)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(client, "_sleep", recorded.append)
    return recorded


def test_small_x_travels_as_json_lists_with_method_and_options_in_parameters():
    server = Server()
    x = np.arange(6, dtype=np.float32).reshape(3, 2) / 8
    with server.client() as c:
        got = client.explanation(URL, "digits cnn", x, target=[0, 2, 1], steps=8, output="json", token="s3", client=c)
    (request,) = server.requests
    assert request.method == "POST" and request.url.raw_path == b"/v1/models/digits%20cnn:explain"
    assert request.headers["authorization"] == "Bearer s3" and request.headers["content-type"] == "application/json"
    assert server.bodies[0] == {
        "instances": x.tolist(),
        "parameters": {"method": "integrated_gradients", "output": "json", "steps": 8, "target": [0, 2, 1]},
    }
    np.testing.assert_array_equal(got.values, 2 * x)
    np.testing.assert_array_equal(got.convergence_delta, [0.5, 0.5, 0.5])
    assert got.predictions.shape == (3, 3) and got.heatmaps is None


def test_large_x_travels_as_npy_and_both_directions_round_trip_exactly():
    server = Server()
    x = np.random.default_rng(0).normal(size=(3, 40, 40, 1)).astype(np.float32)  # 4,800 values > _NPY_ABOVE
    with server.client() as c:
        values = client.explain(URL, "m", x, client=c)
    sent = server.bodies[0]
    assert set(sent["instances"]) == {"npy_b64"} and sent["parameters"]["output"] == "npy"
    assert instances(sent).dtype == np.float32 and np.array_equal(instances(sent), x)
    assert values.dtype == np.float32 and np.array_equal(values, 2 * x)


def test_image_bytes_travel_as_b64_per_instance():
    server = Server([httpx.Response(200, json={"predictions": [[1.0, 0.0]], "classes": ["a"]})])
    with server.client() as c:
        p = client.predict(URL, "m", [b"\x89PNG fake"], client=c)
    assert server.bodies[0] == {"instances": [{"b64": base64.b64encode(b"\x89PNG fake").decode()}]}
    assert p.classes == ("a",) and p.probabilities is None and p.outputs.shape == (1, 2)


def test_batch_size_splits_x_and_per_instance_values_in_order_with_a_seed_per_request():
    server = Server()
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    with server.client() as c:
        got = client.explain(
            URL,
            "m",
            x,
            method="smoothgrad",
            target=np.arange(5),
            labels=[9, 8, 7, 6, 5],
            seed=7,
            batch_size=2,
            client=c,
        )
    bodies = server.bodies
    assert [len(b["instances"]) for b in bodies] == [2, 2, 1]
    assert [b["parameters"]["target"] for b in bodies] == [[0, 1], [2, 3], [4]]
    assert [b["parameters"]["labels"] for b in bodies] == [[9, 8], [7, 6], [5]]
    seeds = [b["parameters"]["seed"] for b in bodies]
    assert seeds[0] == 7 and len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds)
    np.testing.assert_array_equal(got, 2 * x)


def test_503_is_retried_after_retry_after_seconds_or_date_then_succeeds(waits):
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    answers = [
        error(503, "queue full", None, **{"Retry-After": "2"}),
        error(503, "queue full", None, **{"Retry-After": soon}),
    ]
    server = Server(answers)
    with server.client() as c:
        got = client.explain(URL, "m", np.ones((1, 2), np.float32), client=c)
    assert len(server.requests) == 3 and waits[0] == 2.0 and 25 < waits[1] <= 30
    np.testing.assert_array_equal(got, [[2.0, 2.0]])


def test_503_without_retry_after_backs_off_and_is_bounded_by_retries_and_timeout(waits):
    server = Server([error(503, "queue full", None)] * 3 + [error(503, "queue full", None, **{"Retry-After": "600"})])
    with server.client() as c, pytest.raises(client.ServiceError, match="503: queue full") as e:
        client.explain(URL, "m", np.ones((1, 2), np.float32), retries=3, timeout=5, client=c)
    assert e.value.status == 503 and len(server.requests) == 4
    assert waits == [0.1, 0.2, 0.4]
    server = Server([error(503, "full", None, **{"Retry-After": "600"})])
    with server.client() as c:
        client.explain(URL, "m", np.ones((1, 2), np.float32), retries=1, timeout=5, client=c, output="json")
    assert waits[-1] == 5  # never longer than the timeout


def test_4xx_raises_service_error_with_the_servers_message_and_field():
    server = Server([error(422, "expected steps <= 1024, got 5000", "parameters.steps")])
    with (
        server.client() as c,
        pytest.raises(client.ServiceError, match=r"422: expected steps .*field parameters.steps"),
    ):
        client.explain(URL, "m", np.ones((1, 2), np.float32), steps=5000, client=c)
    assert len(server.requests) == 1  # a 4xx other than 429 is never retried
    server = Server([httpx.Response(502, text="<html>\nBad Gateway\n</html>")])
    with server.client() as c, pytest.raises(client.ServiceError, match="502: <html>$") as e:
        client.models(URL, client=c)
    assert e.value.field is None


def test_unreachable_service_and_bad_npy_answers_raise_service_error():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as c,
        pytest.raises(client.ServiceError, match="cannot reach"),
    ):
        client.models(URL, client=c)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with httpx.Client(transport=httpx.MockTransport(stall)) as c, pytest.raises(client.ServiceError, match="timed out"):
        client.predict(URL, "m", np.ones((1, 2), np.float32), client=c)
    bad = {"predictions": [[1.0]], "explanations": [{"attribution": {"npy_b64": "not base64!"}}]}
    unreadable = r"unreadable \.npy.*explanations\[0\]\.attribution"
    with Server([httpx.Response(200, json=bad)]).client() as c, pytest.raises(client.ServiceError, match=unreadable):
        client.explain(URL, "m", np.ones((1, 2), np.float32), client=c)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.array([[np.nan, 1.0]]), {}, "expected finite x"),
        (np.float32(1.0), {}, r"expected x of shape \(N, \*input_shape\)"),
        (np.ones((3, 2)), {"target": [0, 1]}, "expected target with one entry per instance, leading dimension 3"),
        (np.ones((3, 2)), {"batch_size": 0}, "expected batch_size >= 1"),
        (np.ones((3, 2)), {"url": "127.0.0.1:8080"}, "expected url like"),
    ],
)
def test_bad_arguments_raise_before_any_request(x, kwargs, match):
    server = Server()
    url = kwargs.pop("url", URL)
    with server.client() as c, pytest.raises(ValueError, match=match):
        client.explain(url, "m", x, client=c, **kwargs)
    assert server.requests == []


def test_attack_sends_labels_beside_instances_and_decodes_npy_fields():
    adv = np.full((2, 3), 0.25, np.float32)
    answer = {
        "adversarial": npy(adv),
        "norms": [0.1, 0.1],
        "predictions_before": [[1.0, 0.0], [0.0, 1.0]],
        "predictions_after": [[0.0, 1.0], [0.0, 1.0]],
        "success": [True, False],
    }
    server = Server([httpx.Response(200, json=answer)])
    with server.client() as c:
        a = client.attack(
            URL, "m", np.zeros((2, 3), np.float32), attack="pgd", eps=0.1, labels=[0, 1], steps=5, client=c
        )
    body = server.bodies[0]
    assert body["labels"] == [0, 1] and server.requests[0].url.path == "/v1/models/m:attack"
    assert body["parameters"] == {"attack": "pgd", "eps": 0.1, "norm": "linf", "steps": 5, "output": "npy"}
    assert np.array_equal(a.x_adv, adv) and a.success.tolist() == [True, False] and a.norms.shape == (2,)


def test_importing_the_client_imports_neither_jax_nor_httpx():
    code = "import sys, explain.client; print('jax' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"], out.stdout


# ----------------------------------------------------------------------------- against the real app


@pytest.fixture(scope="module")
def digits():
    from explain import specs

    resolved = specs.resolve("digits_cnn")
    spec = resolved.model.input_spec
    x = np.random.default_rng(0).uniform(*spec.value_range, size=(3, *spec.shape)).astype(np.float32)
    return resolved, x


@pytest.fixture(scope="module")
def service(digits):
    from fastapi.testclient import TestClient

    from explain.serve.app import create_app
    from explain.serve.settings import Settings

    with TestClient(create_app([digits[0]], settings=Settings(max_batch=4))) as tc:
        yield tc


APP = "http://testserver"


@pytest.mark.parametrize(("output", "batch_size"), [("npy", None), ("json", None)])
def test_integrated_gradients_equal_the_librarys(service, digits, output, batch_size):
    import explain

    resolved, x = digits
    target = np.array([1, 2, 3])
    got = client.explanation(
        APP, resolved.name, x, target=target, steps=8, output=output, batch_size=batch_size, client=service
    )
    want = explain.integrated_gradients(resolved.model, x, target=target, steps=8)
    np.testing.assert_allclose(got.values, np.asarray(want.values), rtol=1e-6, atol=1e-6 * np.abs(want.values).max())
    np.testing.assert_allclose(got.convergence_delta, np.asarray(want.convergence_delta), rtol=1e-5, atol=1e-6)
    assert got.values.shape == x.shape and got.method == "integrated_gradients" and got.options["steps"] == 8


def test_a_split_random_call_keeps_the_seed_for_its_first_request(service, digits):
    resolved, x = digits
    x = np.concatenate([x, x[:1]])  # 4 rows: the whole call and both halves fill a bucket (max_batch=4) each
    kw = {"method": "smoothgrad", "n_samples": 4, "seed": 5, "target": 0, "client": service}
    whole = client.explain(APP, resolved.name, x, **kw)
    split = client.explain(APP, resolved.name, x, batch_size=2, **kw)
    np.testing.assert_array_equal(split[:2], whole[:2])  # request 0 carries seed 5 itself
    assert not np.array_equal(split[2:], whole[2:])  # request 1 draws from its own seed


def test_predict_and_attack_answer_for_the_served_model(service, digits):
    resolved, x = digits
    p = client.predict(APP, resolved.name, x, client=service)
    np.testing.assert_allclose(
        p.outputs, np.asarray(resolved.model.apply(resolved.model.params, x)), rtol=1e-5, atol=1e-6
    )
    assert p.classes == tuple(resolved.class_names[i] for i in p.outputs.argmax(1))
    a = client.attack(APP, resolved.name, x, attack="pgd", eps=0.1, labels=[0, 1, 2], steps=3, client=service)
    assert a.x_adv.shape == x.shape and np.abs(a.x_adv - x).max() <= 0.1 + 1e-6
    np.testing.assert_allclose(a.norms, np.abs(a.x_adv - x).reshape(3, -1).max(1), rtol=1e-5)


def test_the_apps_errors_reach_the_caller_with_their_field(service, digits):
    resolved, x = digits
    with pytest.raises(client.ServiceError, match="422: .*steps") as e:
        client.explain(APP, resolved.name, x, steps=10**6, client=service)
    assert e.value.field == "parameters.steps"
    with pytest.raises(client.ServiceError, match="unknown option") as e:
        client.explain(APP, resolved.name, x, stepz=8, client=service)
    assert e.value.status == 422 and e.value.field.startswith("parameters")
    with pytest.raises(client.ServiceError, match="404: unknown model 'nope'"):
        client.predict(APP, "nope", x, client=service)
    assert client.models(APP, client=service) == [resolved.name]
    assert client.model_info(APP, resolved.name, client=service)["input_shape"] == [8, 8, 1]


def test_the_token_is_sent_as_a_bearer_header(digits):
    from fastapi.testclient import TestClient

    from explain.serve.app import create_app
    from explain.serve.settings import Settings

    with TestClient(create_app([digits[0]], settings=Settings(token="s3cret"))) as tc:
        assert client.models(APP, token="s3cret", client=tc) == [digits[0].name]
        with pytest.raises(client.ServiceError) as e:
            client.models(APP, token="wrong", client=tc)
    assert e.value.status == 401


# ----------------------------------------------------------------------------- attribute: the batch job's call


def test_attribute_sends_one_seed_and_each_chunks_row_offset_and_retries_a_503(waits):
    server = Server([error(503, "the queue is full", None, **{"Retry-After": "2"})])
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    with server.client() as c:
        got = client.attribute(URL, "m", x, method="smoothgrad", seed=7, row_offset=100, batch=2, concurrency=1,
                               target=[0, 1, 2, 0, 1], n_samples=3, client=c)  # fmt: skip
    sent = server.bodies[1:]  # the first was refused with 503, then sent again after its Retry-After
    assert waits == [2.0] and server.bodies[0] == sent[0]
    assert [b["parameters"].get("row_offset") for b in sent] == [100, 102, 104]
    assert {b["parameters"]["seed"] for b in sent} == {7} and [b["parameters"]["target"] for b in sent] == [
        [0, 1], [2, 0], [1]
    ]  # fmt: skip
    np.testing.assert_array_equal(got.values, 2 * x)
    assert got.predictions.shape == (5, 3)


def test_attribute_refuses_bad_arguments_before_any_request():
    for kwargs, match in [({"row_offset": -1}, "row_offset >= 0"), ({"concurrency": 0}, "concurrency >= 1"),
                          ({"batch": 0}, "batch_size >= 1")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            client.attribute(URL, "m", np.zeros((2, 2)), **kwargs)


def test_reference_methods_are_the_registrys():
    from explain.saliency import registry

    assert {n for n, info in registry.METHODS.items() if info.needs_references} == client.REFERENCE_METHODS


@pytest.mark.parametrize(
    "method, options",
    [
        ("integrated_gradients", {"steps": 8}),
        ("smoothgrad", {"n_samples": 3}),
        ("expected_gradients", {"n_samples": 3}),
    ],
)
def test_attribute_equals_one_library_call_on_the_whole_array_whatever_the_chunks(service, digits, method, options):
    import jax

    from explain.saliency import registry

    resolved, x = digits
    x = np.concatenate([x, x[::-1]])  # 6 rows
    want = registry.call(method, resolved.model, x, key=jax.random.key(4), **options)
    scale = np.abs(np.asarray(want.values)).max()
    for batch, concurrency in [(4, 1), (1, 3)]:
        got = client.attribute(APP, resolved.name, x, method=method, seed=4, batch=batch, concurrency=concurrency,
                               client=service, **options)  # fmt: skip
        np.testing.assert_allclose(got.values, np.asarray(want.values), rtol=1e-6, atol=1e-6 * scale)
        if want.convergence_delta is not None:
            np.testing.assert_allclose(got.convergence_delta, np.asarray(want.convergence_delta), rtol=1e-4, atol=1e-5)
    # a shard of the job (global rows 3..5), with the job's reference set
    refs = {"references": x} if method in client.REFERENCE_METHODS else {}
    shard = client.attribute(APP, resolved.name, x[3:], method=method, seed=4, row_offset=3, batch=2, client=service,
                             **refs, **options)  # fmt: skip
    np.testing.assert_allclose(shard.values, np.asarray(want.values)[3:], rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(shard.predictions, np.asarray(resolved.model.apply(resolved.model.params, x[3:])),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_attribute_raises_the_servers_refusal_of_a_split_whole_call_draw(service, digits):
    resolved, x = digits
    with pytest.raises(client.ServiceError, match="draws for the whole call") as e:
        client.attribute(APP, resolved.name, x, baseline="uniform", seed=1, batch=2, client=service)
    assert e.value.field == "parameters.row_offset"
