"""Models for the Trainer: the default MLP, user models (MLaaS4HEP ``model(idim)``), checks.

A model takes either X alone (``[None, n_features]``, the MLaaS4HEP
convention) or X and the mask as two inputs (the default MLP), and gives one
output: a single sigmoid column for two classes, or one column per class.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import linecache
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

__all__ = [
    "ModelError",
    "ModelLayout",
    "compile_model",
    "default_model",
    "describe_user_error",
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
    """The function ``model(idim)`` defined in the Python file ``path`` (MLaaS4HEP convention).

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelError
        The file fails to run (one line: the file, the line and the error, with
        the Keras 3 spelling of a known Keras 2 one), or defines no ``model``.
    """
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
        with _user_code(str(path)):
            spec.loader.exec_module(module)
    except Exception as err:
        raise ModelError(describe_user_error(err, str(path))) from err
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

    Raises
    ------
    ModelError
        The function raised (one line naming its file and line, see
        `describe_user_error`; the original exception is chained) or returned
        something else than a ``keras.Model``.
    """
    if model is None:
        return default_model(n_features, n_classes)
    if isinstance(model, keras.Model):
        return model
    source: str | None
    if isinstance(model, (str, os.PathLike)):
        if str(model).endswith(".keras"):
            return keras.saving.load_model(model)
        function = load_model_function(model)
        where, source = f"model(idim) in {model}", str(model)
    elif callable(model):
        function = model
        where = f"{getattr(model, '__name__', repr(model))}(idim)"
        code = getattr(model, "__code__", None)
        source = code.co_filename if code is not None else None
    else:
        msg = (
            f"model must be None, a keras.Model, a function model(idim) or the path of a .py "
            f"or .keras file, not {type(model).__name__}"
        )
        raise TypeError(msg)
    try:
        with _user_code(source):
            built = function(n_features)
    except Exception as err:
        raise ModelError(describe_user_error(err, source, where)) from err
    if not isinstance(built, keras.Model):
        kind = type(built)
        msg = f"{where} returned {kind.__name__}, not a keras.Model"
        if kind.__module__.split(".")[0] == "torch":
            msg += "; the Trainer trains Keras models only: rewrite the model with keras.layers"
        raise ModelError(msg)
    return built


# --- user model code: its errors and warnings named by file and line ------------------

# Keras 3 warns that input_shape= on a layer should be a keras.Input: advice on style that
# MLaaS4HEP's own model files (input_shape=(idim,)) would print at every run
_INPUT_SHAPE_ADVICE = r"Do not pass an `input_shape`/`input_dim` argument to a layer"

# Keras 2 modules gone in Keras 3, and where their contents live now
_KERAS2_MODULES = {
    "keras.layers.": "its layers are in keras.layers",
    "keras.engine": "use keras.Model, keras.layers.Layer and keras.Input",
    "keras.utils.np_utils": "use keras.utils.to_categorical",
    "keras.wrappers": "scikit-learn wrappers moved to the scikeras package",
}


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def _innermost(err: BaseException, source: str | None) -> tuple[int, str] | None:
    """(line number, source line) of the innermost frame of ``err`` inside the file ``source``."""
    if isinstance(err, SyntaxError) and _same_file(err.filename, source):
        return err.lineno or 0, err.text or ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _same_file(f.filename, source)]
    if not frames:
        return None
    return frames[-1].lineno or 0, frames[-1].line or ""


def _call_text(line: str, start: int) -> str:
    """The call that opens at ``line[start:]`` up to its closing parenthesis."""
    depth = 0
    for i in range(start, len(line)):
        if line[i] == "(":
            depth += 1
        elif line[i] == ")":
            depth -= 1
            if depth == 0:
                return line[start : i + 1]
    return line[start:]


def _lr_hint(line: str) -> str:
    found = re.search(r"([A-Za-z_][\w.]*)\((?=[^()]*\blr\s*=)", line)
    if found is None:
        return "lr= is Keras 2; Keras 3 spells it learning_rate="
    call = _call_text(line, found.start())
    fixed = re.sub(r"\blr\s*=", "learning_rate=", call)
    short = found.group(1).rsplit(".", 1)[-1]
    return f"{short}(lr=...) is Keras 2; Keras 3 spells it learning_rate= ({fixed})"


def _module_hint(module: str, line: str) -> str | None:
    module = module.removeprefix("tensorflow.")
    for prefix, advice in _KERAS2_MODULES.items():
        if module.startswith(prefix):
            found = re.search(r"\bimport\s+(.+)$", line.strip())
            if prefix == "keras.layers." and found:
                advice = f"{advice} (from keras.layers import {found.group(1)})"
            return f"{module} is a Keras 2 module that Keras 3 does not have; {advice}"
    return None


def _keras2_hint(err: BaseException, line: str) -> str | None:
    """The Keras 3 spelling of a Keras 2 spelling that raised ``err``, or None."""
    text = str(err)
    if isinstance(err, (ValueError, TypeError)) and re.search(r"['\"]lr['\"]", text):
        return _lr_hint(line)
    if isinstance(err, ModuleNotFoundError) and err.name:
        return _module_hint(err.name, line)
    if isinstance(err, ImportError) and "keras.optimizers.legacy" in text:
        found = re.search(r"legacy\.(\w+)", line)
        name = found.group(1) if found else "Adam"
        return (
            f"keras.optimizers.legacy is Keras 2; Keras 3 spells it "
            f"keras.optimizers.{name}(learning_rate=...)"
        )
    found = re.search(r"'(fit|predict|evaluate)_generator'", text)
    if isinstance(err, AttributeError) and found:
        verb = found.group(1)
        return f"model.{verb}_generator is Keras 2; Keras 3 spells it model.{verb}(generator, ...)"
    return _warning_hint(text, line)


def _warning_hint(text: str, line: str = "") -> str | None:
    if "Argument `decay` is no longer supported" not in text:
        return None
    rate = re.search(r"\b(?:learning_rate|lr)\s*=\s*([^,()]+)", line)
    decay = re.search(r"\bdecay\s*=\s*([^,()]+)", line)
    return (
        "decay= is Keras 2 (Keras 3 ignores it); Keras 3 spells it learning_rate="
        "keras.optimizers.schedules.InverseTimeDecay("
        f"{rate.group(1).strip() if rate else 'LR'}, decay_steps=1, "
        f"decay_rate={decay.group(1).strip() if decay else 'DECAY'})"
    )


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def describe_user_error(err: BaseException, source: str | None, where: str | None = None) -> str:
    """One line for an exception raised by user model code: file, line, what to write instead.

    Parameters
    ----------
    err : the exception, with its traceback.
    source : the user's file; its innermost frame in the traceback gives the line.
    where : how to name the code when no frame of ``source`` is in the traceback.

    Returns
    -------
    ``"keras_model.py line 15: Adam(lr=...) is Keras 2; Keras 3 spells it
    learning_rate= (keras.optimizers.Adam(learning_rate=1e-3))"`` for a known
    Keras 2 spelling, else ``"FILE line N: Type: message (in `source line`)"``.
    """
    frame = _innermost(err, source)
    line = frame[1].strip() if frame else ""
    place = f"{source} line {frame[0]}" if frame else (where or source or "model(idim)")
    hint = _keras2_hint(err, line)
    if hint:
        return f"{place}: {hint}"
    message = err.msg if isinstance(err, SyntaxError) else str(err)
    text = f"{place}: {type(err).__name__}: {_one_line(message)}"
    if line:
        text += f" (in `{_one_line(line, 120)}`)"
    return text


@contextlib.contextmanager
def _user_code(source: str | None) -> Iterator[None]:
    """Run user model code: Keras's warnings point at the user's line, its input_shape advice
    is not shown.

    A warning raised while the code runs is shown with the file and line of the
    innermost frame of ``source`` on the stack (not a line inside Keras), with
    the Keras 3 spelling when it is about a Keras 2 one.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INPUT_SHAPE_ADVICE, category=UserWarning)
        show = warnings.showwarning

        def attribute(message, category, filename, lineno, file=None, line=None):
            frame = inspect.currentframe()
            while frame is not None and not _same_file(frame.f_code.co_filename, source):
                frame = frame.f_back
            if frame is not None:
                filename, lineno, line = source, frame.f_lineno, None
                message = _warning_hint(str(message), linecache.getline(source, lineno)) or message
            del frame
            show(message, category, filename, lineno, file, line)

        warnings.showwarning = attribute
        yield


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
