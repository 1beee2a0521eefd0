"""``python -m explain serve``: explanations over HTTP (KServe V1 predict, plus explain and attack), batched.

Examples (one model on loopback; two models warmed up before readiness; batching off; a token for other hosts)::

    python -m explain serve --model digits_cnn
    python -m explain serve --model shapes_cnn --model friedman1_mlp --warmup --port 8080
    python -m explain serve --model shapes_cnn --max-batch 1 --max-delay-ms 0
    python -m explain serve --model shapes_cnn --max-steps 256 --max-samples 64 --max-instances 64
    python -m explain serve --model shapes_cnn --host 0.0.0.0 --token-file /run/secrets/explain-token

Then ``curl localhost:8080/v1/models/digits_cnn`` and ``POST /v1/models/digits_cnn:explain`` with
``{"instances": [...], "parameters": {"method": "integrated_gradients", "steps": 32}}``; the routes and
every field are at ``/docs``. SIGTERM (or Ctrl+C) finishes the requests in flight, then exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from pathlib import Path
from typing import Any

from explain.cli import _args

_LOOPBACK_NAMES = ("localhost",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="SPEC",
        help=_args.model_help("digits_cnn") + "; repeat to serve several (each under its own name)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; other than loopback needs --token-file")
    parser.add_argument("--port", type=_args.at_least(0), default=8080, help="TCP port (0: any free port)")
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="compile predict, vanilla_gradient and integrated_gradients at every batch size before /readyz "
        "answers 200 (default: compile on first use; ready at once)",
    )
    parser.add_argument(
        "--max-batch", type=_args.at_least(1), default=32, help="most rows per compiled call (1: no batching)"
    )
    parser.add_argument(
        "--max-delay-ms",
        type=_non_negative,
        default=5.0,
        help="how long a request waits for others to batch with",
    )
    parser.add_argument(
        "--max-queue", type=_args.at_least(1), default=256, help="requests waiting before 503 + Retry-After"
    )
    parser.add_argument("--timeout-s", type=_args.positive_float, default=30.0, help="per-request deadline (504)")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="a file holding the bearer token every endpoint but /healthz then requires "
        "(default: no token; loopback only)",
    )
    parser.add_argument("--max-body-mb", type=_args.positive_float, default=16.0, help="largest request body (413)")
    caps = parser.add_argument_group("per-request caps (a request over one gets 422 naming the cap and its flag)")
    caps.add_argument("--max-instances", type=_args.at_least(1), default=256, metavar="N", help="instances per request")
    caps.add_argument(
        "--max-steps",
        type=_args.at_least(1),
        default=1024,
        metavar="N",
        help="path methods' steps, start_steps and max_steps, and the attack iterations (steps) of pgd and apgd",
    )
    caps.add_argument(
        "--max-samples", type=_args.at_least(1), default=256, metavar="N",
        help="n_samples of the random methods (smoothgrad, vargrad, expected_gradients, gradient_shap, ...)",
    )  # fmt: skip
    caps.add_argument(
        "--max-rows-per-instance", type=_args.at_least(1), default=8192, metavar="N",
        help="model rows one instance may cost in one call (e.g. smoothgrad's n_samples x the wrapped IG's steps), "
        "so combinations of options cannot get round the other caps",
    )  # fmt: skip
    caps.add_argument("--max-restarts", type=_args.at_least(1), default=10, metavar="N", help="attack restarts")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path | None, host: str) -> str | None:
    """The bearer token from ``path``; :class:`_args.UsageError` for a non-loopback ``host`` without one."""
    if path is None:
        if not is_loopback(host):
            raise _args.UsageError(
                f"--host {host} accepts connections from other machines: give --token-file PATH "
                "(a bearer token), or bind to 127.0.0.1"
            )
        return None
    try:
        token = path.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise _args.UsageError(f"argument --token-file: cannot read {str(path)!r}: {e}") from None
    if not token or any(c.isspace() for c in token):
        raise _args.UsageError(f"argument --token-file: {str(path)!r} must hold one token (no spaces), got none")
    return token


def _finish_on_sigterm() -> None:
    """uvicorn re-raises the signal that stopped it once it has shut down gracefully; with this handler a
    SIGTERM then ends the process with status 0 (a clean shutdown, as for Ctrl+C) instead of killing it."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)


def make_settings(args: argparse.Namespace, token: str | None) -> Any:
    """The :class:`explain.serve.Settings` of the parsed flags (imports no JAX)."""
    from explain.serve.settings import Settings

    return Settings(
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_instances=args.max_instances,
        max_steps=args.max_steps,
        max_samples=args.max_samples,
        max_rows_per_instance=args.max_rows_per_instance,
        max_restarts=args.max_restarts,
        token=token,
        warmup=args.warmup,
    )


def run(args: argparse.Namespace) -> int:
    token = read_token(args.token_file, args.host)
    import uvicorn

    from explain.serve import create_app

    settings = make_settings(args, token)
    try:
        app = create_app(args.model, settings=settings)
    except ValueError as e:
        if type(e) is not ValueError:  # SpecError and friends: reported by the command line as they are
            raise
        raise _args.UsageError(str(e)) from None
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=int(args.timeout_s) + 1
    )
    server = uvicorn.Server(config)
    _finish_on_sigterm()
    server.run()
    if not server.started:
        print(f"could not start the server on {args.host}:{args.port} (see the log above)", file=sys.stderr)
        return 1
    return 0
