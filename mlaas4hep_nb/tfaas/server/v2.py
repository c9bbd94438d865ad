"""Open Inference Protocol v2 semantics, shared by the REST and the gRPC front ends.

A front end decodes its wire format into `Tensor` objects (`tensor_from_bytes`
for binary data, `tensor_from_list` for JSON ``data`` or typed contents),
gets the model's float32 rows from `model_rows`, checks the requested
outputs with `output_names`, and encodes the outputs its own way. Model
metadata, Triton's model configuration and repository index are built here
too. Nothing here knows HTTP or gRPC: bad input raises `RequestError` (400),
an unknown model or version a 404.

Datatypes: a model takes FP32. FP16, FP64 and the integer types INT8 to
INT64 and UINT8 to UINT64 are converted to float32: a value that is not
finite or lies beyond float32's range (or, in JSON data, beyond the range of
the datatype it claims) is refused; integers above 2**24 in magnitude round
to the nearest float32, as FP64 values do. BOOL and BYTES are refused.
Each model has one version, ``"1"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import RequestError

if TYPE_CHECKING:
    from .model import ServedModel
    from .registry import ModelRegistry

__all__ = [
    "DATATYPES",
    "VERSION",
    "Tensor",
    "check_version",
    "model_config",
    "model_inputs",
    "model_metadata",
    "model_rows",
    "output_names",
    "output_tensors",
    "repository_index",
    "tensor_from_bytes",
    "tensor_from_list",
]


def __dir__() -> list[str]:
    return __all__


VERSION = "1"
# little-endian, as the binary data extension and gRPC's raw contents send them
DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in (
        ("FP32", "<f4"),
        ("FP16", "<f2"),
        ("FP64", "<f8"),
        ("INT8", "i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("UINT8", "u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
    )
}
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Tensor:
    """One input tensor of a request, its values decoded.

    Attributes
    ----------
    name, datatype : as the request names them (``datatype`` a key of `DATATYPES`).
    shape : the tensor's shape.
    data : the values, in the datatype's numpy dtype, shaped ``shape``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


def _dtype(name: str, datatype: object) -> np.dtype:
    if datatype in ("BOOL", "BYTES"):
        raise RequestError(
            400,
            f"input {name!r} is {datatype}; models here take numbers: FP32, or one of "
            f"{sorted(DATATYPES)} converted to FP32",
        )
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise RequestError(
            400, f"input {name!r} has datatype {datatype!r}; use one of {sorted(DATATYPES)}"
        )
    return dtype


def _shape(name: str, shape: object) -> tuple[int, ...]:
    if not (
        isinstance(shape, Sequence)
        and not isinstance(shape, str)
        and all(type(d) is int and d >= 0 for d in shape)
    ):
        raise RequestError(400, f"input {name!r}: shape must be a list of sizes, not {shape!r}")
    return tuple(shape)


def _size_error(name: str, count: int, shape: tuple[int, ...]) -> RequestError:
    need = math.prod(shape)
    return RequestError(
        400, f"input {name!r} holds {count} values; shape {list(shape)} needs {need}"
    )


def tensor_from_bytes(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> Tensor:
    """A tensor from raw little-endian bytes (v2 binary data, gRPC ``raw_input_contents``).

    Raises
    ------
    RequestError
        (400) for BOOL, BYTES or an unknown datatype, a bad shape, or a
        byte count that is not what the shape needs.
    """
    dtype = _dtype(name, datatype)
    dims = _shape(name, shape)
    size = len(raw)
    if size % dtype.itemsize:
        raise RequestError(
            400,
            f"input {name!r} holds {size} bytes, not a whole number of {datatype} values "
            f"({dtype.itemsize} bytes each)",
        )
    count = size // dtype.itemsize
    if count != math.prod(dims):
        raise _size_error(name, count, dims)
    return Tensor(name, datatype, dims, np.frombuffer(raw, dtype=dtype).reshape(dims))


def tensor_from_list(name: str, datatype: str, shape: Sequence[int], data: object) -> Tensor:
    """A tensor from a flat or nested list of numbers (JSON ``data``, gRPC typed contents).

    Raises
    ------
    RequestError
        (400) as `tensor_from_bytes`, and for values that are not numbers,
        not integers for an integer datatype, or out of the datatype's range.
    """
    dtype = _dtype(name, datatype)
    dims = _shape(name, shape)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        values = np.asarray(None)  # ragged or unconvertible: refused below
    if values.dtype.kind not in "iuf" and values.size:
        raise RequestError(
            400, f"input {name!r}: data must be a flat or nested list of {datatype} numbers"
        )
    if values.size != math.prod(dims):
        raise _size_error(name, values.size, dims)
    if values.size:
        _check_range(name, datatype, dtype, values)
    return Tensor(name, datatype, dims, values.astype(dtype).reshape(dims))


def _check_range(name: str, datatype: str, dtype: np.dtype, values: np.ndarray) -> None:
    """A 400 if ``values`` cannot be ``dtype`` without a silent change."""
    if dtype.kind == "f":
        _check_finite(name, values, float(np.finfo(dtype).max), datatype)
        return
    if values.dtype.kind == "f" and not (np.isfinite(values) & (values == np.trunc(values))).all():
        raise RequestError(400, f"input {name!r} is {datatype}: its data must be integers")
    info = np.iinfo(dtype)
    if values.min() < info.min or values.max() > info.max:
        raise RequestError(
            400, f"input {name!r}: values beyond the range of {datatype} ({info.min}..{info.max})"
        )


def _check_finite(name: str, values: np.ndarray, limit: float | None, datatype: str) -> None:
    if not np.isfinite(values).all():
        raise RequestError(400, f"input {name!r} holds values that are not finite (NaN or inf)")
    if limit is not None and np.abs(values).max() > limit:
        raise RequestError(
            400, f"input {name!r}: values beyond the {datatype} range (largest {limit:g})"
        )


def _as_float32(tensor: Tensor) -> np.ndarray:
    data = tensor.data
    if data.dtype.kind == "f":
        # NaN and inf are refused as in JSON; FP64 beyond float32's range would become inf
        limit = _F32_MAX if data.dtype.itemsize > 4 else None
        _check_finite(tensor.name, data, limit, "FP32")
    return data.astype(np.float32, copy=False)


def model_inputs(model: ServedModel) -> list[str]:
    """The input names a request may send: the rows, then the optional mask."""
    mask = model.mask_input
    return [model.input_name] if mask is None else [model.input_name, mask]


def _rows(model: ServedModel, tensor: Tensor) -> np.ndarray:
    shape, n = tensor.shape, model.n_features
    if len(shape) not in (1, 2):
        width = n if n is not None else "n"
        raise RequestError(
            400,
            f"input {tensor.name!r} has shape {list(shape)}; model {model.name!r} takes "
            f"[rows, {width}] (or [{width}] for one row)",
        )
    if 0 in shape:
        raise RequestError(400, f"input {tensor.name!r} has shape {list(shape)}: no values")
    if n is not None and shape[-1] != n:
        raise RequestError(
            400,
            f"input {tensor.name!r} has {shape[-1]} values per row; model {model.name!r} takes {n}",
        )
    return _as_float32(tensor).reshape(1 if len(shape) == 1 else shape[0], shape[-1])


def model_rows(
    model: ServedModel, inputs: Sequence[Tensor]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The float32 rows ``[rows, n]`` for ``model``, and the mask if the request sent it.

    The inputs are named as `model_metadata` lists them: the rows (one row
    for a 1-D shape), and for a bundle with ``serving_with_mask`` an optional
    mask of the same shape (1 = real value), which the caller passes to
    ``model.predict_masked``.

    Raises
    ------
    RequestError
        (400) for an input the model does not have, one given twice, the
        rows missing, a shape that is not ``[rows, n]`` or ``[n]``, or a mask
        shaped otherwise than the rows.
    """
    names = model_inputs(model)
    given: dict[str, Tensor] = {}
    for tensor in inputs:
        if tensor.name not in names:
            raise RequestError(
                400, f"model {model.name!r} has no input {tensor.name!r}; its inputs: {names}"
            )
        if tensor.name in given:
            raise RequestError(400, f"input {tensor.name!r} is given twice")
        given[tensor.name] = tensor
    if model.input_name not in given:
        raise RequestError(400, f"model {model.name!r} needs the input {model.input_name!r}")
    x = _rows(model, given[model.input_name])
    mask_tensor = given.get(names[-1]) if len(names) > 1 else None
    if mask_tensor is None:
        return x, None
    mask = _rows(model, mask_tensor)
    if mask.shape != x.shape:
        raise RequestError(
            400,
            f"input {mask_tensor.name!r} has shape {list(mask_tensor.shape)}; "
            f"it needs that of {model.input_name!r}, {list(given[model.input_name].shape)}",
        )
    return x, mask


def output_names(model: ServedModel, requested: Sequence[str] | None) -> list[str]:
    """The outputs to answer: ``requested`` (checked, repeats dropped), or all when None or empty.

    Raises
    ------
    RequestError
        (400) naming an output the model does not have.
    """
    outputs = [model.output_name]
    if not requested:
        return outputs
    for name in requested:
        if name not in outputs:
            raise RequestError(
                400, f"model {model.name!r} has no output {name!r}; its outputs: {outputs}"
            )
    return list(dict.fromkeys(requested))


def output_tensors(names: Sequence[str], y: np.ndarray) -> list[Tensor]:
    """The outputs ``names`` (from `output_names`) of the model's result ``y`` ``[rows, k]``."""
    data = np.asarray(y, dtype=np.float32)
    return [Tensor(name, "FP32", data.shape, data) for name in names]


def check_version(model: ServedModel, version: str | None) -> None:
    """A 404 unless ``version`` is the one served (``"1"``) or not given (None or empty)."""
    if version and version != VERSION:
        raise RequestError(
            404, f"model {model.name!r} has no version {version!r}; served: [{VERSION!r}]"
        )


def _platform(model: ServedModel) -> str:
    return "tensorflow_graphdef" if model.frozen_graph is not None else "tensorflow_savedmodel"


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """The v2 model metadata: name, versions, platform, inputs and outputs."""
    width, out = model.n_features or -1, model.output_width or -1
    return {
        "name": model.name,
        "versions": [VERSION],
        "platform": _platform(model),
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": [-1, width]} for name in model_inputs(model)
        ],
        "outputs": [{"name": model.output_name, "datatype": "FP32", "shape": [-1, out]}],
    }


def model_config(model: ServedModel, max_batch_size: int) -> dict[str, Any]:
    """Triton's model configuration; ``dims`` leave out the batch dimension.

    ``max_batch_size`` is the most rows a batched model call takes (the
    server also answers larger requests, each in one call of its own).
    """
    mask = model.mask_input
    return {
        "name": model.name,
        "platform": _platform(model),
        "backend": "tensorflow",
        "max_batch_size": max_batch_size,
        "version_policy": {"specific": {"versions": [int(VERSION)]}},
        "input": [
            {
                "name": name,
                "data_type": "TYPE_FP32",
                "dims": [model.n_features or -1],
                "optional": name == mask,
            }
            for name in model_inputs(model)
        ],
        "output": [
            {
                "name": model.output_name,
                "data_type": "TYPE_FP32",
                "dims": [model.output_width or -1],
            }
        ],
    }


def repository_index(registry: ModelRegistry, ready: bool = False) -> list[dict[str, str]]:
    """Triton's repository index: served models ``READY``, folders that failed ``UNAVAILABLE``.

    With ``ready``, only the models that are ready.
    """
    index = [
        {"name": model.name, "version": VERSION, "state": "READY"} for model in registry.models()
    ]
    if not ready:
        index += [
            {"name": name, "version": VERSION, "state": "UNAVAILABLE", "reason": why}
            for name, why in registry.skipped.items()
        ]
    return sorted(index, key=lambda entry: entry["name"])
