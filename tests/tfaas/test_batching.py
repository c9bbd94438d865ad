"""The micro-batcher and request decoding, without TensorFlow or HTTP."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mlaas4hep_nb.tfaas.errors import RequestError
from mlaas4hep_nb.tfaas.server.batching import MicroBatcher
from mlaas4hep_nb.tfaas.server.payload import as_rows, decode_json


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("threads", [0, 2])
def test_concurrent_rows_share_calls_and_get_their_own_answers(threads):
    calls = []

    def model(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x[:, :1] * 2  # one output per row: twice its first value

    executor = ThreadPoolExecutor(threads) if threads else None

    async def main():
        batcher = MicroBatcher(model, executor, max_rows=64, max_wait=0.005)
        rows = [np.full((1, 3), i, dtype=np.float32) for i in range(200)]
        answers = await asyncio.gather(*(batcher(x) for x in rows))
        return batcher, answers

    batcher, answers = run(main())
    for i, y in enumerate(answers):
        assert y.shape == (1, 1)
        assert y[0, 0] == 2 * i
    assert sum(calls) == 200
    assert max(calls) <= 64
    assert len(calls) <= 200 / 64 + 2  # gathered, not one call per request
    assert batcher.calls == len(calls)
    if executor:
        executor.shutdown()


def test_large_request_runs_alone_and_widths_are_not_mixed():
    calls = []

    def model(x):
        calls.append(x.shape)
        return x.sum(axis=1, keepdims=True)

    async def main():
        batcher = MicroBatcher(model, None, max_rows=8, max_wait=0.005)
        big = np.ones((20, 2), dtype=np.float32)
        small = np.ones((1, 2), dtype=np.float32)
        other = np.ones((1, 5), dtype=np.float32)
        return await asyncio.gather(batcher(big), batcher(small), batcher(other))

    big, small, other = run(main())
    assert big.shape == (20, 1)
    assert small[0, 0] == 2
    assert other[0, 0] == 5
    assert (20, 2) in calls
    assert (1, 5) in calls


def test_a_failing_call_fails_only_its_batch():
    def model(x):
        if (x < 0).any():
            msg = "negative"
            raise ValueError(msg)
        return x

    async def main():
        batcher = MicroBatcher(model, None, max_rows=1, max_wait=0.001)
        bad = batcher(-np.ones((1, 1), dtype=np.float32))
        good = batcher(np.ones((1, 1), dtype=np.float32))
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = run(main())
    assert isinstance(bad, ValueError)
    assert good[0, 0] == 1


def test_batches_are_answered_in_the_event_loop_thread():
    loop_thread = []

    async def main():
        loop_thread.append(threading.get_ident())
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(lambda x: x, executor)
            return await batcher(np.zeros((3, 2), dtype=np.float32))

    assert run(main()).shape == (3, 2)


@pytest.mark.parametrize(
    ("body", "shape", "batched"),
    [
        (b'{"keys": ["a", "b"], "values": [1, 2.5], "model": "m"}', (1, 2), False),
        (b'{"values": [[1, 2], [3, 4], [5, 6]], "model": "m"}', (3, 2), True),
        (b'{"values": [[-1e30, 1e-30]]}', (1, 2), True),
    ],
)
def test_decode_rows(body, shape, batched):
    request = decode_json(body)
    assert request.x.shape == shape
    assert request.x.dtype == np.float32
    assert request.batched is batched


def test_decode_raw_events():
    request = decode_json(b'{"model": "m", "raw": true, "events": [{"MET_pt": 1, "Jet_pt": [2]}]}')
    assert request.events == [{"MET_pt": 1, "Jet_pt": [2]}]
    assert request.model == "m"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{bad json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"values": "1,2"}', "list of numbers"),
        (b'{"values": [1, "2"]}', "numbers only"),
        (b'{"values": [1, null]}', "numbers only"),
        (b'{"values": [1, true]}', "numbers only"),
        (b'{"values": []}', "empty"),
        (b'{"values": [[1, 2], [3]]}', "every row"),
        (b'{"values": [[1, 2], 3]}', "every row"),
        (b'{"values": [1, [2, 3]]}', "flat list"),
        (b'{"values": [1e39]}', "float32 range"),
        (b'{"values": [1e400]}', "malformed JSON"),
        (b'{"values": [1], "model": 3}', '"model"'),
        (b'{"raw": true, "events": 3}', "events"),
        (b'\xff\xfe{"values": [1]}', "malformed JSON"),
    ],
)
def test_decode_rejects_bad_bodies(body, why):
    with pytest.raises(RequestError, match=why) as info:
        decode_json(body)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "values", [[[1, 2], [3]], [["a"]], [[None]], [], [[[1]]], [[float("nan")]], [[1e39]]]
)
def test_as_rows_rejects(values):
    with pytest.raises(RequestError):
        as_rows(values, "instances")


def test_as_rows_accepts_ints_and_one_row():
    assert as_rows([1, 2, 3], "x").shape == (1, 3)
    assert as_rows([[1, 2], [3, 4]], "x").dtype == np.float32
