"""TFaaSClient without an answer: one readable line naming the server and why, no urllib3 reprs."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
from support import free_port

import mlaas4hep_nb as mn
from mlaas4hep_nb.tfaas import TFaaSError


def failure(client: mn.TFaaSClient) -> TFaaSError:
    with pytest.raises(TFaaSError) as info:
        client.models()
    assert info.value.status == 0
    assert "\n" not in str(info.value)
    assert "HTTPConnection" not in str(info.value)
    assert "Max retries" not in str(info.value)
    return info.value


def test_refused_connection_asks_whether_the_server_runs():
    port = free_port()  # nothing listens there
    error = failure(mn.TFaaSClient(f"http://127.0.0.1:{port}/", retries=1, backoff=0.01))
    assert str(error) == (
        f"cannot reach http://127.0.0.1:{port}: connection refused — is the server running?"
    )
    assert error.url == f"http://127.0.0.1:{port}/models"


def test_a_silent_server_times_out():
    with socket.socket() as listening:  # accepts connections, never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        error = failure(mn.TFaaSClient(f"http://127.0.0.1:{port}", timeout=0.3, retries=0))
    assert str(error) == f"cannot reach http://127.0.0.1:{port}: no answer within 0.3 s"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_https_to_a_plain_http_server_is_a_tls_error():
    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_port}"
        error = failure(mn.TFaaSClient(url, retries=0, timeout=5))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert str(error).startswith(f"cannot reach {url}: TLS error: [SSL")
