"""The HTTP service through FastAPI's TestClient: every endpoint and error, results equal to the library's,
batching that merges, backpressure, deadlines, disconnects, tokens, warm-up. digits_cnn (8x8x1) and
friedman1_mlp keep it cheap; every app reuses the same resolved models, so compiled functions are shared."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from explain import adversarial, specs
from explain.gradients import forward
from explain.saliency import registry
from explain.serve import Settings, create_app, work

DIGITS = "/v1/models/digits_cnn"
FRIEDMAN = "/v1/models/friedman1_mlp"


@pytest.fixture(scope="module")
def digits():
    return specs.resolve("digits_cnn")


@pytest.fixture(scope="module")
def friedman():
    return specs.resolve("friedman1_mlp")


@pytest.fixture(scope="module")
def x(digits):
    return np.asarray(digits.dataset.test.x[:3], np.float32)


@contextlib.contextmanager
def serving(*models, **settings):
    with TestClient(create_app(list(models), settings=Settings(**settings))) as client:
        yield client


@pytest.fixture(scope="module")
def client(digits, friedman):
    with serving(digits, friedman, max_batch=4, max_delay_ms=20) as c:
        yield c


def metric(client, name: str, **labels) -> float:
    """The value of one sample of ``GET /metrics`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and (m.group(1) or "") == want:
            return float(m.group(2))
    return 0.0


def assert_close(actual, expected, rel=1e-6):
    """``max |actual - expected| <= rel * max |expected|``: relative to the array's scale, since padding a batch
    to its bucket may change the order of float32 sums (a few ulps of the largest value)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    assert np.max(np.abs(actual - expected)) <= rel * np.max(np.abs(expected))


def attributions(body) -> np.ndarray:
    return np.asarray([e["attribution"] for e in body["explanations"]], np.float32)


def test_health_readiness_models_and_model_info(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/models").json() == {"models": ["digits_cnn", "friedman1_mlp"]}
    info = client.get(DIGITS).json()
    assert info["input_shape"] == [8, 8, 1] and info["value_range"] == [0.0, 1.0] and info["ready"] is True
    assert info["output_kind"] == "classification" and info["class_names"] == [str(i) for i in range(10)]
    assert "grad_cam" in info["methods"] and "integrated_gradients" in info["methods"]
    tab = client.get(FRIEDMAN).json()
    assert tab["feature_names"] == [f"x{i}" for i in range(10)] and tab["output_kind"] == "regression"
    assert "grad_cam" not in tab["methods"] and "blur_integrated_gradients" not in tab["methods"]
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"


def test_predict_equals_the_model(client, digits, friedman, x):
    body = client.post(f"{DIGITS}:predict", json={"instances": x.tolist()}).json()
    out = np.asarray(forward(digits.model, x))
    assert_close(body["predictions"], out)
    assert body["classes"] == [str(i) for i in out.argmax(1)]
    np.testing.assert_allclose(np.sum(body["probabilities"], axis=1), 1.0, rtol=1e-9)
    rows = np.asarray(friedman.dataset.test.x[:2], np.float32)
    tab = client.post(f"{FRIEDMAN}:predict", json={"instances": rows.tolist()}).json()
    assert_close(tab["predictions"], np.asarray(forward(friedman.model, rows)))
    assert "probabilities" not in tab and "classes" not in tab


def test_explain_integrated_gradients_equals_the_library(client, digits, x):
    params = {"method": "integrated_gradients", "steps": 8, "target": [1, 2, 3]}
    body = client.post(f"{DIGITS}:explain", json={"instances": x.tolist(), "parameters": params}).json()
    lib = registry.call("integrated_gradients", digits.model, x, target=np.array([1, 2, 3]), steps=8)
    assert_close(attributions(body), np.asarray(lib.values))
    deltas = [e["convergence_delta"] for e in body["explanations"]]
    np.testing.assert_allclose(deltas, np.asarray(lib.convergence_delta), atol=1e-5)
    assert body["method"] == "integrated_gradients" and body["options"]["steps"] == 8
    assert body["options"]["rule"] == "gauss_legendre"  # the defaults, echoed
    assert_close(body["predictions"], np.asarray(forward(digits.model, x)))
    npy = client.post(
        f"{DIGITS}:explain",
        json={"instances": {"npy_b64": npy_b64(x)}, "parameters": {**params, "output": "npy", "heatmap": True}},
    ).json()
    first = npy["explanations"][0]
    back = np.load(io.BytesIO(base64.b64decode(first["attribution"]["npy_b64"])), allow_pickle=False)
    np.testing.assert_array_equal(back, attributions(body)[0])
    png = Image.open(io.BytesIO(base64.b64decode(first["heatmap_png_b64"])))
    assert png.format == "PNG" and png.size == (8, 8)


def npy_b64(a) -> str:
    buf = io.BytesIO()
    np.save(buf, a)
    return base64.b64encode(buf.getvalue()).decode()


def concurrently(client, requests):
    """``requests``: ``(path, body)`` pairs, posted at once from threads; the responses in order."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: client.post(r[0], json=r[1]), requests))


@pytest.fixture(scope="module")
def batching(digits, friedman):
    """A server that waits long enough (300 ms) for concurrent requests to be merged."""
    with serving(digits, friedman, max_batch=8, max_delay_ms=300) as c:
        yield c


def test_concurrent_requests_merge_into_one_call_with_per_request_targets(batching, digits, x):
    requests = [
        (f"{DIGITS}:explain", {"instances": x[:1].tolist(), "parameters": {"target": 4}}),
        (f"{DIGITS}:explain", {"instances": x[1:].tolist(), "parameters": {"target": [5, 6]}}),
        (f"{DIGITS}:explain", {"instances": x[:2].tolist(), "parameters": {"target": [7, 8]}}),
    ]
    before = metric(
        batching, "explain_batch_requests_count", model="digits_cnn", verb="explain", method="vanilla_gradient"
    )
    responses = concurrently(batching, requests)
    for (_, body), r in zip(requests, responses, strict=True):
        xi, target = np.asarray(body["instances"], np.float32), body["parameters"]["target"]
        lib = registry.call("vanilla_gradient", digits.model, xi, target=np.broadcast_to(target, len(xi)))
        assert_close(attributions(r.json()), np.asarray(lib.values))
    labels = {"model": "digits_cnn", "verb": "explain", "method": "vanilla_gradient"}
    calls = metric(batching, "explain_batch_requests_count", **labels) - before
    assert calls < 3  # fewer calls than requests: some were merged
    assert metric(batching, "explain_batch_rows_sum", **labels) >= 5


def test_random_methods_give_the_same_result_for_a_seed_whatever_the_batch(batching, digits, x):
    a = {"instances": x[:2].tolist(), "parameters": {"method": "smoothgrad", "n_samples": 4, "seed": 7}}
    b = {"instances": x[1:].tolist(), "parameters": {"method": "smoothgrad", "n_samples": 4, "seed": 8}}
    alone = batching.post(f"{DIGITS}:explain", json=a).json()
    together = concurrently(batching, [(f"{DIGITS}:explain", a), (f"{DIGITS}:explain", b)])
    np.testing.assert_array_equal(attributions(together[0].json()), attributions(alone))
    lib = registry.call("smoothgrad", digits.model, x[:2], key=jax.random.key(7), n_samples=4)
    assert_close(attributions(alone), np.asarray(lib.values))
    other = registry.call("smoothgrad", digits.model, x[1:], key=jax.random.key(8), n_samples=4)
    assert_close(attributions(together[1].json()), np.asarray(other.values))


def test_attacks_equal_the_library(batching, digits, x):
    fgsm = {"instances": x.tolist(), "labels": [1, 2, 3], "parameters": {"attack": "fgsm", "eps": 0.1}}
    pgd = {"instances": x[:2].tolist(), "parameters": {"attack": "pgd", "eps": 0.1, "steps": 3, "seed": 5}}
    r_fgsm, r_pgd = (r.json() for r in concurrently(batching, [(f"{DIGITS}:attack", fgsm), (f"{DIGITS}:attack", pgd)]))
    lib = adversarial.fgsm(digits.model, x, eps=0.1, labels=np.array([1, 2, 3]))
    assert_close(r_fgsm["adversarial"], np.asarray(lib.x_adv))
    assert_close(r_fgsm["norms"], np.asarray(lib.norms))
    assert_close(r_fgsm["predictions_after"], np.asarray(lib.outputs_adv))
    assert r_fgsm["success"] == np.asarray(lib.success).tolist()
    lib = adversarial.pgd(digits.model, x[:2], eps=0.1, steps=3, key=jax.random.key(5))
    assert_close(r_pgd["adversarial"], np.asarray(lib.x_adv))
    assert max(r_pgd["norms"]) <= 0.1 + 1e-6 and r_pgd["success"] == np.asarray(lib.success).tolist()


def _png_b64() -> str:
    buf = io.BytesIO()
    Image.new("L", (8, 8), 10).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


GOOD = [[[0.5]] * 8] * 8
BAD_REQUESTS = [
    # (path, body, status, field)
    (f"{DIGITS}:explain", {"instances": [[[0.5]] * 8]}, 422, "instances[0]"),
    (f"{DIGITS}:explain", {"instances": [GOOD, [[["a"]] * 8] * 8]}, 422, "instances[1]"),
    (f"{DIGITS}:explain", {"instances": {"npy_b64": npy_b64(np.full((1, 8, 8, 1), np.inf))}}, 422, "instances[0]"),
    (f"{DIGITS}:explain", {"instances": [{"b64": "@@@"}]}, 422, "instances[0].b64"),
    (f"{DIGITS}:explain", {"instances": [{"b64": base64.b64encode(b"GIF89a...").decode()}]}, 422, "instances[0].b64"),
    (f"{DIGITS}:explain", {"instances": [GOOD], "parameters": {"method": "lime"}}, 422, "parameters.method"),
    (f"{DIGITS}:explain", {"instances": [GOOD], "parameters": {"stepz": 3}}, 422, "parameters.stepz"),
    (
        f"{DIGITS}:explain",
        {"instances": [GOOD], "parameters": {"method": "integrated_gradients", "steps": "8"}},
        422,
        "parameters.steps",
    ),  # fmt: skip
    (
        f"{DIGITS}:explain",
        {"instances": [GOOD], "parameters": {"method": "integrated_gradients", "steps": 10**6}},
        422,
        "parameters.steps",
    ),  # fmt: skip
    (
        f"{DIGITS}:explain",
        {"instances": [GOOD], "parameters": {"method": "integrated_gradients", "rule": "simpson"}},
        422,
        "parameters",
    ),  # fmt: skip  (found by the library itself)
    (f"{DIGITS}:explain", {"instances": [GOOD], "parameters": {"target": "loss"}}, 422, "parameters.labels"),
    (f"{DIGITS}:explain", {"instances": [GOOD], "parameters": {"target": 10}}, 422, "parameters.target"),
    (f"{DIGITS}:explain", {"instances": [GOOD], "parameters": {"seed": -1}}, 422, "parameters.seed"),
    (f"{DIGITS}:explain", {"parameters": {}}, 422, "instances"),
    (
        f"{FRIEDMAN}:explain",
        {"instances": [[0.5] * 10], "parameters": {"method": "grad_cam"}},
        422,
        "parameters.method",
    ),
    (f"{FRIEDMAN}:explain", {"instances": [[0.5] * 10], "parameters": {"heatmap": True}}, 422, "parameters.heatmap"),
    (f"{FRIEDMAN}:explain", {"instances": [{"b64": _png_b64()}]}, 422, "instances[0]"),
    (
        f"{FRIEDMAN}:attack",
        {"instances": [[0.5] * 10], "parameters": {"attack": "fgsm", "eps": 0.1}},
        422,
        "parameters.attack",
    ),  # fmt: skip
    (f"{DIGITS}:attack", {"instances": [GOOD], "parameters": {"attack": "fgsm"}}, 422, "parameters.eps"),
    (f"{DIGITS}:attack", {"instances": [GOOD], "parameters": {"attack": "cw", "eps": 0.1}}, 422, "parameters.attack"),
    (
        f"{DIGITS}:attack",
        {"instances": [GOOD], "parameters": {"attack": "fgsm", "eps": 0.1, "steps": 3}},
        422,
        "parameters.steps",
    ),  # fmt: skip
    (
        f"{DIGITS}:attack",
        {"instances": [GOOD], "labels": [12], "parameters": {"attack": "fgsm", "eps": 0.1}},
        422,
        "labels",
    ),  # fmt: skip
    (f"{DIGITS}:predict", {"instances": [GOOD], "parameters": {"method": "x"}}, 422, "parameters.method"),
    (f"{DIGITS}:predict", {"instances": [GOOD], "extra": 1}, 422, "extra"),
    ("/v1/models/nope:predict", {"instances": [GOOD]}, 404, "name"),
    (f"{DIGITS}:fly", {"instances": [GOOD]}, 404, "verb"),
]


@pytest.mark.parametrize("path, body, status, field", BAD_REQUESTS)
def test_every_bad_request_gets_a_structured_error_naming_its_field(client, path, body, status, field):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["field"] == field
    assert "\n" not in error["message"] and "Traceback" not in r.text


def test_malformed_json_is_a_422_in_the_same_shape(client):
    r = client.post(f"{DIGITS}:predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message", "field"}


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_json_body_without_the_json_content_type_says_so(client, x, content_type):
    """curl -d sends form encoding unless told otherwise: name the header instead of pydantic's type error."""
    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps({"instances": x[:1].tolist()}).encode()
    r = client.post(f"{DIGITS}:predict", content=body, headers=headers)
    error = r.json()["error"]
    assert r.status_code == 422 and error["field"] == "Content-Type"
    assert error["message"].startswith("expected a JSON body with Content-Type: application/json, got ")


def test_a_malformed_request_amid_good_ones_fails_alone(batching, digits, x):
    good = {"instances": x[:1].tolist(), "parameters": {"method": "gradient_x_input"}}
    bad = {"instances": x[:1].tolist(), "parameters": {"method": "gradient_x_input", "target": 99}}
    responses = concurrently(batching, [(f"{DIGITS}:explain", good), (f"{DIGITS}:explain", bad)] * 2)
    assert [r.status_code for r in responses] == [200, 422, 200, 422]


def test_body_too_large_is_413(digits, x):
    with serving(digits, max_body_bytes=600) as c:
        r = c.post(f"{DIGITS}:predict", json={"instances": x.tolist()})  # about 1.5 kB
        assert r.status_code == 413 and r.json()["error"]["code"] == 413
        chunked = c.post(f"{DIGITS}:predict", content=iter([b" " * 400, b" " * 400]))  # no Content-Length
        assert chunked.status_code == 413
        assert c.post(f"{DIGITS}:predict", json={"instances": [[[[0]] * 8] * 8]}).status_code == 200


def test_a_token_guards_every_endpoint_but_liveness(digits):
    with serving(digits, token="s3cret") as c:
        assert c.get("/healthz").status_code == 200
        for path in ("/readyz", "/v1/models", DIGITS, "/metrics", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@contextlib.contextmanager
def blocked_predict(monkeypatch):
    """Every predict call waits for the gate; ``started`` is set when one runs."""
    started, gate = threading.Event(), threading.Event()
    real = work._RUNNERS["predict"]

    def run(jobs, bucket):
        started.set()
        gate.wait(20)
        return real(jobs, bucket)

    monkeypatch.setitem(work._RUNNERS, "predict", run)
    try:
        yield started, gate
    finally:
        gate.set()


def wait_for(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_full_queue_is_503_with_retry_after_a_deadline_504_and_the_server_recovers(digits, x, monkeypatch):
    body = {"instances": x[:1].tolist()}
    with serving(digits, max_batch=1, max_queue=1, timeout_s=1.0) as c, blocked_predict(monkeypatch) as (started, gate):
        batcher = c.app.state.serve.batcher
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(c.post, f"{DIGITS}:predict", json=body)
            wait_for(started.is_set)
            queued = pool.submit(c.post, f"{DIGITS}:predict", json=body)
            wait_for(lambda: batcher.depth == 1)
            full = c.post(f"{DIGITS}:predict", json=body)
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["code"] == 503
            late = queued.result()
            assert late.status_code == 504 and late.json()["error"]["code"] == 504
            assert batcher.depth == 0  # its slot is free again
            assert running.result().status_code == 504  # the running call cannot be stopped; its answer is late
        gate.set()
        assert c.post(f"{DIGITS}:predict", json=body).status_code == 200
        assert metric(c, "explain_requests_total", model="digits_cnn", verb="predict", status="503") == 1


def test_a_client_that_disconnects_frees_its_slot(digits, x, monkeypatch):
    body = json.dumps({"instances": x[:1].tolist()}).encode()

    async def post(app, gone: asyncio.Event, sent: list):
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": f"{DIGITS}:predict", "raw_path": f"{DIGITS}:predict".encode(), "query_string": b"",
            "root_path": "", "headers": [(b"content-type", b"application/json")], "client": ("t", 1),
            "server": ("t", 80),
        }  # fmt: skip
        await app(scope, receive, send)

    with serving(digits, max_batch=1) as c, blocked_predict(monkeypatch) as (started, gate):
        batcher = c.app.state.serve.batcher

        async def scenario():
            first_gone, second_gone, first, second = asyncio.Event(), asyncio.Event(), [], []
            running = asyncio.ensure_future(post(c.app, first_gone, first))
            while not started.is_set():
                await asyncio.sleep(0.01)
            waiting = asyncio.ensure_future(post(c.app, second_gone, second))
            while batcher.depth != 1:
                await asyncio.sleep(0.01)
            second_gone.set()  # the client hangs up while its request waits
            await waiting
            depth = batcher.depth
            gate.set()
            await running
            return depth, first[0]["status"], second[0]["status"]

        depth, first_status, second_status = c.portal.call(scenario)
    assert depth == 0 and first_status == 200 and second_status == 499


def test_a_bug_is_a_500_with_one_line_and_no_traceback(digits, x, monkeypatch):
    def broken(jobs, bucket):
        raise RuntimeError("secret internal state")

    monkeypatch.setitem(work._RUNNERS, "predict", broken)
    with serving(digits) as c:
        r = c.post(f"{DIGITS}:predict", json={"instances": x[:1].tolist()})
        assert r.status_code == 500 and r.json()["error"]["code"] == 500
        assert "secret" not in r.text and "Traceback" not in r.text
        assert c.get("/healthz").status_code == 200  # still serving


def test_warmup_compiles_every_bucket_before_ready(digits, x):
    with serving(digits, max_batch=2, warmup=True, warmup_methods=("vanilla_gradient",)) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, timeout=60)
        assert c.get(DIGITS).json()["ready"] is True
        compiles = metric(c, "explain_compiles_total")
        for n in (1, 2):
            assert c.post(f"{DIGITS}:predict", json={"instances": x[:n].tolist()}).status_code == 200
            r = c.post(f"{DIGITS}:explain", json={"instances": x[:n].tolist(), "parameters": {"target": 3}})
            assert r.status_code == 200
        assert metric(c, "explain_compiles_total") == compiles  # nothing compiled at run time


def test_openapi_documents_every_route_and_field(client):
    spec = client.get("/openapi.json").json()
    for verb in ("predict", "explain", "attack"):
        assert f"/v1/models/{{name}}:{verb}" in spec["paths"]
    fields = spec["components"]["schemas"]["ExplainParameters"]["properties"]
    assert {"method", "target", "labels", "seed", "output", "heatmap"} <= set(fields)
    assert all(f.get("description") for f in fields.values())
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- caps and per-row streams

CAPPED = {"max_instances": 2, "max_steps": 8, "max_samples": 4, "max_rows_per_instance": 16, "max_restarts": 2}
OVER_CAPS = [
    # (verb, body, field, the refusal's words)
    ("explain", {"instances": [GOOD] * 3}, "instances",
     "at most 2 instances per request (the server's cap; --max-instances raises it), got 3"),
    ("explain", {"instances": {"npy_b64": npy_b64(np.full((3, 8, 8, 1), 0.5))}}, "instances", "--max-instances"),
    ("explain", {"instances": [GOOD], "parameters": {"method": "integrated_gradients", "steps": 9}},
     "parameters.steps", "steps <= 8 (the server's cap; --max-steps raises it), got 9"),
    ("explain", {"instances": [GOOD], "parameters": {"method": "smoothgrad", "n_samples": 5}},
     "parameters.n_samples", "n_samples <= 4 (the server's cap; --max-samples raises it), got 5"),
    ("explain", {"instances": [GOOD], "parameters": {"method": "smoothgrad", "n_samples": 4,
     "method_options": {"steps": 9}}}, "parameters.method_options.steps", "--max-steps raises it"),
    # occlusion's 64 windows (8x8 by default) are 64 model rows per instance: no step or sample cap sees them
    ("explain", {"instances": [GOOD], "parameters": {"method": "occlusion"}}, "parameters",
     "(the server's cap; --max-rows-per-instance raises it), got 64"),
    ("attack", {"instances": [GOOD], "parameters": {"attack": "pgd", "eps": 0.1, "steps": 9}}, "parameters.steps",
     "steps <= 8 (the server's cap; --max-steps raises it), got 9"),
    ("attack", {"instances": [GOOD], "parameters": {"attack": "apgd", "eps": 0.1, "steps": 2, "restarts": 3}},
     "parameters.restarts", "restarts <= 2 (the server's cap; --max-restarts raises it), got 3"),
]  # fmt: skip


@pytest.fixture(scope="module")
def capped(digits):
    with serving(digits, **CAPPED) as c:
        yield c


@pytest.mark.parametrize("verb, body, field, words", OVER_CAPS)
def test_each_cap_refuses_naming_the_cap_and_the_flag_that_raises_it(capped, verb, body, field, words):
    r = capped.post(f"{DIGITS}:{verb}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field and words in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "method, options", [("smoothgrad", {"n_samples": 3}), ("expected_gradients", {"n_samples": 3})]
)
def test_row_offset_gives_chunks_the_draws_of_one_call_on_the_whole_array(batching, digits, method, options):
    x = np.asarray(digits.dataset.test.x[:5], np.float32)
    whole = registry.call(method, digits.model, x, key=jax.random.key(9), **options)
    extra = {"references": {"npy_b64": npy_b64(x)}} if method == "expected_gradients" else {}
    requests = [
        (f"{DIGITS}:explain", {"instances": x[a:b].tolist(),
                               "parameters": {"method": method, "seed": 9, "row_offset": a, **options, **extra}})
        for a, b in [(0, 2), (2, 3), (3, 5)]
    ]  # fmt: skip
    responses = concurrently(batching, requests)  # smoothgrad's chunks (one seed) may share a call
    got = np.concatenate([attributions(r.json()) for r in responses])
    assert_close(got, np.asarray(whole.values))
    if whole.convergence_delta is not None:
        deltas = [e["convergence_delta"] for r in responses for e in r.json()["explanations"]]
        np.testing.assert_allclose(deltas, np.asarray(whole.convergence_delta), rtol=1e-4, atol=1e-5)
    alone = batching.post(
        f"{DIGITS}:explain",
        json={"instances": x[3:].tolist(), "parameters": {"method": method, "seed": 9, **options, **extra}},
    )
    assert not np.allclose(attributions(alone.json()), got[3:])  # offset 0: the streams of rows 0 and 1


def test_compiled_cores_are_bounded_whatever_options_clients_send(client, monkeypatch):
    """Options come from clients: each distinct value compiles a core, and the oldest is dropped past the bound."""
    monkeypatch.setattr(work, "MAX_CORES", 2)
    for n in (1, 2, 3):
        r = client.post(
            f"{DIGITS}:explain",
            json={"instances": [GOOD], "parameters": {"method": "smoothgrad", "n_samples": n, "seed": 0}},
        )
        assert r.status_code == 200, r.text
    kept = [json.loads(options)["n_samples"] for _, method, options in work._CORES if method == "smoothgrad"]
    assert len(work._CORES) <= 2 and kept[-1] == 3 and 1 not in kept


@pytest.mark.parametrize(
    "parameters, field, words",
    [
        ({"method": "integrated_gradients", "baseline": "uniform", "row_offset": 2}, "parameters.row_offset",
         "draws for the whole call"),
        ({"method": "integrated_gradients", "references": [GOOD]}, "parameters.references", "reference set"),
        ({"method": "expected_gradients", "references": [[0.5] * 3]}, "parameters.references", "(m >= 1, 8, 8, 1)"),
        ({"method": "smoothgrad", "row_offset": -1}, "parameters.row_offset", "greater than or equal to 0"),
    ],
)  # fmt: skip
def test_row_offsets_and_references_that_cannot_be_used_are_refused(client, parameters, field, words):
    r = client.post(f"{DIGITS}:explain", json={"instances": [GOOD], "parameters": parameters})
    assert r.status_code == 422 and r.json()["error"]["field"] == field and words in r.json()["error"]["message"]
