"""Fixtures: generated ttH files, and real XRootD and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import support
from support import free_port, stop, wait_for_port, world_readable_copy

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import rootio

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _spec_cache(tmp_path_factory):
    """Keep the spec cache of the tests out of the user's home."""
    os.environ["MLAAS4HEP_NB_CACHE"] = str(tmp_path_factory.mktemp("spec-cache"))


@pytest.fixture(scope="session")
def tth(tmp_path_factory) -> dict[int, list[str]]:
    """3,000 signal and 3,000 background events in two files each (TTree)."""
    return mn.datasets.make_tth(tmp_path_factory.mktemp("tth"), 3000, 3000, n_files=2)


@pytest.fixture(scope="session")
def tth_rntuple(tmp_path_factory) -> dict[int, list[str]]:
    """The same events as ``tth``, written as RNTuples."""
    return mn.datasets.make_tth(
        tmp_path_factory.mktemp("tthn"), 3000, 3000, n_files=2, fmt="RNTuple"
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "uproot-HZZ.root").exists():
        pytest.skip(f"real CMS open-data files not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def served_dir(tth) -> Path:
    """A world-readable folder under /tmp holding copies of the ttH files, for the servers."""
    folder = world_readable_copy([*tth[1], *tth[0]], "mlaas4hep-served-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_xrootd(folder: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`support.start_xrootd`, skipping the test when XRootD is not installed."""
    started = support.start_xrootd(folder, port)
    if started is None:
        pytest.skip(
            "xrootd not installed (Debian package xrootd-server; make test installs it "
            "when run as root)"
        )
    return started


@pytest.fixture(scope="session")
def xrootd_url(served_dir) -> str:
    """``root://127.0.0.1:PORT/`` + absolute path: a real XRootD server exporting served_dir."""
    process, url = start_xrootd(served_dir)
    try:
        yield url
    finally:
        stop(process)


HTTP_SERVER = """
import sys
from aiohttp import web
log = open(sys.argv[3], "a", buffering=1) if len(sys.argv) > 3 else None

@web.middleware
async def record(request, handler):
    if log is not None:
        log.write(f"{request.method} {request.path}\\n")
    return await handler(request)

app = web.Application(middlewares=[record])
app.router.add_static("/", sys.argv[1], show_index=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None)
"""


class HTTPServer:
    """A real HTTP server (aiohttp static, range requests) on 127.0.0.1 serving ``folder``.

    ``requests()`` lists the requests it answered (``"GET /name"``).
    """

    def __init__(self, folder: Path, log: Path) -> None:
        self.log = log
        log.touch()
        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", HTTP_SERVER, str(folder), str(port), str(log)]
        )
        wait_for_port(port, self.process, "HTTP server")
        self.url = f"http://127.0.0.1:{port}"

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def http_url(served_dir) -> str:
    """``http://127.0.0.1:PORT``: a real HTTP server (aiohttp static, range requests)."""
    server = HTTPServer(served_dir, served_dir.parent / f"{served_dir.name}-http.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def data_mirror(shared_data, tmp_path, monkeypatch) -> HTTPServer:
    """The real files served as the datasets mirror (``MLAAS4HEP_DATA_URL``), an empty cache."""
    server = HTTPServer(shared_data, tmp_path / "mirror.log")
    monkeypatch.setenv("MLAAS4HEP_DATA_URL", server.url)
    monkeypatch.setenv("MLAAS4HEP_DATA_DIR", str(tmp_path / "cache"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def opens(monkeypatch) -> collections.Counter[str]:
    """The files opened from now on, by path (every open of the data layer goes through it)."""
    counted: collections.Counter[str] = collections.Counter()
    real = rootio.open_file

    def counting(path, *args, **kwargs):
        counted[path] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(rootio, "open_file", counting)
    return counted
