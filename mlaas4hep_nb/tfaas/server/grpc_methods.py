"""One gRPC method of the port: the app's token rule, and errors as status codes.

Errors are `RequestError`s mapped to status codes: 400 INVALID_ARGUMENT, 401
UNAUTHENTICATED, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED; any other exception
is logged and answers INTERNAL. The token rule is HTTP's: nothing over gRPC
changes the models, so a token guards gRPC only with ``token_all``, and then
every call but ServerLive and ServerReady needs the metadata
``authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from ..errors import RequestError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from .batching import MicroBatcher
    from .model import ServedModel
    from .registry import ModelRegistry
    from .stats import InferenceStats

__all__ = ["Backend", "Method", "unary"]

log = logging.getLogger(__name__)

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def __dir__() -> list[str]:
    return __all__


class Backend(Protocol):
    """What the gRPC services use of the app that starts them (`TFaaSApp`)."""

    registry: ModelRegistry
    stats: InferenceStats
    executor: Executor
    token: bytes | None
    token_all: bool
    max_rows: int
    max_upload: int

    def batcher_of(self, name: str) -> MicroBatcher | None: ...

    async def predict(
        self, model: ServedModel, x: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray: ...


def _authorized(context: grpc.aio.ServicerContext, expected: bytes) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            given = value.encode() if isinstance(value, str) else value
            return hmac.compare_digest(given, expected)
    return False


def unary(
    app: Backend, method: Method, request: Any, response: Any, *, public: bool = False
) -> grpc.RpcMethodHandler:
    """A unary handler: ``method`` with the app's token rule and errors mapped to status codes.

    ``public`` methods (the health checks) need no token even with ``token_all``.
    """
    expected = b"Bearer " + app.token if app.token is not None else None
    guarded = expected is not None and app.token_all and not public

    async def call(message: Any, context: grpc.aio.ServicerContext) -> Any:
        if guarded and not _authorized(context, expected):  # type: ignore[arg-type]
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "unauthorised: send the metadata 'authorization: Bearer <token>'",
            )
        try:
            return await method(message, context)
        except RequestError as err:
            code = _CODES.get(err.status, grpc.StatusCode.UNKNOWN)
            await context.abort(code, err.message)
        except Exception as err:
            log.exception("internal error in gRPC %s", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal server error: {type(err).__name__}"
            )

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )
