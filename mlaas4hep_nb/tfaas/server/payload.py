"""Decode prediction requests into float32 row matrices, rejecting bad input with a 400.

The TFaaS ``/json`` body is decoded with simdjson straight into a numpy
buffer: the hot path of the server never builds a Python float per value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simdjson

from ..errors import RequestError

__all__ = ["JsonRequest", "as_rows", "check_width", "decode_json"]


def __dir__() -> list[str]:
    return __all__


@dataclass
class JsonRequest:
    """A decoded ``/json`` body: the model named (if any), and rows or raw events."""

    model: str | None
    x: np.ndarray | None  # float32 [rows, n]
    batched: bool  # values was a list of rows (answer a list of outputs)
    events: list | None = None  # raw events when "raw": true


_F32_MAX = float(np.finfo(np.float32).max)


def _finite32(x: np.ndarray) -> np.ndarray:
    """``x`` (finite float64: JSON has no NaN or inf) as float32, a 400 if out of its range."""
    if np.abs(x).max() > _F32_MAX:
        raise RequestError(400, "values must be finite numbers within the float32 range")
    return x.astype(np.float32)


def decode_json(body: bytes) -> JsonRequest:
    """Decode ``{"keys": [...], "values": [...] | [[...], ...], "model": name}``.

    Also ``{"raw": true, "events": [{branch: value, ...}, ...], "model": name}``.
    """
    parser = simdjson.Parser()
    try:
        doc = parser.parse(body)
    except (ValueError, RuntimeError) as err:  # RuntimeError: integers beyond 64 bits
        raise RequestError(400, f"malformed JSON: {err}") from None
    if not isinstance(doc, simdjson.Object):
        raise RequestError(400, 'the body must be a JSON object with "values" and "model"')
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, '"model" must be a string')
    # a missing key costs simdjson an exception: look in the bytes first
    if b'"raw"' in body and doc.get("raw") is True:
        events = doc.get("events")
        if not isinstance(events, simdjson.Array):
            raise RequestError(400, '"raw": true needs "events", a list of objects')
        return JsonRequest(model or None, None, True, events.as_list())
    values = doc.get("values")
    if not isinstance(values, simdjson.Array):
        raise RequestError(400, '"values" must be a list of numbers or a list of rows')
    x, batched = _rows(values)
    return JsonRequest(model or None, x, batched)


def _rows(values) -> tuple[np.ndarray, bool]:
    try:
        flat = np.frombuffer(values.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        msg = '"values" must hold numbers only (no strings, null or booleans)'
        raise RequestError(400, msg) from None
    n = len(values)
    if n == 0 or flat.size == 0:
        raise RequestError(400, '"values" is empty')
    if not isinstance(values[0], simdjson.Array):
        if flat.size != n:
            raise RequestError(400, '"values" must be a flat list of numbers or a list of rows')
        return _finite32(flat.reshape(1, n)), False
    width = len(values[0])
    try:
        rectangular = flat.size == n * width and all(len(row) == width for row in values)
    except TypeError:  # a number among the rows
        rectangular = False
    if not rectangular:
        raise RequestError(400, f'every row of "values" must hold {width} numbers')
    return _finite32(flat.reshape(n, width)), True


def as_rows(values: object, what: str) -> np.ndarray:
    """A float32 ``[rows, n]`` matrix from nested lists (TF Serving, v2, proto), else a 400."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(400, f"{what} must be a rectangular list of rows of numbers") from None
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise RequestError(400, f"{what} must be a non-empty list of rows of numbers")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise RequestError(400, f"{what} must be a list of rows (2 dimensions), not {array.ndim}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or np.abs(array).max() > _F32_MAX:
        raise RequestError(400, f"{what} must be finite numbers within the float32 range")
    return array.astype(np.float32)


def check_width(x: np.ndarray, n_features: int | None, model: str) -> None:
    """A 400 naming both counts when the rows do not have the model's number of inputs."""
    if n_features is not None and x.shape[1] != n_features:
        raise RequestError(
            400, f"model {model!r} takes {n_features} values per row, got {x.shape[1]}"
        )
