"""uvicorn's httptools protocol, tuned for many small answers and some large requests.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start`` and the body with ``http.response.body``: two socket
writes (two system calls) per response. For small JSON answers those writes
are a large share of the server's time, so this protocol holds the head back
until the body comes (or the event loop turns) and writes both at once. It
also buffers up to 4 MB of a request body before pausing the socket (uvicorn:
64 kB), which saves several event-loop turns per large batch request.

The hook
--------
`CoalescingHttpToolsProtocol` subclasses uvicorn's ``HttpToolsProtocol``
(``uvicorn.protocols.http.httptools_impl``, not public API) and uses its
private per-connection state: ``loop``, ``parser``, ``cycle`` (the request's
``body``, ``response_complete`` and ``message_event``), ``flow``
(``pause_reading``) and ``_should_upgrade``; its ``on_body`` is a copy of
uvicorn's with another pause threshold. `http_protocol` checks once (`missing`)
that the installed uvicorn still has all of that and returns the subclass;
else uvicorn's stock ``"httptools"`` protocol (public: a name uvicorn's
``http`` setting takes), logging one warning that names `HOOK`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from types import ModuleType
from typing import Any

httptools_impl: ModuleType | None
try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # httptools not installed, or uvicorn moved its protocol: see missing()
    httptools_impl = None

__all__ = ["BODY_HIGH_WATER", "HOOK", "CoalescingHttpToolsProtocol", "http_protocol", "missing"]

log = logging.getLogger(__name__)

HOOK = "mlaas4hep_nb._compat.uvicorn.CoalescingHttpToolsProtocol"
"""The hook's name, as the fallback's warning and the tests' failures give it."""

BODY_HIGH_WATER = 4 * 1024 * 1024
"""Bytes of a request body buffered per connection before reading from it pauses."""

# What the hook uses of uvicorn's, by the class that has it (checked by `missing`).
PROTOCOL_METHODS = ("connection_made", "on_body", "_should_upgrade")
PROTOCOL_STATE = ("loop", "parser", "cycle", "flow")  # set by __init__ and connection_made
CYCLE_STATE = ("body", "response_complete", "message_event")  # RequestResponseCycle.__init__
FLOW_METHODS = ("pause_reading",)  # FlowControl
# The names that uvicorn's own on_body uses: while they are these, the on_body
# below is a copy of it (but for the threshold); a change there is a change in
# what on_body does, which the copy would miss.
ON_BODY_NAMES = frozenset(
    (
        "parser", "should_upgrade", "_should_upgrade", "cycle", "response_complete", "body",
        "len", "HIGH_WATER_LIMIT", "flow", "pause_reading", "message_event", "set",
    )
)  # fmt: skip

_Base: type = getattr(httptools_impl, "HttpToolsProtocol", None) or asyncio.Protocol


def __dir__() -> list[str]:
    return __all__


def _code_names(function: object) -> frozenset[str]:
    code = getattr(function, "__code__", None)
    return frozenset(code.co_names) if code is not None else frozenset()


def missing() -> list[str]:
    """What the hook uses that the installed uvicorn lacks, as ``Class.attribute``; [] if none.

    A static look at uvicorn's classes and code (no instance is made): the
    methods must exist, the state must be set where uvicorn sets it today, and
    ``on_body`` must use the names it uses today.
    """
    if httptools_impl is None:
        return ["uvicorn.protocols.http.httptools_impl (does not import)"]
    protocol: Any = getattr(httptools_impl, "HttpToolsProtocol", None)
    cycle: Any = getattr(httptools_impl, "RequestResponseCycle", None)
    flow: Any = getattr(httptools_impl, "FlowControl", None)
    gaps = [
        f"httptools_impl.{name}"
        for name, value in (
            ("HttpToolsProtocol", protocol),
            ("RequestResponseCycle", cycle),
            ("FlowControl", flow),
        )
        if value is None
    ]
    if gaps:
        return gaps
    gaps += [
        f"HttpToolsProtocol.{name}"
        for name in PROTOCOL_METHODS
        if not callable(getattr(protocol, name, None))
    ]
    assigned = _code_names(protocol.__init__) | _code_names(protocol.connection_made)
    gaps += [f"HttpToolsProtocol.{name}" for name in PROTOCOL_STATE if name not in assigned]
    cycle_names = _code_names(cycle.__init__)
    gaps += [f"RequestResponseCycle.{name}" for name in CYCLE_STATE if name not in cycle_names]
    gaps += [
        f"FlowControl.{name}" for name in FLOW_METHODS if not callable(getattr(flow, name, None))
    ]
    on_body = _code_names(getattr(protocol, "on_body", None))
    if on_body and on_body != ON_BODY_NAMES:
        new, gone = sorted(on_body - ON_BODY_NAMES), sorted(ON_BODY_NAMES - on_body)
        gaps.append(f"HttpToolsProtocol.on_body (uses now {new}, no longer {gone})")
    return gaps


@functools.cache
def http_protocol() -> str | type:
    """uvicorn's ``http`` setting: the hook when it fits the installed uvicorn, else stock.

    Checked once per process; a fallback logs one warning naming the hook and
    what it misses.
    """
    gaps = missing()
    if not gaps:
        return CoalescingHttpToolsProtocol
    log.warning(
        "uvicorn changed: %s does not fit it (missing or changed: %s); serving with "
        "uvicorn's stock 'httptools' protocol (separate writes of head and body)",
        HOOK,
        "; ".join(gaps),
    )
    return "httptools"


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


class CoalescingHttpToolsProtocol(_Base):
    """`HttpToolsProtocol` with one write per small response, and fewer pauses for big bodies.

    Use it through `http_protocol`, which checks that it fits the installed uvicorn.
    """

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
