"""The inference layer: a TFaaS-compatible server and a client for any TFaaS endpoint.

``TFaaSClient`` pushes bundles to and queries the upstream Go TFaaS or this
package's own server; ``serve_in_background`` starts that server in a thread
(for notebooks and tests) and ``serve`` runs it in the foreground. Names are
imported on first use: the client never imports TensorFlow.

What lives where
----------------
The client side, at this level (no TensorFlow, no web framework)::

    client.py   TFaaSClient: push, list, delete, predict over HTTP
    errors.py   TFaaSError (what the client raises); RequestError (what the
                server answers as {"error": ...} with a status)
    names.py    which model names are valid (each becomes a folder)
    pack.py     a bundle folder -> the .tar.gz that every TFaaS loads
    unpack.py   safe extraction of uploaded tar and zip archives

The server side, in ``server/`` (see its docstring for the request path)::

    server/run.py   serve, serve_in_background, ServerHandle: uvicorn around the app
    server/app.py   TFaaSApp, create_app: the ASGI app and its routes
    server/...      the model store, model loading, batching, decoding, uploads

The arrows
----------
``server`` imports the client side's shared modules (errors, names, pack,
unpack), the data layer (``bundle``, ``convert``, ``specs``) and the hooks
into third-party internals in ``mlaas4hep_nb._compat``; the client side never
imports ``server``. Nothing outside this package imports ``server`` but
through the names below (and the CLI's ``serve``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TFaaSClient": "client",
    "TFaaSError": "errors",
    "ServerHandle": "server.run",
    "serve": "server.run",
    "serve_in_background": "server.run",
    "create_app": "server.app",
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
    from .server.app import create_app
    from .server.run import ServerHandle, serve, serve_in_background


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
