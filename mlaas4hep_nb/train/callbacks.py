"""Keras callbacks the Trainer adds: validation on buffered rows, a stop switch, progress bars."""

from __future__ import annotations

import threading
from collections.abc import Callable

import keras
from tqdm.auto import tqdm

__all__ = ["ProgressBar", "StopSwitch", "Validation"]


def __dir__() -> list[str]:
    return __all__


class Validation(keras.callbacks.Callback):
    """At the end of each epoch, evaluate on that epoch's validation rows; add ``val_*`` logs.

    It must come first among the callbacks so that the others (History, plots,
    early stopping) see the ``val_*`` values it writes into the epoch's logs.

    Parameters
    ----------
    dataset : returns the validation dataset of the epoch that just ended
        (given its number), or None when there are no validation rows.
    release : called with the epoch's number once it is validated (or failed to be).
    """

    def __init__(
        self,
        dataset: Callable[[int], object],
        release: Callable[[int], object] = lambda epoch: None,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.release = release

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        try:
            dataset = self.dataset(epoch)
            if dataset is None or logs is None:
                return
            results = self.model.evaluate(dataset, verbose=0, return_dict=True)
            logs.update({f"val_{name}": float(value) for name, value in results.items()})
        finally:
            self.release(epoch)


class StopSwitch(keras.callbacks.Callback):
    """Stop training after the current batch once ``event`` is set (from any thread).

    Keras checks ``model.stop_training`` after every batch, so training ends
    within one batch; the epoch is then validated on the rows read so far.
    """

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event
        self.stopped_at: tuple[int, int] | None = None
        self.epochs_begun = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch
        self.epochs_begun += 1

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.event.is_set() and not self.model.stop_training:
            self.model.stop_training = True
            self.stopped_at = (self._epoch, batch)


class ProgressBar(keras.callbacks.Callback):
    """A ``tqdm.auto`` bar per epoch: batches, batches/s and the running loss."""

    def __init__(self) -> None:
        super().__init__()
        self.bar: tqdm | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        total = self.params.get("epochs")
        self.bar = tqdm(
            total=self.params.get("steps"),
            desc=f"epoch {epoch + 1}/{total}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.bar is None:
            return
        if logs and "loss" in logs:
            self.bar.set_postfix_str(f"loss {float(logs['loss']):.4f}", refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._close()

    def on_train_end(self, logs=None) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
