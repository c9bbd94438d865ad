"""The TFaaS-compatible ASGI application.

Upstream TFaaS routes (``/upload``, ``/json``, ``/proto``, ``/image``, ``/models``,
``/delete``, ``/params``, ``/status``), TF Serving REST (``/v1``, see
`tf_serving`), Open Inference Protocol v2 (``/v2``, see `v2` and `v2_rest`)
and ``/openapi.json``. ``POST /json`` (and ``/predict/json``) is answered by
a plain ASGI path that skips the router: it is the route that takes the
load. Everything else goes through Starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import importlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import RequestError
from ..names import SERVER_NAME
from . import tf_serving as v1
from . import v2
from .batching import MicroBatcher
from .coding import MIN_COMPRESSED, answer_coding, decode_body, encode_body
from .host import host_status
from .model import BundleError, ServedModel
from .openapi import openapi_schema
from .payload import as_rows, check_width, decode_json
from .registry import ModelRegistry
from .stats import InferenceStats
from .upload import stage_form, stage_tarball
from .v2_rest import HEADER_LENGTH, decode_request, encode_answer

if TYPE_CHECKING:
    from starlette.types import ExceptionHandler

__all__ = ["DEFAULT_MAX_UPLOAD", "SERVER_NAME", "TFaaSApp", "app_from_env", "create_app"]

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
ENV_OPTIONS = "MLAAS4HEP_NB_SERVE_OPTIONS"
_JSON_PATHS = frozenset(("/json", "/predict/json"))
_OPEN_PATHS = frozenset(("/v2/health/live", "/v2/health/ready", "/openapi.json"))
_GUARDED_POSTS = frozenset(("/upload", "/bundle", "/params"))
_GET_POST = ["GET", "POST"]
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# the v2 extensions that work here (Triton's names)
V2_EXTENSIONS = ["binary_tensor_data", "model_configuration"]


def __dir__() -> list[str]:
    return __all__


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=_NUMPY), status, media_type="application/json")


async def _send(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _receive_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _request_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body is larger than the limit of {limit} bytes")
    return await _receive_body(request.receive, limit)


def _replay(body: bytes):
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class TFaaSApp:
    """The server as an ASGI application; see `create_app` for the parameters."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        token: str | None = None,
        token_all: bool = False,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        max_rows: int = 2048,
        max_wait: float = 0.002,
        freeze_gc: bool = False,
        sync_interval: float | None = None,
        predict_threads: int = 4,
        grpc_port: int | None = None,
        grpc_host: str = "127.0.0.1",
        grpc_reuse_port: bool = False,
    ) -> None:
        self.registry = ModelRegistry(model_dir)
        self.token = token.encode() if token else None
        self.token_all = token_all
        self.max_upload = max_upload
        self.max_unpacked = 4 * max_upload
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.freeze_gc = freeze_gc
        self.sync_interval = sync_interval
        threads = max(1, predict_threads)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="tfaas-predict")
        self._batch_executor = self.executor if predict_threads > 0 else None
        self._batchers: dict[str, tuple[ServedModel, MicroBatcher]] = {}
        self.stats = InferenceStats()
        self.grpc_port = grpc_port  # the bound port once serving (0 asks for a free one)
        self._grpc_host = grpc_host
        self._grpc_reuse_port = grpc_reuse_port
        self.started = time.time()
        self.get_requests = 0
        self.post_requests = 0
        self.router = Starlette(
            routes=self._routes(),
            # Starlette passes each handler the exceptions of the class it is registered for
            exception_handlers={
                RequestError: cast("ExceptionHandler", self._request_error),
                HTTPException: cast("ExceptionHandler", self._http_error),
                Exception: self._server_error,
            },
            lifespan=self._lifespan,
        )

    # --- plumbing --------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "GET":
            self.get_requests += 1
        elif method == "POST":
            self.post_requests += 1
        token = self.token
        if (
            token is not None
            and self._needs_token(method, path)
            and not self._authorized(scope, token)
        ):
            await _send(
                send,
                401,
                _error_body("unauthorised: send the header 'Authorization: Bearer <token>'"),
                [(b"www-authenticate", b"Bearer")],
            )
            return
        if method == "POST" and path in _JSON_PATHS:
            await self._predict_json(receive, send)
        else:
            await self.router(scope, receive, send)

    def _needs_token(self, method: str, path: str) -> bool:
        if self.token_all:
            return path not in _OPEN_PATHS
        return method == "DELETE" or (method == "POST" and path in _GUARDED_POSTS)

    def _authorized(self, scope, token: bytes) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                return hmac.compare_digest(value, b"Bearer " + token)
        return False

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        # import TensorFlow now, not on the first upload or (other workers) the first sync
        await run_in_threadpool(importlib.import_module, "tensorflow")
        names = await run_in_threadpool(self.registry.load_all)
        log.info("serving %d models from %s: %s", len(names), self.registry.root, names)
        self._settle()
        grpc_server = None
        if self.grpc_port is not None:
            from .grpc_server import start_grpc

            grpc_server, self.grpc_port = await start_grpc(
                self, self._grpc_host, self.grpc_port, self._grpc_reuse_port
            )
        sync = None
        if self.sync_interval:
            sync = asyncio.get_running_loop().create_task(self._sync_loop())
        try:
            yield
        finally:
            if sync is not None:
                sync.cancel()
            if grpc_server is not None:
                await grpc_server.stop(2)
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _sync_loop(self) -> None:
        # other worker processes share the model dir: pick up their uploads and deletes
        while True:
            # _lifespan starts this loop only when sync_interval is set
            await asyncio.sleep(cast(float, self.sync_interval))
            try:
                if await run_in_threadpool(self.registry.refresh):
                    self._settle()
            except Exception:
                log.exception("syncing the model dir failed")

    def _settle(self) -> None:
        """After loading models: keep the long-lived TF objects out of the cyclic GC's scans."""
        if self.freeze_gc:
            gc.collect()
            gc.freeze()

    def _batcher(self, model: ServedModel) -> MicroBatcher:
        entry = self._batchers.get(model.name)
        if entry is None or entry[0] is not model:
            batcher = MicroBatcher(
                model.predict, self._batch_executor, self.max_rows, self.max_wait
            )
            entry = (model, batcher)
            self._batchers[model.name] = entry
        return entry[1]

    def batcher_of(self, name: str) -> MicroBatcher | None:
        """The micro-batcher serving ``name`` now, if it served a request yet."""
        entry = self._batchers.get(name)
        return entry[1] if entry is not None else None

    async def predict(
        self, model: ServedModel, x: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """The outputs for the rows ``x``, counted in `stats`.

        They go through the model's micro-batcher; with a ``mask``, through
        ``serving_with_mask`` in a call of their own.
        """
        started = time.perf_counter_ns()
        try:
            if mask is None:
                y = await self._batcher(model)(x)
            else:
                loop = asyncio.get_running_loop()
                y = await loop.run_in_executor(self.executor, model.predict_masked, x, mask)
        except Exception:  # not a cancel: a client that went away is no failure of the model
            self.stats.record(model.name, len(x), started, ok=False)
            raise
        self.stats.record(model.name, len(x), started, ok=True)
        return y

    async def _request_error(self, request: Request, err: RequestError) -> Response:
        return _json({"error": err.message}, err.status)

    async def _http_error(self, request: Request, err: HTTPException) -> Response:
        response = _json({"error": str(err.detail)}, err.status_code)
        response.headers.update(err.headers or {})
        return response

    async def _server_error(self, request: Request, err: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=err)
        return _json({"error": f"internal server error: {type(err).__name__}"}, 500)

    async def _body(self, request: Request) -> bytes:
        """The request body, decoded from its Content-Encoding (gzip, deflate)."""
        body = await _request_body(request, self.max_upload)
        coding = request.headers.get("content-encoding")
        return body if coding is None else decode_body(body, coding, self.max_upload)

    async def _json_body(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise RequestError(400, f"malformed JSON: {err}") from None

    # --- predictions -----------------------------------------------------------------

    async def _predict_json(self, receive, send) -> None:
        try:
            request = decode_json(await _receive_body(receive, self.max_upload))
            model = self.registry.get(request.model)
            x = request.x  # None for raw events: decode_json sets either x or events
            if x is not None:
                check_width(x, model.n_features, model.name)
                y = await self.predict(model, x)
                out = y if request.batched else y[0]
            else:
                out = await self._predict_events(model, request.events)
            status, body = 200, orjson.dumps(out, option=_NUMPY)
        except RequestError as err:
            status, body = err.status, _error_body(err.message)
        except _Disconnected:
            return
        except Exception as err:
            log.exception("internal error on POST /json")
            status, body = 500, _error_body(f"internal server error: {type(err).__name__}")
        await _send(send, status, body)

    async def _predict_events(self, model: ServedModel, events: object) -> np.ndarray:
        # events: checked by model.convert (a 400 unless a non-empty list)
        def run() -> np.ndarray:
            return model.predict_masked(*model.convert(events))

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def _predict_rows(self, model: ServedModel, x: np.ndarray) -> np.ndarray:
        check_width(x, model.n_features, model.name)
        return await self.predict(model, x)

    async def predict_json_route(self, request: Request) -> Response:
        # reached only when the ASGI fast path is bypassed (a mounted sub-app)
        raise RequestError(400, "POST /json is served by the TFaaS app's fast path")

    async def proto(self, request: Request) -> Response:
        from google.protobuf.message import DecodeError

        from .proto import Class, Predictions, Row

        row = Row()
        try:
            row.ParseFromString(await _request_body(request, self.max_upload))
        except DecodeError as err:
            raise RequestError(400, f"the body is not a tfaaspb.Row message: {err}") from None
        model = self.registry.get(row.model or None)
        x = as_rows(np.asarray(row.value, dtype=np.float32), "Row.value")
        y = (await self._predict_rows(model, x))[0]
        labels = model.labels if len(model.labels) == len(y) > 1 else [""] * len(y)
        pairs = zip(labels, y.tolist(), strict=True)
        classes = [Class(label=label, probability=p) for label, p in pairs]
        message = Predictions(prediction=classes)
        return Response(message.SerializeToString(), media_type="application/octet-stream")

    async def image(self, request: Request) -> Response:
        from .image import classify, read_image_form

        body = await _request_body(request, self.max_upload)
        async with Request(request.scope, _replay(body)).form(max_files=2, max_fields=4) as form:
            name, data, filename = await read_image_form(form)
        model = self.registry.get(name)
        loop = asyncio.get_running_loop()
        return _json(await loop.run_in_executor(self.executor, classify, model, data, filename))

    async def tf_serving(self, request: Request) -> Response:
        name, _, verb = request.path_params["target"].partition(":")
        return await self._tf_serving(request, name, verb)

    async def tf_serving_version(self, request: Request) -> Response:
        version, _, verb = request.path_params["target"].partition(":")
        return await self._tf_serving(request, request.path_params["name"], verb, version=version)

    async def tf_serving_label(self, request: Request) -> Response:
        label, _, verb = request.path_params["target"].partition(":")
        return await self._tf_serving(request, request.path_params["name"], verb, label=label)

    async def _tf_serving(
        self,
        request: Request,
        name: str,
        verb: str,
        version: str | None = None,
        label: str | None = None,
    ) -> Response:
        if request.method == "GET" and verb:
            raise RequestError(404, f"unknown route {request.url.path}")
        if request.method == "POST" and verb != "predict":
            raise RequestError(404, f"unknown verb {verb!r}; use /v1/models/{name}:predict")
        model = self.registry.get(name)
        v1.check_selector(model, version, label)
        if request.method == "GET":
            return _json(v1.status())
        predict = v1.predict_request(model, await self._json_body(request))
        if predict.signature == model.signature_name:
            y = await self._predict_rows(model, predict.inputs[model.input_name])
        else:
            loop = asyncio.get_running_loop()
            run = model.run_signature
            y = await loop.run_in_executor(self.executor, run, predict.signature, predict.inputs)
        return _json({predict.key: y})

    async def tf_serving_metadata(self, request: Request) -> Response:
        params = request.path_params
        model = self.registry.get(params["name"])
        v1.check_selector(model, params.get("version"), params.get("label"))
        return _json(v1.model_metadata(model))

    def _v2_model(self, request: Request) -> ServedModel:
        model = self.registry.get(request.path_params["name"])
        v2.check_version(model, request.path_params.get("version"))
        return model

    async def v2_infer(self, request: Request) -> Response:
        model = self._v2_model(request)
        body = await self._body(request)
        infer = decode_request(body, request.headers.get(HEADER_LENGTH))
        x, mask = v2.model_rows(model, infer.inputs)
        names = v2.output_names(model, infer.outputs)
        y = await self.predict(model, x, mask)
        data, json_size = encode_answer(model.name, infer, names, y)
        headers = {} if json_size is None else {HEADER_LENGTH: str(json_size)}
        coding = None
        if len(data) >= MIN_COMPRESSED:
            coding = answer_coding(request.headers.get("accept-encoding", ""))
        if coding is not None:
            data = encode_body(data, coding)
            headers["Content-Encoding"] = coding
        media = "application/json" if json_size is None else "application/octet-stream"
        return Response(data, headers=headers, media_type=media)

    async def v2_model(self, request: Request) -> Response:
        return _json(v2.model_metadata(self._v2_model(request)))

    async def v2_model_config(self, request: Request) -> Response:
        return _json(v2.model_config(self._v2_model(request), self.max_rows))

    async def v2_model_ready(self, request: Request) -> Response:
        model = self._v2_model(request)
        return _json({"name": model.name, "ready": True})

    async def v2_repository_index(self, request: Request) -> Response:
        body = await self._body(request)
        try:
            options = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as err:
            raise RequestError(400, f"malformed JSON: {err}") from None
        ready = options.get("ready", False) if isinstance(options, dict) else None
        if not isinstance(ready, bool):
            raise RequestError(400, 'send {} or {"ready": true|false}')
        return _json(v2.repository_index(self.registry, ready))

    async def v2_server(self, request: Request) -> Response:
        from ... import __version__

        return _json({"name": SERVER_NAME, "version": __version__, "extensions": V2_EXTENSIONS})

    async def v2_live(self, request: Request) -> Response:
        return _json({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        return _json({"ready": True})

    # --- models ----------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        body = await _request_body(request, self.max_upload)
        staging = self.registry.staging()
        is_form = request.headers.get("content-type", "").startswith("multipart/form-data")
        try:
            if is_form:
                encoded = request.headers.get("content-encoding", "").strip().lower() == "base64"
                form_request = Request(request.scope, _replay(body))
                async with form_request.form(max_files=8, max_fields=16) as form:
                    staged = [await stage_form(form, staging, self.max_unpacked, encoded)]
            else:
                staged = await run_in_threadpool(stage_tarball, body, staging, self.max_unpacked)
            models = []
            for name, folder in staged:  # all load, or none is installed
                try:
                    models.append(await run_in_threadpool(ServedModel, folder, name))
                except BundleError as err:
                    raise RequestError(400, str(err)) from None
            for (name, folder), model in zip(staged, models, strict=True):
                await run_in_threadpool(self.registry.install, name, folder, model)
                self._batchers.pop(name, None)
        finally:
            await run_in_threadpool(shutil.rmtree, staging, True)
        if is_form:  # as upstream: the last form upload is the default model
            self.registry.default = models[0].name
        self._settle()
        log.info("uploaded models %s", [model.name for model in models])
        answers = [{"name": m.name, "n_features": m.n_features} for m in models]
        return _json({**answers[0], "models": answers, "status": "uploaded"})

    async def delete(self, request: Request) -> Response:
        name = request.path_params.get("name") or request.query_params.get("model")
        if name is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            async with request.form(max_files=0, max_fields=8) as form:
                value = form.get("model")
                name = value if isinstance(value, str) else None
        if not name:
            raise RequestError(400, "name the model to delete: /delete/NAME or the field 'model'")
        await run_in_threadpool(self.registry.delete, name)
        self._batchers.pop(name, None)
        self.stats.forget(name)
        return _json({"name": name, "status": "deleted"})

    async def models(self, request: Request) -> Response:
        return _json([model.describe() for model in self.registry.models()])

    async def params(self, request: Request) -> Response:
        if request.method == "POST":
            body = await self._json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise RequestError(400, 'send the params of a served model: {"name": ...}')
            model = self.registry.get(body["name"])
            self.registry.default = model.name
            return _json(model.describe())
        return _json(self.registry.get(request.path_params.get("name")).describe())

    async def status(self, request: Request) -> Response:
        from ... import __version__

        batchers = {name: entry[1] for name, entry in self._batchers.items()}
        return _json(
            {
                "server": SERVER_NAME,
                "version": __version__,
                "batching": True,
                "models": self.registry.names(),
                "default_model": self.registry.default,
                "skipped": self.registry.skipped,
                "Uptime": time.time() - self.started,
                "getRequests": self.get_requests,
                "postRequests": self.post_requests,
                "Load": dict(zip(("load1", "load5", "load15"), os.getloadavg(), strict=True)),
                **host_status(),
                "batches": {
                    name: {"calls": b.calls, "rows": b.rows} for name, b in batchers.items()
                },
            }
        )

    async def index(self, request: Request) -> Response:
        from ... import __version__

        routes = sorted(openapi_schema(__version__)["paths"])
        return _json({"server": SERVER_NAME, "version": __version__, "routes": routes})

    async def openapi(self, request: Request) -> Response:
        from ... import __version__

        return _json(openapi_schema(__version__))

    def _routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/status", self.status, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
            Route("/upload", self.upload, methods=["POST"]),
            Route("/bundle", self.upload, methods=["POST"]),
            Route("/json", self.predict_json_route, methods=["POST"]),
            Route("/predict/json", self.predict_json_route, methods=["POST"]),
            Route("/proto", self.proto, methods=["POST"]),
            Route("/predict/proto", self.proto, methods=["POST"]),
            Route("/image", self.image, methods=["POST"]),
            Route("/predict/image", self.image, methods=["POST"]),
            Route("/params", self.params, methods=["GET", "POST"]),
            Route("/params/{name}", self.params, methods=["GET"]),
            Route("/delete", self.delete, methods=["DELETE"]),
            Route("/delete/{name}", self.delete, methods=["DELETE"]),
            Route("/v1/models/{target}", self.tf_serving, methods=["GET", "POST"]),
            Route("/v1/models/{name}/metadata", self.tf_serving_metadata, methods=["GET"]),
            Route(
                "/v1/models/{name}/versions/{target}", self.tf_serving_version, methods=_GET_POST
            ),
            Route("/v1/models/{name}/versions/{version}/metadata", self.tf_serving_metadata),
            Route("/v1/models/{name}/labels/{target}", self.tf_serving_label, methods=_GET_POST),
            Route("/v1/models/{name}/labels/{label}/metadata", self.tf_serving_metadata),
            Route("/v2", self.v2_server, methods=["GET"]),
            Route("/v2/health/live", self.v2_live, methods=["GET"]),
            Route("/v2/health/ready", self.v2_ready, methods=["GET"]),
            Route("/v2/repository/index", self.v2_repository_index, methods=["POST"]),
            *(
                route
                for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
                for route in (
                    Route(base, self.v2_model, methods=["GET"]),
                    Route(base + "/ready", self.v2_model_ready, methods=["GET"]),
                    Route(base + "/config", self.v2_model_config, methods=["GET"]),
                    Route(base + "/infer", self.v2_infer, methods=["POST"]),
                )
            ),
        ]


def create_app(model_dir: str | os.PathLike, **options: Any) -> TFaaSApp:
    """The TFaaS-compatible ASGI app serving the bundles in ``model_dir``.

    Parameters
    ----------
    model_dir : where models persist, one folder per model; created if missing.
    token : when set, uploads, deletes and ``POST /params`` need
        ``Authorization: Bearer <token>``.
    token_all : the token is needed on every route but the health checks.
    max_upload : the largest request body in bytes (413 above it).
    max_rows, max_wait : micro-batching: the most rows in one model call, and
        how long (seconds) an idle model waits to gather requests.
    predict_threads : threads for model calls; 0 runs batched calls in the event loop.
    freeze_gc : move the objects alive after loading models out of the cyclic
        garbage collector's scans (for a dedicated server process).
    sync_interval : seconds between scans of ``model_dir`` for models that
        other worker processes uploaded or deleted (None: no scans).
    grpc_port : also serve gRPC (KServe v2 with Triton's extras, and TF
        Serving's PredictionService) on this port, in the same event loop;
        None: no gRPC, 0: a free port (``app.grpc_port`` tells which).
    grpc_host : the address the gRPC port listens on.
    grpc_reuse_port : bind the gRPC port with SO_REUSEPORT, for worker
        processes that share it; off, a port in use fails the start.
    """
    return TFaaSApp(model_dir, **options)


def app_from_env() -> TFaaSApp:
    """App factory for uvicorn worker processes: options come as JSON in an environment variable."""
    options = json.loads(os.environ[ENV_OPTIONS])
    return create_app(Path(options.pop("model_dir")), **options)
