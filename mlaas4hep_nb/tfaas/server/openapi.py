"""The OpenAPI 3 description of the server's routes, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_schema"]


def __dir__() -> list[str]:
    return __all__


_ERROR = {
    "description": "bad input, unauthorised, unknown model or too large",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_JSON: dict[str, Any] = {"application/json": {"schema": {}}}
_ROW = {"type": "array", "items": {"type": "number"}}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}
_NAME_PARAMETER = {"name": "name", "in": "path", "required": True, "schema": _NAME}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_LABEL = {"name": "label", "in": "path", "required": True, "schema": {"type": "string"}}
_HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "binary data extension: the length of the JSON header; raw data follow it",
    "schema": {"type": "string"},
}


def _ok(description: str, content: dict | None = None) -> dict:
    return {"description": description, "content": content or _JSON}


def _operation(summary: str, body: dict | None = None, parameters: list | None = None) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _ok("success"), "4XX": _ERROR},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _json_body(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


_ROW_REQUEST = _json_body(
    {
        "type": "object",
        "properties": {
            "keys": {"type": "array", "items": {"type": "string"}},
            "values": {"oneOf": [_ROW, {"type": "array", "items": _ROW}]},
            "model": _NAME,
            "raw": {"type": "boolean"},
            "events": {"type": "array", "items": {"type": "object"}},
        },
    }
)
_TF_SERVING = _json_body(
    {
        "type": "object",
        "properties": {
            "signature_name": {"type": "string"},
            "instances": {"type": "array", "items": {"oneOf": [_ROW, {"type": "object"}]}},
            "inputs": {"oneOf": [{"type": "array", "items": _ROW}, {"type": "object"}]},
        },
    }
)
_V2_TENSOR_REQUEST = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
    "required": ["name"],
}
_V2_INFER = _json_body(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _V2_TENSOR_REQUEST},
            "inputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string"},
                        "data": {"type": "array"},
                        "parameters": {"type": "object"},
                    },
                    "required": ["name", "shape", "datatype"],
                },
            },
        },
        "required": ["inputs"],
    }
)
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_V2_INFER_ANY = {**_V2_INFER, **_BINARY}  # octet-stream: a JSON header, then binary data
_INDEX = _json_body({"type": "object", "properties": {"ready": {"type": "boolean"}}})
_UPLOAD = {
    **_BINARY,
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "model": {"type": "string", "format": "binary"},
                "params": {"type": "string", "format": "binary"},
                "labels": {"type": "string", "format": "binary"},
                "op": {"type": "string"},
            },
            "required": ["name", "model", "params", "labels"],
        }
    },
}

_IMAGE = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"image": {"type": "string", "format": "binary"}, "model": _NAME},
            "required": ["image"],
        }
    }
}


def _tf_serving_paths() -> dict:
    """TF Serving REST, for the model, a version of it (only 1) or a label (none is defined)."""
    paths = {}
    for suffix, extra, what in (
        ("", [], ""),
        ("/versions/{version}", [_VERSION], ", a version"),
        ("/labels/{label}", [_LABEL], ", a label (none is defined: a 400)"),
    ):
        base, parameters = "/v1/models/{name}" + suffix, [_NAME_PARAMETER, *extra]
        paths[base] = {"get": _operation(f"TF Serving status{what}", None, parameters)}
        paths[base + ":predict"] = {
            "post": _operation(f"TF Serving REST predict{what}", _TF_SERVING, parameters)
        }
        paths[base + "/metadata"] = {
            "get": _operation(f"TF Serving model metadata (signatures){what}", None, parameters)
        }
    return paths


def _v2_model_paths() -> dict:
    """Open Inference v2 model routes, for the model or a version of it (only "1")."""
    paths = {}
    for suffix, extra in (("", []), ("/versions/{version}", [_VERSION])):
        base, parameters = "/v2/models/{name}" + suffix, [_NAME_PARAMETER, *extra]
        paths[base] = {"get": _operation("model metadata", None, parameters)}
        paths[base + "/ready"] = {"get": _operation("model readiness", None, parameters)}
        paths[base + "/config"] = {
            "get": _operation("Triton's model configuration", None, parameters)
        }
        paths[base + "/infer"] = {
            "post": _operation(
                "Open Inference Protocol v2 inference (JSON, or with binary data)",
                _V2_INFER_ANY,
                [*parameters, _HEADER_LENGTH],
            )
        }
    return paths


def openapi_schema(version: str) -> dict:
    """The OpenAPI 3.0 document of every route."""
    predict = _operation("predict rows (upstream TFaaS): one row or a list of rows", _ROW_REQUEST)
    proto = _operation("predict one tfaaspb.Row, answer tfaaspb.Predictions", _BINARY)
    proto["responses"]["200"] = _ok("tfaaspb.Predictions", _BINARY)
    model_query = [{"name": "model", "in": "query", "required": False, "schema": _NAME}]
    image = _operation("classify an image file (PNG, JPEG, GIF, BMP) with an image model", _IMAGE)
    upload = _operation("upload a bundle tarball or an upstream form", _UPLOAD)
    paths = {
        "/": {"get": _operation("server name, version and routes")},
        "/status": {"get": _operation("server status, request counts and models")},
        "/models": {"get": _operation("params of every served model")},
        "/upload": {"post": upload},
        "/bundle": {"post": upload},
        "/json": {"post": predict},
        "/predict/json": {"post": predict},
        "/proto": {"post": proto},
        "/predict/proto": {"post": proto},
        "/image": {"post": image},
        "/predict/image": {"post": image},
        "/params": {
            "get": _operation("params of the default model"),
            "post": _operation(
                "set the default model (by name)",
                _json_body({"type": "object", "properties": {"name": _NAME}, "required": ["name"]}),
            ),
        },
        "/params/{name}": {"get": _operation("params of a model", parameters=[_NAME_PARAMETER])},
        "/delete": {"delete": _operation("delete a model (form field model)", None, model_query)},
        "/delete/{name}": {"delete": _operation("delete a model", None, [_NAME_PARAMETER])},
        **_tf_serving_paths(),
        "/v2": {"get": _operation("Open Inference Protocol server metadata")},
        "/v2/health/live": {"get": _operation("liveness")},
        "/v2/health/ready": {"get": _operation("readiness")},
        "/v2/repository/index": {
            "post": _operation("Triton's repository index (all models, or the ready ones)", _INDEX)
        },
        **_v2_model_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mlaas4hep_nb TFaaS-compatible server",
            "version": version,
            "description": "Upstream TFaaS routes plus TF Serving REST and Open Inference v2.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }
