"""TF1 frozen graphs: a bare ``GraphDef`` served by the op names its ``params.json`` gives.

Many existing models (CMS ones among them) are frozen graphs, ``tf_model.pb``
files uploaded with ``params`` naming ``inputNode`` and ``outputNode``
(``input_node``/``output_node`` in newer upstream servers). Upstream imports
the graph and runs a session feeding the one op and fetching the other; here
the graph is imported the same way and run through the session callable of
`signatures`, so a frozen graph is as fast to call as a SavedModel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..._compat.tensorflow import session_callable
from ...bundle import PARAMS_FILE
from .signatures import Signature, _probe, _session_config, _Tensor

__all__ = ["frozen_graph_path", "is_saved_model", "load_frozen", "node_names"]

SAVED_MODEL_FILE = "saved_model.pb"


def __dir__() -> list[str]:
    return __all__


def is_saved_model(data: bytes) -> bool:
    """True if ``data`` is a ``SavedModel`` protobuf rather than a bare ``GraphDef``.

    Both are protobufs and one can parse as the other; TensorFlow writes
    ``saved_model_schema_version`` 1 into every SavedModel, a field a GraphDef
    never fills, and a SavedModel's first meta graph holds a graph with tags.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(data)
    except (DecodeError, ValueError):
        return False
    if saved.saved_model_schema_version >= 1:
        return True
    meta = saved.meta_graphs[0] if saved.meta_graphs else None
    return meta is not None and bool(meta.meta_info_def.tags) and bool(meta.graph_def.node)


def frozen_graph_path(folder: str | os.PathLike, params: dict) -> Path | None:
    """The file of a TF1 bundle's frozen graph, or None when the folder holds a SavedModel.

    A folder with a SavedModel ``saved_model.pb`` is a SavedModel bundle;
    otherwise the file that ``params["model"]`` names (upstream's rule), or a
    ``saved_model.pb`` that is a bare GraphDef.
    """
    folder = Path(folder)
    saved = folder / SAVED_MODEL_FILE
    if saved.is_file() and (
        (folder / "variables").is_dir() or is_saved_model(saved.read_bytes())
    ):  # upstream's rule for a SavedModel, else what the file holds
        return None
    model = params.get("model")
    path = folder / model if isinstance(model, str) and model else saved
    inside = path.resolve().parent == folder.resolve()
    if not inside or path.name == PARAMS_FILE or not path.is_file():
        return None
    return path


def node_names(params: dict) -> tuple[str | None, str | None]:
    """The input and output ops named in ``params`` (either spelling upstream has used)."""

    def pick(*keys: str) -> str | None:
        values = [params.get(key) for key in keys]
        return next((v.strip() for v in values if isinstance(v, str) and v.strip()), None)

    return pick("input_node", "inputNode"), pick("output_node", "outputNode")


def _tensor_name(node: str) -> str:
    # params name ops ("dense_4_input"); some name tensors ("dense/Softmax:0")
    return node if ":" in node else f"{node}:0"


def _spec(tensor) -> _Tensor:
    dims = (None, None) if tensor.shape.rank is None else tuple(tensor.shape.as_list())
    return _Tensor(dims, np.dtype(tensor.dtype.as_numpy_dtype), tensor.name)


def load_frozen(path: str | os.PathLike, params: dict) -> dict[str, Signature]:
    """The frozen graph in ``path`` as one ``serving_default`` signature, from its params' ops.

    Raises
    ------
    ValueError
        If the file is not a GraphDef, the params name no input or output op,
        or the graph has no such op.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    path = Path(path)
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError):
        graph_def.Clear()
    if not graph_def.node:
        msg = f"{path.name} is neither a SavedModel nor a frozen TF1 GraphDef"
        raise ValueError(msg)
    input_node, output_node = node_names(params)
    if input_node is None or output_node is None:
        msg = (
            f"{path.name} is a frozen graph: its {PARAMS_FILE} must name the ops to feed and "
            "fetch as input_node and output_node (or inputNode and outputNode)"
        )
        raise ValueError(msg)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    feed, fetch = _tensor_name(input_node), _tensor_name(output_node)
    tensors = []
    for tensor_name in (feed, fetch):
        try:
            tensors.append(graph.get_tensor_by_name(tensor_name))
        except (KeyError, ValueError):
            placeholders = [op.name for op in graph.get_operations() if op.type == "Placeholder"]
            msg = (
                f"the frozen graph {path.name} has no tensor {tensor_name!r}; "
                f"its placeholders are {placeholders[:10]}"
            )
            raise ValueError(msg) from None
    session = tf.compat.v1.Session(graph=graph, config=_session_config())

    def bind(output: str, order: list[str]):
        return session_callable(session, [feed], fetch)

    inputs = {input_node: _spec(tensors[0])}
    outputs = {output_node: _spec(tensors[1])}
    signatures = {"serving_default": Signature(inputs, outputs, bind)}
    _probe(signatures)  # e.g. a graph that still reads variables fails here, not per request
    return signatures
