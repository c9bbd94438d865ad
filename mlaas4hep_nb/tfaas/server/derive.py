"""``params.json`` for a bare SavedModel, derived from its serving signature.

Upstream's curl recipe uploads ``tf.saved_model.save(model, 'model'); tar cfz
model.tar.gz model``: a tarball of a SavedModel with no ``params.json``.
Upstream untars it and serves it as ``model`` (the folder name), feeding
and fetching ops by name. Here the params are written from what the
SavedModel itself says, so the folder loads like any bundle.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["derive_params"]

_SIGNATURES = ("serving_default", "serve", "serving")


def __dir__() -> list[str]:
    return __all__


def derive_params(folder: str | os.PathLike, name: str) -> dict:
    """The params of the SavedModel in ``folder``, served as ``name``.

    The input and output names are those of its ``serving_default`` signature
    (else ``serve``, ``serving`` or the only one), the nodes the graph ops
    behind them; a ``[None, height, width, channels]`` input also gives
    ``img_channels``.

    Raises
    ------
    ValueError
        If ``saved_model.pb`` is not a SavedModel or has no signature with one
        input and at least one output.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    folder = Path(folder)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    except (DecodeError, ValueError) as err:
        msg = f"the saved_model.pb of {name!r} is not a SavedModel: {err}"
        raise ValueError(msg) from None
    signatures = saved.meta_graphs[0].signature_def if saved.meta_graphs else {}
    usable = {key: s for key, s in signatures.items() if len(s.inputs) == 1 and s.outputs}
    key = next((k for k in _SIGNATURES if k in usable), None)
    if key is None and len(usable) == 1:
        key = next(iter(usable))
    if key is None:
        msg = (
            f"the SavedModel {name!r} has no params.json and no serving signature with one "
            f"input to derive them from (signatures: {sorted(signatures)})"
        )
        raise ValueError(msg)
    signature = usable[key]
    (input_name, tensor_in), *_ = signature.inputs.items()
    output_name = sorted(signature.outputs)[0]
    dims = [d.size for d in tensor_in.tensor_shape.dim]
    input_node = tensor_in.name.split(":")[0]
    output_node = signature.outputs[output_name].name.split(":")[0]
    return {
        "name": name,
        "model": "saved_model.pb",
        "labels": "labels.txt",
        "op": key,
        "input_name": input_name,
        "output_name": output_name,
        "input_node": input_node,
        "output_node": output_node,
        "img_channels": dims[3] if len(dims) == 4 and dims[3] > 0 else 0,
        "description": f"params derived from the SavedModel's {key} signature",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
