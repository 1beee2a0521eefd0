"""The errors a request can get: an HTTP status, a one-line message and the field that was wrong."""

from __future__ import annotations


class ServeError(Exception):
    """A request the server refuses; rendered as ``{"error": {"code", "message", "field"}}``.

    Attributes:
      status: the HTTP status (``422`` bad input, ``404`` unknown model, ``503`` queue full, ...).
      message: one line for the client.
      field: where the problem is, e.g. ``"instances[3]"`` or ``"parameters.steps"``, or ``None``.
      headers: extra response headers (``Retry-After``).
    """

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())  # one line, whatever the library's message looked like
        self.field = field
        self.headers = headers or {}


def invalid(message: str, field: str | None) -> ServeError:
    """``422``: the request is well-formed JSON but its content cannot be used."""
    return ServeError(422, message, field)


class QueueFull(ServeError):
    """``503`` with ``Retry-After``: the bounded queue is full (or the server is shutting down)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(503, message, None, {"Retry-After": str(retry_after_s)})


class DeadlineExceeded(ServeError):
    """``504``: the request did not finish within the server's deadline."""

    def __init__(self, timeout_s: float):
        super().__init__(504, f"the request did not finish within the server's deadline of {timeout_s:g} s")
