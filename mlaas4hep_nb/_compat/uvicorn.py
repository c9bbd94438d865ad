"""uvicorn's httptools protocol, tuned for many small answers and some large requests.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start`` and the body with ``http.response.body``: two socket
writes (two system calls) per response. For small JSON answers those writes
are a large share of the server's time, so this protocol holds the head back
until the body comes (or the event loop turns) and writes both at once. It
also buffers up to 4 MB of a request body before pausing the socket (uvicorn:
64 kB), which saves several event-loop turns per large batch request.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BODY_HIGH_WATER", "CoalescingHttpToolsProtocol"]

BODY_HIGH_WATER = 4 * 1024 * 1024
"""Bytes of a request body buffered per connection before reading from it pauses."""


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
    """`HttpToolsProtocol` with one write per small response, and fewer pauses for big bodies."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        # as uvicorn's, but pausing the socket at BODY_HIGH_WATER rather than 64 kB: a
        # 1,000-row batch (~450 kB) then arrives in one piece, not in seven pause/resume turns
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        if upgrade or self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.cycle.message_event.set()
