"""TF Serving over gRPC: ``tensorflow.serving.PredictionService``'s Predict and GetModelMetadata.

The request and response messages are this package's copies of TF Serving's
(``protos/``, another proto package, so tensorflow-serving-api can be
imported beside them); their tensors are TensorFlow's own ``TensorProto``.
As over REST (`tf_serving`): ``signature_name`` picks a signature of the
bundle (empty: the served one, ``serving_default`` unless params.json names
another), which goes through the micro-batcher, any other (``serving``,
``serving_with_mask``) runs as called; version 1 only, no labels; the
metadata is REST's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import json_format

from ..errors import RequestError
from .grpc_methods import Backend, unary
from .payload import check_width
from .protos import get_model_metadata_pb2, predict_pb2
from .tf_serving import check_selector, check_signature, model_metadata

if TYPE_CHECKING:
    from .model import ServedModel
    from .signatures import Signature

__all__ = ["SERVICE", "tf_serving_methods"]

SERVICE = "tensorflow.serving.PredictionService"
# the type of the "signature_def" metadata, as TF Serving packs it (its proto package)
SIGNATURE_DEF_MAP = "type.googleapis.com/tensorflow.serving.SignatureDefMap"


def __dir__() -> list[str]:
    return __all__


def _model(app: Backend, spec: Any) -> ServedModel:
    """The model a ``ModelSpec`` names: 404 if unknown or for a version other than 1."""
    if not spec.name:
        raise RequestError(400, "name the model: model_spec.name is empty")
    model = app.registry.get(spec.name)
    choice = spec.WhichOneof("version_choice")
    version = str(spec.version.value) if choice == "version" else None
    check_selector(model, version, spec.version_label if choice == "version_label" else None)
    return model


def _arrays(request: Any, signature: Signature) -> dict[str, np.ndarray]:
    """The inputs as numpy arrays, exactly the signature's (400 naming what is off)."""
    import tensorflow as tf

    given, wanted = set(request.inputs), set(signature.inputs)
    if given != wanted:
        raise RequestError(
            400,
            f"the inputs {sorted(given)} are not the signature's {sorted(wanted)}"
            f" (missing {sorted(wanted - given)}, extra {sorted(given - wanted)})",
        )
    arrays = {}
    for name, proto in request.inputs.items():
        try:
            array = tf.make_ndarray(proto)
        except (TypeError, ValueError) as err:
            raise RequestError(400, f"input {name!r} is not a valid tensor: {err}") from None
        shape = [-1 if d is None else d for d in signature.inputs[name].shape]
        if array.dtype.kind not in "biuf" or array.ndim != len(shape) or array.size == 0:
            raise RequestError(
                400,
                f"input {name!r} must be a non-empty tensor of numbers of shape"
                f" {shape}, not {array.dtype} {list(array.shape)}",
            )
        arrays[name] = array
    return arrays


def _outputs(request: Any, signature: Signature) -> list[str]:
    unknown = sorted(set(request.output_filter) - set(signature.outputs))
    if unknown:
        raise RequestError(
            400, f"output_filter names {unknown}; the signature has {sorted(signature.outputs)}"
        )
    return list(request.output_filter) or sorted(signature.outputs)


async def _predict(
    app: Backend, model: ServedModel, name: str, signature: Signature, request: Any
) -> dict[str, np.ndarray]:
    arrays = _arrays(request, signature)
    outputs = _outputs(request, signature)
    if name == model.signature_name and outputs == [model.output_name] and len(arrays) == 1:
        x = np.asarray(next(iter(arrays.values())), dtype=np.float32)
        if x.ndim == 2:  # else an image model's [rows, height, width, channels]
            check_width(x, model.n_features, model.name)
        return {model.output_name: await app.predict(model, x)}

    def run() -> dict[str, np.ndarray]:
        return {output: signature.fetch(output, **arrays) for output in outputs}

    return await asyncio.get_running_loop().run_in_executor(app.executor, run)


def tf_serving_methods(app: Backend) -> tuple[str, dict[str, grpc.RpcMethodHandler]]:
    """The service name and its method handlers, serving the models of ``app``."""

    async def predict(request, context) -> predict_pb2.PredictResponse:
        import tensorflow as tf

        model = _model(app, request.model_spec)
        name = check_signature(model, request.model_spec.signature_name)
        signature = model.signatures[name]
        outputs = await _predict(app, model, name, signature, request)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = 1
        response.model_spec.signature_name = name
        for key, y in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(y))
        return response

    async def get_model_metadata(request, context) -> Any:
        model = _model(app, request.model_spec)
        if list(request.metadata_field) != ["signature_def"]:
            raise RequestError(400, 'metadata_field must be ["signature_def"], the one served')
        found = json_format.ParseDict(
            model_metadata(model)["metadata"]["signature_def"],
            get_model_metadata_pb2.SignatureDefMap(),
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = 1
        packed = response.metadata["signature_def"]
        packed.type_url = SIGNATURE_DEF_MAP
        packed.value = found.SerializeToString()
        return response

    return SERVICE, {
        "Predict": unary(app, predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "GetModelMetadata": unary(
            app,
            get_model_metadata,
            get_model_metadata_pb2.GetModelMetadataRequest,
            get_model_metadata_pb2.GetModelMetadataResponse,
        ),
    }
