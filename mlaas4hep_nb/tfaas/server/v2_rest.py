"""Open Inference v2 inference over HTTP: the JSON body and Triton's binary data extension.

A request body is JSON, or, with the header ``Inference-Header-Content-Length:
n``, n bytes of JSON followed by the raw data of each input whose
``parameters`` give ``binary_data_size``, in input order. An output is
answered as binary data when the request asks (the output's parameter
``binary_data``, else the request's parameter ``binary_data_output``): its
JSON then gives ``binary_data_size``, the data follow the JSON, and the
answer's ``Inference-Header-Content-Length`` header gives the JSON's length.
The semantics (datatypes, names, shapes) are `v2`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..errors import RequestError
from .v2 import VERSION, Tensor, output_tensors, tensor_from_bytes, tensor_from_list

__all__ = ["HEADER_LENGTH", "InferRequest", "decode_request", "encode_answer"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_UNSUPPORTED = {
    "shared_memory_region": "shared memory is not supported; send the data in the body",
    "classification": "the classification extension is not supported; ask for the output itself",
}


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    Attributes
    ----------
    id : the request's ``id``, echoed in the answer.
    inputs : the input tensors.
    outputs : the output names asked for; None for all.
    binary : per output asked for, its ``binary_data`` parameter where given.
    binary_default : the request's ``binary_data_output`` parameter.
    """

    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None = None
    binary: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False

    def binary_output(self, name: str) -> bool:
        """Whether the output ``name`` is answered as binary data."""
        return self.binary.get(name, self.binary_default)


def _parameters(item: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    parameters = item.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise RequestError(400, f'{what}: "parameters" must be an object')
    for key, why in _UNSUPPORTED.items():
        if key in parameters:
            raise RequestError(400, f"{what}: {why}")
    return parameters


def _flag(parameters: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestError(400, f"{what}: the parameter {key!r} must be true or false")
    return value


def _header(body: bytes, header_length: str | None) -> tuple[dict, int]:
    """The JSON header of ``body`` as a dict, and where the binary data start."""
    size = len(body)
    json_size = size
    if header_length is not None:
        digits = header_length.strip()
        if not (digits.isascii() and digits.isdigit()) or int(digits) > size:
            raise RequestError(
                400,
                f"{HEADER_LENGTH} {header_length!r} must be the length of the JSON header, "
                f"at most that of the body ({size} bytes)",
            )
        json_size = int(digits)
    try:
        doc = orjson.loads(memoryview(body)[:json_size])
    except orjson.JSONDecodeError as err:
        hint = f"; binary data needs the header {HEADER_LENGTH}" if header_length is None else ""
        raise RequestError(400, f"malformed JSON: {err}{hint}") from None
    if not isinstance(doc, dict):
        raise RequestError(400, 'the body must be a JSON object with "inputs"')
    return doc, json_size


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode a v2 inference request body, with ``Inference-Header-Content-Length`` if sent.

    Raises
    ------
    RequestError
        (400) for a malformed body, binary sizes that do not add up to the
        body, shared memory or classification asked for, or a bad tensor.
    """
    doc, offset = _header(body, header_length)
    items = doc.get("inputs")
    if not (isinstance(items, list) and items and all(isinstance(i, dict) for i in items)):
        raise RequestError(400, '"inputs" must be a non-empty list of tensor objects')
    view, inputs = memoryview(body), []
    for i, item in enumerate(items):
        name = item.get("name")
        if not isinstance(name, str):
            raise RequestError(400, f'input {i} has no "name"')
        size = _parameters(item, f"input {name!r}").get("binary_data_size")
        datatype, shape = item.get("datatype"), item.get("shape")
        if size is None:
            if "data" not in item:
                raise RequestError(400, f'input {name!r} has neither "data" nor binary_data_size')
            inputs.append(tensor_from_list(name, datatype, shape, item["data"]))
            continue
        if "data" in item:
            raise RequestError(400, f'input {name!r} has both "data" and binary_data_size')
        left = len(body) - offset
        if type(size) is not int or not 0 <= size <= left:
            raise RequestError(
                400,
                f"input {name!r}: binary_data_size {size!r}, but {left} bytes of binary data "
                f"are left (send {HEADER_LENGTH} with binary data)",
            )
        inputs.append(tensor_from_bytes(name, datatype, shape, view[offset : offset + size]))
        offset += size
    if offset != len(body):
        raise RequestError(400, f"{len(body) - offset} bytes of binary data belong to no input")
    return _with_outputs(doc, inputs)


def _with_outputs(doc: dict, inputs: list[Tensor]) -> InferRequest:
    request_id = doc.get("id")
    binary_default = _flag(_parameters(doc, "the request"), "binary_data_output", "the request")
    names, binary = _requested(doc.get("outputs"))
    return InferRequest(
        request_id if isinstance(request_id, str) else None,
        inputs,
        names,
        binary,
        bool(binary_default),
    )


def _requested(items: object) -> tuple[list[str] | None, dict[str, bool]]:
    """The output names a request's ``outputs`` ask for, and their ``binary_data`` flags."""
    if items is None:
        return None, {}
    if not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
        raise RequestError(400, '"outputs" must be a list of objects with a "name"')
    names, binary = [], {}
    for item in items:
        name = item.get("name")
        if not isinstance(name, str):
            raise RequestError(400, 'each of "outputs" needs a "name"')
        flag = _flag(_parameters(item, f"output {name!r}"), "binary_data", f"output {name!r}")
        if flag is not None:
            binary[name] = flag
        names.append(name)
    return names, binary


def encode_answer(
    model_name: str, request: InferRequest, names: list[str], y: np.ndarray
) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON header when binary data follow it."""
    outputs, chunks = [], []
    for tensor in output_tensors(names, y):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        flat = tensor.data.reshape(-1)  # C-contiguous, as orjson and tobytes need
        if request.binary_output(tensor.name):
            raw = flat.astype("<f4", copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = flat
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": VERSION}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join((header, *chunks)), len(header)
