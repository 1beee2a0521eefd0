"""The explanation service over HTTP: KServe V1 ``predict`` plus ``explain`` and ``attack``, batched.

``python -m explain serve --model SPEC`` runs :func:`create_app` under uvicorn; see :mod:`explain.serve.app`
for the routes, :mod:`explain.serve.batcher` for the dynamic batching and :mod:`explain.serve.work` for
the library calls behind each verb.
"""

from explain.serve.app import create_app
from explain.serve.errors import ServeError
from explain.serve.settings import Settings

__all__ = ["ServeError", "Settings", "create_app"]
