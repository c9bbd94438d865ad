"""TFaaSClient: push bundles to, and get predictions from, any TFaaS server.

It speaks upstream TFaaS's wire format, so it works against the Go server
deployed at CERN as well as this package's server; against the latter it
sends whole batches in one request, against upstream one row per request.
Importing it does not import TensorFlow.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from .errors import TFaaSError
from .names import SERVER_NAME, check_name
from .pack import pack_bundle
from .unpack import ArchiveError, unpack

__all__ = ["TFaaSClient"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def __dir__() -> list[str]:
    return __all__


def _is_keras_model(obj: object) -> bool:
    roots = {cls.__module__.split(".")[0] for cls in type(obj).__mro__}
    return bool(roots & {"keras", "tf_keras", "tensorflow"})


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()[:500] or response.reason or "no message"


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what lies under it: causes, contexts, urllib3's ``reason``s and args."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop(0)
        if any(current is other for other in seen):
            continue
        seen.append(current)
        below = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        below.extend(current.args)
        todo.extend(item for item in below if isinstance(item, BaseException))
    return seen


def _unreachable(server: str, error: requests.RequestException, timeout: float) -> str:
    """One readable line for a request that got no answer (no urllib3 object reprs)."""
    causes = _causes(error)
    system = next((c for c in reversed(causes) if isinstance(c, OSError) and c.strerror), None)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        why = "connection refused — is the server running?"
    elif any(isinstance(c, (requests.Timeout, Urllib3Timeout, TimeoutError)) for c in causes):
        why = f"no answer within {timeout:g} s"
    elif isinstance(system, socket.gaierror):
        why = f"unknown host ({system.strerror})"
    elif isinstance(error, requests.exceptions.SSLError):
        why = f"TLS error: {system.strerror if system is not None else causes[-1]}"
    elif system is not None:
        strerror = cast(str, system.strerror)  # system was picked for a non-empty one
        why = strerror[0].lower() + strerror[1:]
    else:
        why = str(causes[-1])
    return f"cannot reach {server}: {why}"


def _rate_limit_wait(response: requests.Response, fallback: float, most: float) -> float:
    """Seconds to wait after a 429: what the server says (at most ``most``), else ``fallback``."""
    headers = response.headers
    wait = None
    try:
        if "Retry-After" in headers:
            wait = float(headers["Retry-After"])
        elif "X-RateLimit-Reset" in headers:  # upstream (ulule/limiter): the reset's Unix time
            wait = float(headers["X-RateLimit-Reset"]) - time.time()
    except ValueError:
        wait = None
    if wait is None or math.isnan(wait):
        return fallback
    return min(max(wait, fallback), most)


class TFaaSClient:
    """A client for a TFaaS server (upstream's or this package's).

    Parameters
    ----------
    url : the server, e.g. ``http://localhost:8083`` or ``https://cms-tfaas.cern.ch``.
    token : sent as ``Authorization: Bearer <token>``.
    timeout : seconds to wait for each answer.
    cert, key : an X.509 client certificate and key (PEM files); with neither,
        a grid proxy named by ``$X509_USER_PROXY`` is used when that is set.
    verify : check the server's certificate (True), a CA bundle or folder to
        check it against, or False. With True, ``$X509_CERT_DIR`` is used when set.
    retries, backoff : connection attempts that fail are retried this many
        times, waiting ``backoff * 2**n`` seconds; so are requests that a
        rate limit (upstream's) answers with 429, waiting until the limit
        resets (``Retry-After`` or ``X-RateLimit-Reset``) or ``backoff * 2**n``.
    upstream : True to talk to an upstream TFaaS (one row per request), False
        for this package's server; None detects it from ``/status``.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        verify: bool | str | os.PathLike[str] = True,
        *,
        retries: int = 3,
        backoff: float = 0.2,
        upstream: bool | None = None,
    ) -> None:
        from .. import __version__

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.upstream = upstream
        self.session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=0,
            other=0,
            backoff_factor=backoff,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"mlaas4hep_nb/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        proxy = os.environ.get("X509_USER_PROXY")
        if cert is not None:
            self.session.cert = (str(cert), str(key)) if key is not None else str(cert)
        elif proxy and Path(proxy).is_file():
            self.session.cert = proxy
        cert_dir = os.environ.get("X509_CERT_DIR")
        if verify is True and cert_dir and Path(cert_dir).is_dir():
            verify = cert_dir
        self.session.verify = str(verify) if isinstance(verify, os.PathLike) else verify

    def __repr__(self) -> str:
        return f"TFaaSClient({self.url!r})"

    def __enter__(self) -> TFaaSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.url + path
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as err:
                raise TFaaSError(0, _unreachable(self.url, err, self.timeout), url) from err
            if response.status_code != 429 or attempt == self.retries:
                break
            # upstream rate-limits each client (429 "Limit exceeded"): wait, then try again
            time.sleep(_rate_limit_wait(response, self.backoff * 2**attempt, self.timeout))
        if response.status_code >= 400:
            raise TFaaSError(response.status_code, _message(response), url)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            msg = f"the answer is not JSON: {response.text[:200]!r}"
            raise TFaaSError(response.status_code, msg, self.url + path) from None

    def _post_json(self, path: str, payload: Any) -> Any:
        body = orjson.dumps(payload, option=_NUMPY)
        return self._json("POST", path, data=body, headers={"Content-Type": "application/json"})

    # --- the server --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The server's ``/status``: uptime, request counts and, on this server, its models."""
        return self._json("GET", "/status")

    def is_upstream(self) -> bool:
        """True if the server is upstream TFaaS (no batches), as ``/status`` tells."""
        if self.upstream is None:
            try:
                status = self.status()
            except TFaaSError as err:
                if err.status == 0:
                    raise
                status = {}
            self.upstream = not (isinstance(status, dict) and status.get("server") == SERVER_NAME)
        return self.upstream

    def models(self) -> list[str]:
        """The names of the served models."""
        return [params["name"] for params in self._json("GET", "/models") or []]

    def params(self, name: str) -> dict[str, Any]:
        """The ``params.json`` of the model ``name`` (404 TFaaSError if there is none)."""
        if not self.is_upstream():
            return self._json("GET", f"/params/{check_name(name)}")
        for params in self._json("GET", "/models") or []:
            if params.get("name") == name:
                return params
        raise TFaaSError(404, f"unknown model {name!r}", self.url + "/models")

    def delete(self, name: str) -> None:
        """Remove the model ``name`` from the server."""
        # upstream reads the name from a multipart form only, as its Python client sends it
        self._request("DELETE", "/delete", files={"model": (None, check_name(name))})

    # --- upload --------------------------------------------------------------------------

    def upload(self, obj: Any, name: str | None = None) -> str:
        """Push a model to the server as a bundle tarball; return the name it is served under.

        Parameters
        ----------
        obj : a ``Trainer`` (anything with ``export(bundle_dir)``), a Keras model
            (exported on the fly), a bundle folder, or a bundle tarball (.tar.gz).
        name : the model name; by default the bundle's own name.
        """
        with tempfile.TemporaryDirectory(prefix="mlaas4hep-upload-") as tmp:
            folder = self._bundle_folder(obj, name, Path(tmp))
            name, data = pack_bundle(folder, name)
        headers = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
        self._request("POST", "/upload", data=data, headers=headers)
        return name

    def _bundle_folder(self, obj: Any, name: str | None, tmp: Path) -> Path:
        target = tmp / (check_name(name) if name else "model")
        if isinstance(obj, (str, os.PathLike)):
            return self._path_bundle(Path(obj), tmp)
        if _is_keras_model(obj):
            from ..bundle import write_bundle

            given = name or getattr(obj, "name", None)
            return write_bundle(obj, target, name=check_name(given) if given else None)
        export = getattr(obj, "export", None)
        if callable(export):  # a Trainer
            exported = export(target)
            return Path(exported) if exported is not None else target
        msg = f"cannot upload a {type(obj).__name__}: give a Trainer, a Keras model or a bundle"
        raise TypeError(msg)

    @staticmethod
    def _path_bundle(path: Path, tmp: Path) -> Path:
        if path.is_dir():
            return path
        if not path.is_file():
            msg = f"no bundle folder or tarball at {path}"
            raise FileNotFoundError(msg)
        unpacked = tmp / "unpacked"
        try:
            top = unpack(path.read_bytes(), unpacked)
        except ArchiveError as err:
            msg = f"{path} is not a bundle tarball: {err}"
            raise ValueError(msg) from None
        if (unpacked / "params.json").is_file():
            return unpacked
        if len(top) == 1 and (unpacked / top[0] / "params.json").is_file():
            return unpacked / top[0]
        msg = f"{path} holds no bundle (params.json at the top or in its one folder)"
        raise ValueError(msg)

    # --- predictions -------------------------------------------------------------------

    def predict(
        self,
        name: str,
        x: Any,
        *,
        upstream: bool | None = None,
        batch_size: int = 10_000,
        keys: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Predictions of the model ``name`` for the rows ``x``.

        Parameters
        ----------
        name : the served model.
        x : rows ``[n, n_features]`` (or one row ``[n_features]``).
        upstream : force one request per row (upstream TFaaS) or batches; by
            default `is_upstream` decides.
        batch_size : rows per request to this package's server.
        keys : feature names sent as ``keys`` (upstream ignores them).

        Returns
        -------
        float32 ``[n, outputs]`` (``[outputs]`` for one row).
        """
        rows = np.ascontiguousarray(x, dtype=np.float32)
        single = rows.ndim == 1
        if single:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2:
            msg = f"x must be one row or a 2-D array of rows, not {rows.ndim}-D"
            raise ValueError(msg)
        keys = list(keys) if keys is not None else [f"x{i}" for i in range(rows.shape[1])]
        if upstream if upstream is not None else self.is_upstream():
            chunks = [(row, True) for row in rows]
        else:
            chunks = [(rows[i : i + batch_size], False) for i in range(0, len(rows), batch_size)]
        out: list[Any] = []
        for values, one_row in chunks:
            answer = self._post_json("/json", {"keys": keys, "values": values, "model": name})
            out.extend([answer] if one_row else answer)
        y = np.asarray(out, dtype=np.float32).reshape(len(rows), -1)
        return y[0] if single else y

    def predict_raw(self, name: str, events: Any) -> np.ndarray:
        """Predictions for raw events (this package's server, for bundles with a FeatureSpec).

        ``events`` is a list of ``{branch: value}`` (a list for a jagged branch),
        or an awkward array of records; the server pads and normalises them as
        in training.
        """
        if hasattr(events, "to_list"):
            events = events.to_list()
        y = self._post_json("/json", {"model": name, "raw": True, "events": list(events)})
        return np.asarray(y, dtype=np.float32).reshape(len(y), -1)
