"""TFaaS bundles: a SavedModel folder plus ``params.json`` and ``labels.txt``.

This is the format upstream TFaaS loads and this package's server serves. The
SavedModel's ``serving_default`` signature takes one float32 ``[None,
n_features]`` input named ``inputs`` and returns probabilities.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LABELS_FILE", "PARAMS_FILE", "read_params", "write_bundle"]

PARAMS_FILE = "params.json"
LABELS_FILE = "labels.txt"

# The graph ops of a Keras 3 export whose input layer is named "inputs"; upstream
# TFaaS feeds and fetches these by name.
INPUT_NODE = "serving_default_inputs"
OUTPUT_NODE = "StatefulPartitionedCall"


def __dir__() -> list[str]:
    return __all__


def write_bundle(
    model: Any,
    bundle_dir: str | os.PathLike,
    *,
    name: str | None = None,
    labels: Sequence[str] = ("background", "signal"),
    features: Sequence[str] | None = None,
    spec: Mapping | None = None,
    description: str = "",
) -> Path:
    """Export ``model`` (a Keras model with one ``[None, n]`` float32 input) as a TFaaS bundle.

    Parameters
    ----------
    model : a ``keras.Model`` whose input is named ``inputs``; it is exported
        with ``model.export`` (a SavedModel with ``saved_model.pb``, ``variables/``
        and ``assets/``).
    bundle_dir : the folder to write; its name is the model name unless ``name`` is given.
    labels : one class name per output, written to ``labels.txt``.
    features : the feature names, in input order.
    spec : the FeatureSpec as a dict, so servers and clients can normalise raw events.
    description : free text for ``params.json``.

    Returns
    -------
    The bundle folder.
    """
    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    model.export(str(bundle), format="tf_saved_model", verbose=False)
    (bundle / "assets").mkdir(exist_ok=True)
    input_node, output_node = _serving_nodes(bundle)
    (bundle / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))
    params = {
        "name": name or bundle.resolve().name,
        "model": "saved_model.pb",
        "labels": LABELS_FILE,
        "op": "serving_default",
        "input_name": "inputs",
        "output_name": "output_0",
        "input_node": input_node,
        "output_node": output_node,
        # older upstream servers read the camelCase spellings
        "inputNode": input_node,
        "outputNode": output_node,
        "img_channels": 0,
        "description": description,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "features": list(features) if features is not None else None,
        "spec": dict(spec) if spec is not None else None,
    }
    (bundle / PARAMS_FILE).write_text(json.dumps(params, indent=1))
    return bundle


def _serving_nodes(bundle: Path) -> tuple[str, str]:
    """The graph ops that feed and fetch the ``serving_default`` signature of the SavedModel.

    ``model.export`` also writes a ``serve`` signature, which takes the op
    ``StatefulPartitionedCall``; serving_default's output op is then another one.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((bundle / "saved_model.pb").read_bytes())
    signature = saved.meta_graphs[0].signature_def.get("serving_default")
    if signature is None or len(signature.inputs) != 1 or len(signature.outputs) != 1:
        return INPUT_NODE, OUTPUT_NODE
    (tensor_in,) = signature.inputs.values()
    (tensor_out,) = signature.outputs.values()
    return tensor_in.name.split(":")[0], tensor_out.name.split(":")[0]


def read_params(bundle_dir: str | os.PathLike) -> dict:
    """The ``params.json`` of a bundle; a clear error when it is missing or not JSON."""
    path = Path(bundle_dir) / PARAMS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        msg = f"{bundle_dir} is not a TFaaS bundle: it has no {PARAMS_FILE}"
        raise FileNotFoundError(msg) from None
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON: {err}"
        raise ValueError(msg) from err
