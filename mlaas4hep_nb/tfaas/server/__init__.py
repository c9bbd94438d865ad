"""The TFaaS-compatible server: uvicorn, a Starlette app, and the models it serves.

Nothing is imported here: ``mlaas4hep_nb.tfaas`` imports `run` and `app` on
first use, and importing one part (``server.proto`` for its messages) does not
import the others.

The parts
---------
Running and routing:
    run.py            serve (foreground, ``--workers``), serve_in_background, ServerHandle
    app.py            TFaaSApp: the ASGI app, its routes and its fast ``/json`` path
    grpc_server.py    the gRPC port (grpc.aio in the same event loop)
    grpc_methods.py   one gRPC method: the token rule, errors as status codes
    grpc_v2.py        KServe v2 over gRPC (Triton's GRPCInferenceService)
    grpc_tfserving.py TF Serving's gRPC PredictionService (Predict, GetModelMetadata)
    protos/           the generated messages of both, from copies of their .proto files
    openapi.py        the OpenAPI description served at ``/openapi.json``
    host.py           the host's memory and CPU figures for ``/status``
Decoding requests:
    payload.py        ``/json`` bodies -> float32 rows (simdjson, no Python floats)
    proto.py          upstream's ``tfaaspb`` protobuf messages for ``/proto``
    image.py          ``/image``: decode, resize and classify an image
    v2.py             Open Inference v2 semantics: tensors, names, shapes, metadata
                      (protocol-neutral, for every v2 front end)
    v2_rest.py        v2 over HTTP: JSON bodies and Triton's binary tensor data
    tf_serving.py     TF Serving REST: predict bodies, versions, labels, metadata
    coding.py         gzip and deflate bodies (Content-Encoding, Accept-Encoding)
Running models:
    batching.py       MicroBatcher: concurrent requests -> one model call
    stats.py          InferenceStats: requests, time and rows per model (Triton's statistics)
    model.py          ServedModel: a loaded bundle (signatures, params, labels, FeatureSpec)
    signatures.py     a SavedModel's signatures as callables (TF session, else eager)
    frozen.py         TF1 frozen graphs, run through the same session callables
Storing models:
    registry.py       ModelRegistry: the served models, one folder each in the model dir
    upload.py         an upload (tarball or form) -> bundle folders in staging
    derive.py         ``params.json`` for a bare SavedModel, from its signature
    params_schema.py  the checks on ``params.json``
    staging.py        the model dir's own dot-folders: owners, the lock, tidying
    testhooks.py      pause points for the fault tests (idle unless the env asks)

The request path
----------------
uvicorn (with the coalescing httptools protocol of ``mlaas4hep_nb._compat.uvicorn``)
calls ``TFaaSApp``; ``POST /json`` skips the router::

    app.TFaaSApp.__call__ -> payload.decode_json -> registry.get -> batching.MicroBatcher
        -> model.ServedModel.predict -> signatures.Signature (a session callable of
           mlaas4hep_nb._compat.tensorflow) -> orjson -> one write

Every other route goes through Starlette to a ``TFaaSApp`` method; ``/upload``:
``upload.stage_*`` (unpack, derive, params_schema) -> ``model.ServedModel`` in
staging -> ``registry.install`` (a swap by rename under ``staging.dir_lock``).
"""
