"""KServe v2 over gRPC: Triton's ``inference.GRPCInferenceService``, the methods clients call.

The messages are this package's copy of Triton's protos under another proto
package (``protos/``), so they never clash with tritonclient's or kserve's in
one process; the service keeps its wire name, ``inference.GRPCInferenceService``,
so its method paths are Triton's. Served: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer, ModelConfig, ModelStatistics and
RepositoryIndex (the calls of CMSSW's SONIC client). Each model has one version, "1".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import json_format

from ..errors import RequestError
from ..names import SERVER_NAME
from . import v2
from .grpc_methods import Backend, unary
from .protos import grpc_service_pb2 as pb
from .protos import model_config_pb2

if TYPE_CHECKING:
    from .model import ServedModel

__all__ = ["SERVICE", "v2_methods"]

SERVICE = "inference.GRPCInferenceService"
# the typed field of InferTensorContents that holds each datatype, and its numpy type
_CONTENTS = {
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
}


def __dir__() -> list[str]:
    return __all__


def _model(app: Backend, name: str, version: str) -> ServedModel:
    """The served model ``name`` (404 if unknown, or for a version other than "1")."""
    if not name:
        raise RequestError(400, "name the model: model_name is empty")
    model = app.registry.get(name)
    v2.check_version(model, version)
    return model


def _typed(tensor: Any) -> v2.Tensor:
    """An input sent as typed ``contents``: the field of its datatype (a copy, number by number)."""
    field = _CONTENTS.get(tensor.datatype)
    values: Any = []  # v2 refuses BOOL, BYTES and unknown datatypes by name
    if field is not None:
        name, dtype = field
        contents = getattr(tensor.contents, name)
        values = np.fromiter(contents, dtype=dtype, count=len(contents))
    elif tensor.datatype == "FP16":
        raise RequestError(400, f"input {tensor.name!r} is FP16: send it in raw_input_contents")
    return v2.tensor_from_list(tensor.name, tensor.datatype, tensor.shape, values)


def _inputs(request: Any) -> list[v2.Tensor]:
    raw = request.raw_input_contents
    if not raw:
        return [_typed(tensor) for tensor in request.inputs]
    if len(raw) != len(request.inputs):
        raise RequestError(
            400,
            f"{len(request.inputs)} inputs but {len(raw)} raw_input_contents: "
            "send every input raw, or none",
        )
    return [
        v2.tensor_from_bytes(tensor.name, tensor.datatype, tensor.shape, data)
        for tensor, data in zip(request.inputs, raw, strict=True)
    ]


def _statistics(app: Backend, model: ServedModel) -> pb.ModelStatistics:
    # the model calls are those of the version served now (a re-upload has a new batcher)
    counts = app.stats.get(model.name)
    batcher = app.batcher_of(model.name)
    stats = pb.ModelStatistics(
        name=model.name,
        version=v2.VERSION,
        last_inference=counts.last_inference_ms,
        inference_count=counts.inference_count,
        execution_count=batcher.calls if batcher is not None else 0,
    )
    stats.inference_stats.success.count = counts.success_count
    stats.inference_stats.success.ns = counts.success_ns
    stats.inference_stats.fail.count = counts.fail_count
    stats.inference_stats.fail.ns = counts.fail_ns
    return stats


def v2_methods(app: Backend) -> tuple[str, dict[str, grpc.RpcMethodHandler]]:
    """The service name and its method handlers, serving the models of ``app``."""
    from ... import __version__

    async def server_live(request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def model_ready(request, context) -> pb.ModelReadyResponse:
        ready = request.name in app.registry and request.version in ("", v2.VERSION)
        return pb.ModelReadyResponse(ready=ready)

    async def model_metadata(request, context) -> pb.ModelMetadataResponse:
        metadata = v2.model_metadata(_model(app, request.name, request.version))
        return json_format.ParseDict(metadata, pb.ModelMetadataResponse())

    async def model_config(request, context) -> pb.ModelConfigResponse:
        model = _model(app, request.name, request.version)
        config = v2.model_config(model, app.max_rows)
        return pb.ModelConfigResponse(
            config=json_format.ParseDict(config, model_config_pb2.ModelConfig())
        )

    async def repository_index(request, context) -> pb.RepositoryIndexResponse:
        index = v2.repository_index(app.registry, request.ready)
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in index]
        )

    async def model_infer(request, context) -> pb.ModelInferResponse:
        model = _model(app, request.model_name, request.model_version)
        x, mask = v2.model_rows(model, _inputs(request))
        names = v2.output_names(model, [output.name for output in request.outputs])
        y = await app.predict(model, x, mask)
        response = pb.ModelInferResponse(
            model_name=model.name, model_version=v2.VERSION, id=request.id
        )
        for tensor in v2.output_tensors(names, y):
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(tensor.data.astype("<f4", copy=False).tobytes())
        return response

    async def server_metadata(request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__)

    async def model_statistics(request, context) -> pb.ModelStatisticsResponse:
        if request.name:
            models = [_model(app, request.name, request.version)]
        else:
            models = app.registry.models()
        return pb.ModelStatisticsResponse(model_stats=[_statistics(app, m) for m in models])

    def method(function, request, response, public=False):
        return unary(app, function, request, response, public=public)

    return SERVICE, {
        "ServerLive": method(server_live, pb.ServerLiveRequest, pb.ServerLiveResponse, True),
        "ServerReady": method(server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse, True),
        "ModelReady": method(model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ServerMetadata": method(
            server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
        ),
        "ModelMetadata": method(model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        "ModelInfer": method(model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        "ModelConfig": method(model_config, pb.ModelConfigRequest, pb.ModelConfigResponse),
        "RepositoryIndex": method(
            repository_index, pb.RepositoryIndexRequest, pb.RepositoryIndexResponse
        ),
        "ModelStatistics": method(
            model_statistics, pb.ModelStatisticsRequest, pb.ModelStatisticsResponse
        ),
    }
