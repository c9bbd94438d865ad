"""The serving graph of a trained model: X in, probabilities out, the mask derived inside.

A served model gets only X (``inputs``, float32 ``[None, n_features]``). For
a model trained on X and the mask, the exported graph derives the mask from X
with the spec's layout: flat features are always real, and a slot of a jagged
branch is real where its value is not 0 (padded slots are 0 in X).

Edge case: a real jagged value that normalises to exactly 0 (the branch
minimum under ``minmax``, e.g. a charge of -1, or the mean under
``standard``) looks like padding to the ``serving_default`` signature. A
server that knows the true mask (it pads raw events itself) calls the second
signature, ``serving_with_mask(inputs, mask)``, with mask float32 (1 = real),
which reproduces training exactly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from .models import ModelLayout
    from .specs import FeatureSpec

__all__ = ["MASK_SIGNATURE", "ServingExport", "derive_mask", "jagged_columns"]

MASK_SIGNATURE = "serving_with_mask"


def __dir__() -> list[str]:
    return __all__


def jagged_columns(spec: FeatureSpec) -> np.ndarray:
    """One bool per feature column: True where the column is a slot of a jagged branch."""
    return np.array([b.jagged for b in spec.branches for _ in range(b.pad)], dtype=bool)


def derive_mask(x: np.ndarray, jagged: np.ndarray) -> np.ndarray:
    """The mask the serving graph derives from X: flat columns real, jagged slots real if != 0."""
    return (np.asarray(x) != 0) | ~jagged


class ServingExport:
    """What `mlaas4hep_nb.bundle.write_bundle` exports: the model behind two signatures.

    ``serving_default`` takes ``inputs`` and returns the
    probabilities; ``serving_with_mask`` takes ``inputs`` and ``mask``. For a
    model without a mask input, the second signature ignores the mask.
    """

    def __init__(self, model: keras.Model, layout: ModelLayout, jagged: np.ndarray) -> None:
        self.model = model
        self.layout = layout
        self.jagged = np.asarray(jagged, dtype=bool)

    def _call(self, inputs, mask):
        if not self.layout.takes_mask:
            return self.model(inputs, training=False)
        return self.model([inputs, tf.cast(mask, tf.float32)], training=False)

    def export(
        self, filepath: str | os.PathLike, format: str = "tf_saved_model", verbose: bool = False
    ) -> None:
        """Write the SavedModel (the ``model.export`` interface that ``write_bundle`` calls)."""
        if format != "tf_saved_model":
            msg = f"only the tf_saved_model format is supported, not {format!r}"
            raise ValueError(msg)
        n = len(self.jagged)
        flat = tf.constant(~self.jagged)

        @tf.function(input_signature=[tf.TensorSpec([None, n], tf.float32, name="inputs")])
        def serve(inputs):
            return self._call(inputs, tf.logical_or(tf.not_equal(inputs, 0.0), flat))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, n], tf.float32, name="inputs"),
                tf.TensorSpec([None, n], tf.float32, name="mask"),
            ]
        )
        def serve_with_mask(inputs, mask):
            return self._call(inputs, mask)

        archive = keras.export.ExportArchive()
        archive.track(self.model)
        # Signatures get their call ops in name order: with no "serve" endpoint (which
        # model.export adds), serving_default's ops are serving_default_inputs and
        # StatefulPartitionedCall, the names upstream TFaaS feeds and fetches.
        archive.add_endpoint("serving_default", serve)
        archive.add_endpoint(MASK_SIGNATURE, serve_with_mask)
        archive.write_out(str(filepath), verbose=verbose)
