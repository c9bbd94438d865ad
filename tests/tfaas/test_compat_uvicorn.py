"""The hook into uvicorn's private HttpToolsProtocol: it fits the installed uvicorn, or falls back.

When one of these fails after a uvicorn upgrade, the message names the hook
and what changed: adapt ``mlaas4hep_nb/_compat/uvicorn.py`` to the new
uvicorn (the server meanwhile runs on uvicorn's stock protocol, slower).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import requests
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from mlaas4hep_nb._compat import uvicorn as hook
from mlaas4hep_nb.tfaas.server import run

CHANGED = f"uvicorn {uvicorn.__version__} changed what {hook.HOOK} uses:"


class Transport(asyncio.Transport):
    """What uvicorn's protocol writes to and pauses, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.pauses = 0
        self.closed = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


async def echo_length(scope, receive, send) -> None:
    """An ASGI app answering the size of the request body."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def protocol(cls: type, loop: asyncio.AbstractEventLoop):
    config = uvicorn.Config(echo_length, lifespan="off", log_config=None, proxy_headers=False)
    return cls(config, ServerState(), {}, _loop=loop)


def request(body_size: int, sent: int | None = None) -> bytes:
    head = f"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {body_size}\r\n\r\n".encode()
    return head + b"0" * (body_size if sent is None else sent)


@pytest.fixture
def fresh_check():
    """`http_protocol` checks once per process: forget that answer before and after."""
    hook.http_protocol.cache_clear()
    yield
    hook.http_protocol.cache_clear()


def test_the_installed_uvicorn_has_all_that_the_hook_uses():
    gaps = hook.missing()
    assert gaps == [], f"{CHANGED} {'; '.join(gaps)}"


def test_a_real_httptools_protocol_has_the_state_the_hook_reads():
    async def main() -> None:
        stock = protocol(httptools_impl.HttpToolsProtocol, asyncio.get_running_loop())
        for name in hook.PROTOCOL_STATE:
            assert hasattr(stock, name), f"{CHANGED} HttpToolsProtocol().{name} is gone"
        assert stock.loop is asyncio.get_running_loop(), f"{CHANGED} HttpToolsProtocol().loop"
        for name in hook.PROTOCOL_METHODS:
            assert callable(getattr(stock, name, None)), f"{CHANGED} HttpToolsProtocol.{name}"
        assert callable(getattr(stock.parser, "should_upgrade", None)), (
            f"{CHANGED} HttpToolsProtocol().parser.should_upgrade"
        )
        transport = Transport()
        stock.connection_made(transport)
        for name in hook.FLOW_METHODS:
            assert callable(getattr(stock.flow, name, None)), f"{CHANGED} .flow.{name}"
        stock.data_received(request(1000, sent=10))  # the head and part of the body
        cycle = stock.cycle
        assert cycle is not None, f"{CHANGED} HttpToolsProtocol().cycle is not set by a request"
        for name in hook.CYCLE_STATE:
            assert hasattr(cycle, name), f"{CHANGED} HttpToolsProtocol().cycle.{name} is gone"
        assert bytes(cycle.body) == b"0" * 10, f"{CHANGED} .cycle.body holds {cycle.body!r}"
        assert cycle.response_complete is False, f"{CHANGED} .cycle.response_complete"
        assert isinstance(cycle.message_event, asyncio.Event), f"{CHANGED} .cycle.message_event"
        assert stock._should_upgrade() is False, f"{CHANGED} HttpToolsProtocol._should_upgrade()"
        stock.connection_lost(None)
        await asyncio.sleep(0)  # the app's task sees the disconnect

    asyncio.run(main())


def test_the_hook_writes_once_and_does_not_pause_below_its_high_water_mark():
    async def main() -> tuple[list[bytes], int]:
        loop = asyncio.get_running_loop()
        tuned = protocol(hook.CoalescingHttpToolsProtocol, loop)
        transport = Transport()
        tuned.connection_made(transport)
        size = 300_000  # above uvicorn's 64 kB, below BODY_HIGH_WATER
        tuned.data_received(request(size))
        for _ in range(100):
            if transport.writes:
                break
            await asyncio.sleep(0.01)
        tuned.connection_lost(None)
        return transport.writes, transport.pauses

    writes, pauses = asyncio.run(main())
    assert pauses == 0
    assert len(writes) == 1, f"{CHANGED} head and body came in {len(writes)} writes"
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n300000")


def test_serve_takes_the_hook_when_it_fits(fresh_check):
    assert run._uvicorn_options("warning")["http"] is hook.CoalescingHttpToolsProtocol


def test_serve_falls_back_to_stock_httptools_with_one_warning(
    fresh_check, monkeypatch, caplog, tmp_path
):
    monkeypatch.setattr(hook, "missing", lambda: ["HttpToolsProtocol.cycle"])
    with caplog.at_level(logging.WARNING, logger=hook.__name__):
        assert run._uvicorn_options("warning")["http"] == "httptools"
        assert run._uvicorn_options("warning")["http"] == "httptools"
    warnings = [r for r in caplog.records if r.name == hook.__name__]
    assert len(warnings) == 1
    assert hook.HOOK in warnings[0].getMessage()
    assert "HttpToolsProtocol.cycle" in warnings[0].getMessage()
    with run.serve_in_background(tmp_path / "models") as server:  # stock protocol, same answers
        answer = requests.get(server.url + "/v2/health/live", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"live": True}
