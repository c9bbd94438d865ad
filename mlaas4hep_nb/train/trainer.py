"""Trainer: train a Keras model in the kernel on a DataStream, judge it, export a TFaaS bundle."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from ..bundle import write_bundle
from ..data.tf import chunk_dataset
from ..errors import EmptyDataError
from . import metrics
from .callbacks import ProgressBar, StopSwitch, Validation
from .export import MaskRule, ServingExport
from .feed import Encoder, RowBuffer
from .models import ModelError, compile_model, inspect_model, resolve_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..data.stream import DataStream
    from ..liveplot import LivePlot

__all__ = ["Trainer"]

_PREDICT_ROWS = 65_536  # rows per model call in predict/evaluate: bounds memory
_MASK_SAMPLE = 50_000  # validation rows on which the serving mask rules are checked


def __dir__() -> list[str]:
    return __all__


def _early_stopping(option: Any) -> keras.callbacks.Callback | None:
    if option is None or option is False:
        return None
    if isinstance(option, keras.callbacks.Callback):
        return option
    settings = {"monitor": "val_loss", "restore_best_weights": True}
    if isinstance(option, bool):
        settings["patience"] = 2
    elif isinstance(option, int):
        settings["patience"] = option
    elif isinstance(option, dict):
        settings.update(option)
    else:
        msg = "early_stopping must be None, a patience (int), a dict of EarlyStopping settings "
        msg += f"or a keras EarlyStopping callback, not {type(option).__name__}"
        raise TypeError(msg)
    return keras.callbacks.EarlyStopping(**settings)


class Trainer:
    """Train a Keras classifier on a `DataStream`, every epoch over all chunks of all files.

    Parameters
    ----------
    stream : the `DataStream` to learn from (its ``"train"`` and ``"validation"`` splits).
    model : None for the default MLP on X and the mask; a ``keras.Model`` (taking
        X, or X and the mask as two inputs); a function ``model(idim)`` returning
        a compiled Keras model (the MLaaS4HEP convention); or the path of a
        ``.py`` file defining ``model(idim)`` (or of a saved ``.keras`` model).
    epochs : epochs per call of `fit`.
    optimizer, learning_rate : used when the model is not compiled yet; a
        compiled model keeps its optimizer and loss.
    callbacks : more Keras callbacks for `fit`.
    early_stopping : None; a patience in epochs; a dict of
        ``keras.callbacks.EarlyStopping`` settings (default monitor ``val_loss``,
        best weights restored); or such a callback.
    seed : the random seed of weights and dropout; the stream's seed when None. It
        seeds Python's, NumPy's and TensorFlow's global generators
        (``keras.utils.set_random_seed``), so the same seed and data give the
        same metrics.
    max_events : train on at most this many events per epoch (MLaaS4HEP's ``nevts``).
    batch_size : events per batch; the stream's ``batch_size`` when None.

    Raises
    ------
    EmptyDataError
        The stream has no training events (for example a cut removes them all).
    ModelError
        The model does not fit the stream (input width, output width), or a
        model file defines no ``model(idim)``.
    """

    def __init__(
        self,
        stream: DataStream,
        model: Any = None,
        epochs: int = 5,
        optimizer: Any = "adam",
        learning_rate: float = 1e-3,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        early_stopping: Any = None,
        *,
        seed: int | None = None,
        max_events: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        if not hasattr(stream, "split_chunks"):
            msg = f"stream must be a mlaas4hep_nb.DataStream, not {type(stream).__name__}"
            raise TypeError(msg)
        if epochs < 1:
            msg = f"epochs must be at least 1, not {epochs}"
            raise ValueError(msg)
        self.stream = stream
        self.epochs = int(epochs)
        self.callbacks = list(callbacks)
        self.early_stopping = _early_stopping(early_stopping)
        self.max_events = max_events
        self.batch_size = stream.batch_size if batch_size is None else int(batch_size)
        if self.batch_size < 1:
            msg = f"batch_size must be positive, not {batch_size!r}"
            raise ValueError(msg)
        if stream.n_classes < 2:
            msg = f"the stream has only class {stream.classes}: training needs two or more labels"
            raise EmptyDataError(msg)
        self.n_train = self._count("train")
        if max_events is not None:
            self.n_train = min(self.n_train, int(max_events))
        self.n_validation = self._count("validation")
        self.seed = stream.seed if seed is None else int(seed)
        keras.utils.set_random_seed(self.seed)
        self.model = resolve_model(model, stream.n_features, stream.n_classes)
        self.layout = inspect_model(
            self.model, stream.n_features, stream.n_classes, stream.features
        )
        compile_model(self.model, self.layout, optimizer, learning_rate)
        self.encoder = Encoder(self.layout, stream.n_features)
        self.labels = (
            ["background", "signal"] if stream.n_classes == 2 else [str(k) for k in stream.classes]
        )
        self.history: keras.callbacks.History | None = None
        self.live_plot: LivePlot | None = None
        self.epoch = 0
        self._mask_rule: MaskRule | None = None
        self._stop = threading.Event()
        # the fit in progress: its first epoch, the stream's pass for it, the passes begun
        # and the validation rows of each epoch (by its number in the fit) until validated
        self._initial_epoch = 0
        self._first_pass = 0
        self._passes_begun = 0
        self._rows: dict[int, RowBuffer] = {}
        self._feed_error: BaseException | None = None
        self._evaluated: dict = {}

    def _count(self, split: str) -> int:
        n = self.stream.count(split)
        if split == "train" and n == 0:
            cut = f" after the cut {self.stream.cut!r}" if self.stream.cut else ""
            msg = (
                f"the stream has no training events{cut} in {len(self.stream.files)} file(s); "
                "loosen the cut or add files"
            )
            raise EmptyDataError(msg)
        return n

    def __repr__(self) -> str:
        return (
            f"Trainer(model {self.model.name!r}, {self.stream.n_features} features, "
            f"{self.stream.n_classes} classes, {self.n_train} train / {self.n_validation} "
            f"validation events, epochs trained: {self.epoch})"
        )

    # --- training ------------------------------------------------------------------------

    def _train_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The fit's next epoch: training rows of each chunk, keeping its validation rows.

        Called on a tf.data thread, possibly while the epoch before ends: each
        epoch reads the stream's pass numbered by its place in the fit, and keeps
        its own validation rows until `_validation_dataset` has used them.
        """
        index = self._passes_begun
        self._passes_begun += 1
        rows = self._rows[index] = RowBuffer()
        left = self.n_train
        try:
            pass_number = self._first_pass + index
            with contextlib.closing(self.stream.split_chunks(pass_number)) as chunks:
                for train, validation in chunks:
                    rows.append(*validation)
                    x, mask, y = (a[:left] for a in train)
                    left -= len(y)
                    yield x, mask, y
                    if left <= 0:
                        break
        except Exception as err:
            # tf.data turns it into an opaque error; fit re-raises the original
            self._feed_error = err
            raise

    def _validation_dataset(self, epoch: int):
        """The validation rows read in ``epoch`` (Keras's number) as a dataset; None if none."""
        rows = self._rows.get(epoch - self._initial_epoch)
        if rows is None or rows.rows == 0:
            return None
        # the dataset holds the RowBuffer, never its arrays: TensorFlow keeps the generator
        # functions of its datasets alive, and the rows are freed when the buffer is closed
        return chunk_dataset(lambda: iter(rows.parts()), rows.rows, self.batch_size, self.encoder)

    def _release_rows(self, epoch: int) -> None:
        rows = self._rows.pop(epoch - self._initial_epoch, None)
        if rows is not None:
            rows.close()

    def fit(self, live_plot: bool | LivePlot = True, progress: bool = True):
        """Train for ``epochs`` epochs; validate on ``"validation"`` after each.

        Parameters
        ----------
        live_plot : draw loss and AUC live (a `LivePlot`, or True for a new one).
        progress : show a progress bar per epoch.

        Returns
        -------
        The Keras ``History``: ``history.history["loss"]``, ``"val_loss"``,
        ``"auc"``, ``"val_auc"``, ``"accuracy"``, ``"val_accuracy"``. After
        `stop`, the history of the epochs run so far.
        """
        self._stop.clear()
        self._feed_error = None
        self._evaluated = {}
        self._initial_epoch = self.epoch
        self._first_pass = self.stream.passes["train"]
        self._passes_begun = 0
        self._rows = {}
        callbacks: list[keras.callbacks.Callback] = [
            Validation(self._validation_dataset, self._release_rows)
        ]
        if progress:
            callbacks.append(ProgressBar())
        if live_plot:
            from ..liveplot import LivePlot  # imports our plotting: only when asked to plot

            self.live_plot = live_plot if isinstance(live_plot, LivePlot) else LivePlot()
            callbacks.append(self.live_plot)
        if self.early_stopping is not None:
            callbacks.append(self.early_stopping)
        callbacks.extend(self.callbacks)
        switch = StopSwitch(self._stop)
        callbacks.append(switch)  # last: a stop asked for in any callback ends this batch
        # one dataset for all epochs, so the next epoch's first batches are read while the
        # current epoch ends and is validated; Keras keeps its iterator given steps_per_epoch
        dataset = chunk_dataset(
            self._train_chunks, self.n_train, self.batch_size, self.encoder, passes=self.epochs
        )
        try:
            history = self.model.fit(
                dataset,
                epochs=self.epoch + self.epochs,
                initial_epoch=self.epoch,
                steps_per_epoch=math.ceil(self.n_train / self.batch_size),
                callbacks=callbacks,
                verbose=0,
                shuffle=False,  # the stream shuffles; a tf.data dataset is not reshuffled
            )
        except tf.errors.OpError as err:
            if self._feed_error is not None:
                raise self._feed_error from err
            raise
        finally:
            if self.stream.shuffle:
                # the stream counts one pass per epoch begun, as if each epoch read its own
                # pass; one begun ahead for an epoch that did not run (a stop) is not counted
                self.stream.passes["train"] = self._first_pass + switch.epochs_begun
            rows_left, self._rows = self._rows, {}  # a pass begun ahead may still add to it
            for rows in list(rows_left.values()):
                rows.close()
        self.epoch += len(history.epoch)
        self.history = history
        return history

    def stop(self) -> None:
        """End `fit` after the current batch (safe from a button callback or another thread)."""
        self._stop.set()

    # --- judging -------------------------------------------------------------------------

    @property
    def mask_rule(self) -> MaskRule:
        """How the served model derives the mask from X (rules checked on validation rows)."""
        if self._mask_rule is None:
            split = "validation" if self.n_validation else "train"

            x, mask, _ = self.stream.head(_MASK_SAMPLE, split)
            self._mask_rule = MaskRule.fit(self.stream.spec, self.stream.normalize, [(x, mask)])
        return self._mask_rule

    def _check_x(self, x: Any, what: str = "X") -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.stream.n_features:
            msg = (
                f"{what} must have shape [n, {self.stream.n_features}] (the stream's features), "
                f"not {list(x.shape)}"
            )
            raise ValueError(msg)
        return x

    def predict(self, x: Any, mask: Any = None) -> np.ndarray:
        """Probabilities for rows of normalised features, as the exported bundle gives them.

        Parameters
        ----------
        x : ``[n, n_features]`` features as the stream makes them.
        mask : the true mask; when None it is derived from X as the served
            model derives it (`mask_rule`, see `mlaas4hep_nb.train.export`).

        Returns
        -------
        float32 ``[n, 1]`` (probability of the signal) for a sigmoid model,
        else ``[n, n_classes]``.
        """
        x = self._check_x(x)
        if mask is None:
            mask = self.mask_rule.numpy(x)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != x.shape:
                msg = f"mask shape {list(mask.shape)} differs from X shape {list(x.shape)}"
                raise ValueError(msg)
        return self._forward(x, mask)

    def _forward(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = [
            np.asarray(
                self.model(
                    self.encoder.inputs(x[i : i + _PREDICT_ROWS], mask[i : i + _PREDICT_ROWS]),
                    training=False,
                )
            )
            for i in range(0, len(x), _PREDICT_ROWS)
        ]
        if not out:
            return np.zeros((0, self.layout.n_outputs), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def _scores(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        key = (split, self.epoch)
        if key not in self._evaluated:
            probabilities, labels = [], []
            for x, mask, y in self.stream.chunks(split):
                probabilities.append(self._forward(x, mask))
                labels.append(y)
            if not labels:
                msg = f"the stream's {split!r} split has no events to evaluate on"
                raise EmptyDataError(msg)
            self._evaluated = {key: (np.concatenate(probabilities), np.concatenate(labels))}
        return self._evaluated[key]

    def evaluate(self, split: str = "validation") -> dict:
        """Judge the model on a split (read from the files, the true mask used).

        Returns
        -------
        dict with ``auc``, ``accuracy``, ``loss`` (cross-entropy), ``roc`` =
        ``(fpr, tpr, thresholds)``, ``confusion`` (rows: true class, columns:
        predicted, at threshold 0.5 for one output, argmax otherwise) and
        ``n_events``. With more than two classes, ROC and AUC are micro-averaged
        over one-vs-rest (as Keras's ``AUC`` on one-hot targets).
        """
        probabilities, y = self._scores(split)
        if probabilities.shape[1] == 1:
            truth, scores = y, probabilities[:, 0]
        elif probabilities.shape[1] == 2 and self.stream.n_classes == 2:
            truth, scores = y, probabilities[:, 1]
        else:
            truth = metrics.one_hot(y, probabilities.shape[1]).ravel()
            scores = probabilities.ravel()
        fpr, tpr, thresholds = metrics.roc_curve(truth, scores)
        predicted = metrics.classify(probabilities)
        return {
            "auc": metrics.auc(fpr, tpr),
            "accuracy": float(np.mean(predicted == y.astype(np.int64))),
            "loss": metrics.cross_entropy(y, probabilities),
            "roc": (fpr, tpr, thresholds),
            "confusion": metrics.confusion(y, predicted, self.stream.n_classes),
            "n_events": len(y),
        }

    def plot_roc(self, split: str = "validation") -> Figure:
        """The ROC curve on ``split`` with its AUC, as a matplotlib figure."""
        from ..plot import plot_roc

        result = self.evaluate(split)
        fpr, tpr, _ = result["roc"]
        return plot_roc(fpr, tpr, result["auc"])

    def plot_scores(self, split: str = "validation", score_class: int | None = None) -> Figure:
        """Histograms of one class's score (the last class by default) for each true class."""
        from ..plot import plot_scores

        probabilities, y = self._scores(split)
        column = probabilities.shape[1] - 1 if score_class is None else int(score_class)
        return plot_scores(probabilities[:, column], y, self.labels)

    def plot_history(self) -> Figure:
        """Loss and AUC per epoch of the last `fit`."""
        from ..plot import plot_history

        return plot_history(self.history.history if self.history else {})

    # --- saving --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the Keras model (architecture, weights, optimizer state) to a ``.keras`` file."""
        path = Path(path)
        if path.suffix != ".keras":
            msg = f"save writes the Keras format: give a path ending in .keras, not {path.name!r}"
            raise ValueError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)
        return path

    def export(
        self,
        bundle_dir: str | os.PathLike,
        name: str | None = None,
        labels: Sequence[str] | None = None,
        description: str | None = None,
    ) -> Path:
        """Write a TFaaS bundle: SavedModel, ``params.json``, ``labels.txt``, empty ``assets/``.

        The ``serving_default`` signature takes ``inputs`` (float32 ``[None,
        n_features]``, normalised as the stream normalises) and returns
        probabilities; it derives the mask from X (`mask_rule`: from counters
        such as ``nJet`` where they give the true mask, else nonzero values; see
        `mlaas4hep_nb.train.export` for the edge case of real zeros).
        ``serving_with_mask`` also takes the true ``mask``. ``params.json``
        carries the feature names and the FeatureSpec (with the normalisation
        and the mask rules) for clients that send raw events.

        Returns
        -------
        The bundle folder.
        """
        if labels is None:
            labels = self.labels
        if len(labels) != self.stream.n_classes:
            msg = f"{len(labels)} labels given for {self.stream.n_classes} classes"
            raise ModelError(msg)
        if description is None:
            description = (
                f"mlaas4hep_nb {self.model.name}: {self.stream.n_features} features, "
                f"{self.stream.n_classes} classes, {self.epoch} epochs; outputs: "
                + (
                    "probability of the last label"
                    if self.layout.n_outputs == 1
                    else "one per label"
                )
            )
        spec = {
            **self.stream.spec.to_dict(),
            "normalize": self.stream.normalize,
            "serving_mask": self.mask_rule.describe(),
        }
        return write_bundle(
            ServingExport(self.model, self.layout, self.mask_rule),
            bundle_dir,
            name=name,
            labels=labels,
            features=self.stream.features,
            spec=spec,
            description=description,
        )
