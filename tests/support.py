"""Helpers shared by the tests and the benchmarks: a free port, and waiting for a server.

The tests import it as ``from support import free_port``: pytest puts this
folder on ``sys.path``, as the folder of the rootdir ``conftest.py`` (import
mode "prepend", no ``__init__.py``), also for the tests in its sub-folders.
The benchmarks, run as ``python benchmarks/bench_x.py``, put this folder on
``sys.path`` themselves before importing it.
"""

from __future__ import annotations

import socket
import subprocess
import time

import requests

__all__ = ["free_port", "wait_until_up"]


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
