"""The gRPC port: KServe v2 and Triton's extras (`grpc_v2`), TF Serving (`grpc_tfserving`).

It is a ``grpc.aio`` server in the event loop of the HTTP server (uvicorn's,
uvloop when installed), started and stopped by the app's lifespan: both
protocols share the registry and the micro-batchers, so a model uploaded over
HTTP is served over gRPC at once, and concurrent requests of either protocol
are batched together. Errors and the token: `grpc_methods`. A method of
Triton's service that is not served (shared memory, model load and unload,
streaming, trace and log settings) answers UNIMPLEMENTED, gRPC's answer to a
method that no handler serves.
"""

from __future__ import annotations

import logging

import grpc

from .grpc_methods import Backend
from .grpc_tfserving import tf_serving_methods
from .grpc_v2 import v2_methods

__all__ = ["start_grpc"]

log = logging.getLogger(__name__)


def __dir__() -> list[str]:
    return __all__


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_grpc(
    app: Backend, host: str, port: int, reuse_port: bool
) -> tuple[grpc.aio.Server, int]:
    """Serve the app's models over gRPC on ``host:port`` in the running event loop.

    Returns the started server and its port (a free one when ``port`` is 0).
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.max_receive_message_length", app.max_upload),
            ("grpc.max_send_message_length", -1),
        ]
    )
    for service, methods in (v2_methods(app), tf_serving_methods(app)):
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, methods)])
        server.add_registered_method_handlers(service, methods)
    bound = server.add_insecure_port(_address(host, port))
    await server.start()
    log.info("serving gRPC on %s", _address(host, bound))
    return server, bound
