"""Small bundles for the Open Inference v2 tests: a plain one, and one with a mask signature.

Imported by the test modules beside it (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mlaas4hep_nb.bundle import MASK_SIGNATURE, export_saved_model, write_bundle

N = 6  # inputs of the test networks


def plain_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((N,), name="inputs")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))


def masked_model(seed: int = 1) -> keras.Model:
    """A network of X and the mask: it sees X * mask."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((N,), name="inputs")
    mask = keras.Input((N,), name="mask")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Multiply()([inputs, mask]))
    return keras.Model([inputs, mask], keras.layers.Dense(1, activation="sigmoid")(hidden))


class _MaskedExport:
    """What ``write_bundle`` exports for ``masked_model``: serving_default sees a mask of ones."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def export(self, filepath, format="tf_saved_model", verbose=False) -> None:
        spec = [tf.TensorSpec([None, N], tf.float32, name=name) for name in ("inputs", "mask")]

        @tf.function(input_signature=spec)
        def with_mask(inputs, mask):
            return self.model([inputs, mask], training=False)

        export_saved_model(
            filepath,
            self.model,
            lambda x: self.model([x, tf.ones_like(x)], training=False),
            N,
            extra={MASK_SIGNATURE: with_mask},
        )


def write_plain(folder: Path) -> tuple[Path, keras.Model]:
    model = plain_model()
    return write_bundle(model, folder, features=[f"f{i}" for i in range(N)]), model


def write_masked(folder: Path) -> tuple[Path, keras.Model]:
    model = masked_model()
    bundle = write_bundle(_MaskedExport(model), folder, features=[f"f{i}" for i in range(N)])
    return bundle, model


def rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, N), dtype=np.float32)


def local(model: keras.Model, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    x = x.astype(np.float32)
    if len(model.inputs) == 1:
        return np.asarray(model(x))
    return np.asarray(model([x, np.ones_like(x) if mask is None else mask.astype(np.float32)]))
