"""Errors of the serving layer: one for the client, one that the server turns into a reply."""

from __future__ import annotations

__all__ = ["RequestError", "TFaaSError"]


def __dir__() -> list[str]:
    return __all__


class TFaaSError(RuntimeError):
    """A TFaaS server answered with an error, or could not be reached.

    Attributes
    ----------
    status : the HTTP status code (0 when no answer came back).
    message : the server's ``error`` text, or (status 0) one line saying which
        server could not be reached and why.
    url : the URL of the request.
    """

    def __init__(self, status: int, message: str, url: str = "") -> None:
        self.status = status
        self.message = message
        self.url = url
        where = f" from {url}" if url else ""
        # without an answer, the message says which server it could not reach
        super().__init__(f"HTTP {status}{where}: {message}" if status else message)


class RequestError(Exception):
    """Bad input to the server: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)
