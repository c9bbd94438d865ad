"""TF Serving REST (``/v1``): predict requests, versions, labels and model metadata.

Each model has one version, 1, and no version labels: as TF Serving without
a label configuration, a label is refused (400, "Unrecognized servable
version label"). ``signature_name`` picks any signature of the bundle
(``serving_default``, the upstream ``serving``, ``serving_with_mask`` where
it exists); instances and columnar inputs are checked against its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RequestError
from .payload import as_rows
from .v2 import VERSION, check_version

if TYPE_CHECKING:
    import numpy as np

    from .model import ServedModel
    from .signatures import Signature

__all__ = [
    "PredictRequest",
    "check_selector",
    "check_signature",
    "model_metadata",
    "predict_request",
    "status",
]


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class PredictRequest:
    """A decoded ``:predict`` body: the signature to run, its inputs, the answer's key."""

    signature: str
    inputs: dict[str, np.ndarray]  # float32 rows by input name
    key: str  # "predictions" for the row format, "outputs" for the columnar one


def check_selector(model: ServedModel, version: str | None, label: str | None) -> None:
    """A 404 for a version other than 1, a 400 for any label (none is defined)."""
    if label is not None:
        raise RequestError(
            400,
            f"Unrecognized servable version label: {label} (this server defines no labels; "
            f"ask /v1/models/{model.name} or /v1/models/{model.name}/versions/{VERSION})",
        )
    check_version(model, version)


def status() -> dict[str, Any]:
    """The model status answer: its one version, available."""
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE", "status": ok}]}


def _tensor_info(tensor) -> dict[str, Any]:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in tensor.shape]
    dtype = types_pb2.DataType.Name(tf.as_dtype(tensor.dtype).as_datatype_enum)
    return {
        "dtype": dtype,
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": tensor.graph_name,
    }


def _signature_def(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": {name: _tensor_info(t) for name, t in sorted(signature.inputs.items())},
        "outputs": {name: _tensor_info(t) for name, t in sorted(signature.outputs.items())},
        "method_name": "tensorflow/serving/predict",
    }


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """``GET /v1/models/{name}/metadata``: the bundle's signatures as TF Serving shows them."""
    signatures = {name: _signature_def(s) for name, s in sorted(model.signatures.items())}
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": VERSION},
        "metadata": {"signature_def": {"signature_def": signatures}},
    }


def check_signature(model: ServedModel, name: object) -> str:
    """The signature ``signature_name`` names (None or "": the model's default); 400 if none."""
    if name is None or name == "":
        name = model.signature_name
    if not isinstance(name, str):
        raise RequestError(400, "'signature_name' must be a string")
    if name not in model.signatures:
        raise RequestError(
            400,
            f"model {model.name!r} has no signature {name!r}; "
            f"its signatures: {sorted(model.signatures)}",
        )
    return name


def _check_keys(keys: object, names: list[str], what: str, signature: str) -> None:
    if not isinstance(keys, dict):
        return
    for key in keys:
        if key not in names:
            raise RequestError(
                400, f"{what} has the key {key!r}; signature {signature!r} takes {names}"
            )
    for name in names:
        if name not in keys:
            raise RequestError(400, f"{what} lacks the input {name!r} of signature {signature!r}")


def predict_request(model: ServedModel, body: object) -> PredictRequest:
    """Decode a ``:predict`` body, row (``instances``) or columnar (``inputs``) format.

    Raises
    ------
    RequestError
        (400) for an unknown signature, keys that are not its inputs (or
        lack one), or values that are not rows of numbers.
    """
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise RequestError(400, 'send an object with either "instances" or "inputs"')
    signature = check_signature(model, body.get("signature_name"))
    names = sorted(model.signatures[signature].inputs)
    key = "instances" if "instances" in body else "inputs"
    data = body[key]
    if key == "instances" and isinstance(data, list) and data and isinstance(data[0], dict):
        for i, instance in enumerate(data):
            if not isinstance(instance, dict):
                raise RequestError(400, f"instance {i} is not an object, as instance 0 is")
            _check_keys(instance, names, f"instance {i}", signature)
        columns = {name: [instance[name] for instance in data] for name in names}
    elif isinstance(data, dict):
        _check_keys(data, names, f'"{key}"', signature)
        columns = data
    elif len(names) == 1:
        columns = {names[0]: data}
    else:
        raise RequestError(
            400, f"signature {signature!r} takes {names}: send objects keyed by input name"
        )
    inputs = {name: as_rows(columns[name], f"{key} {name!r}") for name in names}
    counts = {len(rows) for rows in inputs.values()}
    if len(counts) > 1:
        raise RequestError(400, f"the inputs {names} must have the same number of rows")
    answer = "predictions" if key == "instances" else "outputs"
    return PredictRequest(signature, inputs, answer)
