"""A small Python client of the explanation service (``python -m explain serve``): explain, predict, attack.

Each call is one or more ``POST /v1/models/<name>:<verb>`` requests of the KServe V1 data plane
(``{"instances": [...], "parameters": {...}}``); the answer comes back as NumPy arrays. Nothing here
imports JAX: a machine that only calls the service needs NumPy and ``httpx``.

- Small inputs travel as nested JSON lists; inputs of more than ``_NPY_ABOVE`` values as one base64
  ``.npy`` (exact, and about a quarter of the JSON's size); a list of PNG/JPEG ``bytes`` as
  ``{"b64": ...}`` per image, converted by the server exactly as the dashboard converts uploads.
- ``batch_size`` splits ``x`` into requests of at most that many instances (the server caps instances per
  request); results are concatenated in order. :func:`attribute` (for batch jobs) sends them concurrently
  with per-row random streams (``row_offset``), so its results do not depend on the split.
- ``503`` (queue full) and ``429`` are retried at most ``retries`` times, each after the server's
  ``Retry-After`` (never longer than ``timeout``); every other failure raises :class:`ServiceError` with the
  server's one-line message and the field it names (``"parameters.steps"``, ``"instances[3]"``).

Examples (a server started with ``python -m explain serve --model digits_cnn``)::

    from explain import client
    url = "http://127.0.0.1:8080"
    client.models(url)                                   # ["digits_cnn"]
    ig = client.explain(url, "digits_cnn", x, steps=64)  # (N, 8, 8, 1), as explain.integrated_gradients
    sg = client.explain(url, "digits_cnn", x, method="smoothgrad", n_samples=16, seed=0, target=labels)
    e = client.attribute(url, "digits_cnn", x, method="smoothgrad", seed=0, batch=32, concurrency=8)
    p = client.predict(url, "digits_cnn", x)             # p.outputs (N, 10), p.classes
    a = client.attack(url, "digits_cnn", x, attack="pgd", eps=0.1, labels=labels, steps=10)
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import email.utils
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

import numpy as np
from jaxtyping import Float, Shaped

if TYPE_CHECKING:
    import httpx

_NPY_ABOVE = 4096  # values in x above which instances travel as one base64 .npy instead of JSON lists
_RETRY_STATUSES = frozenset({429, 503})
_FIRST_BACKOFF_S = 0.1  # wait before the first retry when the server sends no usable Retry-After; doubles
_MAX_MESSAGE = 300  # characters of a non-JSON error body kept in a ServiceError

# The wait between retries; a module attribute so tests can record the waits instead of sleeping.
_sleep: Callable[[float], None] = time.sleep


class ServiceError(RuntimeError):
    """The service refused or failed a request (or could not be reached).

    Attributes:
      status: the HTTP status (``422``, ``404``, ``413``, ``503``, ...), ``None`` when no answer came.
      message: the server's one-line message.
      field: the part of the request it names (``"parameters.steps"``, ``"instances[3]"``), or ``None``.
    """

    def __init__(self, status: int | None, message: str, field: str | None = None):
        self.status, self.message, self.field = status, message, field
        where = f" (field {field})" if field else ""
        super().__init__(f"{status if status is not None else 'no answer'}: {message}{where}")


class Explanation(NamedTuple):
    """What ``:explain`` answers, rows in the order of ``x``.

    Attributes:
      values: attributions ``(N, *input_shape)`` (``(N, K, *input_shape)`` with ``target="all"``).
      convergence_delta: path methods' completeness error ``(N,)``, else ``None``.
      predictions: the model's outputs ``(N, K)``.
      heatmaps: one PNG per instance when asked with ``heatmap=True``, else ``None``.
      method: the method the server ran.
      options: the options it ran with, defaults filled in.
    """

    values: np.ndarray
    convergence_delta: np.ndarray | None
    predictions: np.ndarray
    heatmaps: tuple[bytes, ...] | None
    method: str
    options: dict[str, Any]


class Prediction(NamedTuple):
    """What ``:predict`` answers: ``outputs (N, K)``; for classifiers ``probabilities (N, K)`` and the
    argmax ``classes`` by name, else ``None``."""

    outputs: np.ndarray
    probabilities: np.ndarray | None
    classes: tuple[str, ...] | None


class AttackOutput(NamedTuple):
    """What ``:attack`` answers: ``x_adv (N, *input_shape)``, the perturbation ``norms (N,)``, the model's
    outputs ``(N, K)`` before and after, and ``success (N,)`` (the prediction changed)."""

    x_adv: np.ndarray
    norms: np.ndarray
    predictions_before: np.ndarray
    predictions_after: np.ndarray
    success: np.ndarray


# ----------------------------------------------------------------------------- payloads


def encode_npy(a: Shaped[np.ndarray, "..."]) -> str:
    """``a`` as base64 of its ``.npy`` file (no pickles): the protocol's ``{"npy_b64": ...}``."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_npy(text: str, *, field: str = "npy_b64") -> Shaped[np.ndarray, "..."]:
    """The array of a base64 ``.npy`` (pickles refused); a malformed one raises :class:`ServiceError` naming
    ``field`` (it came from the server)."""
    try:
        return np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    except (binascii.Error, ValueError, TypeError, EOFError) as e:
        raise ServiceError(None, f"the server sent an unreadable .npy: {e}", field) from None


def _is_images(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, (bytes, bytearray)) for i in x)


def encode_instances(x: Any) -> list[Any] | dict[str, str]:
    """The protocol's ``instances`` for ``x``: ``{"b64": ...}`` per image for a list of PNG/JPEG ``bytes``;
    otherwise ``(N, *input_shape)`` numbers as nested lists, or as one ``{"npy_b64": ...}`` above
    ``_NPY_ABOVE`` values.

    Raises:
      ValueError: ``x`` has no instance axis, or holds NaN or inf (refused here rather than by the server).
    """
    if _is_images(x):
        return [{"b64": base64.b64encode(bytes(i)).decode("ascii")} for i in x]
    a = np.asarray(x)
    if a.ndim < 1:
        raise ValueError(f"expected x of shape (N, *input_shape) or a list of PNG/JPEG bytes, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"expected x of numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError("expected finite x, got NaN or inf")
    return {"npy_b64": encode_npy(a)} if a.size > _NPY_ABOVE else a.tolist()


def decode_array(value: Any, field: str) -> np.ndarray:
    """A response array: a nested list or ``{"npy_b64": ...}``."""
    if isinstance(value, Mapping) and "npy_b64" in value:
        return decode_npy(value["npy_b64"], field=field)
    return np.asarray(value)


def _jsonable(value: Any) -> Any:
    """An option or a per-row value as JSON: NumPy scalars as numbers, arrays as lists (a large one, e.g. a
    baseline image, as base64 ``.npy``)."""
    if isinstance(value, np.ndarray):
        return {"npy_b64": encode_npy(value)} if value.size > _NPY_ABOVE else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- transport


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ImportError("explain.client needs httpx: pip install httpx") from None
    return httpx


def _seconds(header: str) -> float | None:
    """``Retry-After`` as seconds from now: a number or an HTTP date (RFC 9110 §10.2.3); ``None`` if neither."""
    try:
        return float(header)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(header).timestamp() - time.time()
    except (TypeError, ValueError, IndexError):
        return None


def _retry_after(response: httpx.Response, attempt: int, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After``, else
    ``_FIRST_BACKOFF_S * 2**attempt``; never more than ``cap``."""
    wait = _seconds(response.headers.get("retry-after", "").strip())
    if wait is None or not math.isfinite(wait) or wait < 0:
        wait = _FIRST_BACKOFF_S * 2**attempt
    return min(wait, cap)


def _error(response: httpx.Response) -> ServiceError:
    """The protocol's ``{"error": {"code", "message", "field"}}`` as a :class:`ServiceError` (a body of another
    shape, e.g. from a proxy, by its first line)."""
    try:
        body = response.json()
        error = body["error"]
        return ServiceError(response.status_code, str(error["message"]), error.get("field"))
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip().splitlines()
        first = text[0][:_MAX_MESSAGE] if text else response.reason_phrase
        return ServiceError(response.status_code, first or f"HTTP {response.status_code}")


def _request(
    client: httpx.Client,
    verb: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any = None,
    retries: int,
    timeout: float,
) -> dict[str, Any]:
    """One JSON request, retried on 503/429 after ``Retry-After`` at most ``retries`` times; the JSON answer."""
    httpx = _httpx()
    content = None if body is None else json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    if body is not None:
        headers = {**headers, "content-type": "application/json"}
    for attempt in range(retries + 1):
        try:
            response = client.request(verb, url, content=content, headers=headers)
        except httpx.TimeoutException as e:
            raise ServiceError(None, f"timed out waiting for {url} ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise ServiceError(None, f"cannot reach {url}: {e}") from None
        if response.status_code in _RETRY_STATUSES and attempt < retries:
            _sleep(_retry_after(response, attempt, cap=timeout))
            continue
        if not response.is_success:
            raise _error(response)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(response.status_code, f"expected a JSON answer from {url}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def _session(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """The caller's client, left open (a pooled client, a ``TestClient``), or a new one closed at the end."""
    if client is not None:
        yield client
        return
    with _httpx().Client(timeout=timeout) as own:
        yield own


def _auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


def _check_call(url: str, timeout: float, retries: int, batch_size: int | None) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"expected url like 'http://127.0.0.1:8080', got {url!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"expected timeout > 0 seconds, got {timeout!r}")
    if not (isinstance(retries, int) and retries >= 0):
        raise ValueError(f"expected retries >= 0, got {retries!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"expected batch_size >= 1 instances per request (or None: one request), got {batch_size!r}")


def _model_url(url: str, model: str) -> str:
    return f"{url.rstrip('/')}/v1/models/{quote(model, safe='')}"


def _post(
    url: str,
    model: str,
    verb: str,
    bodies: Iterator[dict[str, Any]],
    *,
    token: str | None,
    timeout: float,
    retries: int,
    client: httpx.Client | None,
) -> list[dict[str, Any]]:
    """Posts each body in turn to ``:verb`` on one connection; the answers in order."""
    target, headers = f"{_model_url(url, model)}:{verb}", _auth(token)
    with _session(client, timeout) as c:
        return [_request(c, "POST", target, headers=headers, body=b, retries=retries, timeout=timeout) for b in bodies]


# ----------------------------------------------------------------------------- splitting


def _n_instances(x: Any) -> int:
    if _is_images(x):
        return len(x)
    shape = np.shape(x)
    if len(shape) < 1:
        raise ValueError(f"expected x of shape (N, *input_shape) or a list of PNG/JPEG bytes, got shape {shape}")
    return shape[0]


def _spans(n: int, batch_size: int | None) -> list[tuple[int, int]]:
    step = n if batch_size is None else batch_size
    return [(a, min(a + step, n)) for a in range(0, n, max(step, 1))] or [(0, 0)]


def _per_row(name: str, value: Any, n: int) -> Any:
    """``value`` as a per-instance ``(N, ...)`` array when it has one entry per instance, else unchanged
    (``"pred"``, ``"loss"``, one class index, ``None``)."""
    if value is None or isinstance(value, str) or np.ndim(value) == 0:
        return value
    a = np.asarray(value)
    if a.shape[0] != n:
        raise ValueError(f"expected {name} with one entry per instance, leading dimension {n}, got shape {a.shape}")
    return a


def _take(value: Any, a: int, b: int) -> Any:
    return value[a:b] if isinstance(value, np.ndarray) else value


def _take_x(x: Any, a: int, b: int) -> Any:
    return list(x[a:b]) if _is_images(x) else np.asarray(x)[a:b]


def _request_seed(seed: int, index: int) -> int:
    """The seed of request ``index`` of a split call: ``seed`` itself for the first (so a call that fits in one
    request matches an unsplit one), then a 31-bit number drawn from ``(seed, index)`` so requests differ."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, index]).generate_state(1)[0] >> 1)


def _bodies(
    x: Any,
    spans: list[tuple[int, int]],
    parameters: Mapping[str, Any],
    per_row: Mapping[str, Any],
    top: tuple[str, ...],
    row_offset: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One request body per span of ``x``: its instances, its slice of each per-row value (``top`` ones beside
    ``instances``, the others in ``parameters``), and its own seed; or, with ``row_offset``, the one seed
    and the global number of the span's first row (``parameters.row_offset``)."""
    for i, (a, b) in enumerate(spans):
        params = {k: _jsonable(v) for k, v in parameters.items() if v is not None}
        params.update({k: _jsonable(_take(v, a, b)) for k, v in per_row.items() if v is not None and k not in top})
        if row_offset is not None:
            if row_offset + a:
                params["row_offset"] = row_offset + a
        elif "seed" in params:
            params["seed"] = _request_seed(int(params["seed"]), i)
        body: dict[str, Any] = {"instances": encode_instances(_take_x(x, a, b)), "parameters": params}
        body.update({k: _jsonable(_take(v, a, b)) for k, v in per_row.items() if v is not None and k in top})
        yield body


# ----------------------------------------------------------------------------- verbs


def explanation(
    url: str,
    model: str,
    x: Shaped[np.ndarray, " n *features"] | Sequence[bytes],
    *,
    method: str = "integrated_gradients",
    target: Any = None,
    labels: Any = None,
    seed: int | None = None,
    output: Literal["npy", "json"] = "npy",
    timeout: float = 60,
    token: str | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    client: httpx.Client | None = None,
    **options: Any,
) -> Explanation:
    """Attributions of ``model``'s outputs at ``x`` computed by the service, with the deltas and predictions.

    The same result as calling the method in this process (e.g. :func:`explain.integrated_gradients`,
    ``∫₀¹ ∂F(x' + α(x − x'))/∂x dα · (x − x')`` for IG, Sundararajan et al., 2017), for the model the
    server serves under the name ``model``.

    Args:
      url: the service, e.g. ``"http://127.0.0.1:8080"``.
      model: a served model's name (:func:`models`).
      x: ``(N, *input_shape)`` numbers, or a list of ``N`` PNG/JPEG files' bytes (image models).
      method: a saliency method's registry name (``GET /v1/models/<model>`` lists the usable ones).
      target: ``"pred"`` (the server's default), a class index, one per instance ``(N,)``, or ``"loss"``
        (needs ``labels``).
      labels: ``(N,)`` true labels or targets.
      seed: the random methods' seed (instance ``i`` of a request draws from ``fold_in(key(seed), i)`` on the
        server, whatever else is batched with it). When ``x`` is split, request ``j > 0`` uses a seed drawn
        from ``(seed, j)``: random methods' results then depend on ``batch_size``, as
        :func:`explain.attribute_dataset`'s shards do.
      output: attributions returned as base64 ``.npy`` (exact, compact) or JSON lists.
      timeout: seconds for each request, and the longest wait between retries.
      token: the server's bearer token (``--token-file``), if it has one.
      batch_size: instances per request (default: all in one request).
      retries: how many times a request refused with ``503``/``429`` is sent again.
      client: an ``httpx.Client`` to send with (a pooled client, or ``fastapi.testclient.TestClient``), kept
        open, with its own timeouts; by default a new one per call, with ``timeout``.
      **options: the method's options (``steps``, ``n_samples``, ``baseline``, ``layer``, ``heatmap=True``,
        ...), validated by the server against the method's signature.

    Returns:
      :class:`Explanation`: ``values (N, *input_shape)``, ``convergence_delta (N,)`` or ``None``, ...

    Raises:
      ServiceError: a refused request (``422`` bad option or input, ``404`` unknown model, ``413`` too
        large, ``503`` still full after the retries, ``504`` deadline) with the server's message and field.
      ValueError: a bad argument here (``x`` not finite, per-instance ``target``/``labels`` of another length).
    """
    _check_call(url, timeout, retries, batch_size)
    n = _n_instances(x)
    per_row = {"target": _per_row("target", target, n), "labels": _per_row("labels", labels, n)}
    parameters = {"method": method, "seed": seed, "output": output, **options}
    bodies = _bodies(x, _spans(n, batch_size), parameters, per_row, top=())
    answers = _post(url, model, "explain", bodies, token=token, timeout=timeout, retries=retries, client=client)
    return _explanation(answers)


def _explanation(answers: list[dict[str, Any]]) -> Explanation:
    rows = [e for a in answers for e in a["explanations"]]
    values = [decode_array(e["attribution"], f"explanations[{i}].attribution") for i, e in enumerate(rows)]
    deltas = [e.get("convergence_delta") for e in rows]
    heatmaps = [e.get("heatmap_png_b64") for e in rows]
    return Explanation(
        values=np.stack(values) if values else np.zeros((0,)),
        convergence_delta=None if any(d is None for d in deltas) else np.asarray(deltas, np.float64),
        predictions=np.concatenate([np.asarray(a["predictions"]) for a in answers]),
        heatmaps=None if any(h is None for h in heatmaps) else tuple(base64.b64decode(h) for h in heatmaps),
        method=str(answers[0].get("method", "")),
        options=dict(answers[0].get("options", {})),
    )


# Methods that draw baselines from a reference set (the registry's ``needs_references``; a test checks).
REFERENCE_METHODS = frozenset({"expected_gradients", "gradient_shap"})


def attribute(
    url: str,
    model: str,
    x: Shaped[np.ndarray, " n *features"],
    *,
    method: str = "integrated_gradients",
    target: Any = None,
    labels: Any = None,
    seed: int | None = None,
    row_offset: int = 0,
    references: Shaped[np.ndarray, " m *features"] | None = None,
    batch: int = 32,
    concurrency: int = 4,
    timeout: float = 60,
    token: str | None = None,
    retries: int = 10,
    client: httpx.Client | None = None,
    **options: Any,
) -> Explanation:
    """Attributions of a whole array (or a shard of one) computed remotely: what a batch job calls.

    ``x`` is sent in requests of ``batch`` rows, at most ``concurrency`` in flight at once (each retried on
    ``503``/``429`` after the server's ``Retry-After``, at most ``retries`` times); the answers are put back
    in row order. Every request carries the one ``seed`` and its first row's global number
    (``parameters.row_offset = row_offset + start``): the server draws row ``r`` of a random method from
    ``fold_in(fold_in(jax.random.key(seed), s), r)``, as one library call on the whole array does. So the
    result does not depend on ``batch`` or ``concurrency``, and a shard ``x = x_all[a:b]`` sent with
    ``row_offset=a`` gets rows ``a:b`` of the result for ``x_all``:
    ``registry.call(method, model, x_all, key=jax.random.key(seed), **options)`` (IG to float32 rounding,
    ``∫₀¹ ∂F(x' + α(x − x'))/∂x dα · (x − x')``, Sundararajan et al., 2017). Methods whose draws are
    shaped by the whole call (IG's ``baseline="uniform"``) are refused by the server (``422`` naming
    ``parameters.row_offset``) when split.

    Args:
      url, model, method, target, labels, token, timeout: as :func:`explanation`.
      x: ``(N, *input_shape)`` numbers, rows ``row_offset .. row_offset + N - 1`` of the job.
      seed: the random methods' seed, the same for every request.
      row_offset: the global number of ``x``'s first row (a shard's start).
      references: Expected Gradients' reference set ``(m, *input_shape)``; default ``x`` itself, sent with
        every request (the library's default for one call on ``x``; pass the job's references for a shard).
      batch: rows per request (at most the server's ``--max-instances``).
      concurrency: requests in flight at once (the server batches concurrent ones into one compiled call).
      retries: how many times a request refused with ``503``/``429`` is sent again.
      client: an ``httpx.Client`` (thread-safe; kept open), e.g. ``fastapi.testclient.TestClient``.
      **options: the method's options, validated by the server.

    Returns:
      :class:`Explanation` with ``values (N, *input_shape)``, ``convergence_delta (N,)`` or ``None`` and
      ``predictions (N, K)``, in the order of ``x``.

    Raises:
      ServiceError: the first refused request (others in flight finish, later ones are not sent).
      ValueError: a bad argument here.

    Example:
      >>> e = attribute(url, "digits_cnn", x[1000:2000], row_offset=1000, method="smoothgrad", seed=0)
    """
    _check_call(url, timeout, retries, batch)
    if not (isinstance(row_offset, int) and row_offset >= 0):
        raise ValueError(f"expected row_offset >= 0 (the global number of x's first row), got {row_offset!r}")
    if not (isinstance(concurrency, int) and concurrency >= 1):
        raise ValueError(f"expected concurrency >= 1 requests in flight, got {concurrency!r}")
    if _is_images(x):
        raise ValueError("expected x as an (N, *input_shape) array; attribute sends numbers, not image files")
    n = _n_instances(x)
    if references is None and method in REFERENCE_METHODS:
        references = np.asarray(x)
    per_row = {"target": _per_row("target", target, n), "labels": _per_row("labels", labels, n)}
    parameters = {"method": method, "seed": seed, "output": "npy", "references": references, **options}
    bodies = list(_bodies(x, _spans(n, batch), parameters, per_row, top=(), row_offset=row_offset))
    target_url, headers = f"{_model_url(url, model)}:explain", _auth(token)
    with _session(client, timeout) as c, concurrent.futures.ThreadPoolExecutor(concurrency) as pool:

        def send(body: dict[str, Any]) -> dict[str, Any]:
            return _request(c, "POST", target_url, headers=headers, body=body, retries=retries, timeout=timeout)

        futures = [pool.submit(send, b) for b in bodies]
        try:
            answers = [f.result() for f in futures]
        except BaseException:
            for f in futures:  # the first failure is raised; requests not yet sent are not sent
                f.cancel()
            raise
    return _explanation(answers)


def explain(
    url: str,
    model: str,
    x: Shaped[np.ndarray, " n *features"] | Sequence[bytes],
    *,
    method: str = "integrated_gradients",
    target: Any = None,
    labels: Any = None,
    seed: int | None = None,
    output: Literal["npy", "json"] = "npy",
    timeout: float = 60,
    token: str | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    client: httpx.Client | None = None,
    **options: Any,
) -> Float[np.ndarray, " n *features"]:
    """The attributions alone, ``(N, *input_shape)``: :func:`explanation`'s ``values`` (arguments there)."""
    return explanation(
        url,
        model,
        x,
        method=method,
        target=target,
        labels=labels,
        seed=seed,
        output=output,
        timeout=timeout,
        token=token,
        batch_size=batch_size,
        retries=retries,
        client=client,
        **options,
    ).values


def predict(
    url: str,
    model: str,
    x: Shaped[np.ndarray, " n *features"] | Sequence[bytes],
    *,
    timeout: float = 60,
    token: str | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    client: httpx.Client | None = None,
) -> Prediction:
    """The model's outputs at ``x`` (``(N, *input_shape)`` or PNG/JPEG bytes): :class:`Prediction`.

    Arguments as :func:`explanation`; raises :class:`ServiceError` on a refused request.
    """
    _check_call(url, timeout, retries, batch_size)
    bodies = ({"instances": encode_instances(_take_x(x, a, b))} for a, b in _spans(_n_instances(x), batch_size))
    answers = _post(url, model, "predict", bodies, token=token, timeout=timeout, retries=retries, client=client)
    has = all("probabilities" in a for a in answers)
    named = all("classes" in a for a in answers)
    return Prediction(
        outputs=np.concatenate([np.asarray(a["predictions"]) for a in answers]),
        probabilities=np.concatenate([np.asarray(a["probabilities"]) for a in answers]) if has else None,
        classes=tuple(str(c) for a in answers for c in a["classes"]) if named else None,
    )


def attack(
    url: str,
    model: str,
    x: Shaped[np.ndarray, " n *features"] | Sequence[bytes],
    *,
    attack: Literal["fgsm", "pgd", "apgd"],
    eps: float,
    norm: Literal["linf", "l2"] = "linf",
    labels: Any = None,
    steps: int | None = None,
    seed: int | None = None,
    output: Literal["npy", "json"] = "npy",
    timeout: float = 60,
    token: str | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    client: httpx.Client | None = None,
    **options: Any,
) -> AttackOutput:
    """An adversarial ``x_adv`` with ``‖x_adv − x‖ ≤ eps`` in ``norm`` (FGSM, Goodfellow et al., 2015; PGD,
    Madry et al., 2018; APGD, Croce & Hein, 2020), computed by the service: :class:`AttackOutput`.

    Args:
      attack, eps, norm, steps: the attack, its budget and its iterations (``steps`` for PGD and APGD).
      labels: ``(N,)`` true labels (default: the model's predictions, on the server).
      seed: random start; split calls derive one seed per request as in :func:`explanation`.
      **options: further attack parameters, validated by the server.

    Other arguments as :func:`explanation`; raises :class:`ServiceError` on a refused request.
    """
    _check_call(url, timeout, retries, batch_size)
    n = _n_instances(x)
    parameters = {"attack": attack, "eps": eps, "norm": norm, "steps": steps, "seed": seed, "output": output}
    per_row = {"labels": _per_row("labels", labels, n)}
    bodies = _bodies(x, _spans(n, batch_size), {**parameters, **options}, per_row, top=("labels",))
    answers = _post(url, model, "attack", bodies, token=token, timeout=timeout, retries=retries, client=client)

    def joined(name: str) -> np.ndarray:
        return np.concatenate([decode_array(a[name], name) for a in answers])

    return AttackOutput(
        x_adv=joined("adversarial"),
        norms=joined("norms"),
        predictions_before=joined("predictions_before"),
        predictions_after=joined("predictions_after"),
        success=joined("success").astype(bool),
    )


def models(url: str, *, timeout: float = 60, token: str | None = None, client: httpx.Client | None = None) -> list[str]:
    """The names of the served models (``GET /v1/models``)."""
    _check_call(url, timeout, 0, None)
    with _session(client, timeout) as c:
        answer = _request(c, "GET", f"{url.rstrip('/')}/v1/models", headers=_auth(token), retries=0, timeout=timeout)
    return [str(m) for m in answer["models"]]


def model_info(
    url: str, model: str, *, timeout: float = 60, token: str | None = None, client: httpx.Client | None = None
) -> dict[str, Any]:
    """What the service says of ``model`` (``GET /v1/models/<model>``): ``ready``, ``input_shape``,
    ``value_range``, ``output_kind``, ``class_names``, ``methods`` usable on it, ..."""
    _check_call(url, timeout, 0, None)
    with _session(client, timeout) as c:
        return _request(c, "GET", _model_url(url, model), headers=_auth(token), retries=0, timeout=timeout)


__all__ = [
    "REFERENCE_METHODS",
    "AttackOutput",
    "Explanation",
    "Prediction",
    "ServiceError",
    "attack",
    "attribute",
    "decode_array",
    "decode_npy",
    "encode_instances",
    "encode_npy",
    "explain",
    "explanation",
    "model_info",
    "models",
    "predict",
]
