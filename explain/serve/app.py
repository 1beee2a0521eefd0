"""The FastAPI app: KServe V1 routes over the batcher, structured errors, limits, auth and metrics.

Routes (see ``/docs``)::

    GET  /healthz                     liveness: {"status": "alive"} (no token needed)
    GET  /readyz                      200 once every model is loaded (and warmed up with --warmup), else 503
    GET  /v1/models                   {"models": [names]}
    GET  /v1/models/{name}            input shape, value range, output kind, class/feature names, methods
    POST /v1/models/{name}:predict    {"instances": [...]} -> {"predictions", "probabilities", "classes"}
    POST /v1/models/{name}:explain    + {"parameters": {"method", "target", options...}} -> {"explanations", ...}
    POST /v1/models/{name}:attack     + {"parameters": {"attack", "eps", "norm", ...}} -> {"adversarial", ...}
    GET  /metrics                     Prometheus text

Every error is ``{"error": {"code", "message", "field"}}``: ``422`` bad input (FastAPI's own validation
errors included, in this shape), ``401`` missing token, ``404`` unknown model or route, ``413`` body too
large, ``503`` + ``Retry-After`` queue full, ``504`` deadline, ``500`` a bug (logged here with its
traceback; the client gets one line, never the traceback).

Example::

    app = create_app(["digits_cnn", "friedman1_mlp"], settings=Settings(max_batch=16))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from explain import images, specs
from explain.saliency import registry
from explain.serve import payloads, schemas, work
from explain.serve.batcher import Batcher
from explain.serve.errors import ServeError
from explain.serve.metrics import Metrics
from explain.serve.settings import Settings

log = logging.getLogger("explain.serve")
_MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?::(?P<verb>[A-Za-z]+))?$")
_OPEN_PATHS = ("/healthz",)
_CLIENT_GONE = 499  # nginx's "client closed request": counted in the metrics, never sent to anyone
_ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 413, 422, 503, 504)}


@dataclasses.dataclass
class _State:
    served: dict[str, work.Served]
    settings: Settings
    metrics: Metrics
    batcher: Batcher | None = None
    ready: bool = False


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": status, "message": " ".join(str(message).split()), "field": field}}


def _error_response(e: ServeError) -> JSONResponse:
    return JSONResponse(error_body(e.status, e.message, e.field), status_code=e.status, headers=e.headers)


def _field(loc: Sequence[Any]) -> str | None:
    """pydantic's location ``("body", "parameters", "steps")`` as ``"parameters.steps"``, ``instances[3]`` for
    indices; union members' tags (``"list[int]"``, ``"NpyArray"``) are left out."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and not part[:1].isupper():
            out += f".{part}" if out else part
    return out or None


def load(model_specs: Sequence[str | specs.Resolved]) -> dict[str, work.Served]:
    """Resolves every spec; two models of the same name are refused (``ValueError``), as is none at all."""
    if not model_specs:
        raise ValueError("expected at least one model to serve")
    served: dict[str, work.Served] = {}
    for spec in model_specs:
        resolved = spec if isinstance(spec, specs.Resolved) else specs.resolve(spec)
        if resolved.name in served:
            raise ValueError(
                f"two models are named {resolved.name!r} ({served[resolved.name].resolved.spec!r} and "
                f"{resolved.spec!r}); URLs use the name, so each served model needs its own"
            )
        served[resolved.name] = work.serve(resolved)
    return served


class Guard:
    """The outermost ASGI layer: bearer token, body size, request metrics and the catch-all for bugs.

    The body is read here (at most ``max_body_bytes`` + 1 bytes, or refused from ``Content-Length``
    unread) and replayed to the app; after it, ``receive`` is the server's, so the app still sees the
    client's disconnect.
    """

    def __init__(self, app: Any, state: _State):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, responded = time.perf_counter(), [500], [False]
        scope.setdefault("state", {})
        model, verb = self._labels(scope["path"])

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0], responded[0] = message["status"], True
            await send(message)

        try:
            refused = self._refuse(scope)
            if refused is None and scope["method"] in ("POST", "PUT", "PATCH"):
                refused, receive = await self._buffer(scope, receive)
            if refused is not None:
                await refused(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not responded[0]:  # nothing sent yet (a bug after the response started cannot be answered)
                body = error_body(500, "internal server error; the server's log has the details")
                await JSONResponse(body, status_code=500)(scope, receive, send_status)
        finally:
            metrics = self.state.metrics
            metrics.requests.labels(model, verb, str(status[0])).inc()
            method = scope["state"].get("method")
            if method is not None:
                metrics.latency.labels(model, verb, method).observe(time.perf_counter() - started)

    def _labels(self, path: str) -> tuple[str, str]:
        """``(model, verb)`` for the metrics; unknown model names are pooled (a client cannot grow the labels)."""
        m = _MODEL_PATH.match(path)
        if m is None:
            return "", path if path in ("/healthz", "/readyz", "/metrics", "/v1/models") else "other"
        name = m["name"] if m["name"] in self.state.served else "unknown"
        return name, m["verb"] or "info"

    def _refuse(self, scope: dict) -> Response | None:
        settings = self.state.settings
        if settings.token is not None and scope["path"] not in _OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            expected = f"Bearer {settings.token}".encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    error_body(401, "missing or wrong bearer token (header Authorization: Bearer <token>)"),
                    status_code=401, headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return self._too_large(int(length))
        return None

    def _too_large(self, size: int | None) -> Response:
        limit = self.state.settings.max_body_bytes
        what = f"{size:,} bytes" if size is not None else "more"
        return JSONResponse(error_body(413, f"the body is {what}; the limit is {limit:,} bytes"), status_code=413)

    async def _buffer(self, scope: dict, receive: Any) -> tuple[Response | None, Any]:
        limit, chunks, size = self.state.settings.max_body_bytes, [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return Response(status_code=_CLIENT_GONE), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return self._too_large(None), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        return None, replayed


async def _until_disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(model_specs: Sequence[str | specs.Resolved], *, settings: Settings | None = None) -> FastAPI:
    """The explanation service for ``model_specs`` (spec strings or resolved specs), limits from ``settings``.

    Models are resolved here (a bad spec raises :class:`explain.specs.SpecError` before anything is served);
    the batcher starts with the app's lifespan, and with ``settings.warmup`` readiness turns true once every
    model's predict and warm-up methods are compiled at every bucket. Shutdown finishes the admitted requests.

    Raises:
      ValueError: no model, or two models of the same name.
    """
    settings = settings or Settings()
    state = _State(load(model_specs), settings, Metrics(), ready=not settings.warmup)
    run = functools.partial(work.run_jobs, bucket=settings.bucket)

    async def warm_up() -> None:
        try:
            for served in state.served.values():
                t0 = time.perf_counter()
                calls = await state.batcher.call(work.warm_up, served, settings, lambda job: run([job]))
                log.info("warmed up %s: %d calls in %.1f s", served.name, calls, time.perf_counter() - t0)
            state.ready = True
        except Exception:
            log.exception("warm-up failed; /readyz stays 503")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        m = state.metrics
        state.batcher = Batcher(
            run, max_batch=settings.max_batch, max_delay_s=settings.max_delay_ms / 1000, max_queue=settings.max_queue,
            retry_after_s=settings.retry_after_s,
            on_batch=functools.partial(_observe_batch, m), on_depth=m.queue_depth.set,
        )  # fmt: skip
        state.batcher.start()
        warming = asyncio.get_running_loop().create_task(warm_up()) if settings.warmup else None
        try:
            yield
        finally:
            await state.batcher.drain()
            if warming is not None:
                await warming
            m.close()

    app = FastAPI(
        title="explain: explanations over HTTP",
        description="KServe V1 data plane (predict) with explain and attack verbs, batched into compiled calls.",
        lifespan=lifespan,
    )
    app.state.serve = state
    app.add_middleware(Guard, state=state)

    @app.exception_handler(ServeError)
    async def on_serve_error(request: Request, e: ServeError) -> JSONResponse:
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"msg": "invalid request", "loc": ()}
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and kind != "application/json":
            # FastAPI reads a body as JSON only when it says so; without the header it is a bare string.
            got = f"Content-Type {kind!r}" if kind else "no Content-Type"
            message = f"expected a JSON body with Content-Type: application/json, got {got}"
            return JSONResponse(error_body(422, message, "Content-Type"), status_code=422)
        field = _field(first.get("loc", ()))
        message = f"{field}: {first['msg']}" if field else first["msg"]
        return JSONResponse(error_body(422, message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code, headers=e.headers)

    def served_model(name: str) -> work.Served:
        if name not in state.served:
            raise ServeError(404, f"unknown model {name!r}; served: {sorted(state.served)}", "name")
        return state.served[name]

    def instances(served: work.Served, value: Any) -> np.ndarray:
        return payloads.decode_instances(
            value, served.model, max_instances=settings.max_instances,
            max_image_bytes=min(images.MAX_UPLOAD_BYTES, settings.max_body_bytes),
        )  # fmt: skip

    async def submit(request: Request, job: work.Job) -> Any:
        """The job's result; a client that disconnects meanwhile frees its slot (and gets nothing)."""
        request.state.method = job.method or job.verb
        task = asyncio.ensure_future(state.batcher.submit(job.group, job.rows, job, timeout_s=settings.timeout_s))
        gone = asyncio.ensure_future(_until_disconnected(request.receive))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)  # its slot is free once this returns
        if task.cancelled():
            return None
        result = task.result()  # raises the request's ServeError
        if isinstance(result, ServeError):
            raise result
        return result

    @app.get("/healthz", response_model=schemas.Health, tags=["health"])
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/readyz", response_model=schemas.Health, tags=["health"], responses={503: {"model": schemas.Health}})
    async def readyz() -> Response:
        """Readiness: 200 once every model is loaded and (with --warmup) compiled at every batch size."""
        if state.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/v1/models", response_model=schemas.ModelList, tags=["models"])
    async def models() -> dict:
        """The served models' names."""
        return {"models": list(state.served)}

    @app.post("/v1/models/{name}:predict", response_model=schemas.PredictResponse, tags=["verbs"],
              responses=_ERRORS)  # fmt: skip
    async def predict(name: str, body: schemas.PredictRequest, request: Request) -> Response:
        """The model's outputs; for classifiers also the probabilities and the predicted class names."""
        served = served_model(name)
        if body.parameters:
            key = sorted(body.parameters)[0]
            raise ServeError(422, f"predict takes no parameters, got {key!r}", f"parameters.{key}")
        outputs = await submit(request, work.Job(served, "predict", instances(served, body.instances)))
        if outputs is None:
            return Response(status_code=_CLIENT_GONE)
        return JSONResponse(_predictions(served, outputs))

    @app.post("/v1/models/{name}:explain", response_model=schemas.ExplainResponse, tags=["verbs"],
              responses=_ERRORS)  # fmt: skip
    async def explain(name: str, body: schemas.ExplainRequest, request: Request) -> Response:
        """Attributions of ``parameters.method`` (a registry method) for each instance, with its options."""
        served = served_model(name)
        x = instances(served, body.instances)
        params = body.parameters.model_dump(exclude_unset=True)
        params.update(body.parameters.model_extra or {})
        job = work.explain_job(served, x, params, settings)
        result = await submit(request, job)
        if result is None:
            return Response(status_code=_CLIENT_GONE)
        p = body.parameters
        return JSONResponse(_explanations(job, result, output=p.output, heatmap=p.heatmap))

    @app.post("/v1/models/{name}:attack", response_model=schemas.AttackResponse, tags=["verbs"],
              responses=_ERRORS)  # fmt: skip
    async def attack(name: str, body: schemas.AttackRequest, request: Request) -> Response:
        """An adversarial input per instance (FGSM, PGD or APGD within ε), its norm and the predictions."""
        served = served_model(name)
        x = instances(served, body.instances)
        params = {**body.parameters.model_dump(), **(body.parameters.model_extra or {})}
        labels = body.labels.model_dump() if isinstance(body.labels, schemas.NpyArray) else body.labels
        job = work.attack_job(served, x, labels, params, settings)
        r = await submit(request, job)
        if r is None:
            return Response(status_code=_CLIENT_GONE)
        return JSONResponse({
            "adversarial": payloads.encode(r.x_adv, body.parameters.output),
            "norms": r.norms.tolist(),
            "predictions_before": r.outputs_clean.tolist(),
            "predictions_after": r.outputs_adv.tolist(),
            "success": r.success.astype(bool).tolist(),
        })  # fmt: skip

    @app.post("/v1/models/{name}:{verb}", include_in_schema=False)
    async def unknown_verb(name: str, verb: str) -> None:
        served_model(name)
        raise ServeError(404, f"unknown verb {verb!r}; expected predict, explain or attack", "verb")

    @app.get("/v1/models/{name}", response_model=schemas.ModelInfo, tags=["models"], responses=_ERRORS)
    async def model_info(name: str) -> dict:
        """What the model takes and returns, and the methods it can run."""
        served = served_model(name)
        spec = served.model.input_spec
        return {
            "name": served.name,
            "ready": state.ready,
            "input_shape": list(spec.shape),
            "value_range": None if spec.value_range is None else list(spec.value_range),
            "output_kind": served.model.output_kind,
            "class_names": None if served.class_names is None else list(served.class_names),
            "feature_names": None if spec.feature_names is None else list(spec.feature_names),
            "methods": list(served.methods),
        }

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (text format)."""
        return Response(state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return app


def _observe_batch(metrics: Metrics, jobs: list[work.Job], rows: int) -> None:
    job = jobs[0]
    labels = (job.served.name, job.verb, job.method or job.verb)
    metrics.batch_rows.labels(*labels).observe(rows)
    metrics.batch_requests.labels(*labels).observe(len(jobs))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _predictions(served: work.Served, outputs: np.ndarray) -> dict[str, Any]:
    body: dict[str, Any] = {"predictions": outputs.tolist()}
    if served.model.output_kind == "classification":
        names = served.class_names or tuple(map(str, range(outputs.shape[1])))
        body["probabilities"] = _softmax(outputs.astype(np.float64)).tolist()
        body["classes"] = [names[int(i)] for i in outputs.argmax(axis=1)]
    return body


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return f"array of shape {list(value.shape)}"
    if isinstance(value, tuple):
        return list(value)
    return value


def _explanations(job: work.Job, r: work.Explained, *, output: str, heatmap: bool) -> dict[str, Any]:
    signed = registry.METHODS[job.method].signed
    items = []
    for i in range(r.values.shape[0]):
        item: dict[str, Any] = {"attribution": payloads.encode(r.values[i], output)}
        if r.delta is not None:
            item["convergence_delta"] = r.delta[i].tolist()
        if heatmap:
            item["heatmap_png_b64"] = work.heatmap_png_b64(r.values[i], signed=signed)
        items.append(item)
    options = {k: _jsonable(v) for k, v in r.options.items()}
    return {"predictions": r.outputs.tolist(), "explanations": items, "method": job.method, "options": options}
