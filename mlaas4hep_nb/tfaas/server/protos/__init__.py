"""Protobuf messages of the gRPC port, generated from the .proto files beside this file.

``grpc_service.proto`` and ``model_config.proto`` are Triton's (KServe v2 and
Triton's extras, BSD-3-Clause, ``LICENSE-triton``); ``model.proto``,
``predict.proto`` and ``get_model_metadata.proto`` are TF Serving's
(Apache-2.0, ``LICENSE-tensorflow-serving``). Each copy says what was changed:
only the proto package (``mlaas4hep_nb.inference``,
``mlaas4hep_nb.tensorflow_serving``) and the import paths, so that these
messages can be registered in a process that also imports tritonclient,
kserve or tensorflow-serving-api; the bytes on the wire are the same. The
``*_pb2`` modules are protoc's output: ``make protos`` (scripts/gen_protos.py)
writes them again, and ``--check`` tells whether they match the .proto files.
"""
