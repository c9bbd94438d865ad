"""uvicorn's httptools protocol, sending each response's head and body in one write.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start`` and the body with ``http.response.body``: two socket
writes (two system calls) per response. For small JSON answers those writes
are a large share of the server's time, so this protocol holds the head back
until the body comes (or the event loop turns) and writes both at once.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]


def __dir__() -> list[str]:
    return __all__


class _CoalescingTransport:
    """A transport whose first write waits for the next one, or at most one loop turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data if len(data) < 1 << 16 else held)
        if len(data) >= 1 << 16:  # a large body: no copy, a second write is cheap beside it
            self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with one write per small response."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
