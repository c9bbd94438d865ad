"""TFaaS bundles: a SavedModel folder plus ``params.json`` and ``labels.txt``.

This is the format upstream TFaaS loads and this package's server serves. The
SavedModel's ``serving_default`` signature takes one float32 ``[None,
n_features]`` input named ``inputs`` and returns probabilities.

Upstream TFaaS (Go, tfgo) does not use signatures: for a SavedModel its
``/json`` feeds the graph op ``serving_default_inputs_input`` and fetches
``StatefulPartitionedCall`` by name (what a Keras 2 model whose first layer
is called ``inputs`` exported). Each bundle therefore also carries the
signature ``serving`` with the input ``default_inputs_input``: its ops get
exactly those names (signatures are traced in name order, so it takes the
first ``StatefulPartitionedCall``), while ``serving_default`` keeps its
input ``inputs``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LABELS_FILE",
    "MASK_SIGNATURE",
    "PARAMS_FILE",
    "UPSTREAM_SIGNATURE",
    "export_saved_model",
    "read_params",
    "write_bundle",
]

PARAMS_FILE = "params.json"
LABELS_FILE = "labels.txt"

# The graph ops upstream TFaaS feeds and fetches by name, and the signature that has them.
UPSTREAM_SIGNATURE = "serving"
INPUT_NODE = "serving_default_inputs_input"
OUTPUT_NODE = "StatefulPartitionedCall"
# the signature taking X and the mask as two inputs (bundles of this package only)
MASK_SIGNATURE = "serving_with_mask"


def __dir__() -> list[str]:
    return __all__


def export_saved_model(
    path: str | os.PathLike,
    track: Any,
    serve: Callable,
    n_features: int,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a SavedModel whose ``serving_default`` and upstream signatures run ``serve(X)``.

    ``track`` holds the variables (a Keras model); ``extra`` adds more
    signatures (name -> ``tf.function`` with an input signature).
    """
    import keras
    import tensorflow as tf

    def signature(input_name: str):
        spec = tf.TensorSpec([None, n_features], tf.float32, name=input_name)
        return tf.function(serve, input_signature=[spec])

    archive = keras.export.ExportArchive()
    archive.track(track)
    archive.add_endpoint(UPSTREAM_SIGNATURE, signature("default_inputs_input"))
    archive.add_endpoint("serving_default", signature("inputs"))
    for name, function in (extra or {}).items():
        archive.add_endpoint(name, function)
    archive.write_out(str(path), verbose=False)


def _export(model: Any, bundle: Path) -> None:
    """A Keras model with one ``[None, n]`` input, or an object with its own ``export``."""
    import keras

    if not isinstance(model, keras.Model):
        model.export(str(bundle), format="tf_saved_model", verbose=False)
        return
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 2:
        shapes = [tuple(tensor.shape) for tensor in model.inputs]
        msg = f"a TFaaS bundle needs a model with one [None, n] input, not {shapes}"
        raise ValueError(msg)
    export_saved_model(
        bundle, model, lambda x: model(x, training=False), int(model.inputs[0].shape[1])
    )


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
    model : a ``keras.Model`` with one ``[None, n]`` float32 input, or an object
        whose ``export(path)`` writes the SavedModel (the training layer's
        serving graph); the result has ``saved_model.pb``, ``variables/`` and ``assets/``.
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
    _export(model, bundle)
    (bundle / "assets").mkdir(exist_ok=True)
    input_node, output_node = _upstream_nodes(bundle)
    (bundle / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))
    params = {
        "name": name or bundle.resolve().name,
        "model": "saved_model.pb",
        "labels": LABELS_FILE,
        # upstream feeds params "op" (tfgo) or input_node/inputNode by name
        "op": input_node,
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


def _upstream_nodes(bundle: Path) -> tuple[str, str]:
    """The graph ops upstream TFaaS should feed and fetch: those of the upstream signature.

    A SavedModel written elsewhere may lack it; then those of ``serving_default``.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((bundle / "saved_model.pb").read_bytes())
    signatures = saved.meta_graphs[0].signature_def
    signature = signatures.get(UPSTREAM_SIGNATURE) or signatures.get("serving_default")
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
    except RecursionError:
        msg = f"{path} nests its JSON too deeply to read"
        raise ValueError(msg) from None
