"""Helpers shared by the tests and the benchmarks: free ports, waiting for servers, XRootD.

The tests import it as ``from support import free_port``: pytest puts this
folder on ``sys.path``, as the folder of the rootdir ``conftest.py`` (import
mode "prepend", no ``__init__.py``), also for the tests in its sub-folders.
The benchmarks, run as ``python benchmarks/bench_x.py``, put this folder on
``sys.path`` themselves before importing it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

__all__ = [
    "DelayProxy",
    "free_port",
    "restart_xrootd",
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


def start_xrootd(folder: Path, port: int | None = None) -> tuple[subprocess.Popen, str] | None:
    """A real XRootD server exporting ``folder``: (process, URL prefix); None if not installed.

    As root it runs as ``nobody`` (``xrootd -R nobody``): see `world_readable_copy`.
    ``port`` restarts a server where one was (a free port by default).
    """
    binary = shutil.which("xrootd")
    if binary is None:
        return None
    port = port or free_port()
    command = [binary, "-p", str(port), str(folder)]
    if os.geteuid() == 0:
        command[1:1] = ["-R", "nobody"]
    log = open(folder.parent / f"xrootd-{port}.log", "w")  # noqa: SIM115 (closed by stop)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    process.log = log  # type: ignore[attr-defined]
    process.port = port  # type: ignore[attr-defined]
    wait_for_port(port, process, "xrootd")
    return process, f"root://127.0.0.1:{port}/{folder}"


def restart_xrootd(process: subprocess.Popen, folder: Path) -> subprocess.Popen:
    """Kill an XRootD server of `start_xrootd` (SIGKILL: its clients see their connections
    reset, and its open files are gone) and start a new one on its port; the new process."""
    process.kill()
    process.wait(10)
    process.log.close()  # type: ignore[attr-defined]
    started = start_xrootd(folder, process.port)  # type: ignore[attr-defined]
    assert started is not None
    return started[0]


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


# XRootD request codes (XProtocol.hh) by name, for DelayProxy's counts
_XRD_REQUESTS = {
    3000: "auth", 3001: "query", 3003: "close", 3004: "dirlist", 3006: "protocol",
    3007: "login", 3010: "open", 3011: "ping", 3013: "read", 3017: "stat", 3022: "statx",
    3023: "endsess", 3024: "bind", 3025: "readv", 3027: "locate", 3029: "sigver",
    3030: "pgread",
}  # fmt: skip
_XRD_HANDSHAKE = 20  # bytes a client sends first on a connection, before any request


class _XRootDRequests:
    """Split one connection's client-to-server bytes into XRootD requests, by name.

    Every request has a 24-byte header (stream id, request id, 16 bytes of
    parameters, the length of the data that follows): the requests are counted
    exactly, however TCP cuts or joins them.
    """

    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts
        self.buffer = b""
        self.skip = _XRD_HANDSHAKE

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer, self.skip = self.buffer[taken:], self.skip - taken
                if self.skip:
                    return
            if len(self.buffer) < 24:
                return
            request, length = struct.unpack(">2xH16xi", self.buffer[:24])
            self.counts[_XRD_REQUESTS.get(request, str(request))] += 1
            self.buffer, self.skip = self.buffer[24:], length


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays every byte by ``delay`` seconds each way.

    It stands for a distant server (``tc netem`` needs root and a kernel module):
    each chunk it receives is sent on ``delay`` seconds later, in order, on its
    own schedule, so a round trip through it takes ``2 * delay`` longer while
    bandwidth is not limited. ``counts()`` gives the connections and, for an
    XRootD server behind it, the requests the clients sent (``read``,
    ``readv``, ``stat``, ``open``, ``query``, ...), parsed from the request
    headers. It runs its event loop on a thread of its own.
    """

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="delay-proxy")
        self._thread.start()
        self._started.wait(10)

    def counts(self) -> dict[str, int]:
        """Connections and XRootD requests so far (a copy)."""
        with self._lock:
            return dict(self._counts)

    def stop(self) -> None:
        """Close the listening socket and every connection, then the loop."""

        async def shutdown() -> None:
            self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port)
        )
        self._started.set()
        self._loop.run_forever()

    async def _connection(self, client_r, client_w) -> None:
        with self._lock:
            self._counts["connections"] += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        requests = _XRootDRequests(self._counts)

        def count(data: bytes) -> None:
            with self._lock:
                requests.feed(data)

        try:
            await asyncio.gather(
                self._pump(client_r, server_w, count), self._pump(server_r, client_w, None)
            )
        except asyncio.CancelledError:  # stop(): end quietly, not as a failed task
            client_w.close()
            server_w.close()

    async def _pump(self, reader, writer, seen) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        with contextlib.suppress(OSError):
            while data := await reader.read(1 << 16):
                if seen is not None:
                    seen(data)
                queue.put_nowait((loop.time() + self.delay, data))
        queue.put_nowait((loop.time() + self.delay, b""))
        with contextlib.suppress(OSError):
            await delivering
