"""Run the server: in the foreground (``mlaas4hep-nb serve``) or in a background thread."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .app import DEFAULT_MAX_UPLOAD, ENV_OPTIONS, TFaaSApp, create_app

__all__ = ["ServerHandle", "serve", "serve_in_background"]


def __dir__() -> list[str]:
    return __all__


def _http_protocol() -> str | type:
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from ..._compat.uvicorn import http_protocol

    return http_protocol()  # the tuned protocol; uvicorn's stock one if uvicorn changed


def _uvicorn_options(log_level: str) -> dict:
    """The fastest stack installed: uvloop and httptools when present; no access log."""
    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": _http_protocol(),
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": 5,
    }


def serve(
    model_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8083,
    *,
    grpc_port: int | None = None,
    token: str | None = None,
    token_all: bool = False,
    workers: int = 1,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve the models in ``model_dir`` on ``host:port`` until interrupted.

    With ``workers`` > 1, that many processes share the port and the model
    dir; each picks up the uploads and deletes of the others within a second,
    and uvicorn's supervisor replaces a worker that dies.
    With ``grpc_port``, gRPC (KServe v2, Triton's extras, TF Serving) is
    served on ``host:grpc_port`` too; the workers share that port through
    SO_REUSEPORT, the kernel spreading the connections among them.
    The other parameters are those of `create_app`.
    """
    import uvicorn

    settings = {"token": token, "token_all": token_all, "max_upload": max_upload, **options}
    settings.setdefault("freeze_gc", True)
    if grpc_port is not None:
        settings.update(grpc_port=grpc_port, grpc_host=host, grpc_reuse_port=workers > 1)
    if workers > 1:
        settings.setdefault("sync_interval", 1.0)
        os.environ[ENV_OPTIONS] = json.dumps({"model_dir": str(Path(model_dir)), **settings})
        uvicorn.run(
            "mlaas4hep_nb.tfaas.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **_uvicorn_options(log_level),
        )
        return
    app = create_app(model_dir, **settings)
    uvicorn.run(app, host=host, port=port, **_uvicorn_options(log_level))


class ServerHandle:
    """A server running in a background thread of this process.

    Attributes
    ----------
    url : ``http://host:port`` of the server.
    app : the `TFaaSApp` (its ``registry`` holds the served models).
    grpc_target : ``host:port`` of its gRPC port, as gRPC clients take it; None without one.
    """

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        sock: socket.socket,
        url: str,
        app: TFaaSApp,
    ) -> None:
        self._server = server
        self._socket = sock
        self._thread = thread
        self.url = url
        self.app = app
        self.grpc_target: str | None = None
        if app.grpc_port is not None:
            self.grpc_target = f"{url.removeprefix('http://').rpartition(':')[0]}:{app.grpc_port}"

    @property
    def model_dir(self) -> Path:
        return self.app.registry.root

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TFaaS server {self.url} ({state}), models in {self.model_dir}>"


def serve_in_background(
    model_dir: str | os.PathLike,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    grpc_port: int | None = None,
    timeout: float = 120,
    log_level: str = "warning",
    **options: Any,
) -> ServerHandle:
    """Start the server in a background thread and return once it answers.

    Parameters
    ----------
    model_dir : where models persist; models already there are served.
    port : 0 picks a free port; ``handle.url`` tells which.
    host : the address to listen on.
    grpc_port : also serve gRPC on this port (0: a free one); ``handle.grpc_target`` tells.
    timeout : seconds to wait for start-up (loading the stored models).
    options : the options of `create_app` (``token``, ``token_all``, ``max_upload``, ...).

    Returns
    -------
    A `ServerHandle` with ``.url`` and ``.stop()``; also a context manager.
    """
    import uvicorn

    if grpc_port is not None:
        options.update(grpc_port=grpc_port, grpc_host=host)
    app = create_app(model_dir, **options)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, **_uvicorn_options(log_level))
    server = uvicorn.Server(config)

    def run() -> None:
        # a failed start (say, the gRPC port in use) is logged by uvicorn, which then
        # exits: here that ends the thread, and the caller gets the RuntimeError below
        with contextlib.suppress(SystemExit):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name="tfaas-server", daemon=True)
    bound = sock.getsockname()
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            msg = f"the TFaaS server on {host}:{bound[1]} did not start; see the log above"
            raise RuntimeError(msg)
        time.sleep(0.02)
    address = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return ServerHandle(server, thread, sock, f"http://{address}:{bound[1]}", app)
