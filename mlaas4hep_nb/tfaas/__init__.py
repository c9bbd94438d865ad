"""The inference layer: a TFaaS-compatible server and a client for any TFaaS endpoint.

``TFaaSClient`` pushes bundles to and queries the upstream Go TFaaS or this
package's own server; ``serve_in_background`` starts that server in a thread
(for notebooks and tests) and ``serve`` runs it in the foreground. Names are
imported on first use: the client never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TFaaSClient": "client",
    "TFaaSError": "errors",
    "ServerHandle": "serve",
    "serve": "serve",
    "serve_in_background": "serve",
    "create_app": "server",
    "pack_bundle": "pack",
}

__all__ = [
    "ServerHandle",
    "TFaaSClient",
    "TFaaSError",
    "create_app",
    "pack_bundle",
    "serve",
    "serve_in_background",
]

if TYPE_CHECKING:
    from .client import TFaaSClient
    from .errors import TFaaSError
    from .pack import pack_bundle
    from .serve import ServerHandle, serve, serve_in_background
    from .server import create_app


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
