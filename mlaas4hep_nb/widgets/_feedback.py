"""A Keras callback that shows training progress in a panel's Status.

Imported only when a panel trains, since it imports Keras.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import keras

__all__ = ["TrainingProgress"]


def __dir__() -> list[str]:
    return __all__


class TrainingProgress(keras.callbacks.Callback):
    """Reports ``(text, fraction done)`` after batches (at most every ``min_interval`` s)."""

    def __init__(self, report: Callable[[str, float], None], min_interval: float = 0.3) -> None:
        super().__init__()
        self.report = report
        self.min_interval = min_interval
        self._last = float("-inf")
        self._epoch = 0
        self._first_epoch: int | None = 0  # None from on_train_begin to the first epoch

    def on_train_begin(self, logs=None) -> None:
        self._first_epoch = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        now = time.perf_counter()
        if now - self._last < self.min_interval:
            return
        self._last = now
        epochs = self.params.get("epochs", self._epoch + 1)
        steps = self.params.get("steps") or batch + 1
        first = cast(int, self._first_epoch)  # on_epoch_begin set it before any batch
        run = epochs - first
        done = (self._epoch - first + (batch + 1) / steps) / max(run, 1)
        loss = f", loss {float(logs['loss']):.4f}" if logs and "loss" in logs else ""
        self.report(f"epoch {self._epoch + 1}/{epochs}: batch {batch + 1}/{steps}{loss}", done)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        epochs = self.params.get("epochs", epoch + 1)
        first = cast(int, self._first_epoch)  # on_epoch_begin set it
        run = epochs - first
        auc = f", val AUC {float(logs['val_auc']):.4f}" if "val_auc" in logs else ""
        self.report(f"epoch {epoch + 1}/{epochs} done{auc}", (epoch + 1 - first) / max(run, 1))
