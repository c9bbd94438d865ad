"""Helpers shared by the tests and the benchmarks: free ports, waiting for servers, XRootD.

The tests import it as ``from support import free_port``: pytest puts this
folder on ``sys.path``, as the folder of the rootdir ``conftest.py`` (import
mode "prepend", no ``__init__.py``), also for the tests in its sub-folders.
The benchmarks, run as ``python benchmarks/bench_x.py``, put this folder on
``sys.path`` themselves before importing it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

__all__ = [
    "free_port",
    "start_xrootd",
    "stop",
    "wait_for_port",
    "wait_until_up",
    "world_readable_copy",
]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    url: str, process: subprocess.Popen, timeout: float = 120, what: str = "server"
) -> None:
    """Return once a GET of ``url`` gets an answer (any status) from the server ``process``.

    Raises
    ------
    RuntimeError
        If ``process`` exits first, or nothing answers within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{what}: {url} did not answer within {timeout}s")


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 20) -> None:
    """Return once something listens on 127.0.0.1:``port``; raise if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def start_xrootd(folder: Path) -> tuple[subprocess.Popen, str] | None:
    """A real XRootD server exporting ``folder``: (process, URL prefix); None if not installed.

    As root it runs as ``nobody`` (``xrootd -R nobody``): see `world_readable_copy`.
    """
    binary = shutil.which("xrootd")
    if binary is None:
        return None
    port = free_port()
    command = [binary, "-p", str(port), str(folder)]
    if os.geteuid() == 0:
        command[1:1] = ["-R", "nobody"]
    log = open(folder.parent / f"xrootd-{port}.log", "w")  # noqa: SIM115 (closed by stop)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    process.log = log  # type: ignore[attr-defined]
    wait_for_port(port, process, "xrootd")
    return process, f"root://127.0.0.1:{port}/{folder}"


def stop(process: subprocess.Popen) -> None:
    """Terminate a server started here and close its log."""
    process.terminate()
    process.wait(10)
    if getattr(process, "log", None):
        process.log.close()


def world_readable_copy(paths, prefix: str) -> Path:
    """Copy files into a fresh folder under /tmp that the XRootD user 'nobody' can read."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    for path in paths:
        target = folder / Path(path).name
        shutil.copy(path, target)
        target.chmod(0o644)
    return folder
