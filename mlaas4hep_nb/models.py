"""Models for the Trainer: the default MLP, user models (MLaaS4HEP ``model(idim)``), checks.

A model takes either X alone (``[None, n_features]``, the MLaaS4HEP
convention) or X and the mask as two inputs (the default MLP), and gives one
output: a single sigmoid column for two classes, or one column per class.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

__all__ = [
    "ModelError",
    "ModelLayout",
    "compile_model",
    "default_model",
    "inspect_model",
    "load_model_function",
    "resolve_model",
]

_SPARSE_LOSSES = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def __dir__() -> list[str]:
    return __all__


class ModelError(ValueError):
    """A model that does not fit the stream: wrong input or output width, bad model file."""


@dataclass(frozen=True)
class ModelLayout:
    """How the Trainer feeds a model: with or without the mask, and its output width."""

    takes_mask: bool
    n_outputs: int


def default_model(
    n_features: int,
    n_classes: int = 2,
    hidden: Sequence[int] = (128, 64),
    dropout: float = 0.2,
) -> keras.Model:
    """An MLP on X and the mask, so that a padded slot differs from a real zero.

    Parameters
    ----------
    n_features : the width of X (and of the mask).
    n_classes : 2 gives one sigmoid output; K > 2 gives a K-way softmax.
    hidden : units of the hidden ReLU layers.
    dropout : dropout rate after each hidden layer.

    Returns
    -------
    An uncompiled ``keras.Model`` with inputs ``inputs`` (X, float32) and
    ``mask`` (the mask as float32, 1 for a real value).
    """
    x = keras.Input((n_features,), name="inputs")
    mask = keras.Input((n_features,), name="mask")
    h = keras.layers.Concatenate(name="x_and_mask")([x, mask])
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout, name=f"dropout_{i}")(h)
    if n_classes == 2:
        out = keras.layers.Dense(1, activation="sigmoid", name="probability")(h)
    else:
        out = keras.layers.Dense(n_classes, activation="softmax", name="probability")(h)
    return keras.Model([x, mask], out, name="mlaas4hep_mlp")


def load_model_function(path: str | os.PathLike) -> Callable[[int], Any]:
    """The function ``model(idim)`` defined in the Python file ``path`` (MLaaS4HEP convention)."""
    path = Path(path)
    if not path.is_file():
        msg = f"model file {path} not found"
        raise FileNotFoundError(msg)
    name = f"_mlaas4hep_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"model file {path} cannot be imported as Python"
        raise ModelError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    function = getattr(module, "model", None)
    if not callable(function):
        msg = (
            f"model file {path} defines no function model(idim); write "
            "'def model(idim): ...' that returns a compiled Keras model for idim input features"
        )
        raise ModelError(msg)
    return function


def resolve_model(model: Any, n_features: int, n_classes: int) -> keras.Model:
    """Turn ``None``, a ``keras.Model``, a callable ``model(idim)`` or a file path into a model.

    Paths may name a ``.py`` file defining ``model(idim)`` or a saved ``.keras`` model.
    """
    if model is None:
        return default_model(n_features, n_classes)
    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        if str(model).endswith(".keras"):
            return keras.saving.load_model(model)
        function = load_model_function(model)
        where = f"model(idim) in {model}"
    elif callable(model):
        function = model
        where = f"{getattr(model, '__name__', repr(model))}(idim)"
    else:
        msg = (
            f"model must be None, a keras.Model, a function model(idim) or the path of a .py "
            f"or .keras file, not {type(model).__name__}"
        )
        raise TypeError(msg)
    built = function(n_features)
    if not isinstance(built, keras.Model):
        msg = f"{where} returned {type(built).__name__}, not a keras.Model"
        raise ModelError(msg)
    return built


def _input_widths(model: keras.Model, n_features: int) -> list[int | None]:
    try:
        inputs = model.inputs
    except AttributeError:
        # a Sequential without an Input layer: build it for the stream's width
        try:
            model.build((None, n_features))
        except Exception as err:
            msg = f"model {model.name!r} cannot be built for {n_features} input features: {err}"
            raise ModelError(msg) from err
        inputs = model.inputs
    return [tensor.shape[-1] for tensor in inputs]


def inspect_model(
    model: keras.Model, n_features: int, n_classes: int, features: Sequence[str] = ()
) -> ModelLayout:
    """Check that ``model`` fits the stream's width and classes; say how to feed it.

    Raises
    ------
    ModelError
        The input width is not ``n_features``, the model has more than two inputs
        or outputs, or its output width fits neither a sigmoid nor ``n_classes``.
    """
    widths = _input_widths(model, n_features)
    if len(widths) not in (1, 2):
        msg = (
            f"model {model.name!r} has {len(widths)} inputs; it must take X "
            f"([None, {n_features}]) or X and the mask (two [None, {n_features}] inputs)"
        )
        raise ModelError(msg)
    for width in widths:
        if width != n_features:
            shown = ", ".join(list(features)[:4]) + (", ..." if len(features) > 4 else "")
            msg = (
                f"model {model.name!r} expects {width} input features but the stream gives "
                f"{n_features} ({shown}); build it for idim={n_features}"
            )
            raise ModelError(msg)
    outputs = model.outputs
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        msg = f"model {model.name!r} must have one output of shape [None, width]"
        raise ModelError(msg)
    n_outputs = outputs[0].shape[-1]
    allowed = (1, 2) if n_classes == 2 else (n_classes,)
    if n_outputs not in allowed:
        want = "1 (sigmoid) or 2 (softmax)" if n_classes == 2 else str(n_classes)
        msg = (
            f"model {model.name!r} has {n_outputs} outputs but the stream has {n_classes} "
            f"classes; it needs {want} outputs"
        )
        raise ModelError(msg)
    return ModelLayout(takes_mask=len(widths) == 2, n_outputs=int(n_outputs))


def _metrics(n_outputs: int) -> list:
    accuracy = (
        keras.metrics.BinaryAccuracy(name="accuracy")
        if n_outputs == 1
        else keras.metrics.CategoricalAccuracy(name="accuracy")
    )
    return [keras.metrics.AUC(name="auc"), accuracy]


def _optimizer(optimizer: Any, learning_rate: float | None):
    # learning_rate applies to an optimizer named by a string; an instance keeps its own
    if isinstance(optimizer, str):
        config = {} if learning_rate is None else {"learning_rate": learning_rate}
        return keras.optimizers.get({"class_name": optimizer, "config": config})
    return keras.optimizers.get(optimizer)


def compile_model(
    model: keras.Model, layout: ModelLayout, optimizer: Any, learning_rate: float | None
) -> None:
    """Compile with AUC and accuracy metrics, which the History and live plots show.

    An uncompiled model gets ``optimizer`` at ``learning_rate`` and binary or
    categorical cross-entropy. A compiled one (as MLaaS4HEP's ``model(idim)``
    returns) keeps its optimizer and loss; only its metrics are replaced.
    """
    if getattr(model, "compiled", False) and model.optimizer is not None:
        loss = model.loss
        loss_name = loss if isinstance(loss, str) else type(loss).__name__
        if getattr(loss, "__name__", None) in _SPARSE_LOSSES or loss_name in _SPARSE_LOSSES:
            msg = (
                f"model {model.name!r} is compiled with a sparse loss ({loss_name}); the Trainer "
                "feeds one-hot targets to multi-output models: use categorical_crossentropy"
            )
            raise ModelError(msg)
        model.compile(optimizer=model.optimizer, loss=loss, metrics=_metrics(layout.n_outputs))
        return
    loss = "binary_crossentropy" if layout.n_outputs == 1 else "categorical_crossentropy"
    model.compile(
        optimizer=_optimizer(optimizer, learning_rate),
        loss=loss,
        metrics=_metrics(layout.n_outputs),
    )
